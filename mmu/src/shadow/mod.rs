//! Shadow paging, the 2.6.20 way, for a software engine.
//!
//! A [`ShadowMmu`] (one per vCPU) holds *shadow translations*: guest-linear
//! 4-KiB page → guest-physical page with the permissions the guest's tables
//! grant, built on demand from the guest's own tables by [`walk`]. It stands in
//! for the hardware page tables of a shadow-paging hypervisor:
//!
//! * [`ShadowMmu::lookup`] is the "hardware" translation: a hit needs a shadow
//!   that the walker already allowed for this access class under the same
//!   [`Rights`] (CR0.WP, SMEP, SMAP, EFLAGS.AC, NXE, PKRU, mode), and, for a
//!   write, a dirty guest page — so a clean page's first write faults and the
//!   walk sets D, as 2.6.20 installs clean pages read-only.
//! * A miss is the #PF intercept: [`ShadowMmu::page_fault`] walks the guest's
//!   tables (setting A/D like the CPU) and either installs a shadow
//!   ([`ShadowFault::Fixed`]) or hands back the guest's own #PF with its exact
//!   error code and CR2 ([`ShadowFault::Reflect`]).
//! * Every table frame a shadow was built from is write-tracked in the VM's
//!   [`WriteTracker`], with a reverse map frame → shadows. A guest write (by any
//!   vCPU, reported through [`WriteTracker::on_guest_write`]) drops exactly the
//!   shadows whose paging-structure *entries* lie in the written bytes, before
//!   this vCPU's next lookup; the next access faults and re-walks.
//! * Shadows are kept per address space ([`RootKey`]: top-level table, PCID,
//!   mode) in a bounded LRU cache of roots, so switching CR3 away and back
//!   finds the old shadows again. Keeping them is invisible to the guest because
//!   write-tracking keeps every shadow equal to what a fresh walk would give:
//!   the MOV-to-CR3 flush the SDM prescribes (vol. 3, 4.10.4.1) has nothing left
//!   to remove. This relies on every guest-physical write path reporting to the
//!   tracker, as the 2.6.20 design relies on write protection.
//! * Global translations (G = 1 with CR4.PGE = 1) live in one set shared by all
//!   roots and survive CR3 switches, as global TLB entries do (SDM vol. 3,
//!   4.10.2.4); INVLPG, INVPCID type 2, a CR4.PGE change and writes to their
//!   tables drop them.
//! * [`ShadowMmu::invlpg`] drops one page, [`ShadowMmu::on_slot_change`] drops
//!   the shadows whose data page or tables lie in a changed guest-physical range.
//!
//! Large guest pages are shadowed per 4-KiB page (each shadow records the same
//! paging-structure entries, so a write to the PDE drops all of them).

mod entry;
mod roots;
#[cfg(test)]
pub(crate) mod testpt;
#[cfg(test)]
mod tests;

pub use roots::RootKey;

use crate::access::{Access, AccessKind};
use crate::context::{PagingContext, CR4_PCIDE, CR4_PGE, CR4_PSE, CR4_SMEP, EFER_NXE};
use crate::fault::{PageFault, PfErrorCode, WalkError};
use crate::phys::{PhysError, PhysMemory};
use crate::tlb::{access_class, entry_size, InvpcidKind, Rights};
use crate::track::{Catchup, TrackEvent, WriteTracker, LOG_CAPACITY};
use crate::walk::{walk, AdUpdate, Translation};
use entry::{Rmap, ShadowEntry, GLOBAL_OWNER};
use roots::Root;
use std::collections::HashMap;
use std::sync::Arc;

/// Default bound on cached roots per vCPU.
pub const DEFAULT_MAX_ROOTS: usize = 8;

/// The outcome of [`ShadowMmu::page_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowFault {
    /// The guest's tables allow the access; a shadow is installed (or, if a
    /// table changed during the fill, the walk is valid for this access only).
    /// `gpa` is the byte at the faulting linear address.
    Fixed(Translation),
    /// The guest's tables refuse: inject #PF with this error code and CR2.
    Reflect(PageFault),
    /// A paging-structure read was not backed by memory (MMIO) or faulted at the
    /// second level; the caller decides (the SDM leaves bus reads undefined).
    Phys(PhysError),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShadowStats {
    /// Lookups that hit a shadow.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Shadows installed.
    pub installs: u64,
    /// Faults reflected to the guest.
    pub reflected: u64,
    /// Shadows dropped because the guest wrote one of their tables.
    pub write_drops: u64,
    /// Roots evicted from the cache.
    pub root_evictions: u64,
}

/// The access a #PF error code describes (W/R → write, I/D → fetch, U/S → CPL 3).
/// The error code does not say whether a supervisor access was implicit.
/// SDM vol. 3, 4.7 "Page-Fault Exceptions".
pub fn access_from_error_code(ec: PfErrorCode) -> Access {
    let kind = if ec.contains(PfErrorCode::FETCH) {
        AccessKind::Execute
    } else if ec.contains(PfErrorCode::WRITE) {
        AccessKind::Write
    } else {
        AccessKind::Read
    };
    Access::new(kind, if ec.contains(PfErrorCode::USER) { 3 } else { 0 })
}

/// One vCPU's shadow page tables.
#[derive(Debug)]
pub struct ShadowMmu {
    tracker: Arc<WriteTracker>,
    seen: u64,
    roots: Vec<Root>,
    max_roots: usize,
    globals: HashMap<u64, ShadowEntry>,
    rmap: Rmap,
    next_id: u64,
    clock: u64,
    stats: ShadowStats,
}

impl ShadowMmu {
    /// An empty shadow MMU following the VM's `tracker`, caching up to
    /// `max_roots` address spaces (at least 1).
    pub fn new(tracker: Arc<WriteTracker>, max_roots: usize) -> Self {
        let seen = tracker.generation();
        Self {
            tracker,
            seen,
            roots: Vec::new(),
            max_roots: max_roots.max(1),
            globals: HashMap::new(),
            rmap: Rmap::default(),
            next_id: GLOBAL_OWNER + 1,
            clock: 0,
            stats: ShadowStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ShadowStats {
        self.stats
    }

    /// Number of shadows (all roots plus globals).
    pub fn shadow_count(&self) -> usize {
        self.globals.len() + self.roots.iter().map(|r| r.entries.len()).sum::<usize>()
    }

    /// Number of cached roots.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// Number of guest frames with dependent shadows.
    pub fn tracked_frames(&self) -> usize {
        self.rmap.frames()
    }

    /// Whether `linear` has a shadow (in the root of `ctx` or global), whatever
    /// its permissions. Applies pending tracker events first.
    pub fn is_shadowed(&mut self, ctx: &PagingContext, linear: u64) -> bool {
        self.sync();
        let vpn = linear >> 12;
        self.find_root(ctx)
            .is_some_and(|i| self.roots[i].entries.contains_key(&vpn))
            || self.globals.contains_key(&vpn)
    }

    fn find_root(&self, ctx: &PagingContext) -> Option<usize> {
        let key = RootKey::of(ctx);
        self.roots.iter().position(|r| r.key == key)
    }

    /// The root for `ctx`, created (evicting the least recently used) if needed.
    fn use_root(&mut self, ctx: &PagingContext) -> usize {
        self.clock += 1;
        if let Some(i) = self.find_root(ctx) {
            self.roots[i].last_used = self.clock;
            return i;
        }
        if self.roots.len() >= self.max_roots {
            if let Some(lru) = (0..self.roots.len()).min_by_key(|&i| self.roots[i].last_used) {
                self.drop_root(lru);
                self.stats.root_evictions += 1;
            }
        }
        self.roots.push(Root {
            id: self.next_id,
            key: RootKey::of(ctx),
            entries: HashMap::new(),
            last_used: self.clock,
        });
        self.next_id += 1;
        self.roots.len() - 1
    }

    fn drop_root(&mut self, i: usize) {
        let root = self.roots.swap_remove(i);
        for (vpn, e) in &root.entries {
            self.rmap.remove((root.id, *vpn), e);
        }
    }

    fn owner_map(&mut self, id: u64) -> Option<&mut HashMap<u64, ShadowEntry>> {
        if id == GLOBAL_OWNER {
            Some(&mut self.globals)
        } else {
            self.roots
                .iter_mut()
                .find(|r| r.id == id)
                .map(|r| &mut r.entries)
        }
    }

    fn remove(&mut self, owner: (u64, u64)) -> bool {
        let removed = self.owner_map(owner.0).and_then(|m| m.remove(&owner.1));
        if let Some(e) = removed {
            self.rmap.remove(owner, &e);
        }
        removed.is_some()
    }

    /// Removes the shadows for which `drop` says so, in every root and the globals.
    fn remove_where(&mut self, mut drop: impl FnMut(u64, &ShadowEntry) -> bool) {
        let mut owners = Vec::new();
        for r in &self.roots {
            owners.extend(
                r.entries
                    .iter()
                    .filter(|(_, e)| drop(r.id, e))
                    .map(|(v, _)| (r.id, *v)),
            );
        }
        owners.extend(
            self.globals
                .iter()
                .filter(|(_, e)| drop(GLOBAL_OWNER, e))
                .map(|(v, _)| (GLOBAL_OWNER, *v)),
        );
        for o in owners {
            self.remove(o);
        }
    }

    fn sync(&mut self) {
        if self.tracker.generation() != self.seen {
            self.sync_slow();
        }
    }

    #[cold]
    fn sync_slow(&mut self) {
        let mut buf = [TrackEvent::Write { start: 0, end: 0 }; LOG_CAPACITY];
        match self.tracker.events_since(self.seen, &mut buf) {
            Catchup::Overflow { upto } => {
                self.flush_all();
                self.seen = upto;
            }
            Catchup::Events { count, upto } => {
                for ev in &buf[..count] {
                    self.apply_event(ev);
                }
                self.seen = upto;
            }
        }
    }

    fn apply_event(&mut self, ev: &TrackEvent) {
        match *ev {
            TrackEvent::Write { start, end } if end > start => {
                for owner in self.rmap.owners_in(start >> 12, (end - 1) >> 12) {
                    let hit = self
                        .owner_map(owner.0)
                        .and_then(|m| m.get(&owner.1))
                        .is_some_and(|e| e.depends_on(start, end));
                    if hit && self.remove(owner) {
                        self.stats.write_drops += 1;
                    }
                }
            }
            TrackEvent::Write { .. } => {}
            TrackEvent::SlotChange { start, end } => {
                self.remove_where(|_, e| e.touches(start, end));
            }
        }
    }

    /// The shadow translation of `linear` for `access` under `ctx`, if one
    /// allows it; `None` means "page fault": call [`ShadowMmu::page_fault`].
    pub fn lookup(
        &mut self,
        ctx: &PagingContext,
        linear: u64,
        access: Access,
    ) -> Option<Translation> {
        self.sync();
        let vpn = linear >> 12;
        let e = self
            .find_root(ctx)
            .and_then(|i| self.roots[i].entries.get(&vpn))
            .or_else(|| self.globals.get(&vpn));
        let hit = e.filter(|e| {
            e.rights == Rights::of(ctx)
                && e.allowed & access_class(access) != 0
                && (access.kind != AccessKind::Write || e.tr.dirty)
        });
        match hit {
            Some(e) => {
                self.stats.hits += 1;
                Some(Translation {
                    gpa: e.page() | (linear & 0xfff),
                    ..e.tr
                })
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// The #PF intercept for `linear` and `access` under `ctx`: walks the guest's
    /// tables and installs a shadow, or returns the guest's #PF.
    pub fn page_fault<M: PhysMemory + ?Sized>(
        &mut self,
        mem: &M,
        ctx: &PagingContext,
        linear: u64,
        access: Access,
    ) -> ShadowFault {
        self.sync();
        let root = self.use_root(ctx);
        let mut retried = false;
        loop {
            let token = self.tracker.generation();
            match walk(mem, ctx, linear, access, AdUpdate::Set) {
                Ok(t) => {
                    // A refused first install means a table frame was newly
                    // tracked; the second walk is made after tracking.
                    if self.install(token, root, ctx, linear, access, &t) || retried {
                        return ShadowFault::Fixed(t);
                    }
                    retried = true;
                }
                Err(WalkError::PageFault(pf)) => {
                    // SDM vol. 3, 4.10.4.1: a page fault invalidates the entries
                    // for the faulting page (current PCID, and we drop globals too).
                    let vpn = linear >> 12;
                    let id = self.roots[root].id;
                    self.remove((id, vpn));
                    self.remove((GLOBAL_OWNER, vpn));
                    self.stats.reflected += 1;
                    return ShadowFault::Reflect(pf);
                }
                Err(WalkError::Phys(e)) => return ShadowFault::Phys(e),
            }
        }
    }

    fn install(
        &mut self,
        token: u64,
        root: usize,
        ctx: &PagingContext,
        linear: u64,
        access: Access,
        t: &Translation,
    ) -> bool {
        if self.tracker.track_entries(&t.table_entries) || token < self.seen {
            return false;
        }
        let vpn = linear >> 12;
        let mut new = ShadowEntry {
            tr: *t,
            rights: Rights::of(ctx),
            allowed: access_class(access),
            entry_size: entry_size(ctx.mode()),
        };
        let owner_id = if t.global {
            GLOBAL_OWNER
        } else {
            self.roots[root].id
        };
        if t.global {
            // The root's own shadow would hide the global one.
            let id = self.roots[root].id;
            self.remove((id, vpn));
        }
        let owner = (owner_id, vpn);
        let old = self.owner_map(owner_id).and_then(|m| m.remove(&vpn));
        if let Some(old) = old {
            let same = old.rights == new.rights
                && Translation {
                    gpa: old.page(),
                    dirty: false,
                    ..old.tr
                } == Translation {
                    gpa: new.page(),
                    dirty: false,
                    ..new.tr
                };
            if same {
                new.allowed |= old.allowed;
            }
            self.rmap.remove(owner, &old);
        }
        self.rmap.add(owner, &new);
        if let Some(m) = self.owner_map(owner_id) {
            m.insert(vpn, new);
        }
        self.stats.installs += 1;
        true
    }

    /// MOV to CR3 (or a task switch): makes the root of `new` current, creating
    /// it if needed. Shadows of other roots and global shadows are kept (they are
    /// write-tracked, see the module docs), so bit 63 of the source needs no
    /// special handling.
    pub fn mov_cr3(&mut self, new: &PagingContext) {
        self.sync();
        self.use_root(new);
    }

    /// Applies a change of CR0/CR4/EFER/CR3 from `old` to `new` (SDM vol. 3,
    /// 4.10.4.1, with the same extra flushes as [`crate::tlb::Tlb::on_cr_write`]):
    /// a paging-mode, CR4.PGE, CR4.PSE or EFER.NXE change or CR4.PCIDE 1 → 0 drops
    /// everything; CR4.SMEP 0 → 1 drops the current PCID's shadows; a CR3 change
    /// switches roots. Rights changes (CR0.WP, SMAP, AC, PKRU) need nothing:
    /// shadows made under other rights miss.
    pub fn on_cr_write(&mut self, old: &PagingContext, new: &PagingContext) {
        let changed = |a: u64, b: u64, bit: u64| (a ^ b) & bit != 0;
        if old.mode() != new.mode()
            || changed(old.cr4, new.cr4, CR4_PGE)
            || (old.cr4 & CR4_PCIDE != 0 && new.cr4 & CR4_PCIDE == 0)
            || changed(old.cr4, new.cr4, CR4_PSE)
            || changed(old.efer, new.efer, EFER_NXE)
        {
            self.flush_all();
        } else if old.cr4 & CR4_SMEP == 0 && new.cr4 & CR4_SMEP != 0 {
            let pcid = old.pcid();
            self.drop_roots_of(Some(pcid));
        }
        if old.cr3 != new.cr3 {
            self.mov_cr3(new);
        }
    }

    fn drop_roots_of(&mut self, pcid: Option<u16>) {
        let ids: Vec<u64> = self
            .roots
            .iter()
            .filter(|r| pcid.is_none_or(|p| r.key.pcid == p))
            .map(|r| r.id)
            .collect();
        self.remove_where(|id, _| ids.contains(&id));
    }

    /// INVLPG `linear`: drops its shadow in the current root and its global
    /// shadow (SDM vol. 3, 4.10.4.1).
    pub fn invlpg(&mut self, ctx: &PagingContext, linear: u64) {
        self.sync();
        let vpn = linear >> 12;
        if let Some(i) = self.find_root(ctx) {
            let id = self.roots[i].id;
            self.remove((id, vpn));
        }
        self.remove((GLOBAL_OWNER, vpn));
    }

    /// INVPCID of `kind` for `pcid` (and `linear` for type 0), over every cached
    /// root with that PCID (SDM vol. 3, 4.10.4.1).
    pub fn invpcid(&mut self, kind: InvpcidKind, pcid: u16, linear: u64) {
        self.sync();
        match kind {
            InvpcidKind::IndividualAddress => {
                let vpn = linear >> 12;
                let ids: Vec<u64> = self
                    .roots
                    .iter()
                    .filter(|r| r.key.pcid == pcid)
                    .map(|r| r.id)
                    .collect();
                for id in ids {
                    self.remove((id, vpn));
                }
            }
            InvpcidKind::SingleContext => self.drop_roots_of(Some(pcid)),
            InvpcidKind::AllContextsInclGlobal => self.flush_all(),
            InvpcidKind::AllContexts => self.drop_roots_of(None),
        }
    }

    /// Drops the shadows whose data page or paging structures lie in
    /// `[gpa, gpa+len)` on this vCPU (a memory slot changed). To reach every
    /// vCPU, report it to [`WriteTracker::on_slot_change`] instead.
    pub fn on_slot_change(&mut self, gpa: u64, len: u64) {
        self.sync();
        self.apply_event(&TrackEvent::SlotChange {
            start: gpa,
            end: gpa.saturating_add(len),
        });
    }

    /// Drops every shadow and every root.
    pub fn flush_all(&mut self) {
        self.roots.clear();
        self.globals.clear();
        self.rmap.clear();
    }
}
