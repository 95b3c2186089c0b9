//! Nested paging for the engine offered to the software backends: every
//! guest-physical access of the engine goes through second-level tables in
//! the AMD NPT format (APM vol. 2, 15.25 "Nested Paging"), built lazily from
//! the VM's memory slots by the host MMU ([`TdpMmu`]) when the backend
//! resolves a nested page fault.
//!
//! The second level maps guest-physical addresses onto themselves (the host
//! "physical" space of this software model is the slot space), so a
//! successful translation changes no address: what it adds is the fault on
//! first touch and the permissions, exactly where hardware would exit.

use crate::memory::GuestMemory;
use hyperplug_mmu::nested::{FaultOutcome, GpaAccess, GpaSource, SlError, SlotRange, TdpMmu};
use hyperplug_mmu::{AccessKind, NestedFault};
use std::cell::Cell;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Physical-address width of the nested tables: below 52 so that entries
/// have reserved bits for the MMIO marker (APM vol. 2, 15.25.6), and equal
/// to the width the software backends report in CPUID 8000_0008h.
const NPT_MAXPHYADDR: u8 = 48;

/// NPF EXITINFO1 bit 3: a reserved bit was set (the MMIO marker entry).
const NPF_RSVD: u64 = 1 << 3;

/// Why a guest-physical access cannot go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NptStop {
    /// A nested page fault for the backend.
    Fault(NestedFault),
    /// The address is MMIO (the second level holds the MMIO marker).
    Mmio,
}

/// One vCPU's second-level tables and a one-page translation cache per
/// access kind.
pub struct NptState {
    tdp: TdpMmu,
    /// Guest frames last translated successfully for read, write, fetch.
    ok: [Cell<u64>; 3],
}

impl NptState {
    /// Empty 4-level NPT tables covering the slots of `mem`.
    pub fn new(mem: &GuestMemory) -> Result<Self, String> {
        let mut tdp = TdpMmu::new_npt(4, true, NPT_MAXPHYADDR).map_err(|e| e.to_string())?;
        for (i, r) in mem.iter().enumerate() {
            let gpa = r.start_addr().0;
            let slot = SlotRange {
                id: i as u32,
                gpa,
                size: r.len(),
                host_base: gpa,
                read_only: false,
            };
            tdp.add_slot(slot).map_err(|e| e.to_string())?;
        }
        Ok(Self {
            tdp,
            ok: [
                Cell::new(u64::MAX),
                Cell::new(u64::MAX),
                Cell::new(u64::MAX),
            ],
        })
    }

    fn index(kind: AccessKind) -> usize {
        match kind {
            AccessKind::Read => 0,
            AccessKind::Write => 1,
            AccessKind::Execute => 2,
        }
    }

    /// Checks an access of the engine at `gpa`: `table` for a guest
    /// paging-structure access (NPF EXITINFO1 bit 33), else the final
    /// access (bit 32).
    pub fn check(&self, gpa: u64, kind: AccessKind, table: bool) -> Result<(), NptStop> {
        let i = Self::index(kind);
        if self.ok[i].get() == gpa >> 12 {
            return Ok(());
        }
        let source = if table {
            GpaSource::GuestTable { linear: 0 }
        } else {
            GpaSource::Final {
                linear: 0,
                user_page: true,
                writable_page: true,
                executable_page: true,
            }
        };
        match self.tdp.translate(gpa, GpaAccess { kind, source }) {
            Ok(_) => {
                self.ok[i].set(gpa >> 12);
                Ok(())
            }
            Err(SlError::Fault(f)) if f.info & NPF_RSVD != 0 => Err(NptStop::Mmio),
            // The engine does not know the linear address at this level.
            Err(SlError::Fault(f)) => Err(NptStop::Fault(NestedFault { linear: None, ..f })),
            Err(SlError::Host(_)) => Err(NptStop::Mmio),
        }
    }

    /// Resolves a nested page fault at `gpa`: `true` when RAM is now mapped,
    /// `false` for MMIO.
    pub fn fault(&mut self, gpa: u64, write: bool) -> Result<bool, String> {
        match self.tdp.handle_fault(gpa, 1, write) {
            Ok(FaultOutcome::Retry) => Ok(true),
            Ok(FaultOutcome::Mmio(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}
