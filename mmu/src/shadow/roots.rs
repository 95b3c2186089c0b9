//! Shadow roots: one set of shadow translations per guest address space.

use super::entry::ShadowEntry;
use crate::context::{PagingContext, PagingMode};
use std::collections::HashMap;

/// What identifies a guest address space: the top-level table, the PCID and
/// the paging mode the tables are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootKey {
    /// Guest-physical address of the top-level table (PDPT in PAE paging).
    pub base: u64,
    /// PCID (0 unless CR4.PCIDE = 1).
    pub pcid: u16,
    /// The paging mode.
    pub mode: PagingMode,
}

impl RootKey {
    /// The root `ctx` selects. CR3 layouts: SDM vol. 3, 4.3 (32-bit: bits 31:12),
    /// 4.4.1 (PAE: bits 31:5), 4.5 Table 4-12/4-13 (4/5-level: bits M-1:12, with the
    /// PCID in 11:0 and bit 63 not part of CR3).
    pub fn of(ctx: &PagingContext) -> Self {
        let mode = ctx.mode();
        let base = match mode {
            PagingMode::None => 0,
            PagingMode::Bits32 => ctx.cr3 & 0xffff_f000,
            PagingMode::Pae => ctx.cr3 & 0xffff_ffe0,
            PagingMode::Level4 | PagingMode::Level5 => ctx.cr3 & 0x000f_ffff_ffff_f000,
        };
        Self {
            base,
            pcid: ctx.pcid(),
            mode,
        }
    }
}

/// One cached address space.
#[derive(Debug)]
pub(crate) struct Root {
    /// Unique id (never 0: owner id 0 is the global set).
    pub id: u64,
    /// The address space.
    pub key: RootKey,
    /// Linear page number → shadow.
    pub entries: HashMap<u64, ShadowEntry>,
    /// LRU clock value of the last use.
    pub last_used: u64,
}
