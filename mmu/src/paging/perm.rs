//! The access-rights decision (SDM vol. 3, 4.6 "Access Rights", 4.6.1
//! "Determination of Access Rights", 4.6.2 "Protection Keys"; APM vol. 2,
//! 5.6 "Page-Protection Checks") and the error-code bits that describe the
//! access (SDM 4.7, Figure 4-12).

use crate::access::{Access, AccessKind};
use crate::context::{
    PagingContext, PagingMode, CR0_WP, CR4_PAE, CR4_PKE, CR4_SMAP, CR4_SMEP, EFER_NXE,
};
use crate::fault::PfErrorCode;

/// The access rights of a translation, combined over every paging-structure
/// entry used (SDM 4.6: a user-mode address needs U/S = 1 everywhere, a
/// writable one R/W = 1 everywhere, and XD = 1 anywhere forbids fetches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rights {
    /// R/W = 1 in every entry.
    pub writable: bool,
    /// U/S = 1 in every entry (a "user-mode address").
    pub user: bool,
    /// No entry has XD = 1 while EFER.NXE = 1 (always true in 32-bit paging).
    pub executable: bool,
    /// The protection key of the final entry (meaningful with 4/5-level paging and CR4.PKE = 1).
    pub pkey: u8,
}

impl Rights {
    /// Full rights: the starting point before any entry is combined in.
    pub const ALL: Rights = Rights {
        writable: true,
        user: true,
        executable: true,
        pkey: 0,
    };
}

/// Whether protection keys apply: IA-32e paging (4/5-level) with CR4.PKE = 1 (SDM 4.6.2).
pub fn pkeys_enabled(ctx: &PagingContext) -> bool {
    ctx.cr4 & CR4_PKE != 0 && matches!(ctx.mode(), PagingMode::Level4 | PagingMode::Level5)
}

/// The error-code bits that describe the access itself rather than the
/// tables (SDM 4.7): W/R for writes, U/S for user-mode accesses, and I/D for
/// instruction fetches when CR4.SMEP = 1 or (CR4.PAE = 1 and EFER.NXE = 1).
pub fn access_bits(ctx: &PagingContext, access: Access) -> PfErrorCode {
    let mut ec = PfErrorCode::empty();
    match access.kind {
        AccessKind::Write => ec |= PfErrorCode::WRITE,
        AccessKind::Execute => {
            let smep = ctx.cr4 & CR4_SMEP != 0;
            let pae_nx = ctx.cr4 & CR4_PAE != 0 && ctx.efer & EFER_NXE != 0;
            if smep || pae_nx {
                ec |= PfErrorCode::FETCH;
            }
        }
        AccessKind::Read => {}
    }
    if access.is_user() {
        ec |= PfErrorCode::USER;
    }
    ec
}

/// Whether the protection key in `rights` forbids `access` (SDM 4.6.2 and the
/// PK flag rule of 4.7): only data accesses to user-mode addresses in IA-32e
/// paging with CR4.PKE = 1; AD_i forbids any data access, WD_i forbids writes
/// that are user-mode or made with CR0.WP = 1.
pub fn pkey_denies(ctx: &PagingContext, rights: Rights, access: Access) -> bool {
    if access.kind == AccessKind::Execute || !rights.user || !pkeys_enabled(ctx) {
        return false;
    }
    let shift = 2 * u32::from(rights.pkey & 0xf);
    let ad = (ctx.pkru >> shift) & 1 != 0;
    let wd = (ctx.pkru >> (shift + 1)) & 1 != 0;
    let wp = ctx.cr0 & CR0_WP != 0;
    ad || (wd && access.kind == AccessKind::Write && (wp || access.is_user()))
}

/// Checks `access` against `rights` under `ctx` (SDM 4.6.1). On a violation,
/// returns the complete #PF error code: P = 1, the access bits of
/// [`access_bits`], and PK when the protection key forbids the access.
pub fn check(ctx: &PagingContext, rights: Rights, access: Access) -> Result<(), PfErrorCode> {
    let user_access = access.is_user();
    // SMAP blocks supervisor data accesses to user-mode addresses unless the
    // access is explicit and EFLAGS.AC = 1 (SDM 4.6.1, "Data reads/writes").
    let smap_blocks = ctx.cr4 & CR4_SMAP != 0 && (access.implicit_supervisor || !ctx.rflags_ac);
    let denied = match access.kind {
        AccessKind::Read => {
            if user_access {
                !rights.user
            } else {
                rights.user && smap_blocks
            }
        }
        AccessKind::Write => {
            if user_access {
                // User-mode writes need R/W = 1 everywhere whatever CR0.WP.
                !rights.user || !rights.writable
            } else {
                let wp = ctx.cr0 & CR0_WP != 0;
                (rights.user && smap_blocks) || (wp && !rights.writable)
            }
        }
        AccessKind::Execute => {
            if user_access {
                !rights.user || !rights.executable
            } else {
                let smep = ctx.cr4 & CR4_SMEP != 0;
                (rights.user && smep) || !rights.executable
            }
        }
    };
    let pk = pkey_denies(ctx, rights, access);
    if denied || pk {
        let mut ec = access_bits(ctx, access) | PfErrorCode::PRESENT;
        if pk {
            ec |= PfErrorCode::PK;
        }
        Err(ec)
    } else {
        Ok(())
    }
}
