//! A tiny 4-level page-table builder over [`FlatMemory`] for tests.

use crate::context::{
    PagingContext, CR0_PG, CR0_WP, CR4_PAE, CR4_PGE, EFER_LMA, EFER_LME, EFER_NXE,
};
use crate::testmem::FlatMemory;

/// Present.
pub const P: u64 = 1 << 0;
/// Read/write.
pub const RW: u64 = 1 << 1;
/// User/supervisor.
pub const US: u64 = 1 << 2;
/// Accessed.
pub const A: u64 = 1 << 5;
/// Dirty.
pub const D: u64 = 1 << 6;
/// Page size (large page).
pub const PS: u64 = 1 << 7;
/// Global.
pub const G: u64 = 1 << 8;

/// Builds 4-level tables: intermediate entries are P|RW|US so the leaf decides.
pub struct Pt<'a> {
    /// The memory the tables live in.
    pub mem: &'a FlatMemory,
    /// Guest-physical address of the PML4.
    pub root: u64,
    next: u64,
}

impl<'a> Pt<'a> {
    /// A PML4 at `root` (assumed zeroed); new tables are taken from `next_free` up.
    pub fn new(mem: &'a FlatMemory, root: u64, next_free: u64) -> Self {
        Self {
            mem,
            root,
            next: next_free,
        }
    }

    fn alloc(&mut self) -> u64 {
        let t = self.next;
        self.next += 0x1000;
        for i in 0..512 {
            self.mem.write_u64(t + i * 8, 0).expect("table in memory");
        }
        t
    }

    /// The gpa of the entry for `linear` at `level` (4 = PML4E … 1 = PTE),
    /// creating the tables above it.
    pub fn entry_addr(&mut self, linear: u64, level: u32) -> u64 {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let e = table + ((linear >> (12 + 9 * (l - 1))) & 511) * 8;
            let v = self.mem.read_u64_plain(e);
            table = if v & P == 0 {
                let t = self.alloc();
                self.mem
                    .write_u64(e, t | P | RW | US)
                    .expect("entry in memory");
                t
            } else {
                v & 0x000f_ffff_ffff_f000
            };
        }
        table + ((linear >> (12 + 9 * (level - 1))) & 511) * 8
    }

    /// Maps the 4-KiB page at `linear` to `gpa` with leaf `flags`; returns the PTE's gpa.
    pub fn map4k(&mut self, linear: u64, gpa: u64, flags: u64) -> u64 {
        let e = self.entry_addr(linear, 1);
        self.mem.write_u64(e, gpa | flags).expect("entry in memory");
        e
    }

    /// Maps the 2-MiB page at `linear` to `gpa` with leaf `flags` (PS added);
    /// returns the PDE's gpa.
    pub fn map2m(&mut self, linear: u64, gpa: u64, flags: u64) -> u64 {
        let e = self.entry_addr(linear, 2);
        self.mem
            .write_u64(e, gpa | flags | PS)
            .expect("entry in memory");
        e
    }
}

/// Plain read for the builder (tests only).
trait ReadPlain {
    fn read_u64_plain(&self, gpa: u64) -> u64;
}

impl ReadPlain for FlatMemory {
    fn read_u64_plain(&self, gpa: u64) -> u64 {
        crate::phys::PhysMemory::read_u64(self, gpa).expect("entry in memory")
    }
}

/// A 4-level context with CR0.WP, CR4.PGE and EFER.NXE, PML4 at `cr3`.
pub fn ctx4(cr3: u64) -> PagingContext {
    PagingContext {
        cr0: CR0_PG | CR0_WP | 1,
        cr3,
        cr4: CR4_PAE | CR4_PGE,
        efer: EFER_LME | EFER_LMA | EFER_NXE,
        rflags_ac: false,
        pkru: 0,
        maxphyaddr: 52,
    }
}
