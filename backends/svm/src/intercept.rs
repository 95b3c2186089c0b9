//! VMCB intercepts (AMD APM vol. 2, appendix B, Table B-1 offsets 0x000-0x014)
//! turned into the host engine's [`EnginePolicy`].

use crate::permmap::{Iopm, Msrpm};
use crate::vmcb::{field, Vmcb};
use hyperplug_plugin_api::engine::{insn, EnginePolicy};

/// INTERCEPT_MISC1 (0x00C) bit 0: physical INTR.
pub const MISC1_INTR: u32 = 1 << 0;
/// Bit 1: physical NMI.
pub const MISC1_NMI: u32 = 1 << 1;
/// Bit 2: physical SMI.
pub const MISC1_SMI: u32 = 1 << 2;
/// Bit 3: physical INIT.
pub const MISC1_INIT: u32 = 1 << 3;
/// Bit 4: virtual INTR.
pub const MISC1_VINTR: u32 = 1 << 4;
/// Bit 5: CR0 writes that change bits other than CR0.TS or CR0.MP.
pub const MISC1_CR0_SEL_WRITE: u32 = 1 << 5;
/// Bit 6: reads of IDTR (SIDT).
pub const MISC1_IDTR_READ: u32 = 1 << 6;
/// Bit 7: reads of GDTR (SGDT).
pub const MISC1_GDTR_READ: u32 = 1 << 7;
/// Bit 8: reads of LDTR (SLDT).
pub const MISC1_LDTR_READ: u32 = 1 << 8;
/// Bit 9: reads of TR (STR).
pub const MISC1_TR_READ: u32 = 1 << 9;
/// Bit 10: writes of IDTR (LIDT).
pub const MISC1_IDTR_WRITE: u32 = 1 << 10;
/// Bit 11: writes of GDTR (LGDT).
pub const MISC1_GDTR_WRITE: u32 = 1 << 11;
/// Bit 12: writes of LDTR (LLDT).
pub const MISC1_LDTR_WRITE: u32 = 1 << 12;
/// Bit 13: writes of TR (LTR).
pub const MISC1_TR_WRITE: u32 = 1 << 13;
/// Bit 14: RDTSC.
pub const MISC1_RDTSC: u32 = 1 << 14;
/// Bit 15: RDPMC.
pub const MISC1_RDPMC: u32 = 1 << 15;
/// Bit 16: PUSHF.
pub const MISC1_PUSHF: u32 = 1 << 16;
/// Bit 17: POPF.
pub const MISC1_POPF: u32 = 1 << 17;
/// Bit 18: CPUID.
pub const MISC1_CPUID: u32 = 1 << 18;
/// Bit 19: RSM.
pub const MISC1_RSM: u32 = 1 << 19;
/// Bit 20: IRET.
pub const MISC1_IRET: u32 = 1 << 20;
/// Bit 21: INTn.
pub const MISC1_INTN: u32 = 1 << 21;
/// Bit 22: INVD.
pub const MISC1_INVD: u32 = 1 << 22;
/// Bit 23: PAUSE.
pub const MISC1_PAUSE: u32 = 1 << 23;
/// Bit 24: HLT.
pub const MISC1_HLT: u32 = 1 << 24;
/// Bit 25: INVLPG.
pub const MISC1_INVLPG: u32 = 1 << 25;
/// Bit 26: INVLPGA.
pub const MISC1_INVLPGA: u32 = 1 << 26;
/// Bit 27: IN/OUT via the IOPM.
pub const MISC1_IOIO_PROT: u32 = 1 << 27;
/// Bit 28: RDMSR/WRMSR via the MSRPM.
pub const MISC1_MSR_PROT: u32 = 1 << 28;
/// Bit 29: task switches.
pub const MISC1_TASK_SWITCH: u32 = 1 << 29;
/// Bit 30: FERR_FREEZE.
pub const MISC1_FERR_FREEZE: u32 = 1 << 30;
/// Bit 31: shutdown.
pub const MISC1_SHUTDOWN: u32 = 1 << 31;

/// INTERCEPT_MISC2 (0x010) bit 0: VMRUN.
pub const MISC2_VMRUN: u32 = 1 << 0;
/// Bit 1: VMMCALL.
pub const MISC2_VMMCALL: u32 = 1 << 1;
/// Bit 2: VMLOAD.
pub const MISC2_VMLOAD: u32 = 1 << 2;
/// Bit 3: VMSAVE.
pub const MISC2_VMSAVE: u32 = 1 << 3;
/// Bit 4: STGI.
pub const MISC2_STGI: u32 = 1 << 4;
/// Bit 5: CLGI.
pub const MISC2_CLGI: u32 = 1 << 5;
/// Bit 6: SKINIT.
pub const MISC2_SKINIT: u32 = 1 << 6;
/// Bit 7: RDTSCP.
pub const MISC2_RDTSCP: u32 = 1 << 7;
/// Bit 8: ICEBP.
pub const MISC2_ICEBP: u32 = 1 << 8;
/// Bit 9: WBINVD / WBNOINVD.
pub const MISC2_WBINVD: u32 = 1 << 9;
/// Bit 10: MONITOR / MONITORX.
pub const MISC2_MONITOR: u32 = 1 << 10;
/// Bit 11: MWAIT / MWAITX, unconditionally.
pub const MISC2_MWAIT: u32 = 1 << 11;
/// Bit 12: MWAIT / MWAITX if the monitor hardware is armed.
pub const MISC2_MWAIT_CONDITIONAL: u32 = 1 << 12;
/// Bit 13: XSETBV.
pub const MISC2_XSETBV: u32 = 1 << 13;
/// Bit 14: RDPRU.
pub const MISC2_RDPRU: u32 = 1 << 14;
/// Bit 15: writes of EFER (trap, after the instruction).
pub const MISC2_EFER_WRITE_TRAP: u32 = 1 << 15;
/// Bits 31:16: writes of CR0-CR15 (trap); CRn is bit 16 + n.
pub const MISC2_CR_WRITE_TRAP_SHIFT: u32 = 16;

/// INTERCEPT_MISC3 (0x014) bit 0: INVLPGB.
pub const MISC3_INVLPGB: u32 = 1 << 0;
/// Bit 1: illegally specified INVLPGB.
pub const MISC3_INVLPGB_ILLEGAL: u32 = 1 << 1;
/// Bit 2: INVPCID.
pub const MISC3_INVPCID: u32 = 1 << 2;
/// Bit 3: MCOMMIT.
pub const MISC3_MCOMMIT: u32 = 1 << 3;
/// Bit 4: TLBSYNC.
pub const MISC3_TLBSYNC: u32 = 1 << 4;

/// The eight descriptor-table read/write intercepts (MISC1 bits 13:6).
pub const MISC1_DESC_TABLE: u32 = MISC1_IDTR_READ
    | MISC1_GDTR_READ
    | MISC1_LDTR_READ
    | MISC1_TR_READ
    | MISC1_IDTR_WRITE
    | MISC1_GDTR_WRITE
    | MISC1_LDTR_WRITE
    | MISC1_TR_WRITE;

/// MISC1 bits that map to one engine [`insn`] bit each.
const MISC1_INSNS: [(u32, u32); 9] = [
    (MISC1_RDTSC, insn::RDTSC),
    (MISC1_RDPMC, insn::RDPMC),
    (MISC1_CPUID, insn::CPUID),
    (MISC1_IRET, insn::IRET),
    (MISC1_INTN, insn::INTN),
    (MISC1_INVD, insn::INVD),
    (MISC1_PAUSE, insn::PAUSE),
    (MISC1_HLT, insn::HLT),
    (MISC1_INVLPG, insn::INVLPG),
];

/// MISC2 bits that map to one engine [`insn`] bit each.
const MISC2_INSNS: [(u32, u32); 6] = [
    (MISC2_RDTSCP, insn::RDTSCP),
    (MISC2_WBINVD, insn::WBINVD),
    (MISC2_MONITOR, insn::MONITOR),
    (MISC2_MWAIT, insn::MWAIT),
    (MISC2_MWAIT_CONDITIONAL, insn::MWAIT),
    (MISC2_XSETBV, insn::XSETBV),
];

/// Whether a pending virtual interrupt (V_IRQ) is one VINTR intercepts once
/// the guest can take it: V_IRQ set, VINTR intercepted, and the interrupt's
/// priority passes the virtual TPR (V_IGN_TPR, or V_INTR_PRIO > V_TPR[3:0];
/// APM vol. 2, 15.21.4).
pub fn wants_interrupt_window(v: &Vmcb) -> bool {
    use field::vintr;
    let misc1 = v.get(field::INTERCEPT_MISC1) as u32;
    let vi = v.get(field::VINTR);
    vi & vintr::V_IRQ != 0
        && misc1 & MISC1_VINTR != 0
        && (vi & vintr::V_IGN_TPR != 0 || vintr::v_intr_prio(vi) > (vintr::v_tpr(vi) & 0xF))
}

/// The engine policy the VMCB's intercepts (and the permission maps) ask for.
pub fn policy(v: &Vmcb, iopm: &Iopm, msrpm: &Msrpm, generation: u64) -> EnginePolicy {
    let cr = v.get(field::INTERCEPT_CR) as u32;
    let dr = v.get(field::INTERCEPT_DR) as u32;
    let misc1 = v.get(field::INTERCEPT_MISC1) as u32;
    let misc2 = v.get(field::INTERCEPT_MISC2) as u32;
    let misc3 = v.get(field::INTERCEPT_MISC3) as u32;
    let mut insns = 0;
    for (bit, i) in MISC1_INSNS {
        if misc1 & bit != 0 {
            insns |= i;
        }
    }
    for (bit, i) in MISC2_INSNS {
        if misc2 & bit != 0 {
            insns |= i;
        }
    }
    if misc1 & MISC1_DESC_TABLE != 0 {
        insns |= insn::DESC_TABLE;
    }
    if misc3 & MISC3_INVPCID != 0 {
        insns |= insn::INVPCID;
    }
    let msr = misc1 & MISC1_MSR_PROT != 0;
    EnginePolicy {
        exceptions: v.get(field::INTERCEPT_EXCEPTIONS) as u32,
        io_ports: if misc1 & MISC1_IOIO_PROT != 0 {
            iopm.intercepted_ports().into()
        } else {
            Default::default()
        },
        msr_read: if msr {
            msrpm.read_list().into()
        } else {
            Default::default()
        },
        msr_write: if msr {
            msrpm.write_list().into()
        } else {
            Default::default()
        },
        msr_others: msr,
        cr_read: cr as u16,
        cr_write: (cr >> 16) as u16 | u16::from(misc1 & MISC1_CR0_SEL_WRITE != 0),
        dr_read: dr as u8,
        dr_write: (dr >> 16) as u8,
        insns,
        interrupt_window: wants_interrupt_window(v),
        generation,
    }
}
