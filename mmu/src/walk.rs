//! The guest page-table walk: linear → guest-physical, for every paging mode.

use crate::access::{Access, AccessKind};
use crate::context::{PagingContext, CR4_PGE};
use crate::fault::{PageFault, PfErrorCode, WalkError};
use crate::paging::ad::{self, AdResult};
use crate::paging::entry::D;
use crate::paging::perm::{self, Rights};
use crate::paging::{self as pg, WalkStop};
use crate::phys::PhysMemory;

/// A successful translation, with the permissions the walk established
/// (the combination over every level, SDM vol. 3, 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Guest-physical address of the byte at the linear address.
    pub gpa: u64,
    /// Page size in bytes (4 KiB, 2 MiB, 4 MiB, 1 GiB); the linear range
    /// `[linear & !(size-1), +size)` maps to `[gpa & !(size-1), +size)`.
    pub page_size: u64,
    /// Writable at every level (R/W = 1 everywhere).
    pub writable: bool,
    /// User-accessible at every level (U/S = 1 everywhere).
    pub user: bool,
    /// Executable (no level has XD = 1 with EFER.NXE = 1).
    pub executable: bool,
    /// The final entry has G = 1 (and CR4.PGE = 1).
    pub global: bool,
    /// The final entry's D bit is set (so writes need no A/D update).
    pub dirty: bool,
    /// Protection key of the final entry (4-/5-level paging with CR4.PKE = 1, else 0).
    pub pkey: u8,
    /// Guest-physical addresses of the paging-structure entries read, outermost
    /// first (for write-tracking the guest's tables); unused slots are `u64::MAX`.
    pub table_entries: [u64; 5],
}

impl Translation {
    /// The combined access rights, for re-checking another access against
    /// this translation with [`perm::check`] (e.g. from a TLB).
    pub fn rights(&self) -> Rights {
        Rights {
            writable: self.writable,
            user: self.user,
            executable: self.executable,
            pkey: self.pkey,
        }
    }
}

/// Whether the walk may set accessed/dirty bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdUpdate {
    /// Set A on every level walked and D on the final entry of a write, as hardware does.
    Set,
    /// Leave the tables untouched (probes, debuggers, tests).
    None,
}

/// Translates `linear` for `access` under `ctx`, reading the guest's tables
/// from `mem`.
///
/// - Paging off (CR0.PG = 0): the processor cannot be in IA-32e mode, so
///   linear addresses are 32 bits and physical = linear (SDM 4.1.1): the
///   result is `linear & 0xffff_ffff`, never a fault.
/// - 32-bit and PAE paging use linear bits 31:0 (also in the CR2 value of a
///   fault); 4/5-level paging use the address as given (the caller checks
///   canonicality).
/// - Faults (SDM 4.7): P = 0 for a non-present entry, P = 1 with RSVD for a
///   reserved bit in a present entry (the first problem from the top wins),
///   P = 1 for an access-rights violation ([`perm::check`]); W/R, U/S and I/D
///   describe the access ([`perm::access_bits`]).
/// - A/D with [`AdUpdate::Set`] (SDM 4.8): only once the whole translation
///   and the access are known to succeed, A is set in every entry used
///   (outermost first; the PAE PDPTE has no A flag) and D in the final entry
///   of a write, each by compare-exchange; if an entry changed under us the
///   walk starts again. A faulting walk sets no flag at all. The SDM allows
///   a processor to set A in upper-level entries of a walk that then faults
///   (4.10.3.1: paging-structure-cache entries may be created, with A set,
///   "even if there are no translations"), but does not require it; we take
///   the side that leaves guest memory untouched, as KVM's software walker
///   does, so a differential test against bare metal must accept either
///   value of those upper-level A flags after a fault.
pub fn walk<M: PhysMemory + ?Sized>(
    mem: &M,
    ctx: &PagingContext,
    linear: u64,
    access: Access,
    ad: AdUpdate,
) -> Result<Translation, WalkError> {
    let linear = pg::linear_for_mode(ctx.mode(), linear);
    loop {
        let w = match pg::walk_tables(mem, ctx, linear) {
            Ok(w) => w,
            Err(WalkStop::Phys(e)) => return Err(WalkError::Phys(e)),
            Err(WalkStop::NotPresent) => {
                return Err(fault(linear, perm::access_bits(ctx, access)));
            }
            Err(WalkStop::Reserved) => {
                let ec = perm::access_bits(ctx, access) | PfErrorCode::PRESENT | PfErrorCode::RSVD;
                return Err(fault(linear, ec));
            }
        };
        if w.count != 0 {
            if let Err(ec) = perm::check(ctx, w.rights, access) {
                return Err(fault(linear, ec));
            }
        }
        let leaf = match ad {
            AdUpdate::None => w.leaf(),
            AdUpdate::Set => match ad::update(mem, &w, access.kind == AccessKind::Write)? {
                AdResult::Done { leaf } => leaf,
                AdResult::Changed => continue,
            },
        };
        let offset = linear & (w.page_size - 1);
        return Ok(Translation {
            gpa: w.frame | offset,
            page_size: w.page_size,
            writable: w.rights.writable,
            user: w.rights.user,
            executable: w.rights.executable,
            global: w.global_bit && ctx.cr4 & CR4_PGE != 0,
            // With paging off there is no entry to dirty: writes need no update.
            dirty: w.count == 0 || leaf & D != 0,
            pkey: w.rights.pkey,
            // Unused slots of a walk are already u64::MAX.
            table_entries: w.gpas,
        });
    }
}

/// A #PF for `linear` with `error_code`.
fn fault(linear: u64, error_code: PfErrorCode) -> WalkError {
    WalkError::PageFault(PageFault { linear, error_code })
}
