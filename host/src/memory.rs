//! Guest memory: vm-memory regions registered with the backend as memory slots.
//!
//! RAM below 3 GiB is one slot at guest-physical 0; RAM beyond that goes
//! above 4 GiB (the 3-4 GiB hole is where a PC puts MMIO: LAPIC, IOAPIC,
//! firmware). Extra slots (read-only ROMs and the like) can be added and
//! removed while the VM is paused. Every host-side access goes through
//! vm-memory's bounds-checked `Bytes` API, so a guest address outside the
//! slots is an error, never a host access.

use crate::error::{Error, Result};
use hyperplug_plugin_api::backend::MemorySlot;
use std::sync::{Arc, RwLock};
use vm_memory::{Address, GuestAddress, GuestMemoryRegion, GuestRegionMmap, MmapRegion};

/// Guest RAM as the host sees it (anonymous mmap regions, one per slot).
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// Start of the PCI/MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xC000_0000;
/// First address above the hole.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// Page size slots are aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// What an engine running on the host needs to know about the slots beyond
/// the memory itself: which ranges are read-only, and a generation that
/// changes with every slot change (cached translations and decodes of the
/// old layout must go).
#[derive(Default)]
pub struct SlotInfo {
    readonly: RwLock<Vec<(u64, u64)>>,
    generation: std::sync::atomic::AtomicU64,
    /// The VM's write tracker: every guest-physical write path reports here
    /// (the engines' page-table and decode caches follow it).
    tracker: Arc<hyperplug_mmu::track::WriteTracker>,
}

impl std::fmt::Debug for SlotInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotInfo")
            .field("generation", &self.generation())
            .finish()
    }
}

impl SlotInfo {
    /// Whether any byte of `[gpa, gpa+len)` lies in a read-only slot.
    pub fn is_readonly(&self, gpa: u64, len: u64) -> bool {
        let g = match self.readonly.read() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        let end = gpa.saturating_add(len);
        g.iter().any(|&(s, e)| gpa < e && s < end)
    }

    /// The VM's write tracker.
    pub fn tracker(&self) -> Arc<hyperplug_mmu::track::WriteTracker> {
        Arc::clone(&self.tracker)
    }

    /// Bumped on every slot change.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// One slot: its backend description and the host mapping that backs it.
struct Slot {
    desc: MemorySlot,
    region: Arc<GuestRegionMmap<()>>,
}

/// The VM's memory slots and the vm-memory view over all of them.
pub struct GuestRam {
    ram_size: u64,
    slots: Vec<Slot>,
    mem: GuestMemory,
    /// The same view, shared with devices (DMA); replaced on every slot change.
    shared: Arc<RwLock<GuestMemory>>,
    /// Read-only ranges and the slot generation, for the host's engines.
    info: Arc<SlotInfo>,
}

impl GuestRam {
    /// Allocates `ram_size` bytes of RAM as slots 0 (low) and 1 (high, if needed).
    pub fn new(ram_size: u64) -> Result<Self> {
        if ram_size == 0 || !ram_size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Memory(format!(
                "size {ram_size} is not a non-zero multiple of 4 KiB"
            )));
        }
        let mut ram = GuestRam {
            ram_size,
            slots: Vec::new(),
            mem: GuestMemory::new(),
            shared: Arc::new(RwLock::new(GuestMemory::new())),
            info: Arc::new(SlotInfo::default()),
        };
        let low = ram_size.min(MMIO_HOLE_START);
        ram.insert(0, 0, low, 0)?;
        if ram_size > low {
            ram.insert(1, HIGH_RAM_START, ram_size - low, 0)?;
        }
        Ok(ram)
    }

    /// Total RAM in bytes (not counting extra slots).
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// The vm-memory view of all slots.
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The view devices use for DMA; it follows slot changes.
    pub fn shared(&self) -> Arc<RwLock<GuestMemory>> {
        Arc::clone(&self.shared)
    }

    /// Read-only ranges and the slot generation, for the host's engines.
    pub fn slot_info(&self) -> Arc<SlotInfo> {
        Arc::clone(&self.info)
    }

    fn publish(&self) {
        let mut g = match self.shared.write() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        *g = self.mem.clone();
        let mut ro = match self.info.readonly.write() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        *ro = self
            .slots
            .iter()
            .filter(|s| s.desc.flags & MemorySlot::READONLY != 0)
            .map(|s| (s.desc.guest_phys_addr, s.desc.guest_phys_addr + s.desc.size))
            .collect();
        self.info
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The slot descriptions to hand to a backend.
    pub fn slots(&self) -> Vec<MemorySlot> {
        self.slots.iter().map(|s| s.desc).collect()
    }

    /// Allocates and records a slot; the caller registers it with the backend.
    pub fn insert(&mut self, id: u32, gpa: u64, size: u64, flags: u32) -> Result<MemorySlot> {
        if !gpa.is_multiple_of(PAGE_SIZE) || size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Memory(format!(
                "slot {id}: base {gpa:#x} and size {size:#x} must be non-zero multiples of 4 KiB"
            )));
        }
        if gpa.checked_add(size).is_none() {
            return Err(Error::Memory(format!(
                "slot {id}: {gpa:#x} + {size:#x} overflows"
            )));
        }
        if self.slots.iter().any(|s| s.desc.id == id) {
            return Err(Error::Memory(format!("slot {id} already exists")));
        }
        let len = usize::try_from(size)
            .map_err(|_| Error::Memory(format!("slot {id}: size too large")))?;
        let mapping = MmapRegion::new(len).map_err(|e| {
            Error::Memory(format!(
                "cannot allocate {size:#x} bytes for slot {id}: {e}"
            ))
        })?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(gpa))
            .ok_or_else(|| Error::Memory(format!("slot {id}: address overflow")))?;
        let region = Arc::new(region);
        let mem = self
            .mem
            .insert_region(Arc::clone(&region))
            .map_err(|e| Error::Memory(format!("slot {id} at {gpa:#x}+{size:#x}: {e}")))?;
        let desc = MemorySlot {
            id,
            flags,
            guest_phys_addr: gpa,
            size,
            host_addr: region.as_ptr() as u64,
        };
        self.mem = mem;
        self.slots.push(Slot { desc, region });
        self.publish();
        Ok(desc)
    }

    /// Drops slot `id` from the host view; the caller removes it from the backend first.
    pub fn remove(&mut self, id: u32) -> Result<()> {
        let idx = self
            .slots
            .iter()
            .position(|s| s.desc.id == id)
            .ok_or_else(|| Error::Memory(format!("no slot {id}")))?;
        let start = self.slots[idx].region.start_addr();
        let (mem, _) = self
            .mem
            .remove_region(start, self.slots[idx].region.len())
            .map_err(|e| Error::Memory(format!("slot {id}: {e}")))?;
        self.mem = mem;
        self.slots.remove(idx);
        self.publish();
        Ok(())
    }

    /// The lowest slot id not in use.
    pub fn free_slot_id(&self) -> u32 {
        (0..)
            .find(|i| !self.slots.iter().any(|s| s.desc.id == *i))
            .unwrap_or(u32::MAX)
    }

    /// Whether `[gpa, gpa+len)` is backed by a single slot.
    pub fn is_backed(&self, gpa: u64, len: u64) -> bool {
        self.slots.iter().any(|s| s.desc.contains(gpa, len))
    }

    /// Last guest-physical address + 1 of low RAM.
    pub fn low_ram_end(&self) -> u64 {
        self.slots
            .iter()
            .find(|s| s.desc.id == 0)
            .map(|s| {
                s.region
                    .start_addr()
                    .unchecked_add(s.region.len())
                    .raw_value()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn low_and_high_split() {
        let ram = GuestRam::new(4 << 30).unwrap();
        let s = ram.slots();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].guest_phys_addr, s[0].size), (0, MMIO_HOLE_START));
        assert_eq!(
            (s[1].guest_phys_addr, s[1].size),
            (HIGH_RAM_START, (4 << 30) - MMIO_HOLE_START)
        );
        assert!(ram.is_backed(HIGH_RAM_START, 8));
        assert!(!ram.is_backed(MMIO_HOLE_START, 1));
    }

    #[test]
    fn accesses_stay_inside_slots() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let m = ram.memory();
        m.write_obj(0x1234_5678u32, GuestAddress(0x1000)).unwrap();
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0x1234_5678
        );
        assert!(m.write_obj(1u32, GuestAddress(2 << 20)).is_err());
        assert!(m.write_obj(1u32, GuestAddress((2 << 20) - 2)).is_err());
    }

    #[test]
    fn slots_add_and_remove() {
        let mut ram = GuestRam::new(2 << 20).unwrap();
        let id = ram.free_slot_id();
        assert_eq!(id, 1);
        let d = ram
            .insert(id, 0xFFFF_0000, 0x10000, MemorySlot::READONLY)
            .unwrap();
        assert_eq!(d.flags, MemorySlot::READONLY);
        assert!(ram.is_backed(0xFFFF_0000, 0x10000));
        assert!(
            ram.insert(2, 0x1000, 0x1000, 0).is_err(),
            "overlap must be refused"
        );
        assert!(
            ram.insert(1, 0x1000_0000, 0x1000, 0).is_err(),
            "duplicate id"
        );
        assert!(ram.insert(3, 0x1000_0001, 0x1000, 0).is_err(), "misaligned");
        ram.remove(1).unwrap();
        assert!(!ram.is_backed(0xFFFF_0000, 1));
        assert!(ram.remove(1).is_err());
    }
}
