//! Hand-built second-level tables in a flat host memory, for tests.

use super::level_shift;
use crate::phys::PhysMemory;
use crate::testmem::FlatMemory;

/// Tables built in `mem` starting with the root at 0x1000.
pub(super) struct Builder {
    pub mem: FlatMemory,
    pub root: u64,
    next: u64,
    levels: u8,
}

impl Builder {
    /// An empty `levels`-level hierarchy in 4 MiB of host memory.
    pub fn new(levels: u8) -> Self {
        Self {
            mem: FlatMemory::new(4 << 20),
            root: 0x1000,
            next: 0x2000,
            levels,
        }
    }

    /// Allocates a zeroed table page.
    pub fn alloc(&mut self) -> u64 {
        let t = self.next;
        self.next += 0x1000;
        t
    }

    /// Maps `gpa` with the raw `leaf` entry at `leaf_level`; entries above it
    /// get flags `nonleaf(level)` and the next table's address (existing
    /// tables are reused). Returns the entry addresses, outermost first.
    pub fn map(
        &mut self,
        gpa: u64,
        leaf_level: u8,
        leaf: u64,
        nonleaf: impl Fn(u8) -> u64,
    ) -> Vec<u64> {
        let mut table = self.root;
        let mut out = Vec::new();
        let mut level = self.levels;
        loop {
            let ea = table + ((gpa >> level_shift(level)) & 0x1ff) * 8;
            out.push(ea);
            if level == leaf_level {
                self.mem.write_u64(ea, leaf).unwrap();
                return out;
            }
            let e = self.mem.read_u64(ea).unwrap();
            let next = if e & 0x000f_ffff_ffff_f000 != 0 {
                e & 0x000f_ffff_ffff_f000
            } else {
                self.alloc()
            };
            self.mem.write_u64(ea, next | nonleaf(level)).unwrap();
            table = next;
            level -= 1;
        }
    }

    /// Reads the entry at `ea`.
    pub fn entry(&self, ea: u64) -> u64 {
        self.mem.read_u64(ea).unwrap()
    }
}
