//! #VMEXIT: an engine stop encoded as the APM defines the exit (EXITCODE,
//! EXITINFO1, EXITINFO2, nRIP, guest instruction bytes; APM vol. 2, 15.6
//! "#VMEXIT", 15.7 "Intercept Operation", appendix C "SVM Intercept Exit
//! Codes").

use crate::exitcode::*;
use crate::exitinfo::{crdr_exitinfo1, exception_exitinfo, ioio_exitinfo1, msr_exitinfo1, npf};
use hyperplug_plugin_api::engine::{insn, EngineEvent, EngineStop};

/// One #VMEXIT as the VMCB records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmExit {
    /// EXITCODE.
    pub code: u64,
    /// EXITINFO1.
    pub info1: u64,
    /// EXITINFO2.
    pub info2: u64,
    /// nRIP: the RIP after the intercepted instruction (APM vol. 2, 15.7.1
    /// "State Saved on Exit", next-RIP save), 0 when not at an instruction.
    pub nrip: u64,
    /// Guest instruction bytes (decode assists, APM vol. 2, 15.35.4).
    pub insn_len: u8,
    /// Their values.
    pub insn_bytes: [u8; 15],
}

/// What the encoder needs besides the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitContext {
    /// Nested paging is on (NP_ENABLE).
    pub nested: bool,
    /// CR0 writes are intercepted in full (not only selectively).
    pub cr0_write_intercepted: bool,
}

/// NPF EXITINFO1 of an MMIO access under nested paging: the entry holds the
/// reserved-bit marker (APM vol. 2, 15.25.6): P, U/S, RSVD, final address.
fn mmio_npf_info(write: bool) -> u64 {
    npf::P | npf::US | npf::RSVD | npf::FINAL | if write { npf::RW } else { 0 }
}

/// The #PF error code of an MMIO access under shadow paging (the shadow
/// entry of an MMIO page carries reserved bits, as a shadow MMU marks MMIO).
fn mmio_pf_code(write: bool) -> u64 {
    1 | (1 << 3) | if write { 1 << 1 } else { 0 }
}

fn insn_code(which: u32) -> u64 {
    match which {
        insn::HLT => VMEXIT_HLT,
        insn::CPUID => VMEXIT_CPUID,
        insn::RDTSC => VMEXIT_RDTSC,
        insn::RDTSCP => VMEXIT_RDTSCP,
        insn::RDPMC => VMEXIT_RDPMC,
        insn::INVLPG => VMEXIT_INVLPG,
        insn::MWAIT => VMEXIT_MWAIT,
        insn::MONITOR => VMEXIT_MONITOR,
        insn::PAUSE => VMEXIT_PAUSE,
        insn::INVD => VMEXIT_INVD,
        insn::WBINVD => VMEXIT_WBINVD,
        insn::XSETBV => VMEXIT_XSETBV,
        // The engine reports the descriptor-table class as one bit.
        insn::DESC_TABLE => VMEXIT_IDTR_READ,
        insn::INTN => VMEXIT_SWINT,
        insn::IRET => VMEXIT_IRET,
        insn::INVPCID => VMEXIT_INVPCID,
        _ => VMEXIT_INVALID,
    }
}

/// Encodes `ev`; `None` for stops that are not exits (budget, and the
/// port/MMIO completions of an instruction being emulated).
pub fn encode(ev: &EngineEvent, cx: ExitContext) -> Option<VmExit> {
    let nrip = ev.rip.wrapping_add(u64::from(ev.insn_len));
    let mut x = VmExit {
        code: 0,
        info1: 0,
        info2: 0,
        nrip: if ev.insn_len > 0 { nrip } else { 0 },
        insn_len: ev.insn_len,
        insn_bytes: ev.insn_bytes,
    };
    let (code, info1, info2) = match &ev.stop {
        EngineStop::Budget | EngineStop::Io { .. } => return None,
        EngineStop::Hlt | EngineStop::Halted => (VMEXIT_HLT, 0, 0),
        EngineStop::Shutdown => (VMEXIT_SHUTDOWN, 0, 0),
        EngineStop::Mmio { gpa, write, .. } => {
            let w = write.is_some();
            if cx.nested {
                (VMEXIT_NPF, mmio_npf_info(w), *gpa)
            } else {
                (VMEXIT_EXCP_BASE + 14, mmio_pf_code(w), *gpa)
            }
        }
        EngineStop::IoIntercept {
            port,
            size,
            input,
            string,
            rep,
            addr_size,
            seg,
            ..
        } => (
            VMEXIT_IOIO,
            ioio_exitinfo1(*port, *size, *addr_size, *seg, *rep, *string, *input),
            // EXITINFO2 of IOIO: the RIP of the next instruction (APM 15.10.2).
            nrip,
        ),
        EngineStop::CrRead { cr, gpr } => (
            VMEXIT_CR0_READ + u64::from(*cr),
            crdr_exitinfo1(true, *gpr),
            0,
        ),
        EngineStop::CrWrite {
            cr,
            gpr,
            clts,
            lmsw,
            ..
        } => {
            let code = if *cr == 0 && !cx.cr0_write_intercepted {
                VMEXIT_CR0_SEL_WRITE
            } else {
                VMEXIT_CR0_WRITE + u64::from(*cr)
            };
            let mov = !(*clts || *lmsw);
            let gpr = gpr.into_option().unwrap_or(0);
            (code, crdr_exitinfo1(mov, gpr), 0)
        }
        EngineStop::DrRead { dr, gpr } => (
            VMEXIT_DR0_READ + u64::from(*dr),
            crdr_exitinfo1(true, *gpr),
            0,
        ),
        EngineStop::DrWrite { dr, gpr } => (
            VMEXIT_DR0_WRITE + u64::from(*dr),
            crdr_exitinfo1(true, *gpr),
            0,
        ),
        EngineStop::Exception {
            vector,
            error_code,
            address,
        } => {
            let (i1, i2) = exception_exitinfo(error_code.into_option(), address.into_option());
            (VMEXIT_EXCP_BASE + u64::from(*vector & 31), i1, i2)
        }
        EngineStop::MsrRead { .. } => (VMEXIT_MSR, msr_exitinfo1(false), 0),
        EngineStop::MsrWrite { .. } => (VMEXIT_MSR, msr_exitinfo1(true), 0),
        EngineStop::Cpuid { .. } => (VMEXIT_CPUID, 0, 0),
        // Decode assist: EXITINFO1 holds the linear address (APM 15.35.3).
        EngineStop::Invlpg { linear } => (VMEXIT_INVLPG, *linear, 0),
        // Decode assist: EXITINFO1 holds the vector (APM 15.35.3).
        EngineStop::IntN { vector } => (VMEXIT_SWINT, u64::from(*vector), 0),
        EngineStop::Insn { which } => (insn_code(*which), 0, 0),
        EngineStop::InterruptWindow => (VMEXIT_VINTR, 0, 0),
        EngineStop::NestedFault { gpa, info, .. } => (VMEXIT_NPF, *info, *gpa),
        EngineStop::TableUnbacked { gpa } => {
            if cx.nested {
                (VMEXIT_NPF, npf::P | npf::US | npf::RSVD | npf::TABLE, *gpa)
            } else {
                (VMEXIT_EXCP_BASE + 14, 1 | (1 << 3), *gpa)
            }
        }
    };
    x.code = code;
    x.info1 = info1;
    x.info2 = info2;
    Some(x)
}
