//! Accessed/dirty-flag updates (SDM vol. 3, 4.8 "Accessed and Dirty Flags";
//! APM vol. 2, 5.4.2): A in every paging-structure entry used, D in the final
//! entry of a write, each with a locked compare-exchange.

use super::entry::{A, D};
use super::walked::TableWalk;
use crate::phys::{PhysError, PhysMemory};

/// Outcome of one update pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdResult {
    /// Every entry now has the flags it needs; `leaf` is the final entry's new value.
    Done {
        /// The final entry's value after the update.
        leaf: u64,
    },
    /// An entry changed since it was read: the caller must walk again.
    Changed,
}

/// Sets A on entries `first_ad..count` (outermost first, as the walk used them)
/// and D on the final entry when `write`. An entry that already has the flags
/// is not written. If a compare-exchange finds the entry changed, stops and
/// returns [`AdResult::Changed`] (entries before it keep the A flag they got:
/// the processor would have set it on the walk that used them).
pub(crate) fn update<M: PhysMemory + ?Sized>(
    mem: &M,
    w: &TableWalk,
    write: bool,
) -> Result<AdResult, PhysError> {
    let last = w.count.saturating_sub(1);
    let mut leaf = w.leaf();
    for i in w.first_ad..w.count {
        let (Some(&gpa), Some(&old)) = (w.gpas.get(i), w.values.get(i)) else {
            break;
        };
        let want = if i == last && write { A | D } else { A };
        if old & want == want {
            continue;
        }
        let new = old | want;
        let swapped = if w.wide {
            mem.cmpxchg_u64(gpa, old, new)?
        } else {
            mem.cmpxchg_u32(gpa, old as u32, new as u32)?
        };
        if !swapped {
            return Ok(AdResult::Changed);
        }
        if i == last {
            leaf = new;
        }
    }
    Ok(AdResult::Done { leaf })
}
