//! The control-register state a translation depends on.

/// CR0.WP: supervisor writes honour read-only pages (SDM vol. 3, 2.5).
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging enabled.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PSE: 4-MiB pages in 32-bit paging.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE: PAE / 4-level paging.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.PGE: global pages.
pub const CR4_PGE: u64 = 1 << 7;
/// CR4.PCIDE: process-context identifiers (CR3[11:0] is the PCID).
pub const CR4_PCIDE: u64 = 1 << 17;
/// CR4.LA57: 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// CR4.SMEP: supervisor-mode execution prevention.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP: supervisor-mode access prevention.
pub const CR4_SMAP: u64 = 1 << 21;
/// CR4.PKE: protection keys for user pages.
pub const CR4_PKE: u64 = 1 << 22;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: execute-disable bit enabled.
pub const EFER_NXE: u64 = 1 << 11;

/// The paging mode, from CR0.PG, CR4.PAE, EFER.LME and CR4.LA57
/// (SDM vol. 3, 4.1.1 "Four Paging Modes", Table 4-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// CR0.PG = 0: linear = physical.
    None,
    /// 32-bit paging (CR4.PAE = 0).
    Bits32,
    /// PAE paging (CR4.PAE = 1, EFER.LME = 0).
    Pae,
    /// 4-level paging (EFER.LME = 1, CR4.LA57 = 0).
    Level4,
    /// 5-level paging (EFER.LME = 1, CR4.LA57 = 1).
    Level5,
}

/// Everything about the vCPU that a translation depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PagingContext {
    /// CR0.
    pub cr0: u64,
    /// CR3 (with the PCID in bits 11:0 when CR4.PCIDE = 1).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// RFLAGS.AC, which lifts SMAP for explicit supervisor accesses.
    pub rflags_ac: bool,
    /// PKRU (protection keys for user pages), when CR4.PKE = 1.
    pub pkru: u32,
    /// MAXPHYADDR: physical-address width in bits (reserved-bit checks), e.g. 52.
    pub maxphyaddr: u8,
}

impl PagingContext {
    /// The paging mode these registers select.
    pub fn mode(&self) -> PagingMode {
        if self.cr0 & CR0_PG == 0 {
            PagingMode::None
        } else if self.cr4 & CR4_PAE == 0 {
            PagingMode::Bits32
        } else if self.efer & EFER_LME == 0 {
            PagingMode::Pae
        } else if self.cr4 & CR4_LA57 == 0 {
            PagingMode::Level4
        } else {
            PagingMode::Level5
        }
    }

    /// The current PCID (CR3[11:0] with CR4.PCIDE = 1 in 4/5-level paging, else 0).
    pub fn pcid(&self) -> u16 {
        match self.mode() {
            PagingMode::Level4 | PagingMode::Level5 if self.cr4 & CR4_PCIDE != 0 => {
                (self.cr3 & 0xfff) as u16
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table() {
        let c = |cr0, cr4, efer| PagingContext {
            cr0,
            cr4,
            efer,
            ..Default::default()
        };
        let cases = [
            (c(0, CR4_PAE, EFER_LME), PagingMode::None),
            (c(CR0_PG, 0, 0), PagingMode::Bits32),
            (c(CR0_PG, CR4_PSE, 0), PagingMode::Bits32),
            (c(CR0_PG, CR4_PAE, 0), PagingMode::Pae),
            (c(CR0_PG, CR4_PAE, EFER_LME), PagingMode::Level4),
            (c(CR0_PG, CR4_PAE | CR4_LA57, EFER_LME), PagingMode::Level5),
        ];
        for (ctx, want) in cases {
            assert_eq!(ctx.mode(), want, "{ctx:?}");
        }
    }

    #[test]
    fn pcid_only_with_pcide_in_long_mode() {
        let mut ctx = PagingContext {
            cr0: CR0_PG,
            cr4: CR4_PAE | CR4_PCIDE,
            efer: EFER_LME,
            cr3: 0x1234_5abc,
            ..Default::default()
        };
        assert_eq!(ctx.pcid(), 0xabc);
        ctx.cr4 &= !CR4_PCIDE;
        assert_eq!(ctx.pcid(), 0);
    }
}
