//! VMRUN consistency checks on the guest state (AMD APM vol. 2, 15.5.1
//! "Basic Operation", "Canonicalization and Consistency Checks": each
//! failure is a #VMEXIT with VMEXIT_INVALID).
//!
//! Order (the APM's list order, then the extras): EFER.SVME, CR0.CD/NW,
//! CR0[63:32], CR3 MBZ, CR4 MBZ, DR6[63:32], DR7[63:32], EFER MBZ, the
//! three long-mode combinations, the VMRUN intercept, MSRPM then IOPM
//! extent, event injection (15.20), ASID, then N_CR3 MBZ with NP_ENABLE.

use crate::exitinfo::decode_eventinj;
use crate::intercept::MISC2_VMRUN;
use crate::permmap::{IOPM_SIZE, MSRPM_SIZE};
use crate::vmcb::{attr, field, SegReg, Vmcb};

/// A failed VMRUN check (the guest state is illegal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmrunError {
    /// Which check, one line (e.g. "EFER.SVME is zero").
    pub check: &'static str,
}

impl std::fmt::Display for VmrunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VMEXIT_INVALID: {}", self.check)
    }
}

/// The check messages.
pub mod msg {
    /// EFER.SVME clear.
    pub const EFER_SVME: &str = "EFER.SVME is zero";
    /// CR0.CD = 0 with CR0.NW = 1.
    pub const CR0_CD_NW: &str = "CR0.CD is zero and CR0.NW is set";
    /// CR0[63:32] nonzero.
    pub const CR0_HIGH: &str = "CR0[63:32] are not zero";
    /// CR3 MBZ bits.
    pub const CR3_MBZ: &str = "an MBZ bit of CR3 is set";
    /// CR4 MBZ bits.
    pub const CR4_MBZ: &str = "an MBZ bit of CR4 is set";
    /// DR6[63:32] nonzero.
    pub const DR6_HIGH: &str = "DR6[63:32] are not zero";
    /// DR7[63:32] nonzero.
    pub const DR7_HIGH: &str = "DR7[63:32] are not zero";
    /// EFER MBZ bits.
    pub const EFER_MBZ: &str = "an MBZ bit of EFER is set";
    /// Long mode without PAE.
    pub const LONG_NO_PAE: &str = "EFER.LME and CR0.PG are set and CR4.PAE is zero";
    /// Long mode without protection.
    pub const LONG_NO_PE: &str = "EFER.LME and CR0.PG are set and CR0.PE is zero";
    /// CS.L and CS.D both set in long mode.
    pub const LONG_CS_L_D: &str = "EFER.LME, CR0.PG, CR4.PAE, CS.L and CS.D are all set";
    /// VMRUN not intercepted.
    pub const NO_VMRUN_INTERCEPT: &str = "the VMRUN intercept bit is clear";
    /// MSRPM past the physical-address width.
    pub const MSRPM_RANGE: &str =
        "the MSR intercept table extends to or beyond the maximum physical address";
    /// IOPM past the physical-address width.
    pub const IOPM_RANGE: &str =
        "the IOIO intercept table extends to or beyond the maximum physical address";
    /// ASID 0.
    pub const ASID_ZERO: &str = "the guest ASID is zero";
    /// N_CR3 MBZ bits with nested paging on.
    pub const N_CR3_MBZ: &str = "NP_ENABLE is set and an MBZ bit of N_CR3 is set";
}

/// CR0 bits (APM vol. 2, 3.1.1).
const CR0_PE: u64 = 1 << 0;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
/// CR4.PAE (APM vol. 2, 3.1.3).
const CR4_PAE: u64 = 1 << 5;
/// EFER.LME (APM vol. 2, 3.1.7).
const EFER_LME: u64 = 1 << 8;

/// The CR4 bits this model defines (APM vol. 2, 3.1.3, Figure 3-7):
/// VME 0, PVI 1, TSD 2, DE 3, PSE 4, PAE 5, MCE 6, PGE 7, PCE 8, OSFXSR 9,
/// OSXMMEXCPT 10, UMIP 11, LA57 12, FSGSBASE 16, PCIDE 17, OSXSAVE 18,
/// SMEP 20, SMAP 21, PKE 22, CET 23. Every other bit is MBZ.
pub const CR4_DEFINED: u64 = 0x1FFF | (1 << 16) | (1 << 17) | (1 << 18) | (0xF << 20);

/// The EFER bits this model defines (APM vol. 2, 3.1.7): SCE 0, LME 8,
/// LMA 10, NXE 11, SVME 12, LMSLE 13, FFXSR 14, TCE 15. Every other bit
/// (including the feature-dependent MCOMMIT 17, INTWB 18, ...) is MBZ.
pub const EFER_DEFINED: u64 = 1 | (1 << 8) | (0x3F << 10);

/// Which optional CR4/EFER bits the checked processor model implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// CR4 bits that may be set.
    pub cr4_valid: u64,
    /// EFER bits that may be set.
    pub efer_valid: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            cr4_valid: CR4_DEFINED,
            efer_valid: EFER_DEFINED,
        }
    }
}

/// Bits at and above `width` (none when width >= 64).
const fn above(width: u8) -> u64 {
    if width >= 64 {
        0
    } else {
        !0u64 << width
    }
}

/// Whether a table of `size` bytes at `base` (bits 11:0 ignored) reaches a
/// physical address >= 2^maxphyaddr (APM 15.5.1).
fn table_too_high(base: u64, size: usize, maxphyaddr: u8) -> bool {
    let base = base & !0xFFF;
    match base.checked_add(size as u64 - 1) {
        Some(last) => last & above(maxphyaddr) != 0,
        None => true,
    }
}

fn fail(check: &'static str) -> Result<(), VmrunError> {
    Err(VmrunError { check })
}

/// The VMRUN checks with the default [`Model`]. `maxphyaddr` is the
/// guest's physical-address width (e.g. 48).
pub fn vmrun_checks(v: &Vmcb, maxphyaddr: u8) -> Result<(), VmrunError> {
    vmrun_checks_model(v, maxphyaddr, &Model::default())
}

/// The VMRUN checks against `model`'s CR4/EFER bits.
pub fn vmrun_checks_model(v: &Vmcb, maxphyaddr: u8, model: &Model) -> Result<(), VmrunError> {
    let efer = v.get(field::EFER);
    let cr0 = v.get(field::CR0);
    let cr3 = v.get(field::CR3);
    let cr4 = v.get(field::CR4);
    let long = efer & EFER_LME != 0 && cr0 & CR0_PG != 0;
    if efer & crate::vmcb::EFER_SVME == 0 {
        return fail(msg::EFER_SVME);
    }
    if cr0 & CR0_CD == 0 && cr0 & CR0_NW != 0 {
        return fail(msg::CR0_CD_NW);
    }
    if cr0 >> 32 != 0 {
        return fail(msg::CR0_HIGH);
    }
    // Long-mode CR3 holds a physical address below MAXPHYADDR; the
    // legacy-mode CR3 formats are 32 bits wide (APM vol. 2, 3.1.2).
    let cr3_mbz = if long {
        above(maxphyaddr.min(52))
    } else {
        above(32)
    };
    if cr3 & cr3_mbz != 0 {
        return fail(msg::CR3_MBZ);
    }
    if cr4 & !model.cr4_valid != 0 {
        return fail(msg::CR4_MBZ);
    }
    if v.get(field::DR6) >> 32 != 0 {
        return fail(msg::DR6_HIGH);
    }
    if v.get(field::DR7) >> 32 != 0 {
        return fail(msg::DR7_HIGH);
    }
    if efer & !model.efer_valid != 0 {
        return fail(msg::EFER_MBZ);
    }
    if long && cr4 & CR4_PAE == 0 {
        return fail(msg::LONG_NO_PAE);
    }
    if long && cr0 & CR0_PE == 0 {
        return fail(msg::LONG_NO_PE);
    }
    let cs = v.seg(SegReg::Cs).attrib;
    if long && cr4 & CR4_PAE != 0 && cs & attr::L != 0 && cs & attr::DB != 0 {
        return fail(msg::LONG_CS_L_D);
    }
    if v.get(field::INTERCEPT_MISC2) as u32 & MISC2_VMRUN == 0 {
        return fail(msg::NO_VMRUN_INTERCEPT);
    }
    if table_too_high(v.get(field::MSRPM_BASE_PA), MSRPM_SIZE, maxphyaddr) {
        return fail(msg::MSRPM_RANGE);
    }
    if table_too_high(v.get(field::IOPM_BASE_PA), IOPM_SIZE, maxphyaddr) {
        return fail(msg::IOPM_RANGE);
    }
    decode_eventinj(v.get(field::EVENTINJ)).map_err(|check| VmrunError { check })?;
    if v.get(field::GUEST_ASID) == 0 {
        return fail(msg::ASID_ZERO);
    }
    let np = v.get(field::NP_ENABLE) & field::np::NP_ENABLE != 0;
    if np && v.get(field::N_CR3) & above(maxphyaddr.min(52)) != 0 {
        return fail(msg::N_CR3_MBZ);
    }
    Ok(())
}
