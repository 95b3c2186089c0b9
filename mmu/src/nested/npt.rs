//! AMD nested page tables: the regular long-mode page-table format under
//! nCR3, walked with user-mode permissions, and the nested page fault's
//! EXITINFO1 (APM vol. 2, 15.25 "Nested Paging").

use super::{
    above_maxphy, addr_mask, bits, level_shift, set_flags, table_index, GpaAccess, GpaSource,
    SlError, SlTranslation, AD_RETRIES,
};
use crate::access::AccessKind;
use crate::fault::{NestedFault, NestedKind};
use crate::phys::PhysMemory;
use crate::walk::AdUpdate;

/// Entry bit 0: present (APM vol. 2, 5.4.1 "Field Definitions").
pub const NPT_P: u64 = 1 << 0;
/// Entry bit 1: read/write.
pub const NPT_RW: u64 = 1 << 1;
/// Entry bit 2: user/supervisor.
pub const NPT_US: u64 = 1 << 2;
/// Entry bit 5: accessed.
pub const NPT_A: u64 = 1 << 5;
/// Leaf bit 6: dirty.
pub const NPT_D: u64 = 1 << 6;
/// PDPE/PDE bit 7: the entry maps a 1-GiB / 2-MiB page.
pub const NPT_PS: u64 = 1 << 7;
/// Entry bit 63: no-execute (reserved when the host's EFER.NXE = 0).
pub const NPT_NX: u64 = 1 << 63;

/// EXITINFO1 bit 32: the fault happened translating the final guest-physical
/// address (APM vol. 2, 15.25.6 "Nested versus Guest Page Faults, Fault Ordering").
pub const NPF_FINAL: u64 = 1 << 32;
/// EXITINFO1 bit 33: the fault happened translating a guest page-table access.
pub const NPF_GUEST_TABLE: u64 = 1 << 33;

/// A nested-paging translation regime: nCR3 and the host state that shapes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Npt {
    /// Host-physical address of the top-level table (nCR3 bits 51:12).
    pub root: u64,
    /// 4, or 5 when the host runs with CR4.LA57 (APM vol. 2, 15.25.3).
    pub levels: u8,
    /// The host's EFER.NXE: the NX bit is honoured (else it is reserved).
    pub nxe: bool,
    /// 1-GiB pages supported (CPUID Fn8000_0001_EDX[Page1GB]).
    pub gb_pages: bool,
    /// MAXPHYADDR of the host.
    pub maxphyaddr: u8,
}

impl Npt {
    /// A 4-level NPT under `ncr3` with 1-GiB pages supported.
    pub fn new(ncr3: u64, nxe: bool, maxphyaddr: u8) -> Self {
        Self {
            root: ncr3 & addr_mask(maxphyaddr),
            levels: 4,
            nxe,
            gb_pages: true,
            maxphyaddr,
        }
    }

    /// Whether an entry is present (P = 1).
    pub fn present(&self, e: u64) -> bool {
        e & NPT_P != 0
    }

    /// Whether a present entry at `level` (1 = PTE) maps a page.
    pub fn is_leaf(&self, e: u64, level: u8) -> bool {
        level == 1 || ((level == 2 || level == 3) && e & NPT_PS != 0)
    }

    /// Whether a present entry at `level` has a reserved bit set (APM vol. 2,
    /// 5.3.3/5.3.4 long-mode entry formats, 5.4.1 "MBZ"): address bits above
    /// MAXPHYADDR, NX without EFER.NXE, PS in a PML4E/PML5E, PS in a PDPE
    /// without 1-GiB pages, bits 29:13 of a 1-GiB / 20:13 of a 2-MiB leaf.
    pub fn reserved(&self, e: u64, level: u8) -> bool {
        if e & above_maxphy(self.maxphyaddr) != 0 {
            return true;
        }
        if !self.nxe && e & NPT_NX != 0 {
            return true;
        }
        let large = e & NPT_PS != 0;
        match level {
            4 | 5 => large,
            3 if large => !self.gb_pages || e & bits(29, 13) != 0,
            2 if large => e & bits(20, 13) != 0,
            _ => false,
        }
    }

    /// Translates `gpa` through the nested tables in `tables`. Every access is
    /// a user-mode access at this level (APM vol. 2, 15.25.5 "Nested Table
    /// Walk"): U/S = 0 anywhere faults, R/W = 0 anywhere faults a write, NX
    /// (with the host's NXE) faults a fetch. Accessed flags on every level and
    /// the dirty flag of a write's leaf are set on success when `ad` is `Set`.
    pub fn translate<T: PhysMemory + ?Sized>(
        &self,
        tables: &T,
        gpa: u64,
        access: GpaAccess,
        ad: AdUpdate,
    ) -> Result<SlTranslation, SlError> {
        let width = level_shift(self.levels) + 9;
        if gpa >> width != 0 {
            return Err(self.fault(gpa, access, false, false));
        }
        let write = access.kind == AccessKind::Write;
        let mut attempt = 0;
        loop {
            let mut table = self.root;
            let mut used = [(0u64, 0u64); 5];
            let mut n = 0;
            let (mut rw, mut us, mut nx) = (true, true, false);
            let mut level = self.levels;
            let leaf = loop {
                let ea = table + table_index(gpa, level) * 8;
                let e = tables.read_u64(ea).map_err(SlError::Host)?;
                if !self.present(e) {
                    return Err(self.fault(gpa, access, false, false));
                }
                if self.reserved(e, level) {
                    return Err(self.fault(gpa, access, true, true));
                }
                rw &= e & NPT_RW != 0;
                us &= e & NPT_US != 0;
                nx |= self.nxe && e & NPT_NX != 0;
                used[n] = (ea, e);
                n += 1;
                if self.is_leaf(e, level) {
                    break e;
                }
                table = e & addr_mask(self.maxphyaddr);
                level -= 1;
            };
            let allowed = us
                && match access.kind {
                    AccessKind::Read => true,
                    AccessKind::Write => rw,
                    AccessKind::Execute => !nx,
                };
            if !allowed {
                return Err(self.fault(gpa, access, true, false));
            }
            let page_size = 1u64 << level_shift(level);
            let hpa =
                (leaf & addr_mask(self.maxphyaddr) & !(page_size - 1)) | (gpa & (page_size - 1));
            let mut updated = true;
            if ad == AdUpdate::Set {
                for (i, &(ea, e)) in used[..n].iter().enumerate() {
                    let d = if i + 1 == n && write { NPT_D } else { 0 };
                    if !set_flags(tables, ea, e, NPT_A | d)? {
                        updated = false;
                        break;
                    }
                }
            }
            if !updated && attempt < AD_RETRIES {
                attempt += 1;
                continue;
            }
            return Ok(SlTranslation {
                hpa,
                page_size,
                readable: us,
                writable: us && rw,
                executable: us && !nx,
                leaf_entry: used[n - 1].0,
                memory_type: None,
            });
        }
    }

    /// A nested page fault: EXITINFO1 is a #PF error code (P, R/W, U/S = 1,
    /// RSVD, I/D) plus bit 32 (final translation) or bit 33 (guest table),
    /// EXITINFO2 the guest-physical address (APM vol. 2, 15.25.6).
    pub fn fault(&self, gpa: u64, access: GpaAccess, present: bool, rsvd: bool) -> SlError {
        let mut info = 1 << 2; // U/S: nested walks are user accesses
        if present {
            info |= 1;
        }
        if access.kind == AccessKind::Write {
            info |= 1 << 1;
        }
        if rsvd {
            info |= 1 << 3;
        }
        if access.kind == AccessKind::Execute && self.nxe {
            info |= 1 << 4;
        }
        info |= match access.source {
            GpaSource::Physical => 0,
            GpaSource::GuestTable { .. } => NPF_GUEST_TABLE,
            GpaSource::Final { .. } => NPF_FINAL,
        };
        SlError::Fault(NestedFault {
            kind: NestedKind::Npf,
            gpa,
            linear: access.source.linear(),
            info,
        })
    }

    /// A non-leaf entry pointing at `table`, allowing everything (the builder's format).
    pub fn table_entry(&self, table: u64) -> u64 {
        (table & addr_mask(self.maxphyaddr)) | NPT_P | NPT_RW | NPT_US
    }

    /// A user leaf at `level` mapping `hpa`, writable if `writable`.
    pub fn leaf_entry(&self, hpa: u64, level: u8, writable: bool) -> u64 {
        let ps = if level > 1 { NPT_PS } else { 0 };
        let rw = if writable { NPT_RW } else { 0 };
        (hpa & addr_mask(self.maxphyaddr)) | NPT_P | NPT_US | rw | ps
    }

    /// The entry installed for MMIO: present with a reserved address bit, so
    /// MMIO exits carry RSVD (APM vol. 2, 15.25.6); `None` when MAXPHYADDR is
    /// 52 and no address bit is reserved.
    pub fn mmio_entry(&self) -> Option<u64> {
        (self.maxphyaddr < 52).then_some(NPT_P | NPT_RW | NPT_US | (1 << 51))
    }
}
