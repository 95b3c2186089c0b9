//! A micro-TLB in front of the MMU's TLB: a direct-mapped cache of
//! translations the TLB already granted (linear page, access kind,
//! implicit-supervisor, CPL → guest-physical page).
//!
//! It is only a cache of the TLB's answers, so it must be dropped whenever
//! one of them could change:
//!
//! * the paging context (CR0, CR3, CR4, EFER, RFLAGS.AC), the CPL, the TLB
//!   contents (INVLPG, INVPCID, flushes) or the segment state change — only
//!   instructions outside the [`crate::decode::Decoded::safe`] class, event
//!   delivery, and the caller between runs do that, and each bumps the epoch
//!   ([`Utlb::invalidate`]);
//! * a paging-structure entry is written: the VM's write tracker bumps its
//!   generation, which [`Utlb::sync`] checks at every instruction boundary.
//!
//! An entry for a write is only filled after the TLB granted a write (the
//! page was dirty), as the TLB itself requires (SDM vol. 3, 4.8).
//!
//! Only canonical linear addresses are filled (SDM vol. 1, 3.3.7.1), so a
//! hit on an access that stays within one page also proves it canonical.

use hyperplug_mmu::track::WriteTracker;
use hyperplug_mmu::AccessKind;

/// Entries per access kind (a power of two).
const SLOTS: usize = 256;

#[derive(Clone, Copy)]
struct Entry {
    tag: u64,
    page: u64,
    epoch: u32,
}

const EMPTY: Entry = Entry {
    tag: u64::MAX,
    page: 0,
    epoch: 0,
};

/// The micro-TLB.
pub(crate) struct Utlb {
    epoch: u32,
    gen: u64,
    slots: Box<[[Entry; SLOTS]; 3]>,
}

#[inline]
fn kind_index(kind: AccessKind) -> usize {
    match kind {
        AccessKind::Read => 0,
        AccessKind::Write => 1,
        AccessKind::Execute => 2,
    }
}

#[inline]
fn tag(lin: u64, implicit: bool, cpl: u8) -> u64 {
    ((lin >> 12) << 4) | (u64::from(implicit) << 2) | u64::from(cpl & 3)
}

impl Utlb {
    /// An empty micro-TLB.
    pub(crate) fn new() -> Self {
        Self {
            epoch: 1,
            gen: u64::MAX,
            slots: Box::new([[EMPTY; SLOTS]; 3]),
        }
    }

    /// The current epoch (changes whenever the entries are dropped).
    #[inline]
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Drops every entry.
    #[inline]
    pub(crate) fn invalidate(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: old entries could match again; clear them for real.
            for k in self.slots.iter_mut() {
                k.fill(EMPTY);
            }
            self.epoch = 1;
        }
    }

    /// Drops every entry if a paging-structure write happened since the last call.
    #[inline]
    pub(crate) fn sync(&mut self, tracker: &WriteTracker) {
        let g = tracker.generation();
        if g != self.gen {
            self.gen = g;
            self.invalidate();
        }
    }

    /// Whether the tracker moved since the last [`Utlb::sync`].
    #[inline]
    pub(crate) fn is_stale(&self, tracker: &WriteTracker) -> bool {
        tracker.generation() != self.gen
    }

    /// The guest-physical address of `lin` for this access, if cached.
    #[inline]
    pub(crate) fn lookup(
        &self,
        kind: AccessKind,
        lin: u64,
        implicit: bool,
        cpl: u8,
    ) -> Option<u64> {
        let e = &self.slots[kind_index(kind)][((lin >> 12) as usize) & (SLOTS - 1)];
        (e.epoch == self.epoch && e.tag == tag(lin, implicit, cpl))
            .then_some(e.page | (lin & 0xfff))
    }

    /// Caches the TLB's answer `gpa` for `lin`.
    #[inline]
    pub(crate) fn fill(&mut self, kind: AccessKind, lin: u64, implicit: bool, cpl: u8, gpa: u64) {
        self.slots[kind_index(kind)][((lin >> 12) as usize) & (SLOTS - 1)] = Entry {
            tag: tag(lin, implicit, cpl),
            page: gpa & !0xfff,
            epoch: self.epoch,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_epoch_and_generation() {
        let tracker = WriteTracker::new();
        let mut u = Utlb::new();
        u.sync(&tracker);
        assert_eq!(u.lookup(AccessKind::Read, 0x1234, false, 0), None);
        u.fill(AccessKind::Read, 0x1234, false, 0, 0x9000);
        assert_eq!(u.lookup(AccessKind::Read, 0x1ff8, false, 0), Some(0x9ff8));
        assert_eq!(u.lookup(AccessKind::Write, 0x1ff8, false, 0), None, "kind");
        assert_eq!(u.lookup(AccessKind::Read, 0x1ff8, false, 3), None, "cpl");
        assert_eq!(
            u.lookup(AccessKind::Read, 0x1ff8, true, 0),
            None,
            "implicit"
        );
        assert_eq!(
            u.lookup(AccessKind::Read, 0x101ff8, false, 0),
            None,
            "alias slot"
        );
        u.invalidate();
        assert_eq!(u.lookup(AccessKind::Read, 0x1234, false, 0), None);
        u.fill(AccessKind::Read, 0x1234, false, 0, 0x9000);
        u.sync(&tracker);
        assert!(u.lookup(AccessKind::Read, 0x1234, false, 0).is_some());
        // A write to a tracked table bumps the generation.
        tracker.track(0x50);
        assert!(tracker.on_guest_write(0x50_000, 8));
        u.sync(&tracker);
        assert_eq!(u.lookup(AccessKind::Read, 0x1234, false, 0), None);
    }
}
