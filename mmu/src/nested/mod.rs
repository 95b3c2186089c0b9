//! Second-level translation (guest-physical → host-physical) in both vendors'
//! formats: Intel EPT (SDM vol. 3C, 29.3 "The Extended Page Table Mechanism")
//! and AMD nested paging (APM vol. 2, 15.25 "Nested Paging"), the
//! two-dimensional walk that reads the guest's own tables through them, and
//! lazily built second-level tables.

pub mod arena;
pub mod ept;
pub mod npt;
pub mod tdp;
pub mod twodim;

#[cfg(test)]
mod tests_ept;
#[cfg(test)]
mod tests_npt;
#[cfg(test)]
mod tests_tdp;
#[cfg(test)]
mod tests_twodim;
#[cfg(test)]
mod testutil;

use crate::access::AccessKind;
use crate::fault::NestedFault;
use crate::phys::{PhysError, PhysMemory};
use crate::walk::AdUpdate;

pub use arena::TableArena;
pub use ept::{Ept, Eptp, EptpError};
pub use npt::Npt;
pub use tdp::{FaultOutcome, MmioAccess, SlotRange, TdpError, TdpMmu};
pub use twodim::{translate_nested, NestedTranslation, TwoDimMemory};

/// Where a guest-physical access comes from; decides the "guest linear
/// address valid" / "translation of a linear address" bits of an EPT
/// violation (SDM vol. 3C, 28.2.1, Table 28-7) and EXITINFO1 bits 32/33 of
/// a nested page fault (APM vol. 2, 15.25.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpaSource {
    /// An access with no linear address (e.g. PDPTE loads by MOV CR3 for
    /// PAE paging, device-style guest-physical accesses).
    Physical,
    /// A read or accessed/dirty update of a guest paging-structure entry while
    /// translating `linear`.
    GuestTable {
        /// The linear address whose translation needed the entry.
        linear: u64,
    },
    /// The access to the final guest-physical address of `linear`, with the
    /// guest page's attributes as the guest walk established them.
    Final {
        /// The linear address being accessed.
        linear: u64,
        /// The guest maps it as a user-mode page (U/S = 1 at every level).
        user_page: bool,
        /// The guest maps it read/write.
        writable_page: bool,
        /// The guest maps it executable.
        executable_page: bool,
    },
}

impl GpaSource {
    /// The linear address, if the access had one.
    pub fn linear(&self) -> Option<u64> {
        match *self {
            GpaSource::Physical => None,
            GpaSource::GuestTable { linear } | GpaSource::Final { linear, .. } => Some(linear),
        }
    }
}

/// One guest-physical access to translate at the second level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpaAccess {
    /// Read, write or fetch.
    pub kind: AccessKind,
    /// What made the access.
    pub source: GpaSource,
}

impl GpaAccess {
    /// An access without a linear address.
    pub const fn physical(kind: AccessKind) -> Self {
        Self {
            kind,
            source: GpaSource::Physical,
        }
    }
}

/// A successful second-level translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlTranslation {
    /// Host-physical address of the byte at the guest-physical address.
    pub hpa: u64,
    /// Size of the second-level page (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
    /// Readable at every level.
    pub readable: bool,
    /// Writable at every level.
    pub writable: bool,
    /// Executable at every level (EPT: bit 2, supervisor-execute with MBEC;
    /// NPT: no NX bit anywhere).
    pub executable: bool,
    /// Host address of the leaf entry (for tests and dirty-bit harvesting).
    pub leaf_entry: u64,
    /// EPT memory type of the leaf (bits 5:3); `None` for NPT.
    pub memory_type: Option<u8>,
}

/// Why a second-level translation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlError {
    /// An EPT violation/misconfiguration or nested page fault: a VM exit.
    Fault(NestedFault),
    /// The second-level tables themselves could not be read (a host bug:
    /// the root or an entry points outside the host table memory).
    Host(PhysError),
}

impl From<SlError> for PhysError {
    /// Second-level faults become [`PhysError::Nested`]; an unreadable host
    /// table is passed through unchanged (its address is a host address).
    fn from(e: SlError) -> Self {
        match e {
            SlError::Fault(f) => PhysError::Nested(f),
            SlError::Host(h) => h,
        }
    }
}

/// A second-level translation regime: EPT or NPT, with its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecondLevel {
    /// Intel extended page tables.
    Ept(Ept),
    /// AMD nested page tables.
    Npt(Npt),
}

impl SecondLevel {
    /// Translates `gpa` for `access`, reading (and, with `ad = Set`, updating
    /// accessed/dirty flags in) the second-level tables in `tables`.
    pub fn translate<T: PhysMemory + ?Sized>(
        &self,
        tables: &T,
        gpa: u64,
        access: GpaAccess,
        ad: AdUpdate,
    ) -> Result<SlTranslation, SlError> {
        match self {
            SecondLevel::Ept(e) => e.translate(tables, gpa, access, ad),
            SecondLevel::Npt(n) => n.translate(tables, gpa, access, ad),
        }
    }

    /// Number of levels (4 or 5).
    pub fn levels(&self) -> u8 {
        match self {
            SecondLevel::Ept(e) => e.eptp.levels,
            SecondLevel::Npt(n) => n.levels,
        }
    }

    /// Host address of the root table.
    pub fn root(&self) -> u64 {
        match self {
            SecondLevel::Ept(e) => e.eptp.root,
            SecondLevel::Npt(n) => n.root,
        }
    }

    /// Whether the format records dirty flags that can be harvested.
    pub fn has_dirty_bits(&self) -> bool {
        match self {
            SecondLevel::Ept(e) => e.eptp.ad,
            SecondLevel::Npt(_) => true,
        }
    }
}

/// Index of `gpa` in the table at `level` (1 = page table): 9 bits each.
pub(crate) fn table_index(gpa: u64, level: u8) -> u64 {
    (gpa >> level_shift(level)) & 0x1ff
}

/// Shift of the address range one entry at `level` covers.
pub(crate) fn level_shift(level: u8) -> u32 {
    12 + 9 * (u32::from(level) - 1)
}

/// Mask of address bits `[51:12]` below MAXPHYADDR.
pub(crate) fn addr_mask(maxphyaddr: u8) -> u64 {
    let top = u32::from(maxphyaddr.clamp(12, 52));
    ((1u64 << top) - 1) & !0xfff
}

/// Address bits `[51:maxphyaddr]` (reserved in every entry of both formats).
pub(crate) fn above_maxphy(maxphyaddr: u8) -> u64 {
    let top = u32::from(maxphyaddr.clamp(12, 52));
    ((1u64 << 52) - 1) & !((1u64 << top) - 1)
}

/// Bit mask `[hi:lo]`.
pub(crate) const fn bits(hi: u32, lo: u32) -> u64 {
    ((u64::MAX) >> (63 - hi)) & !((1u64 << lo) - 1)
}

/// Sets `set` in the entry at `addr` if it still holds `seen`; returns whether
/// the entry now has them (false: the entry changed under us).
pub(crate) fn set_flags<T: PhysMemory + ?Sized>(
    tables: &T,
    addr: u64,
    seen: u64,
    set: u64,
) -> Result<bool, SlError> {
    if seen & set == set {
        return Ok(true);
    }
    tables
        .cmpxchg_u64(addr, seen, seen | set)
        .map_err(SlError::Host)
}

/// How many times a walk restarts when an accessed/dirty update races with a
/// concurrent change of the entry before giving up on the update.
pub(crate) const AD_RETRIES: usize = 8;
