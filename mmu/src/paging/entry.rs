//! Paging-structure entry bits and address masks for every format
//! (SDM vol. 3, 4.3 Tables 4-4..4-6, 4.4.2 Tables 4-8..4-11, 4.5 Tables 4-15..4-20;
//! APM vol. 2, 5.3-5.4).

/// P (bit 0): present.
pub const P: u64 = 1 << 0;
/// R/W (bit 1): writes allowed (depends on CPL and CR0.WP, SDM 4.6).
pub const RW: u64 = 1 << 1;
/// U/S (bit 2): user-mode accesses allowed (SDM 4.6).
pub const US: u64 = 1 << 2;
/// PWT (bit 3): page-level write-through.
pub const PWT: u64 = 1 << 3;
/// PCD (bit 4): page-level cache disable.
pub const PCD: u64 = 1 << 4;
/// A (bit 5): accessed (SDM 4.8).
pub const A: u64 = 1 << 5;
/// D (bit 6): dirty, in entries that map a page (SDM 4.8).
pub const D: u64 = 1 << 6;
/// PS (bit 7): page size, in PDEs and PDPTEs (PAT in a PTE).
pub const PS: u64 = 1 << 7;
/// PAT (bit 7) of an entry that maps a 4-KiB page.
pub const PAT_4K: u64 = 1 << 7;
/// G (bit 8): global, in entries that map a page, when CR4.PGE = 1 (SDM 4.10.2.4).
pub const G: u64 = 1 << 8;
/// PAT (bit 12) of an entry that maps a large page.
pub const PAT_LARGE: u64 = 1 << 12;
/// XD (bit 63): execute-disable when EFER.NXE = 1, else reserved (PAE and 4/5-level).
pub const XD: u64 = 1 << 63;
/// Shift of the protection key, bits 62:59 of an entry that maps a page
/// (4/5-level paging with CR4.PKE = 1, SDM 4.6.2).
pub const PKEY_SHIFT: u32 = 59;
/// Mask of the protection-key field (after shifting).
pub const PKEY_MASK: u64 = 0xf;

/// 32-bit paging: physical address bits 31:12 of a 4-KiB frame or table (Tables 4-5, 4-6).
pub const ADDR32_4K: u64 = 0xffff_f000;
/// 32-bit paging: physical address bits 31:22 of a 4-MiB page (Table 4-4).
pub const ADDR32_4M: u64 = 0xffc0_0000;
/// 32-bit paging, 4-MiB PDE: bit 21 is always reserved (Table 4-4).
pub const PDE32_4M_RSVD21: u64 = 1 << 21;
/// PAE PDPTE: bits 2:1 and 8:5 are reserved (Table 4-8).
pub const PDPTE_PAE_RSVD_LOW: u64 = 0x1e6;
/// 2-MiB page entry (PAE and 4/5-level): bits 20:13 are reserved (Tables 4-9, 4-18).
pub const LARGE_2M_RSVD: u64 = 0x001f_e000;
/// 1-GiB page entry (4/5-level PDPTE): bits 29:13 are reserved (Table 4-16).
pub const LARGE_1G_RSVD: u64 = 0x3fff_e000;

/// MAXPHYADDR as the walker uses it: 0 means 52; clamped to 32..=52
/// (SDM 4.1.4: MAXPHYADDR is at most 52).
pub const fn effective_maxphyaddr(m: u8) -> u32 {
    match m {
        0 => 52,
        m if m < 32 => 32,
        m if m > 52 => 52,
        m => m as u32,
    }
}

/// Bits (M-1):12: the physical-address field of a 64-bit entry.
pub const fn addr_mask(m: u32) -> u64 {
    ((1u64 << m) - 1) & !0xfff
}

/// Bits 51:M, reserved in every 4/5-level entry (Tables 4-14..4-20).
pub const fn long_rsvd_high(m: u32) -> u64 {
    ((1u64 << 52) - 1) & !((1u64 << m) - 1)
}

/// Bits 62:M, reserved in PAE page-directory and page-table entries (Tables 4-9..4-11).
pub const fn pae_rsvd_high(m: u32) -> u64 {
    ((1u64 << 63) - 1) & !((1u64 << m) - 1)
}

/// Bits 63:M, reserved in a PAE PDPTE (Table 4-8; XD does not exist there).
pub const fn pdpte_pae_rsvd_high(m: u32) -> u64 {
    !((1u64 << m) - 1)
}
