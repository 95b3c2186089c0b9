//! 64-bit-entry table levels: 4-level and 5-level paging (SDM vol. 3, 4.5,
//! Tables 4-14..4-20; APM vol. 2, 5.3.3 and 5.3.4), and the page-directory
//! and page-table levels of PAE paging, which share the entry layout (SDM
//! 4.4.2, Tables 4-9..4-11) but reserve bits 62:M instead of 51:M.

use super::entry::{self, LARGE_1G_RSVD, LARGE_2M_RSVD, P, PS, RW, US, XD};
use super::walked::{TableWalk, WalkStop};
use crate::context::{PagingContext, EFER_NXE};
use crate::phys::PhysMemory;

/// The reserved-bit and address masks of one 64-bit format, fixed per walk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format64 {
    /// Bits (M-1):12.
    pub addr: u64,
    /// Reserved high bits: 51:M (4/5-level) or 62:M (PAE).
    pub rsvd_high: u64,
    /// EFER.NXE = 1: bit 63 is XD; otherwise it is reserved.
    pub nxe: bool,
}

impl Format64 {
    /// The 4/5-level format for `ctx`.
    pub fn long(ctx: &PagingContext) -> Self {
        let m = entry::effective_maxphyaddr(ctx.maxphyaddr);
        Format64 {
            addr: entry::addr_mask(m),
            rsvd_high: entry::long_rsvd_high(m),
            nxe: ctx.efer & EFER_NXE != 0,
        }
    }

    /// The PAE page-directory/page-table format for `ctx`.
    pub fn pae(ctx: &PagingContext) -> Self {
        let m = entry::effective_maxphyaddr(ctx.maxphyaddr);
        Format64 {
            addr: entry::addr_mask(m),
            rsvd_high: entry::pae_rsvd_high(m),
            nxe: ctx.efer & EFER_NXE != 0,
        }
    }
}

/// Walks levels `top..=1` (1 = page table, 2 = page directory, 3 = PDPT,
/// 4 = PML4, 5 = PML5) starting from the table at `table`, appending to `w`.
///
/// PS is reserved at levels 4 and 5 (Tables 4-14, 4-15); PS = 1 maps a 1-GiB
/// page at level 3 (Table 4-16; 1-GiB pages are assumed supported, as on every
/// processor with long mode since AMD family 10h and Intel Westmere) and a
/// 2-MiB page at level 2. The PAT bit 12 of a large page is not reserved; bits
/// 29:13 (1 GiB) and 20:13 (2 MiB) are.
#[inline]
pub(crate) fn walk_levels<M: PhysMemory + ?Sized>(
    mem: &M,
    f: Format64,
    mut table: u64,
    top: u32,
    linear: u64,
    pkeys: bool,
    w: &mut TableWalk,
) -> Result<(), WalkStop> {
    let mut level = top;
    loop {
        let shift = 12 + 9 * (level - 1);
        let gpa = table | (((linear >> shift) & 0x1ff) << 3);
        let e = mem.read_u64(gpa)?;
        w.push(gpa, e);
        if e & P == 0 {
            return Err(WalkStop::NotPresent);
        }
        let large = e & PS != 0 && (level == 2 || level == 3);
        let mut rsvd = e & f.rsvd_high;
        if !f.nxe {
            rsvd |= e & XD;
        }
        if level >= 4 {
            rsvd |= e & PS;
        }
        if large {
            rsvd |= e & if level == 3 {
                LARGE_1G_RSVD
            } else {
                LARGE_2M_RSVD
            };
        }
        if rsvd != 0 {
            return Err(WalkStop::Reserved);
        }
        w.rights.writable &= e & RW != 0;
        w.rights.user &= e & US != 0;
        w.rights.executable &= !(f.nxe && e & XD != 0);
        if large || level == 1 {
            w.page_size = 1u64 << shift;
            w.frame = e & f.addr & !(w.page_size - 1);
            w.global_bit = e & entry::G != 0;
            if pkeys {
                w.rights.pkey = ((e >> entry::PKEY_SHIFT) & entry::PKEY_MASK) as u8;
            }
            return Ok(());
        }
        table = e & f.addr;
        level -= 1;
    }
}

/// Reads the 4-level (`levels` = 4) or 5-level (`levels` = 5) tables for `linear`
/// (bits 47:0 or 56:0; canonicality is the caller's check, a #GP/#SS, SDM 3.3.7.1).
pub(crate) fn walk_tables<M: PhysMemory + ?Sized>(
    mem: &M,
    ctx: &PagingContext,
    linear: u64,
    levels: u32,
    pkeys: bool,
) -> Result<TableWalk, WalkStop> {
    let f = Format64::long(ctx);
    let mut w = TableWalk::new(true);
    // CR3 bits (M-1):12 locate the PML4/PML5 table (SDM 4.5, Table 4-12).
    walk_levels(mem, f, ctx.cr3 & f.addr, levels, linear, pkeys, &mut w)?;
    Ok(w)
}
