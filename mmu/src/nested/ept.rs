//! Intel extended page tables: EPTP, the EPT entry format, the EPT walk,
//! EPT misconfigurations and EPT violations with their exit qualification
//! (SDM vol. 3C, 29.3 "The Extended Page Table Mechanism (EPT)").

use super::{
    above_maxphy, addr_mask, bits, level_shift, set_flags, table_index, GpaAccess, GpaSource,
    SlError, SlTranslation, AD_RETRIES,
};
use crate::access::AccessKind;
use crate::fault::{NestedFault, NestedKind};
use crate::phys::PhysMemory;
use crate::walk::AdUpdate;

/// EPT entry bit 0: read access (SDM vol. 3C, 29.3.2, Tables 29-1..29-6).
pub const EPT_R: u64 = 1 << 0;
/// EPT entry bit 1: write access.
pub const EPT_W: u64 = 1 << 1;
/// EPT entry bit 2: execute access (supervisor-mode execute with MBEC).
pub const EPT_X: u64 = 1 << 2;
/// EPT leaf bits 5:3: memory type.
pub const EPT_MEMTYPE_SHIFT: u32 = 3;
/// EPT leaf bit 6: ignore PAT memory type.
pub const EPT_IPAT: u64 = 1 << 6;
/// EPT PDPTE/PDE bit 7: the entry maps a 1-GiB / 2-MiB page.
pub const EPT_PS: u64 = 1 << 7;
/// EPT bit 8: accessed (when EPTP bit 6 enables A/D), SDM vol. 3C, 29.3
/// "Accessed and Dirty Flags for EPT".
pub const EPT_A: u64 = 1 << 8;
/// EPT leaf bit 9: dirty (when EPTP bit 6 enables A/D).
pub const EPT_D: u64 = 1 << 9;
/// EPT bit 10: user-mode execute access, with mode-based execute control.
pub const EPT_UX: u64 = 1 << 10;
/// Memory type write-back (SDM vol. 3C, 29.3.7 "EPT and Memory Typing").
pub const MEMTYPE_WB: u8 = 6;
/// Memory type uncacheable.
pub const MEMTYPE_UC: u8 = 0;

/// A decoded extended-page-table pointer (SDM vol. 3C, 25.6.11
/// "Extended-Page-Table Pointer (EPTP)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Eptp {
    /// Memory type for the paging structures (bits 2:0; 0 = UC, 6 = WB).
    pub memory_type: u8,
    /// Page-walk length: 4 or 5 (bits 5:3 hold this minus one).
    pub levels: u8,
    /// Bit 6: accessed and dirty flags for EPT enabled.
    pub ad: bool,
    /// Host-physical address of the EPT PML4 (or PML5) table (bits N-1:12).
    pub root: u64,
}

/// Why an EPTP value is invalid (a VM-entry failure on hardware).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EptpError {
    /// Bits 2:0 are not UC (0) or WB (6).
    #[error("EPTP memory type {0} is not UC (0) or WB (6)")]
    MemoryType(u8),
    /// Bits 5:3 are not 3 (4-level) or 4 (5-level).
    #[error("EPTP page-walk length {0} is not 4 or 5")]
    WalkLength(u8),
    /// Bits 11:8 or bits above MAXPHYADDR are set.
    #[error("EPTP {0:#x} has reserved bits set")]
    Reserved(u64),
}

impl Eptp {
    /// Decodes `raw` for a processor with `maxphyaddr` physical-address bits.
    pub fn parse(raw: u64, maxphyaddr: u8) -> Result<Self, EptpError> {
        let memory_type = (raw & 7) as u8;
        if memory_type != MEMTYPE_UC && memory_type != MEMTYPE_WB {
            return Err(EptpError::MemoryType(memory_type));
        }
        let levels = ((raw >> 3) & 7) as u8 + 1;
        if levels != 4 && levels != 5 {
            return Err(EptpError::WalkLength(levels));
        }
        let top = u32::from(maxphyaddr.clamp(12, 52));
        if raw & bits(11, 8) != 0 || raw >> top != 0 {
            return Err(EptpError::Reserved(raw));
        }
        Ok(Self {
            memory_type,
            levels,
            ad: raw & (1 << 6) != 0,
            root: raw & addr_mask(maxphyaddr),
        })
    }

    /// Encodes the pointer as the VMCS field holds it.
    pub fn encode(&self) -> u64 {
        u64::from(self.memory_type & 7)
            | (u64::from(self.levels.wrapping_sub(1) & 7) << 3)
            | (u64::from(self.ad) << 6)
            | (self.root & !0xfff)
    }
}

/// An EPT translation regime: the EPTP plus the processor capabilities and
/// VM-execution controls that change how entries are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ept {
    /// The extended-page-table pointer.
    pub eptp: Eptp,
    /// "Mode-based execute control for EPT" (bit 10 = user-mode execute).
    pub mbec: bool,
    /// Execute-only translations supported (IA32_VMX_EPT_VPID_CAP bit 0).
    pub exec_only: bool,
    /// 1-GiB pages supported (IA32_VMX_EPT_VPID_CAP bit 17).
    pub gb_pages: bool,
    /// Advanced VM-exit information for EPT violations (exit-qualification
    /// bits 9-11; IA32_VMX_EPT_VPID_CAP bit 22).
    pub advanced_info: bool,
    /// MAXPHYADDR of the host.
    pub maxphyaddr: u8,
}

impl Ept {
    /// EPT with execute-only, 1-GiB pages and advanced exit information
    /// supported and MBEC off.
    pub fn new(eptp: Eptp, maxphyaddr: u8) -> Self {
        Self {
            eptp,
            mbec: false,
            exec_only: true,
            gb_pages: true,
            advanced_info: true,
            maxphyaddr,
        }
    }

    /// Whether an entry is present: any of bits 2:0, or bit 10 with MBEC
    /// (SDM vol. 3C, 29.3.2).
    pub fn present(&self, e: u64) -> bool {
        e & (EPT_R | EPT_W | EPT_X) != 0 || (self.mbec && e & EPT_UX != 0)
    }

    /// Whether a present entry at `level` (1 = PTE) maps a page.
    pub fn is_leaf(&self, e: u64, level: u8) -> bool {
        level == 1 || ((level == 2 || level == 3) && e & EPT_PS != 0)
    }

    /// Whether a present entry at `level` is an EPT misconfiguration
    /// (SDM vol. 3C, 29.3.3.1 "EPT Misconfigurations"): write without read,
    /// execute-only where unsupported, a reserved bit set, or a reserved
    /// memory type (2, 3, 7) in a leaf.
    pub fn misconfigured(&self, e: u64, level: u8) -> bool {
        let r = e & EPT_R != 0;
        let w = e & EPT_W != 0;
        let x = e & EPT_X != 0;
        let ux = self.mbec && e & EPT_UX != 0;
        if w && !r {
            return true;
        }
        if !self.exec_only && !r && (x || ux) {
            return true;
        }
        if e & above_maxphy(self.maxphyaddr) != 0 {
            return true;
        }
        let large = e & EPT_PS != 0;
        let leaf = match level {
            1 => true,
            2 => large,
            3 => large && self.gb_pages,
            _ => false,
        };
        if !leaf {
            // PML5E/PML4E, and PDPTE/PDE referencing a table: bits 7:3 are
            // reserved (bit 7 also when 1-GiB pages are unsupported).
            return level > 1 && e & bits(7, 3) != 0;
        }
        let reserved = match level {
            3 => bits(29, 12),
            2 => bits(20, 12),
            _ => 0,
        };
        if e & reserved != 0 {
            return true;
        }
        matches!((e >> EPT_MEMTYPE_SHIFT) & 7, 2 | 3 | 7)
    }

    /// Translates `gpa` through the EPT in `tables` (SDM vol. 3C, 29.3.2
    /// "EPT Translation Mechanism"). Accessed flags are set on every entry
    /// used and the dirty flag on the leaf of a write, only when EPTP bit 6
    /// is set, `ad` is `Set` and the translation succeeds; guest
    /// paging-structure accesses count as writes then (29.3 "Accessed and
    /// Dirty Flags for EPT").
    pub fn translate<T: PhysMemory + ?Sized>(
        &self,
        tables: &T,
        gpa: u64,
        access: GpaAccess,
        ad: AdUpdate,
    ) -> Result<SlTranslation, SlError> {
        let width = level_shift(self.eptp.levels) + 9;
        if gpa >> width != 0 {
            // Beyond what the walk length translates: no entry maps it.
            return Err(self.violation(gpa, access, [false; 4]));
        }
        let mut attempt = 0;
        loop {
            let mut table = self.eptp.root;
            let mut used = [(0u64, 0u64); 5];
            let mut n = 0;
            let mut perms = [true; 4]; // R, W, X, UX: AND over the entries used
            let mut level = self.eptp.levels;
            let leaf = loop {
                let ea = table + table_index(gpa, level) * 8;
                let e = tables.read_u64(ea).map_err(SlError::Host)?;
                if !self.present(e) {
                    return Err(self.violation(gpa, access, [false; 4]));
                }
                if self.misconfigured(e, level) {
                    return Err(SlError::Fault(NestedFault {
                        kind: NestedKind::EptMisconfig,
                        gpa,
                        linear: access.source.linear(),
                        info: 0,
                    }));
                }
                perms[0] &= e & EPT_R != 0;
                perms[1] &= e & EPT_W != 0;
                perms[2] &= e & EPT_X != 0;
                perms[3] &= e & EPT_UX != 0;
                used[n] = (ea, e);
                n += 1;
                if self.is_leaf(e, level) {
                    break e;
                }
                table = e & addr_mask(self.maxphyaddr);
                level -= 1;
            };
            let page_size = 1u64 << level_shift(level);
            let hpa =
                (leaf & addr_mask(self.maxphyaddr) & !(page_size - 1)) | (gpa & (page_size - 1));
            let as_write = self.counts_as_write(access);
            let allowed = match access.kind {
                AccessKind::Read | AccessKind::Write => {
                    if as_write {
                        perms[1]
                    } else {
                        perms[0]
                    }
                }
                AccessKind::Execute => {
                    let user = matches!(
                        access.source,
                        GpaSource::Final {
                            user_page: true,
                            ..
                        }
                    );
                    if self.mbec && user {
                        perms[3]
                    } else {
                        perms[2]
                    }
                }
            };
            if !allowed {
                return Err(self.violation(gpa, access, perms));
            }
            let mut updated = true;
            if self.eptp.ad && ad == AdUpdate::Set {
                for (i, &(ea, e)) in used[..n].iter().enumerate() {
                    let d = if i + 1 == n && as_write { EPT_D } else { 0 };
                    if !set_flags(tables, ea, e, EPT_A | d)? {
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
                readable: perms[0],
                writable: perms[1],
                executable: perms[2],
                leaf_entry: used[n - 1].0,
                memory_type: Some(((leaf >> EPT_MEMTYPE_SHIFT) & 7) as u8),
            });
        }
    }

    /// Writes, and with EPT A/D enabled every guest paging-structure access,
    /// count as writes (SDM vol. 3C, 29.3.3.2 "EPT Violations").
    fn counts_as_write(&self, access: GpaAccess) -> bool {
        access.kind == AccessKind::Write
            || (self.eptp.ad && matches!(access.source, GpaSource::GuestTable { .. }))
    }

    /// An EPT violation with its exit qualification (SDM vol. 3C, 28.2.1,
    /// Table 28-7 "Exit Qualification for EPT Violations"); `perms` is the
    /// AND of bits 0, 1, 2 and 10 over the entries used (all false when an
    /// entry was not present). Bit 12 (NMI unblocking) is the caller's.
    pub fn violation(&self, gpa: u64, access: GpaAccess, perms: [bool; 4]) -> SlError {
        let table = matches!(access.source, GpaSource::GuestTable { .. });
        let mut q = match access.kind {
            AccessKind::Read => 1,
            AccessKind::Write => 2,
            AccessKind::Execute => 4,
        };
        if table && self.eptp.ad && access.kind != AccessKind::Execute {
            // Treated as a write: both bits 0 and 1 are set.
            q |= 3;
        }
        q |= u64::from(perms[0]) << 3 | u64::from(perms[1]) << 4 | u64::from(perms[2]) << 5;
        if self.mbec {
            q |= u64::from(perms[3]) << 6;
        }
        match access.source {
            GpaSource::Physical => {}
            GpaSource::GuestTable { .. } => q |= 1 << 7,
            GpaSource::Final {
                user_page,
                writable_page,
                executable_page,
                ..
            } => {
                q |= 1 << 7 | 1 << 8;
                if self.advanced_info {
                    q |= u64::from(user_page) << 9
                        | u64::from(writable_page) << 10
                        | u64::from(!executable_page) << 11;
                }
            }
        }
        SlError::Fault(NestedFault {
            kind: NestedKind::EptViolation,
            gpa,
            linear: access.source.linear(),
            info: q,
        })
    }

    /// A non-leaf entry pointing at `table`, allowing everything (the builder's format).
    pub fn table_entry(&self, table: u64) -> u64 {
        let ux = if self.mbec { EPT_UX } else { 0 };
        (table & addr_mask(self.maxphyaddr)) | EPT_R | EPT_W | EPT_X | ux
    }

    /// A write-back leaf at `level` mapping `hpa`, readable and executable,
    /// writable if `writable` (the builder's format).
    pub fn leaf_entry(&self, hpa: u64, level: u8, writable: bool) -> u64 {
        let ps = if level > 1 { EPT_PS } else { 0 };
        let ux = if self.mbec { EPT_UX } else { 0 };
        let w = if writable { EPT_W } else { 0 };
        (hpa & addr_mask(self.maxphyaddr))
            | EPT_R
            | w
            | EPT_X
            | ux
            | ps
            | (u64::from(MEMTYPE_WB) << EPT_MEMTYPE_SHIFT)
    }

    /// The entry installed for MMIO: write-only, which is always an EPT
    /// misconfiguration (SDM vol. 3C, 29.3.3.1), so MMIO exits are told
    /// apart from missing mappings without a slot lookup.
    pub fn mmio_entry(&self) -> u64 {
        EPT_W
    }
}
