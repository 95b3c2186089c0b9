//! Dirty-page logging per memory slot: one bit per 4-KiB page, set from any
//! thread by every path that writes guest memory (the emulator calls
//! [`DirtyLog::mark`]; second-level dirty flags are folded in with
//! [`DirtyLog::harvest`]), fetched and cleared by the host.

use crate::nested::{TdpError, TdpMmu};
use std::sync::atomic::{AtomicU64, Ordering};

const PAGE: u64 = 4096;

/// Why a slot cannot be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirtyError {
    /// Size zero, unaligned, or wrapping.
    #[error("dirty log for slot {0}: range must be non-empty, 4-KiB aligned and not wrap")]
    BadRange(u32),
    /// Overlaps or reuses the id of a logged slot.
    #[error("dirty log for slot {id} overlaps or reuses slot {other}")]
    Overlap {
        /// New slot.
        id: u32,
        /// Logged slot.
        other: u32,
    },
}

struct SlotLog {
    id: u32,
    gpa: u64,
    pages: u64,
    bits: Vec<AtomicU64>,
}

impl SlotLog {
    fn end(&self) -> u64 {
        self.gpa + self.pages * PAGE
    }
}

/// The dirty bitmaps of the logged slots. Slots are added and removed with
/// the VM paused (`&mut self`); marking and fetching work through `&self`
/// from any thread.
#[derive(Default)]
pub struct DirtyLog {
    slots: Vec<SlotLog>, // sorted by gpa
}

impl DirtyLog {
    /// No slots logged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts logging slot `id` covering `[gpa, gpa+size)`, all pages clean.
    pub fn add_slot(&mut self, id: u32, gpa: u64, size: u64) -> Result<(), DirtyError> {
        if size == 0 || (gpa | size) & (PAGE - 1) != 0 || gpa.checked_add(size).is_none() {
            return Err(DirtyError::BadRange(id));
        }
        if let Some(o) = self
            .slots
            .iter()
            .find(|o| o.id == id || (gpa < o.end() && o.gpa < gpa + size))
        {
            return Err(DirtyError::Overlap { id, other: o.id });
        }
        let pages = size / PAGE;
        let words = pages.div_ceil(64) as usize;
        let log = SlotLog {
            id,
            gpa,
            pages,
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        };
        let at = self.slots.partition_point(|s| s.gpa < gpa);
        self.slots.insert(at, log);
        Ok(())
    }

    /// Stops logging slot `id`; returns whether it was logged.
    pub fn remove_slot(&mut self, id: u32) -> bool {
        let before = self.slots.len();
        self.slots.retain(|s| s.id != id);
        self.slots.len() != before
    }

    /// Marks every page touched by `[gpa, gpa+len)` dirty in the logged
    /// slots it falls in (pages outside them are ignored).
    pub fn mark(&self, gpa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = gpa.saturating_add(len);
        let first = self.slots.partition_point(|s| s.end() <= gpa);
        for s in self.slots[first..].iter().take_while(|s| s.gpa < end) {
            let lo = (gpa.max(s.gpa) - s.gpa) / PAGE;
            let hi = (end.min(s.end()) - s.gpa).div_ceil(PAGE);
            for page in lo..hi {
                s.bits[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::Relaxed);
            }
        }
    }

    /// Whether the page holding `gpa` is marked dirty.
    pub fn is_dirty(&self, gpa: u64) -> bool {
        self.slots
            .iter()
            .find(|s| gpa >= s.gpa && gpa < s.end())
            .is_some_and(|s| {
                let page = (gpa - s.gpa) / PAGE;
                s.bits[(page / 64) as usize].load(Ordering::Relaxed) & (1 << (page % 64)) != 0
            })
    }

    /// Returns slot `id`'s bitmap (bit `n` of word `n / 64` = page `n`) and
    /// clears it atomically word by word; `None` if the slot is not logged.
    pub fn fetch_and_clear(&self, id: u32) -> Option<Vec<u64>> {
        let s = self.slots.iter().find(|s| s.id == id)?;
        Some(s.bits.iter().map(|w| w.swap(0, Ordering::AcqRel)).collect())
    }

    /// Number of pages of slot `id`, if logged.
    pub fn pages(&self, id: u32) -> Option<u64> {
        self.slots.iter().find(|s| s.id == id).map(|s| s.pages)
    }

    /// Moves the second level's dirty flags into the bitmaps (clearing them
    /// in the tables); returns how many leaves were dirty. Flush hardware
    /// TLBs afterwards so later writes set the flags again.
    pub fn harvest(&self, tdp: &TdpMmu) -> Result<usize, TdpError> {
        tdp.harvest_dirty(|gpa, len| self.mark(gpa, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AccessKind;
    use crate::nested::{GpaAccess, SlotRange};

    #[test]
    fn bad_ranges_and_overlaps_are_refused() {
        let mut log = DirtyLog::new();
        let cases = [
            (1, 0, 0, Err(DirtyError::BadRange(1))),
            (1, 0x800, 0x1000, Err(DirtyError::BadRange(1))),
            (1, u64::MAX - 0xfff, 0x2000, Err(DirtyError::BadRange(1))),
            (1, 0x10000, 0x10000, Ok(())),
            (
                2,
                0x18000,
                0x1000,
                Err(DirtyError::Overlap { id: 2, other: 1 }),
            ),
            (
                1,
                0x100000,
                0x1000,
                Err(DirtyError::Overlap { id: 1, other: 1 }),
            ),
            (2, 0x20000, 0x1000, Ok(())),
        ];
        for (id, gpa, size, want) in cases {
            assert_eq!(log.add_slot(id, gpa, size), want, "{id} {gpa:#x} {size:#x}");
        }
        assert!(log.remove_slot(2));
        assert!(!log.remove_slot(2));
        assert_eq!(log.fetch_and_clear(2), None);
    }

    #[test]
    fn mark_fetch_clear() {
        let mut log = DirtyLog::new();
        log.add_slot(7, 0x10_0000, 100 * PAGE).unwrap();
        log.add_slot(8, 0x20_0000, 2 * PAGE).unwrap();
        // (gpa, len, pages of slot 7 expected dirty)
        let cases: [(u64, u64, &[u64]); 6] = [
            (0x10_0000, 1, &[0]),
            (0x10_0fff, 2, &[0, 1]),
            (0x10_0000 + 63 * PAGE, 2 * PAGE + 1, &[63, 64, 65]),
            (0x0f_f000, 0x2000, &[0]),
            (0x10_0000 + 99 * PAGE, 0x10_0000, &[99]),
            (0x30_0000, 0x1000, &[]),
        ];
        for (gpa, len, want) in cases {
            log.mark(gpa, len);
            let bits = log.fetch_and_clear(7).unwrap();
            let got: Vec<u64> = (0..100)
                .filter(|p| bits[p / 64] >> (p % 64) & 1 != 0)
                .map(|p| p as u64)
                .collect();
            assert_eq!(got, want, "mark({gpa:#x}, {len:#x})");
            assert!(
                log.fetch_and_clear(7).unwrap().iter().all(|&w| w == 0),
                "cleared"
            );
        }
        // The 1-MiB mark at page 99 ran on into slot 8 and dirtied both its pages.
        assert_eq!(log.fetch_and_clear(8), Some(vec![0b11]));
        log.mark(0x20_1000, 8);
        assert!(log.is_dirty(0x20_1800));
        assert!(!log.is_dirty(0x20_0000));
        assert_eq!(log.fetch_and_clear(8), Some(vec![0b10]));
        assert_eq!(log.pages(7), Some(100));
    }

    #[test]
    fn marks_from_many_threads_all_land() {
        let mut log = DirtyLog::new();
        log.add_slot(1, 0, 256 * PAGE).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let log = &log;
                s.spawn(move || {
                    for p in (t..256).step_by(4) {
                        log.mark(p * PAGE, 1);
                    }
                });
            }
        });
        assert_eq!(log.fetch_and_clear(1), Some(vec![u64::MAX; 4]));
    }

    #[test]
    fn harvests_second_level_dirty_flags() {
        for ept in [true, false] {
            let mut tdp = if ept {
                TdpMmu::new_ept(4, true, 46).unwrap()
            } else {
                TdpMmu::new_npt(4, true, 46).unwrap()
            };
            tdp.add_slot(SlotRange {
                id: 3,
                gpa: 0,
                size: 8 << 20,
                host_base: 0x4000_0000,
                read_only: false,
            })
            .unwrap();
            tdp.set_large_pages(false);
            let mut log = DirtyLog::new();
            log.add_slot(3, 0, 8 << 20).unwrap();
            for (gpa, kind) in [
                (0x5000, AccessKind::Write),
                (0x9000, AccessKind::Read),
                (0x3f_f000, AccessKind::Write),
            ] {
                let access = GpaAccess::physical(kind);
                assert!(tdp.translate(gpa, access).is_err());
                tdp.handle_fault(gpa, 4, kind == AccessKind::Write).unwrap();
                tdp.translate(gpa, access).unwrap();
            }
            assert_eq!(log.harvest(&tdp).unwrap(), 2, "ept={ept}");
            let bits = log.fetch_and_clear(3).unwrap();
            let mut want = vec![0u64; 32];
            want[0] = 1 << 5;
            want[15] = 1 << 63;
            assert_eq!(bits, want, "ept={ept}");
            assert_eq!(log.harvest(&tdp).unwrap(), 0, "flags were cleared");
            // A 2-MiB leaf dirties all 512 pages.
            tdp.set_large_pages(true);
            tdp.handle_fault(0x40_0000, 8, true).unwrap();
            let t = tdp
                .translate(0x40_1234, GpaAccess::physical(AccessKind::Write))
                .unwrap();
            assert_eq!((t.page_size, t.hpa), (2 << 20, 0x4040_1234));
            assert_eq!(log.harvest(&tdp).unwrap(), 1);
            let bits = log.fetch_and_clear(3).unwrap();
            assert_eq!(&bits[16..24], &[u64::MAX; 8], "ept={ept}");
            assert!(bits[..16].iter().chain(&bits[24..]).all(|&w| w == 0));
        }
    }
}
