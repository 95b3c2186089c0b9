//! The raw result of reading the guest's tables for one linear address,
//! before access rights are checked or A/D bits are set.

use super::perm::Rights;
use crate::phys::PhysError;

/// Why reading the tables stopped without a translation (SDM 4.7: no valid translation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkStop {
    /// An entry used for the translation had P = 0 (error code P = 0).
    NotPresent,
    /// A present entry had a reserved bit set (error code P = 1, RSVD = 1).
    Reserved,
    /// A paging-structure entry could not be read.
    Phys(PhysError),
}

impl From<PhysError> for WalkStop {
    fn from(e: PhysError) -> Self {
        WalkStop::Phys(e)
    }
}

/// The paging-structure entries used to translate one linear address
/// (fixed-size, so a walk never allocates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableWalk {
    /// Guest-physical address of each entry read, outermost first.
    pub gpas: [u64; 5],
    /// The value read from each entry (32-bit entries zero-extended).
    pub values: [u64; 5],
    /// How many entries were read (1..=5).
    pub count: usize,
    /// Entries before this index have no accessed flag (the PAE PDPTE, SDM Table 4-8).
    pub first_ad: usize,
    /// 64-bit entries (PAE, 4/5-level) rather than 32-bit ones.
    pub wide: bool,
    /// Guest-physical base of the page.
    pub frame: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Rights combined over every entry (pkey from the final entry when keys apply).
    pub rights: Rights,
    /// The final entry's G flag (before CR4.PGE is considered).
    pub global_bit: bool,
}

impl TableWalk {
    /// An empty walk (no entries yet, full rights).
    pub(crate) const fn new(wide: bool) -> Self {
        TableWalk {
            gpas: [u64::MAX; 5],
            values: [0; 5],
            count: 0,
            first_ad: 0,
            wide,
            frame: 0,
            page_size: 0,
            rights: Rights::ALL,
            global_bit: false,
        }
    }

    /// Records an entry read at `gpa`.
    #[inline]
    pub(crate) fn push(&mut self, gpa: u64, value: u64) {
        if let Some(slot) = self.gpas.get_mut(self.count) {
            *slot = gpa;
        }
        if let Some(slot) = self.values.get_mut(self.count) {
            *slot = value;
        }
        self.count += 1;
    }

    /// The final entry's value.
    pub fn leaf(&self) -> u64 {
        self.count
            .checked_sub(1)
            .and_then(|i| self.values.get(i))
            .copied()
            .unwrap_or(0)
    }
}
