//! Write-tracking of guest page-table pages, shared by every vCPU of a VM.
//!
//! A software TLB entry or a shadow translation is derived from paging-structure
//! entries in guest memory (SDM vol. 3, 4.10.2 "Translation Lookaside Buffers":
//! hardware may keep such a translation after the entries change, but this MMU
//! promises more: a write by any vCPU to a table a translation depends on never
//! leaves that translation usable). This module is the 2.6.20 "write-protect the
//! guest's page-table pages" idea for a software engine:
//!
//! * Consumers (each vCPU's [`Tlb`](crate::tlb::Tlb) and
//!   [`ShadowMmu`](crate::shadow::ShadowMmu)) call [`WriteTracker::track`] for
//!   every guest frame (gfn) holding an entry they used.
//! * Every guest-physical write path calls [`WriteTracker::on_guest_write`]
//!   **after** the write is visible in memory. When the write touches a tracked
//!   frame the tracker appends a [`TrackEvent`] to a bounded log and bumps a
//!   global generation counter.
//! * Before each lookup a consumer compares its last-seen generation with
//!   [`WriteTracker::generation`] (one atomic load on the hit path, no lock); when
//!   they differ it fetches the new events with [`WriteTracker::events_since`]
//!   and drops the entries whose table entries overlap the written range. If it
//!   fell more than [`LOG_CAPACITY`] events behind, it flushes everything.
//!
//! Filling protocol (what keeps a fill from racing with a write): read the
//! generation *before* walking (a fill token), walk, then [`track`] the tables;
//! if `track` reports a frame that was not tracked before, a write to it may have
//! gone unlogged between the walk and the `track`, so the consumer must not cache
//! that walk (it walks again: the second walk happens after tracking, so any later
//! write is logged). A fill whose token is older than the consumer's last-seen
//! generation is refused (events it should have been checked against are gone).
//!
//! Frames that are written often without being re-tracked (a page that stopped
//! being a page table, or a table being rebuilt) are untracked after
//! [`FLOOD_THRESHOLD`] logged writes, like 2.6.20's write-flood detection. This is
//! safe: each of those writes was logged, so every consumer drops the dependent
//! entries before its next lookup, and a later fill re-tracks the frame.
//!
//! The "is this frame tracked" check on the write path is a counting filter of
//! atomics, so writes to untracked memory cost one fence and one load per page.
//!
//! [`track`]: WriteTracker::track

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How many events the log keeps; a consumer further behind flushes everything.
pub const LOG_CAPACITY: usize = 256;
/// Logged writes to a frame, without a `track` in between, before it is untracked.
pub const FLOOD_THRESHOLD: u32 = 64;
/// Number of counters in the "maybe tracked" filter (a power of two).
const FILTER_SLOTS: usize = 1 << 14;

/// One thing consumers must react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackEvent {
    /// A guest write to `[start, end)` touched at least one tracked frame.
    Write {
        /// First guest-physical byte written.
        start: u64,
        /// One past the last byte written.
        end: u64,
    },
    /// The memory slots covering `[start, end)` changed (added, removed, remapped).
    SlotChange {
        /// First guest-physical byte of the changed range.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
}

impl TrackEvent {
    /// The guest-physical range `[start, end)` the event covers.
    pub fn range(&self) -> (u64, u64) {
        match *self {
            TrackEvent::Write { start, end } | TrackEvent::SlotChange { start, end } => {
                (start, end)
            }
        }
    }
}

/// What [`WriteTracker::events_since`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    /// `count` events were copied to the buffer; the consumer is now at `upto`.
    Events {
        /// Number of events written to the buffer.
        count: usize,
        /// The generation the consumer has now seen.
        upto: u64,
    },
    /// The consumer fell too far behind: it must drop everything; it is now at `upto`.
    Overflow {
        /// The generation the consumer has now seen.
        upto: u64,
    },
}

struct Inner {
    /// Tracked gfn → logged writes since it was last (re-)tracked.
    tracked: HashMap<u64, u32>,
    /// Ring of the last `LOG_CAPACITY` events; event `g` lives at `g % LOG_CAPACITY`.
    log: Vec<TrackEvent>,
}

/// The per-VM set of write-tracked guest frames and its invalidation log.
pub struct WriteTracker {
    /// Number of events ever logged (written under the lock, read without it).
    generation: AtomicU64,
    /// Counting filter: how many tracked gfns hash to each slot.
    filter: Box<[AtomicU32]>,
    inner: Mutex<Inner>,
}

impl Default for WriteTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WriteTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTracker")
            .field("generation", &self.generation())
            .field("tracked", &self.tracked_count())
            .finish()
    }
}

fn slot(gfn: u64) -> usize {
    (gfn.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FILTER_SLOTS.trailing_zeros())) as usize
}

/// The gfns `[start, end)` touches (empty when `end <= start`).
fn gfns(start: u64, end: u64) -> std::ops::Range<u64> {
    if end <= start {
        return 0..0;
    }
    (start >> 12)..((end - 1) >> 12) + 1
}

impl WriteTracker {
    /// An empty tracker at generation 0.
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            filter: (0..FILTER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            inner: Mutex::new(Inner {
                tracked: HashMap::new(),
                log: vec![TrackEvent::Write { start: 0, end: 0 }; LOG_CAPACITY],
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the data consistent
        // (every update is a single insert/remove/store), so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of events logged so far (Acquire: a consumer that sees generation
    /// `g` also sees the memory writes of the events before `g`).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Starts tracking `gfn`; returns whether it was not tracked before (then a
    /// walk made before this call must not be cached, see the module docs).
    /// Re-tracking a tracked frame resets its write-flood counter.
    pub fn track(&self, gfn: u64) -> bool {
        let mut inner = self.lock();
        match inner.tracked.get_mut(&gfn) {
            Some(writes) => {
                *writes = 0;
                false
            }
            None => {
                self.filter[slot(gfn)].fetch_add(1, Ordering::SeqCst);
                inner.tracked.insert(gfn, 0);
                // Pairs with the fence in `on_guest_write`: either that write sees
                // the filter count, or the caller's next walk sees the write.
                fence(Ordering::SeqCst);
                true
            }
        }
    }

    /// Tracks the frames of every paging-structure entry address in `entries`
    /// (`u64::MAX` = unused, as in [`Translation::table_entries`]); returns
    /// whether any frame was newly tracked.
    ///
    /// [`Translation::table_entries`]: crate::walk::Translation::table_entries
    pub fn track_entries(&self, entries: &[u64]) -> bool {
        let mut newly = false;
        for &e in entries.iter().filter(|&&e| e != u64::MAX) {
            newly |= self.track(e >> 12);
        }
        newly
    }

    /// Stops tracking `gfn`, logging a write of the whole frame so that every
    /// consumer first drops the entries that depend on it.
    pub fn untrack(&self, gfn: u64) {
        let mut inner = self.lock();
        if inner.tracked.remove(&gfn).is_some() {
            self.filter[slot(gfn)].fetch_sub(1, Ordering::SeqCst);
            let start = gfn << 12;
            self.push(
                &mut inner,
                TrackEvent::Write {
                    start,
                    end: start.saturating_add(4096),
                },
            );
        }
    }

    /// Whether `gfn` is tracked.
    pub fn is_tracked(&self, gfn: u64) -> bool {
        self.filter[slot(gfn)].load(Ordering::SeqCst) != 0 && self.lock().tracked.contains_key(&gfn)
    }

    /// Number of tracked frames.
    pub fn tracked_count(&self) -> usize {
        self.lock().tracked.len()
    }

    /// Reports a guest write of `len` bytes at `gpa`, made **after** the bytes are
    /// in memory. Returns whether a tracked frame was hit (then an event was
    /// logged and the generation bumped).
    ///
    /// The check is inlined into callers (one fence and one load per page:
    /// the fence must stay, it is the store→load barrier of the Dekker pair
    /// with [`WriteTracker::track`]; on x86-64 it is already a single locked
    /// no-op, the cheapest full barrier), the logging is out of line.
    #[inline]
    pub fn on_guest_write(&self, gpa: u64, len: u64) -> bool {
        let end = gpa.saturating_add(len);
        // Pairs with the fence in `track` (see there).
        fence(Ordering::SeqCst);
        if !gfns(gpa, end).any(|g| self.filter[slot(g)].load(Ordering::SeqCst) != 0) {
            return false;
        }
        self.log_write(gpa, end)
    }

    /// The slow part of [`WriteTracker::on_guest_write`]: some frame of
    /// `[gpa, end)` may be tracked.
    #[cold]
    #[inline(never)]
    fn log_write(&self, gpa: u64, end: u64) -> bool {
        let mut inner = self.lock();
        let mut hit = false;
        for g in gfns(gpa, end) {
            let flooded = match inner.tracked.get_mut(&g) {
                Some(writes) => {
                    hit = true;
                    *writes += 1;
                    *writes >= FLOOD_THRESHOLD
                }
                None => false,
            };
            if flooded {
                inner.tracked.remove(&g);
                self.filter[slot(g)].fetch_sub(1, Ordering::SeqCst);
            }
        }
        if hit {
            self.push(&mut inner, TrackEvent::Write { start: gpa, end });
        }
        hit
    }

    /// Reports that the memory slots covering `[gpa, gpa+len)` changed; every
    /// consumer drops the translations whose data page or tables lie there.
    pub fn on_slot_change(&self, gpa: u64, len: u64) {
        let mut inner = self.lock();
        self.push(
            &mut inner,
            TrackEvent::SlotChange {
                start: gpa,
                end: gpa.saturating_add(len),
            },
        );
    }

    fn push(&self, inner: &mut Inner, ev: TrackEvent) {
        let g = self.generation.load(Ordering::Relaxed);
        inner.log[(g % LOG_CAPACITY as u64) as usize] = ev;
        self.generation.store(g + 1, Ordering::Release);
    }

    /// Copies the events logged after generation `seen` into `buf`; reports
    /// [`Catchup::Overflow`] when they no longer all fit in the log or in `buf`.
    pub fn events_since(&self, seen: u64, buf: &mut [TrackEvent]) -> Catchup {
        let inner = self.lock();
        let upto = self.generation.load(Ordering::Relaxed);
        let behind = upto.saturating_sub(seen);
        if seen > upto || behind > LOG_CAPACITY as u64 || behind > buf.len() as u64 {
            return Catchup::Overflow { upto };
        }
        for (i, g) in (seen..upto).enumerate() {
            buf[i] = inner.log[(g % LOG_CAPACITY as u64) as usize];
        }
        Catchup::Events {
            count: behind as usize,
            upto,
        }
    }
}

/// Whether the paging-structure entry at `entry` (`size` bytes) overlaps `[start, end)`.
pub(crate) fn entry_overlaps(entry: u64, size: u64, start: u64, end: u64) -> bool {
    entry != u64::MAX && entry < end && entry.saturating_add(size) > start
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn untracked_writes_are_free_and_unlogged() {
        let t = WriteTracker::new();
        assert!(!t.on_guest_write(0x5000, 8));
        assert_eq!(t.generation(), 0);
        assert!(!t.is_tracked(5));
    }

    #[test]
    fn tracked_write_logs_event() {
        let t = WriteTracker::new();
        assert!(t.track(5));
        assert!(!t.track(5), "second track is not new");
        assert!(t.is_tracked(5));
        assert!(!t.on_guest_write(0x4ff8, 8), "write just below the frame");
        assert!(!t.on_guest_write(0x6000, 8), "write just above the frame");
        assert!(t.on_guest_write(0x5ff8, 8));
        assert!(t.on_guest_write(0x4ffc, 8), "straddling write");
        assert_eq!(t.generation(), 2);
        let mut buf = [TrackEvent::Write { start: 0, end: 0 }; 4];
        assert_eq!(
            t.events_since(0, &mut buf),
            Catchup::Events { count: 2, upto: 2 }
        );
        assert_eq!(
            buf[0],
            TrackEvent::Write {
                start: 0x5ff8,
                end: 0x6000
            }
        );
        assert_eq!(
            buf[1],
            TrackEvent::Write {
                start: 0x4ffc,
                end: 0x5004
            }
        );
        assert_eq!(
            t.events_since(1, &mut buf),
            Catchup::Events { count: 1, upto: 2 }
        );
    }

    #[test]
    fn overflow_when_too_far_behind() {
        let t = WriteTracker::new();
        t.track(1);
        for _ in 0..3 {
            t.on_slot_change(0, 4096);
        }
        let mut small = [TrackEvent::Write { start: 0, end: 0 }; 2];
        assert_eq!(t.events_since(0, &mut small), Catchup::Overflow { upto: 3 });
        let mut buf = [TrackEvent::Write { start: 0, end: 0 }; LOG_CAPACITY];
        for _ in 0..LOG_CAPACITY {
            t.on_slot_change(0, 1);
        }
        assert!(matches!(
            t.events_since(0, &mut buf),
            Catchup::Overflow { .. }
        ));
        assert!(matches!(
            t.events_since(3, &mut buf),
            Catchup::Events { count, .. } if count == LOG_CAPACITY
        ));
    }

    #[test]
    fn flooded_frame_is_untracked_and_retrack_resets() {
        let t = WriteTracker::new();
        t.track(9);
        for _ in 0..FLOOD_THRESHOLD - 1 {
            assert!(t.on_guest_write(0x9000, 8));
        }
        t.track(9);
        for _ in 0..FLOOD_THRESHOLD - 1 {
            assert!(t.on_guest_write(0x9000, 8));
        }
        assert!(t.is_tracked(9), "re-track reset the flood counter");
        assert!(t.on_guest_write(0x9000, 8));
        assert!(!t.is_tracked(9));
        assert!(!t.on_guest_write(0x9000, 8));
        assert!(t.track(9), "tracking again is new");
    }

    #[test]
    fn untrack_logs_whole_frame() {
        let t = WriteTracker::new();
        t.track(3);
        t.untrack(3);
        t.untrack(3);
        assert_eq!(t.generation(), 1);
        let mut buf = [TrackEvent::Write { start: 0, end: 0 }; 1];
        t.events_since(0, &mut buf);
        assert_eq!(buf[0].range(), (0x3000, 0x4000));
        assert_eq!(t.tracked_count(), 0);
    }

    #[test]
    fn writes_from_other_threads_are_seen() {
        let t = Arc::new(WriteTracker::new());
        for g in 0..64 {
            t.track(g);
        }
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for k in 0..16u64 {
                        assert!(t.on_guest_write(((i * 16 + k) << 12) + 8, 8));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("writer thread");
        }
        assert_eq!(t.generation(), 64);
    }

    #[test]
    fn overlap_table() {
        let cases = [
            (0x1000, 8, 0x1000, 0x1008, true),
            (0x1000, 8, 0x1008, 0x1010, false),
            (0x1000, 8, 0x0ff8, 0x1000, false),
            (0x1000, 8, 0x0ffc, 0x1001, true),
            (0x1004, 4, 0x1000, 0x1004, false),
            (u64::MAX, 8, 0, u64::MAX, false),
        ];
        for (e, sz, s, en, want) in cases {
            assert_eq!(
                entry_overlaps(e, sz, s, en),
                want,
                "{e:#x}+{sz} vs [{s:#x},{en:#x})"
            );
        }
    }
}
