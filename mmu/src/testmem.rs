//! A flat, `Vec`-backed [`PhysMemory`] for tests and benchmarks: guest-physical
//! `[0, size)`, everything above is unbacked (MMIO).

use crate::phys::{PhysError, PhysMemory};
use std::sync::atomic::{AtomicU64, Ordering};

/// Flat guest-physical memory made of 64-bit atomic words.
pub struct FlatMemory {
    words: Vec<AtomicU64>,
}

impl FlatMemory {
    /// `size` bytes (rounded up to 8) of zeroed memory at guest-physical 0.
    pub fn new(size: u64) -> Self {
        let n = size.div_ceil(8) as usize;
        Self {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    fn word(&self, gpa: u64) -> Result<&AtomicU64, PhysError> {
        usize::try_from(gpa / 8)
            .ok()
            .and_then(|i| self.words.get(i))
            .ok_or(PhysError::Unbacked { gpa })
    }

    /// Writes a 64-bit value at `gpa` (8-byte aligned).
    pub fn write_u64(&self, gpa: u64, v: u64) -> Result<(), PhysError> {
        self.word(gpa)?.store(v, Ordering::SeqCst);
        Ok(())
    }

    /// Writes a 32-bit value at `gpa` (4-byte aligned).
    pub fn write_u32(&self, gpa: u64, v: u32) -> Result<(), PhysError> {
        let w = self.word(gpa)?;
        let shift = (gpa & 4) * 8;
        let mask = 0xffff_ffffu64 << shift;
        let mut cur = w.load(Ordering::SeqCst);
        loop {
            let new = (cur & !mask) | ((v as u64) << shift);
            match w.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(c) => cur = c,
            }
        }
    }
}

impl PhysMemory for FlatMemory {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        let w = self.word(gpa)?.load(Ordering::SeqCst);
        Ok((w >> ((gpa & 4) * 8)) as u32)
    }

    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        Ok(self.word(gpa)?.load(Ordering::SeqCst))
    }

    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        let w = self.word(gpa)?;
        let shift = (gpa & 4) * 8;
        let mask = 0xffff_ffffu64 << shift;
        let cur = w.load(Ordering::SeqCst);
        if (cur >> shift) as u32 != old {
            return Ok(false);
        }
        let next = (cur & !mask) | ((new as u64) << shift);
        Ok(
            w.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
        )
    }

    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        Ok(self
            .word(gpa)?
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_exchanges() {
        let m = FlatMemory::new(0x2000);
        m.write_u64(0x1000, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u32(0x1000).unwrap(), 0x5566_7788);
        assert_eq!(m.read_u32(0x1004).unwrap(), 0x1122_3344);
        m.write_u32(0x1004, 0xaabb_ccdd).unwrap();
        assert_eq!(m.read_u64(0x1000).unwrap(), 0xaabb_ccdd_5566_7788);
        assert!(!m.cmpxchg_u64(0x1000, 1, 2).unwrap());
        assert!(m.cmpxchg_u32(0x1000, 0x5566_7788, 7).unwrap());
        assert_eq!(m.read_u64(0x1000).unwrap(), 0xaabb_ccdd_0000_0007);
        assert_eq!(m.read_u64(0x2000), Err(PhysError::Unbacked { gpa: 0x2000 }));
    }
}
