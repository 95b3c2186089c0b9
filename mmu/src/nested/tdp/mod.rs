//! Second-level tables built lazily from the VM's memory slots: a fault on a
//! slot-backed guest-physical address installs the mapping (2 MiB when the
//! whole aligned range lies in one slot, else 4 KiB) and the access is
//! retried; an address outside every slot is MMIO. One builder serves EPT
//! and NPT; each format encodes its own entries.

mod edit;

use super::ept::{Eptp, MEMTYPE_WB};
use super::{level_shift, Ept, GpaAccess, Npt, SecondLevel, SlError, SlTranslation, TableArena};
use crate::walk::AdUpdate;
use hyperplug_plugin_api::backend::MemorySlot;

const SIZE_4K: u64 = 1 << 12;
const SIZE_2M: u64 = 1 << 21;

/// A memory slot as the second level sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotRange {
    /// Slot number, unique per VM.
    pub id: u32,
    /// First guest-physical address (4-KiB aligned).
    pub gpa: u64,
    /// Size in bytes (a 4-KiB multiple).
    pub size: u64,
    /// Host-physical address backing `gpa` (4-KiB aligned).
    pub host_base: u64,
    /// Guest writes become MMIO writes.
    pub read_only: bool,
}

impl SlotRange {
    /// Whether `gpa` lies inside the slot.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }

    /// One past the last guest-physical address.
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.size)
    }
}

impl From<&MemorySlot> for SlotRange {
    fn from(s: &MemorySlot) -> Self {
        Self {
            id: s.id,
            gpa: s.guest_phys_addr,
            size: s.size,
            host_base: s.host_addr,
            read_only: s.flags & MemorySlot::READONLY != 0,
        }
    }
}

/// A guest-physical access no slot backs (or a write to a read-only slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// The guest-physical address.
    pub gpa: u64,
    /// Access size in bytes.
    pub size: u32,
    /// A write (else a read).
    pub write: bool,
}

/// What the caller does after [`TdpMmu::handle_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOutcome {
    /// The mapping is in place: re-execute the access.
    Retry,
    /// Emulate the access as MMIO.
    Mmio(MmioAccess),
}

/// Bad slot or builder configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdpError {
    /// The slot's addresses or size are unusable.
    #[error("memory slot {id}: {reason}")]
    BadSlot {
        /// Slot number.
        id: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The slot overlaps another slot or reuses its id.
    #[error("memory slot {id} overlaps or reuses slot {other}")]
    Overlap {
        /// New slot.
        id: u32,
        /// Existing slot.
        other: u32,
    },
    /// No slot has this id.
    #[error("no memory slot {0}")]
    NoSlot(u32),
    /// Levels other than 4 or 5.
    #[error("second-level tables have 4 or 5 levels, not {0}")]
    Levels(u8),
    /// A table address did not resolve in the arena (an internal error).
    #[error("second-level table entry at {0:#x} is unreadable")]
    Table(u64),
}

/// Lazily built second-level tables for one VM.
pub struct TdpMmu {
    sl: SecondLevel,
    arena: TableArena,
    slots: Vec<SlotRange>,
    large_pages: bool,
}

impl TdpMmu {
    /// EPT tables (write-back, `levels` 4 or 5, A/D flags if `ad`).
    pub fn new_ept(levels: u8, ad: bool, maxphyaddr: u8) -> Result<Self, TdpError> {
        Self::check_levels(levels)?;
        let mut arena = TableArena::new();
        let root = arena.alloc();
        let eptp = Eptp {
            memory_type: MEMTYPE_WB,
            levels,
            ad,
            root,
        };
        Ok(Self::with(
            SecondLevel::Ept(Ept::new(eptp, maxphyaddr)),
            arena,
        ))
    }

    /// NPT tables (`levels` 4 or 5, the host's EFER.NXE as `nxe`).
    pub fn new_npt(levels: u8, nxe: bool, maxphyaddr: u8) -> Result<Self, TdpError> {
        Self::check_levels(levels)?;
        let mut arena = TableArena::new();
        let root = arena.alloc();
        let mut npt = Npt::new(root, nxe, maxphyaddr);
        npt.levels = levels;
        Ok(Self::with(SecondLevel::Npt(npt), arena))
    }

    fn check_levels(levels: u8) -> Result<(), TdpError> {
        match levels {
            4 | 5 => Ok(()),
            n => Err(TdpError::Levels(n)),
        }
    }

    fn with(sl: SecondLevel, arena: TableArena) -> Self {
        Self {
            sl,
            arena,
            slots: Vec::new(),
            large_pages: true,
        }
    }

    /// Allows or forbids 2-MiB mappings (on by default).
    pub fn set_large_pages(&mut self, on: bool) {
        self.large_pages = on;
    }

    /// The translation regime (EPTP or nCR3 root) the hardware would use.
    pub fn second_level(&self) -> &SecondLevel {
        &self.sl
    }

    /// The memory holding the tables (addresses are arena addresses).
    pub fn tables(&self) -> &TableArena {
        &self.arena
    }

    /// The registered slots.
    pub fn slots(&self) -> &[SlotRange] {
        &self.slots
    }

    /// The slot backing `gpa`.
    pub fn slot_for(&self, gpa: u64) -> Option<&SlotRange> {
        self.slots.iter().find(|s| s.contains(gpa))
    }

    /// Translates `gpa` through the current tables (setting A/D as hardware would).
    pub fn translate(&self, gpa: u64, access: GpaAccess) -> Result<SlTranslation, SlError> {
        self.sl.translate(&self.arena, gpa, access, AdUpdate::Set)
    }

    /// Registers a slot; drops MMIO entries it now covers.
    pub fn add_slot(&mut self, slot: SlotRange) -> Result<(), TdpError> {
        let bad = |reason| TdpError::BadSlot {
            id: slot.id,
            reason,
        };
        if slot.size == 0 {
            return Err(bad("size is zero"));
        }
        if (slot.gpa | slot.size | slot.host_base) & (SIZE_4K - 1) != 0 {
            return Err(bad("address, size or host address not 4-KiB aligned"));
        }
        let gpa_limit = 1u64 << (level_shift(self.sl.levels()) + 9);
        if slot
            .gpa
            .checked_add(slot.size)
            .is_none_or(|e| e > gpa_limit)
        {
            return Err(bad("guest-physical range beyond the second level's reach"));
        }
        let host_limit = 1u64 << self.maxphyaddr().clamp(12, 52);
        if slot
            .host_base
            .checked_add(slot.size)
            .is_none_or(|e| e > host_limit)
        {
            return Err(bad("host range beyond MAXPHYADDR"));
        }
        if let Some(o) = self
            .slots
            .iter()
            .find(|o| o.id == slot.id || (slot.gpa < o.end() && o.gpa < slot.end()))
        {
            return Err(TdpError::Overlap {
                id: slot.id,
                other: o.id,
            });
        }
        self.zap_range(slot.gpa, slot.size)?;
        self.slots.push(slot);
        Ok(())
    }

    /// Unregisters slot `id` and zaps every entry mapping it; the caller
    /// flushes hardware TLBs (INVEPT / TLB_CONTROL) afterwards.
    pub fn remove_slot(&mut self, id: u32) -> Result<SlotRange, TdpError> {
        let i = self
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or(TdpError::NoSlot(id))?;
        let slot = self.slots.remove(i);
        self.zap_range(slot.gpa, slot.size)?;
        Ok(slot)
    }

    /// Resolves a second-level fault at `gpa` for an access of `size` bytes:
    /// installs the slot mapping and returns `Retry`, or returns `Mmio` for an
    /// address outside every slot (installing the format's MMIO entry) and for
    /// a write to a read-only slot.
    pub fn handle_fault(
        &mut self,
        gpa: u64,
        size: u32,
        write: bool,
    ) -> Result<FaultOutcome, TdpError> {
        let mmio = FaultOutcome::Mmio(MmioAccess { gpa, size, write });
        let Some(slot) = self.slot_for(gpa).copied() else {
            let reach = 1u64 << (level_shift(self.sl.levels()) + 9);
            // Beyond the tables' reach an index would alias a lower address.
            if let Some(marker) = self.mmio_entry().filter(|_| gpa < reach) {
                self.install(gpa, 1, |_| marker)?;
            }
            return Ok(mmio);
        };
        if write && slot.read_only {
            return Ok(mmio);
        }
        let base = gpa & !(SIZE_2M - 1);
        let large = self.large_pages
            && base >= slot.gpa
            && base + SIZE_2M <= slot.end()
            && (slot.host_base + (base - slot.gpa)) & (SIZE_2M - 1) == 0;
        let writable = !slot.read_only;
        let host = |level: u8| {
            let page = gpa & !((1u64 << level_shift(level)) - 1);
            slot.host_base + (page - slot.gpa)
        };
        let sl = self.sl;
        self.install(gpa, if large { 2 } else { 1 }, |level| match sl {
            SecondLevel::Ept(e) => e.leaf_entry(host(level), level, writable),
            SecondLevel::Npt(n) => n.leaf_entry(host(level), level, writable),
        })?;
        Ok(FaultOutcome::Retry)
    }

    /// Clears every leaf covering `[gpa, gpa+size)` and frees tables wholly
    /// inside it; returns how many entries were cleared.
    pub fn zap_range(&mut self, gpa: u64, size: u64) -> Result<u64, TdpError> {
        let end = gpa.saturating_add(size);
        let mut freed = Vec::new();
        let n = self.zap(self.sl.root(), self.sl.levels(), 0, gpa, end, &mut freed)?;
        for t in freed {
            self.arena.free(t);
        }
        Ok(n)
    }

    /// Clears the dirty flag of every leaf that has it and reports the leaf's
    /// guest-physical range to `f` (nothing for EPT without A/D). The caller
    /// flushes hardware TLBs so that later writes set the flag again.
    pub fn harvest_dirty(&self, mut f: impl FnMut(u64, u64)) -> Result<usize, TdpError> {
        if !self.sl.has_dirty_bits() {
            return Ok(0);
        }
        self.harvest(self.sl.root(), self.sl.levels(), 0, &mut f)
    }
}
