//! The guest page-table walker's parts, one paging format per file
//! (SDM vol. 3, chapter 4; APM vol. 2, chapter 5). [`crate::walk::walk`] is
//! the entry point; [`walk_tables`] is the raw table read it is built on
//! (for callers such as shadow paging that need the entry values).
//!
//! Entry bits: [`entry`]. Rights decision and error-code bits: [`perm`].
//! Formats: 32-bit (`bits32`), PAE (`pae`), 4/5-level (`long`).

pub(crate) mod ad;
pub(crate) mod bits32;
pub mod entry;
pub(crate) mod long;
pub(crate) mod pae;
pub mod perm;
#[doc(hidden)]
pub mod testutil;
mod walked;

#[cfg(test)]
mod tests;

pub use perm::Rights;
pub use walked::{TableWalk, WalkStop};

use crate::context::{PagingContext, PagingMode};
use crate::phys::PhysMemory;

/// The linear-address bits a mode translates: 31:0 in 32-bit and PAE paging
/// (and with paging off), the full value in 4/5-level paging (whose walk uses
/// bits 47:0 or 56:0; canonicality is checked by the caller, SDM 3.3.7.1).
#[inline]
pub fn linear_for_mode(mode: PagingMode, linear: u64) -> u64 {
    match mode {
        PagingMode::None | PagingMode::Bits32 | PagingMode::Pae => linear & 0xffff_ffff,
        PagingMode::Level4 | PagingMode::Level5 => linear,
    }
}

/// Reads the guest tables that translate `linear` in `ctx`'s paging mode,
/// checking P and reserved bits level by level (SDM 4.3, 4.4.2, 4.5) but not
/// access rights, and setting no A/D bits. With paging off, returns an empty
/// walk (no entries) mapping the 4-KiB page at the 32-bit linear address.
pub fn walk_tables<M: PhysMemory + ?Sized>(
    mem: &M,
    ctx: &PagingContext,
    linear: u64,
) -> Result<TableWalk, WalkStop> {
    let mode = ctx.mode();
    let linear = linear_for_mode(mode, linear);
    match mode {
        PagingMode::None => {
            let mut w = TableWalk::new(false);
            w.frame = linear & !0xfff;
            w.page_size = 4096;
            Ok(w)
        }
        PagingMode::Bits32 => bits32::walk_tables(mem, ctx, linear as u32),
        PagingMode::Pae => pae::walk_tables(mem, ctx, linear as u32),
        PagingMode::Level4 => long::walk_tables(mem, ctx, linear, 4, perm::pkeys_enabled(ctx)),
        PagingMode::Level5 => long::walk_tables(mem, ctx, linear, 5, perm::pkeys_enabled(ctx)),
    }
}
