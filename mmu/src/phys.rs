//! Guest-physical memory as the MMU sees it: paging-structure reads and the
//! atomic accessed/dirty-bit updates.

use crate::fault::NestedFault;

/// A guest-physical access that could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhysError {
    /// No memory slot backs `gpa`: the access is MMIO (for a paging-structure
    /// read, real hardware reads what the bus returns; we report it instead).
    Unbacked {
        /// The guest-physical address.
        gpa: u64,
    },
    /// A second-level fault while translating a guest-physical address.
    Nested(NestedFault),
}

/// Guest-physical memory for table walks. Entries are naturally aligned and
/// little-endian; updates are atomic with respect to other vCPUs (SDM vol. 3,
/// 4.8 "Accessed and Dirty Flags": the processor sets A/D with locked operations).
pub trait PhysMemory {
    /// Reads the 32-bit entry at `gpa` (4-byte aligned).
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError>;
    /// Reads the 64-bit entry at `gpa` (8-byte aligned).
    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError>;
    /// Atomically replaces the 32-bit entry at `gpa` with `new` if it still
    /// equals `old`; returns whether it did.
    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError>;
    /// Atomically replaces the 64-bit entry at `gpa` with `new` if it still
    /// equals `old`; returns whether it did.
    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError>;
}
