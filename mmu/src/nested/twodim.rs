//! The two-dimensional walk: the guest's own paging structures are read
//! through the second level (SDM vol. 3C, 29.3.2: "guest-physical addresses
//! used by the guest paging structures are translated through EPT"; APM
//! vol. 2, 15.25.5 "Nested Table Walk"), and then the final guest-physical
//! address is.

use super::{GpaAccess, GpaSource, SecondLevel};
use crate::access::{Access, AccessKind};
use crate::context::PagingContext;
use crate::fault::WalkError;
use crate::phys::{PhysError, PhysMemory};
use crate::walk::{walk, AdUpdate, Translation};

/// Guest-physical memory seen through a second level, for walking the guest
/// tables of one linear address: entry reads are second-level reads and
/// accessed/dirty updates second-level writes, both flagged as
/// guest-paging-structure accesses for `linear`.
pub struct TwoDimMemory<'a, T: PhysMemory + ?Sized, H: PhysMemory + ?Sized> {
    /// The second-level regime.
    pub second: &'a SecondLevel,
    /// Memory holding the second-level tables.
    pub tables: &'a T,
    /// Host-physical memory the second level maps into.
    pub host: &'a H,
    /// The linear address being translated (reported with faults).
    pub linear: u64,
    /// Whether second-level accessed/dirty flags are updated.
    pub ad: AdUpdate,
}

impl<T: PhysMemory + ?Sized, H: PhysMemory + ?Sized> TwoDimMemory<'_, T, H> {
    fn host_addr(&self, gpa: u64, kind: AccessKind) -> Result<u64, PhysError> {
        let access = GpaAccess {
            kind,
            source: GpaSource::GuestTable {
                linear: self.linear,
            },
        };
        Ok(self
            .second
            .translate(self.tables, gpa, access, self.ad)?
            .hpa)
    }
}

impl<T: PhysMemory + ?Sized, H: PhysMemory + ?Sized> PhysMemory for TwoDimMemory<'_, T, H> {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        self.host.read_u32(self.host_addr(gpa, AccessKind::Read)?)
    }

    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        self.host.read_u64(self.host_addr(gpa, AccessKind::Read)?)
    }

    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        let hpa = self.host_addr(gpa, AccessKind::Write)?;
        self.host.cmpxchg_u32(hpa, old, new)
    }

    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        let hpa = self.host_addr(gpa, AccessKind::Write)?;
        self.host.cmpxchg_u64(hpa, old, new)
    }
}

/// A linear address translated all the way to host-physical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NestedTranslation {
    /// The guest walk's result (guest-physical address and guest permissions).
    pub guest: Translation,
    /// Host-physical address of the byte at the linear address.
    pub hpa: u64,
    /// The second-level page size.
    pub host_page_size: u64,
}

/// Translates `linear` for `access` under the guest's `ctx`, reading the
/// guest's tables through `second` and then translating the final
/// guest-physical address. A guest #PF comes back as
/// `WalkError::PageFault`; a second-level fault as
/// `WalkError::Phys(PhysError::Nested(_))`, flagged as a guest-table access
/// (EPT qualification bit 8 = 0, NPF EXITINFO1 bit 33) or as the final
/// translation (bit 8 = 1, bit 32). For a paging-off guest the walk is the
/// identity, so this is the guest-physical translation with a valid linear
/// address; accesses with no linear address use [`SecondLevel::translate`]
/// with [`GpaAccess::physical`].
pub fn translate_nested<T: PhysMemory + ?Sized, H: PhysMemory + ?Sized>(
    second: &SecondLevel,
    tables: &T,
    host: &H,
    ctx: &PagingContext,
    linear: u64,
    access: Access,
    ad: AdUpdate,
) -> Result<NestedTranslation, WalkError> {
    let mem = TwoDimMemory {
        second,
        tables,
        host,
        linear,
        ad,
    };
    let guest = walk(&mem, ctx, linear, access, ad)?;
    let final_access = GpaAccess {
        kind: access.kind,
        source: GpaSource::Final {
            linear,
            user_page: guest.user,
            writable_page: guest.writable,
            executable_page: guest.executable,
        },
    };
    let t = second
        .translate(tables, guest.gpa, final_access, ad)
        .map_err(PhysError::from)?;
    Ok(NestedTranslation {
        guest,
        hpa: t.hpa,
        host_page_size: t.page_size,
    })
}
