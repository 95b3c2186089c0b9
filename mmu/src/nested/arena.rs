//! Host-owned memory for second-level tables: a `Vec` of 4-KiB pages of
//! atomic entries standing in for host-physical memory. A table's "physical"
//! address is `(index + 1) << 12`, so address 0 never names a table.

use crate::phys::{PhysError, PhysMemory};
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries per 4-KiB table.
const ENTRIES: usize = 512;

/// Table pages, reachable through [`PhysMemory`] at their arena addresses.
#[derive(Default)]
pub struct TableArena {
    pages: Vec<Box<[AtomicU64]>>,
    free: Vec<usize>,
}

impl TableArena {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocates a zeroed (all entries non-present) table; returns its address.
    pub fn alloc(&mut self) -> u64 {
        let index = match self.free.pop() {
            Some(i) => {
                for e in self.pages[i].iter() {
                    e.store(0, Ordering::Relaxed);
                }
                i
            }
            None => {
                self.pages
                    .push((0..ENTRIES).map(|_| AtomicU64::new(0)).collect());
                self.pages.len() - 1
            }
        };
        (index as u64 + 1) << 12
    }

    /// Returns the table at `addr` to the free list (ignores foreign addresses).
    pub fn free(&mut self, addr: u64) {
        if let Some(i) = self.index(addr) {
            if !self.free.contains(&i) {
                self.free.push(i);
            }
        }
    }

    /// Tables currently allocated.
    pub fn in_use(&self) -> usize {
        self.pages.len() - self.free.len()
    }

    /// Stores `value` into the entry at `addr` (8-byte aligned).
    pub fn store(&self, addr: u64, value: u64) -> Result<(), PhysError> {
        self.entry(addr)?.store(value, Ordering::SeqCst);
        Ok(())
    }

    fn index(&self, addr: u64) -> Option<usize> {
        let i = usize::try_from(addr >> 12).ok()?.checked_sub(1)?;
        (i < self.pages.len()).then_some(i)
    }

    fn entry(&self, addr: u64) -> Result<&AtomicU64, PhysError> {
        self.index(addr)
            .and_then(|i| self.pages[i].get(((addr & 0xfff) / 8) as usize))
            .ok_or(PhysError::Unbacked { gpa: addr })
    }
}

impl PhysMemory for TableArena {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        Ok((self.entry(gpa)?.load(Ordering::SeqCst) >> ((gpa & 4) * 8)) as u32)
    }

    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        Ok(self.entry(gpa)?.load(Ordering::SeqCst))
    }

    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        let w = self.entry(gpa)?;
        let shift = (gpa & 4) * 8;
        let cur = w.load(Ordering::SeqCst);
        if (cur >> shift) as u32 != old {
            return Ok(false);
        }
        let next = (cur & !(0xffff_ffffu64 << shift)) | (u64::from(new) << shift);
        Ok(
            w.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
        )
    }

    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        Ok(self
            .entry(gpa)?
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_reuse_and_bounds() {
        let mut a = TableArena::new();
        let t0 = a.alloc();
        let t1 = a.alloc();
        assert_eq!((t0, t1), (0x1000, 0x2000));
        a.store(t1 + 8, 0xabc).unwrap();
        assert_eq!(a.read_u64(t1 + 8).unwrap(), 0xabc);
        assert!(a.cmpxchg_u64(t1 + 8, 0xabc, 0xdef).unwrap());
        a.free(t1);
        assert_eq!(a.in_use(), 1);
        assert_eq!(a.alloc(), t1);
        assert_eq!(a.read_u64(t1 + 8).unwrap(), 0, "reused tables are zeroed");
        assert_eq!(a.read_u64(0), Err(PhysError::Unbacked { gpa: 0 }));
        assert_eq!(a.read_u64(0x3000), Err(PhysError::Unbacked { gpa: 0x3000 }));
    }
}
