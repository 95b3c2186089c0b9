//! Accessed/dirty updates (SDM vol. 3, 4.8): A on every entry used, D only on
//! the final entry of a write, nothing with `AdUpdate::None`, no rewrite of
//! entries that already have the flags, and a re-walk when an entry changes
//! between its read and its compare-exchange.

use super::*;
use crate::access::{Access, AccessKind};
use crate::paging::entry::{A, D, P, RW, US};
use crate::phys::{PhysError, PhysMemory};
use crate::walk::{walk, AdUpdate};
use std::cell::Cell;

#[test]
fn a_on_every_level_d_on_leaf_of_writes() {
    let cases = [
        (AccessKind::Read, AdUpdate::Set, true, false),
        (AccessKind::Execute, AdUpdate::Set, true, false),
        (AccessKind::Write, AdUpdate::Set, true, true),
        (AccessKind::Read, AdUpdate::None, false, false),
        (AccessKind::Write, AdUpdate::None, false, false),
    ];
    for mode in MODES {
        for &size in PageSize::for_mode(mode) {
            for &(kind, ad, want_a, want_d) in &cases {
                let m = mem();
                let mut b = builder(&m, mode);
                let lin = sample_linear(mode, size);
                let path = b
                    .map(lin, sample_gpa(size), size, P | RW | US)
                    .expect("map");
                let before: Vec<u64> = path
                    .as_slice()
                    .iter()
                    .map(|&e| b.read(e).expect("r"))
                    .collect();
                let t = walk(&m, &b.context(), lin, Access::new(kind, 3), ad).expect("walk");
                let last = before.len() - 1;
                for (i, (&e, &old)) in path.as_slice().iter().zip(&before).enumerate() {
                    let now = b.read(e).expect("r");
                    let has_a = mode != PagingMode::Pae || i != 0;
                    let mut want = old;
                    if want_a && has_a {
                        want |= A;
                    }
                    if want_d && i == last {
                        want |= D;
                    }
                    assert_eq!(now, want, "{mode:?} {size:?} {kind:?} {ad:?} entry {i}");
                }
                assert_eq!(t.dirty, want_d, "{mode:?} {size:?} {kind:?} {ad:?}");
            }
        }
    }
}

/// Counts compare-exchanges, and can change an entry just before the first one.
struct Spy<'a> {
    inner: &'a FlatMemory,
    cmpxchgs: Cell<u32>,
    /// (gpa, value) written right before the first compare-exchange.
    race: Cell<Option<(u64, u64)>>,
}

impl PhysMemory for Spy<'_> {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        self.inner.read_u32(gpa)
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        self.inner.read_u64(gpa)
    }
    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        self.before()?;
        self.inner.cmpxchg_u32(gpa, old, new)
    }
    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        self.before()?;
        self.inner.cmpxchg_u64(gpa, old, new)
    }
}

impl Spy<'_> {
    fn before(&self) -> Result<(), PhysError> {
        self.cmpxchgs.set(self.cmpxchgs.get() + 1);
        if let Some((gpa, v)) = self.race.take() {
            self.inner.write_u64(gpa, v)?;
        }
        Ok(())
    }
}

#[test]
fn flags_already_set_are_not_rewritten() {
    for mode in MODES {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, PageSize::Size4K);
        b.map(lin, 0x3000, PageSize::Size4K, P | RW).expect("map");
        let spy = Spy {
            inner: &m,
            cmpxchgs: Cell::new(0),
            race: Cell::new(None),
        };
        let ctx = b.context();
        let w = Access::new(AccessKind::Write, 0);
        walk(&spy, &ctx, lin, w, AdUpdate::Set).expect("first");
        let levels = match mode {
            PagingMode::Bits32 => 2,
            PagingMode::Pae => 2, // the PDPTE has no A flag
            PagingMode::Level4 => 4,
            _ => 5,
        };
        assert_eq!(spy.cmpxchgs.get(), levels, "{mode:?}");
        walk(&spy, &ctx, lin, w, AdUpdate::Set).expect("second");
        assert_eq!(
            spy.cmpxchgs.get(),
            levels,
            "{mode:?}: second walk wrote again"
        );
    }
}

#[test]
fn entry_changed_under_the_walk_is_walked_again() {
    for mode in MODES {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, PageSize::Size4K);
        let path = b.map(lin, 0x3000, PageSize::Size4K, P | RW).expect("map");
        let leaf = path.leaf();
        // Another vCPU remaps the page between our read and our first update.
        // (For 32-bit tables the racing store replaces the 8-byte word holding the PTE.)
        let word = leaf.gpa & !7;
        let old_word = m.read_u64(word).expect("r");
        let new_leaf = 0x8000 | P | RW;
        let shift = (leaf.gpa & 4) * 8;
        let racing = if leaf.wide {
            new_leaf
        } else {
            (old_word & !(0xffff_ffff << shift)) | (new_leaf << shift)
        };
        let spy = Spy {
            inner: &m,
            cmpxchgs: Cell::new(0),
            race: Cell::new(Some((word, racing))),
        };
        let t = walk(
            &spy,
            &b.context(),
            lin + 0x10,
            Access::new(AccessKind::Write, 0),
            AdUpdate::Set,
        )
        .expect("walk");
        assert_eq!(
            t.gpa, 0x8010,
            "{mode:?}: the re-walk must see the new entry"
        );
        assert_eq!(b.read(leaf).expect("r"), new_leaf | A | D, "{mode:?}");
        assert!(t.dirty);
    }
}
