//! One shadow translation and the reverse map from guest table frames to shadows.

use crate::tlb::Rights;
use crate::track::entry_overlaps;
use crate::walk::Translation;
use std::collections::{HashMap, HashSet};

/// Owner id of the global shadows (root ids start at 1).
pub(crate) const GLOBAL_OWNER: u64 = 0;

/// A shadow: the walk of one 4-KiB linear page, the rights it was made under,
/// and the access classes the walk allowed (see [`crate::tlb`] for the scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShadowEntry {
    /// The walk (its `gpa` is for some byte of this 4-KiB page).
    pub tr: Translation,
    /// Rights signature at install time.
    pub rights: Rights,
    /// Access classes already allowed.
    pub allowed: u16,
    /// Size of a paging-structure entry (4 in 32-bit paging, else 8).
    pub entry_size: u8,
}

impl ShadowEntry {
    /// Guest-physical address of the 4-KiB page.
    pub fn page(&self) -> u64 {
        self.tr.gpa & !0xfff
    }

    /// Whether a paging-structure entry it was built from lies in `[start, end)`.
    pub fn depends_on(&self, start: u64, end: u64) -> bool {
        let size = u64::from(self.entry_size);
        self.tr
            .table_entries
            .iter()
            .any(|&e| entry_overlaps(e, size, start, end))
    }

    /// Whether it maps data in, or was built from tables in, `[start, end)`.
    pub fn touches(&self, start: u64, end: u64) -> bool {
        self.depends_on(start, end)
            || (self.page() < end && self.page().saturating_add(4096) > start)
    }

    /// The distinct table frames it depends on.
    pub fn table_gfns(&self) -> impl Iterator<Item = u64> + '_ {
        let t = &self.tr.table_entries;
        t.iter().enumerate().filter_map(move |(i, &e)| {
            let fresh =
                e != u64::MAX && !t[..i].iter().any(|&p| p != u64::MAX && p >> 12 == e >> 12);
            fresh.then_some(e >> 12)
        })
    }
}

/// Guest table frame → the shadows (owner id, linear page number) built from it.
#[derive(Debug, Default)]
pub(crate) struct Rmap {
    map: HashMap<u64, HashSet<(u64, u64)>>,
}

impl Rmap {
    /// Records that shadow `owner` depends on the tables of `e`.
    pub fn add(&mut self, owner: (u64, u64), e: &ShadowEntry) {
        for g in e.table_gfns() {
            self.map.entry(g).or_default().insert(owner);
        }
    }

    /// Forgets shadow `owner` (built from `e`).
    pub fn remove(&mut self, owner: (u64, u64), e: &ShadowEntry) {
        for g in e.table_gfns() {
            if let Some(set) = self.map.get_mut(&g) {
                set.remove(&owner);
                if set.is_empty() {
                    self.map.remove(&g);
                }
            }
        }
    }

    /// The shadows built from tables in frames `[first, last]`.
    pub fn owners_in(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        if last - first < self.map.len() as u64 {
            (first..=last)
                .filter_map(|g| self.map.get(&g))
                .flatten()
                .copied()
                .collect()
        } else {
            self.map
                .iter()
                .filter(|(g, _)| (first..=last).contains(*g))
                .flat_map(|(_, s)| s.iter().copied())
                .collect()
        }
    }

    /// Number of frames with dependents.
    pub fn frames(&self) -> usize {
        self.map.len()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
