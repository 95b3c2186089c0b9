//! 32-bit paging (SDM vol. 3, 4.3; APM vol. 2, 5.2-5.3): a page directory of
//! 1024 4-byte PDEs and page tables of 1024 PTEs; 4-MiB pages when CR4.PSE = 1,
//! with PSE-36 physical-address bits from PDE bits 20:13.

use super::entry::{self, ADDR32_4K, ADDR32_4M, P, PDE32_4M_RSVD21, PS, RW, US};
use super::walked::{TableWalk, WalkStop};
use crate::context::{PagingContext, CR4_PSE};
use crate::phys::PhysMemory;

/// Reads the 32-bit tables for `linear` (bits 31:0 are used).
pub(crate) fn walk_tables<M: PhysMemory + ?Sized>(
    mem: &M,
    ctx: &PagingContext,
    linear: u32,
) -> Result<TableWalk, WalkStop> {
    let mut w = TableWalk::new(false);
    // CR3 bits 31:12 locate the page directory (SDM 4.3, Table 4-3).
    let pd = ctx.cr3 & ADDR32_4K;
    let pde_gpa = pd | (u64::from(linear >> 22) << 2);
    let pde = u64::from(mem.read_u32(pde_gpa)?);
    w.push(pde_gpa, pde);
    if pde & P == 0 {
        return Err(WalkStop::NotPresent);
    }
    combine(&mut w, pde);
    if ctx.cr4 & CR4_PSE != 0 && pde & PS != 0 {
        // 4-MiB page (Table 4-4). PSE-36: PDE bits (M-20):13 are physical bits
        // (M-1):32 with M = min(MAXPHYADDR, 40); bits 20:(M-19) and bit 21 are reserved.
        let m = entry::effective_maxphyaddr(ctx.maxphyaddr).min(40);
        let high_bits = m - 32;
        let field = (pde >> 13) & 0xff;
        let rsvd = (pde & PDE32_4M_RSVD21) | ((field >> high_bits) << (13 + high_bits));
        if rsvd != 0 {
            return Err(WalkStop::Reserved);
        }
        w.frame = (pde & ADDR32_4M) | (field << 32);
        w.page_size = 4 << 20;
        w.global_bit = pde & entry::G != 0;
        return Ok(w);
    }
    // With CR4.PSE = 0, PS is ignored and the PDE references a page table.
    let pte_gpa = (pde & ADDR32_4K) | (u64::from((linear >> 12) & 0x3ff) << 2);
    let pte = u64::from(mem.read_u32(pte_gpa)?);
    w.push(pte_gpa, pte);
    if pte & P == 0 {
        return Err(WalkStop::NotPresent);
    }
    combine(&mut w, pte);
    w.frame = pte & ADDR32_4K;
    w.page_size = 4 << 10;
    w.global_bit = pte & entry::G != 0;
    Ok(w)
}

/// Folds one entry's R/W and U/S into the walk's rights (no XD in 32-bit paging).
#[inline]
fn combine(w: &mut TableWalk, e: u64) {
    w.rights.writable &= e & RW != 0;
    w.rights.user &= e & US != 0;
}
