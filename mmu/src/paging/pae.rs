//! PAE paging (SDM vol. 3, 4.4; APM vol. 2, 5.3.2 and 5.3.3): four PDPTEs
//! located by CR3 bits 31:5, then 64-bit page directories (2-MiB pages) and
//! page tables.
//!
//! Real processors load the four PDPTEs into internal registers at MOV CR3
//! (and other CR0/CR4 writes, SDM 4.4.1) and raise #GP there when one is
//! present with a reserved bit set. This walker reads the PDPTE from memory
//! on every walk instead, and reports a present PDPTE with reserved bits as a
//! #PF with RSVD = 1. A guest that edits its PDPT without reloading CR3 sees
//! the edit at once here; callers that want the hardware caching must
//! snapshot the PDPTEs themselves.

use super::entry::{self, P, PDPTE_PAE_RSVD_LOW};
use super::long::{walk_levels, Format64};
use super::walked::{TableWalk, WalkStop};
use crate::context::PagingContext;
use crate::phys::PhysMemory;

/// CR3 bits 31:5: the PDPT address in PAE paging.
const PAE_CR3_PDPT: u64 = 0xffff_ffe0;

/// Reads the PAE tables for `linear` (bits 31:0 are used).
pub(crate) fn walk_tables<M: PhysMemory + ?Sized>(
    mem: &M,
    ctx: &PagingContext,
    linear: u32,
) -> Result<TableWalk, WalkStop> {
    let m = entry::effective_maxphyaddr(ctx.maxphyaddr);
    let mut w = TableWalk::new(true);
    // The PDPTE has no accessed flag (bits 8:5 are reserved, Table 4-8).
    w.first_ad = 1;
    // CR3 bits 31:5 locate the 32-byte-aligned PDPT (SDM 4.4.1, Table 4-7).
    let pdpt = ctx.cr3 & PAE_CR3_PDPT;
    let pdpte_gpa = pdpt | (u64::from(linear >> 30) << 3);
    let pdpte = mem.read_u64(pdpte_gpa)?;
    w.push(pdpte_gpa, pdpte);
    if pdpte & P == 0 {
        return Err(WalkStop::NotPresent);
    }
    if pdpte & (PDPTE_PAE_RSVD_LOW | entry::pdpte_pae_rsvd_high(m)) != 0 {
        return Err(WalkStop::Reserved);
    }
    // A PDPTE carries no R/W, U/S or XD: it does not restrict rights.
    let f = Format64::pae(ctx);
    walk_levels(mem, f, pdpte & f.addr, 2, u64::from(linear), false, &mut w)?;
    Ok(w)
}
