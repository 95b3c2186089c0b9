//! An independent, literal reading of SDM vol. 3, 4.6.1 "Determination of
//! Access Rights", 4.6.2 "Protection Keys" and 4.7 (error code), used as the
//! oracle for the walker's decisions. Error codes are raw numbers here.

use crate::context::PagingMode;

/// The processor state the rules read.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub mode: PagingMode,
    pub nxe: bool,
    pub wp: bool,
    pub smep: bool,
    pub smap: bool,
    pub ac: bool,
    pub pke: bool,
    pub pkru: u32,
}

/// What the paging-structure entries say, combined (SDM 4.6).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// U/S = 1 in every entry.
    pub user: bool,
    /// R/W = 1 in every entry.
    pub writable: bool,
    /// Bit 63 set in some entry (only possible with 64-bit entries).
    pub xd_bit: bool,
    /// Protection key of the final entry.
    pub pkey: u8,
}

/// The access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Fetch,
}

/// Ok, or the expected #PF error code.
pub fn expect(env: Env, page: Page, kind: Kind, cpl: u8, implicit: bool) -> Result<(), u32> {
    // 4.6: implicit accesses are supervisor-mode whatever the CPL; otherwise CPL 3 is user mode.
    let supervisor = implicit || cpl < 3;
    let explicit_supervisor = cpl < 3 && !implicit;
    let pae_or_long = env.mode != PagingMode::Bits32;
    let long = matches!(env.mode, PagingMode::Level4 | PagingMode::Level5);

    // 4.7 error-code bits describing the access.
    let mut ec = 0u32;
    if kind == Kind::Write {
        ec |= 1 << 1;
    }
    if !supervisor {
        ec |= 1 << 2;
    }
    if kind == Kind::Fetch && (env.smep || (pae_or_long && env.nxe)) {
        ec |= 1 << 4;
    }

    // XD with NXE = 0 is a reserved bit (Tables 4-9..4-11, 4-14..4-20).
    if pae_or_long && page.xd_bit && !env.nxe {
        return Err(ec | 1 | (1 << 3));
    }
    let no_exec = pae_or_long && env.nxe && page.xd_bit;
    let user_address = page.user;
    let read_only = !page.writable;

    // 4.6.2: the protection key's read / write permission.
    let keys = long && env.pke && user_address;
    let ad = keys && (env.pkru >> (2 * page.pkey)) & 1 == 1;
    let wd = keys && (env.pkru >> (2 * page.pkey + 1)) & 1 == 1;
    let key_allows_read = !ad;
    let key_allows_write = if supervisor && !env.wp {
        !ad
    } else {
        !ad && !wd
    };

    let allowed = match (supervisor, kind) {
        // Supervisor-mode data reads.
        (true, Kind::Read) => {
            if !user_address {
                true
            } else if !env.smap || (env.ac && explicit_supervisor) {
                // SMAP off, or lifted by EFLAGS.AC for an explicit access.
                key_allows_read
            } else {
                false
            }
        }
        // Supervisor-mode data writes.
        (true, Kind::Write) => {
            if !user_address {
                !env.wp || !read_only
            } else if env.smap && !(env.ac && explicit_supervisor) {
                false
            } else if !env.wp {
                key_allows_write
            } else {
                !read_only && key_allows_write
            }
        }
        // Supervisor-mode instruction fetches.
        (true, Kind::Fetch) => {
            if user_address && env.smep {
                false
            } else {
                !no_exec
            }
        }
        // User-mode accesses: user-mode addresses only.
        (false, Kind::Read) => user_address && key_allows_read,
        (false, Kind::Write) => user_address && !read_only && key_allows_write,
        (false, Kind::Fetch) => user_address && !no_exec,
    };
    if allowed {
        return Ok(());
    }
    // 4.7 PK flag: data access, user-mode address with key i, and AD_i, or
    // WD_i on a write that is user-mode or made with CR0.WP = 1.
    let pk = kind != Kind::Fetch
        && keys
        && (ad || (wd && kind == Kind::Write && (env.wp || !supervisor)));
    Err(ec | 1 | if pk { 1 << 5 } else { 0 })
}
