//! The emulator's view of guest-physical memory and port I/O.
//!
//! The caller implements [`Bus`]. An access the caller cannot complete inside
//! the engine (MMIO to a device that lives elsewhere, port I/O, a second-level
//! fault) returns a [`BusStop`]; the engine then ends the run with an event
//! and leaves the architectural state exactly as before the instruction.
//! Instructions are restartable: every access happens before anything is
//! committed. To complete the access, the caller performs it (e.g. in the
//! device model) and runs the engine again so that the same access now
//! succeeds (a read answered from the device's result, a write accepted).

use hyperplug_mmu::{NestedFault, PhysError, PhysMemory};
use std::cell::RefCell;

/// Why an access could not be completed inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusStop {
    /// The address is not RAM: the caller must complete the MMIO access.
    Mmio,
    /// The port access must be completed by the caller.
    Io,
    /// A second-level (EPT/NPT) fault on the guest-physical address.
    Nested(NestedFault),
}

/// Guest-physical memory and I/O ports as the emulator reaches them.
///
/// [`PhysMemory`] (a supertrait) serves the page-table walker.
pub trait Bus: PhysMemory {
    /// Reads `buf.len()` bytes at `gpa`.
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BusStop>;
    /// Whether a write of `len` bytes at `gpa` would succeed (checked before
    /// any write of an instruction is committed).
    fn check_write(&mut self, gpa: u64, len: usize) -> Result<(), BusStop>;
    /// Writes `data` at `gpa` (after a successful [`Bus::check_write`]).
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), BusStop>;
    /// Reads a `size`-byte (1, 2, 4) value from `port`.
    fn io_in(&mut self, port: u16, size: u8) -> Result<u32, BusStop>;
    /// Writes a `size`-byte (1, 2, 4) value to `port`.
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BusStop>;
}

/// A `Vec`-backed RAM at guest-physical 0 with no MMIO and no I/O devices
/// (every port access stops with [`BusStop::Io`]); for tests and benchmarks.
#[derive(Debug)]
pub struct FlatBus {
    ram: RefCell<Vec<u8>>,
}

impl FlatBus {
    /// `size` bytes of zeroed RAM.
    pub fn new(size: usize) -> Self {
        Self {
            ram: RefCell::new(vec![0; size]),
        }
    }

    /// RAM size in bytes.
    pub fn size(&self) -> usize {
        self.ram.borrow().len()
    }

    /// Copies `data` into RAM at `gpa`; `false` if it does not fit.
    pub fn load(&mut self, gpa: u64, data: &[u8]) -> bool {
        let ram = self.ram.get_mut();
        match range(ram.len(), gpa, data.len()) {
            Some(r) => {
                ram[r].copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// A copy of `len` bytes at `gpa` (`None` outside RAM).
    pub fn peek(&self, gpa: u64, len: usize) -> Option<Vec<u8>> {
        let ram = self.ram.borrow();
        range(ram.len(), gpa, len).map(|r| ram[r].to_vec())
    }

    /// Reads a little-endian u64 at `gpa` (0 outside RAM).
    pub fn peek_u64(&self, gpa: u64) -> u64 {
        self.peek(gpa, 8)
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }
}

fn range(size: usize, gpa: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(gpa).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

impl FlatBus {
    fn read_n<const N: usize>(&self, gpa: u64) -> Result<[u8; N], PhysError> {
        let ram = self.ram.borrow();
        let r = range(ram.len(), gpa, N).ok_or(PhysError::Unbacked { gpa })?;
        let mut b = [0u8; N];
        b.copy_from_slice(&ram[r]);
        Ok(b)
    }

    fn cmpxchg_n<const N: usize>(
        &self,
        gpa: u64,
        old: [u8; N],
        new: [u8; N],
    ) -> Result<bool, PhysError> {
        let mut ram = self.ram.borrow_mut();
        let r = range(ram.len(), gpa, N).ok_or(PhysError::Unbacked { gpa })?;
        if ram[r.clone()] != old {
            return Ok(false);
        }
        ram[r].copy_from_slice(&new);
        Ok(true)
    }
}

impl PhysMemory for FlatBus {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        self.read_n::<4>(gpa).map(u32::from_le_bytes)
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        self.read_n::<8>(gpa).map(u64::from_le_bytes)
    }
    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        self.cmpxchg_n(gpa, old.to_le_bytes(), new.to_le_bytes())
    }
    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        self.cmpxchg_n(gpa, old.to_le_bytes(), new.to_le_bytes())
    }
}

impl Bus for FlatBus {
    #[inline]
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BusStop> {
        let ram = self.ram.get_mut();
        let r = range(ram.len(), gpa, buf.len()).ok_or(BusStop::Mmio)?;
        buf.copy_from_slice(&ram[r]);
        Ok(())
    }
    #[inline]
    fn check_write(&mut self, gpa: u64, len: usize) -> Result<(), BusStop> {
        range(self.ram.get_mut().len(), gpa, len)
            .map(|_| ())
            .ok_or(BusStop::Mmio)
    }
    #[inline]
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), BusStop> {
        let ram = self.ram.get_mut();
        let r = range(ram.len(), gpa, data.len()).ok_or(BusStop::Mmio)?;
        ram[r].copy_from_slice(data);
        Ok(())
    }
    fn io_in(&mut self, _port: u16, _size: u8) -> Result<u32, BusStop> {
        Err(BusStop::Io)
    }
    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> Result<(), BusStop> {
        Err(BusStop::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_bus_bounds() {
        let mut b = FlatBus::new(0x1000);
        assert!(b.load(0xff8, &[1; 8]));
        assert!(!b.load(0xff9, &[1; 8]));
        let mut buf = [0u8; 8];
        assert_eq!(b.read_phys(0xffc, &mut buf), Err(BusStop::Mmio));
        assert_eq!(b.read_phys(u64::MAX, &mut buf), Err(BusStop::Mmio));
        assert!(b.read_phys(0xff8, &mut buf).is_ok());
        assert_eq!(buf, [1; 8]);
        assert_eq!(b.read_u64(0xff8), Ok(0x0101_0101_0101_0101));
        assert_eq!(b.cmpxchg_u32(0xff8, 0, 5), Ok(false));
        assert_eq!(b.cmpxchg_u32(0xff8, 0x0101_0101, 5), Ok(true));
        assert_eq!(b.read_u32(0xff8), Ok(5));
        assert_eq!(b.io_in(0x60, 1), Err(BusStop::Io));
    }
}
