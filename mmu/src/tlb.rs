//! A per-vCPU software TLB: linear page → guest-physical page (plus a host
//! cookie), so that a repeated access costs one set lookup instead of a walk.
//!
//! Design:
//!
//! * **Shape.** [`TLB_SETS`] × [`TLB_WAYS`] set-associative array, allocated once
//!   in [`Tlb::new`]; the set is chosen by the low bits of the linear page number,
//!   replacement is round-robin within the set. Nothing allocates on a lookup.
//! * **Key.** (linear page number, PCID) — a global entry matches under every
//!   PCID (SDM vol. 3, 4.10.2.4 "Global Pages"). Large pages are cached per 4-KiB
//!   page: a 2-MiB page fills up to 512 entries, each depending on the same
//!   paging-structure entries.
//! * **Permissions.** An entry does not re-derive access rights: it remembers
//!   the [`Rights`] signature (paging mode, CR4.PSE, CR0.WP, CR4.SMEP/SMAP/PKE,
//!   EFLAGS.AC, EFER.NXE and PKRU) it was filled under, and a bit mask of the
//!   [access classes](access_class) (kind × CPL 3 or not × implicit) that the
//!   walker already allowed under it. A hit needs the same signature and the
//!   class bit; anything else falls to the walker, which then adds the class
//!   (or reports the fault). So a hit can never allow what a walk would refuse,
//!   and the rights rules live only in the walker (SDM vol. 3, 4.6).
//! * **Dirty.** A write hits only when the entry's D bit was set when it was
//!   filled; otherwise the write goes to the walker, which sets D (SDM vol. 3,
//!   4.8 "Accessed and Dirty Flags").
//! * **Staleness.** Each entry stores the guest-physical addresses of the
//!   paging-structure entries it was built from. Its tables are registered with
//!   the VM's [`WriteTracker`]; a write by any vCPU bumps the tracker's
//!   generation, and the next lookup on every vCPU first drops the entries whose
//!   table entries were written (see [`crate::track`] for the fill protocol).
//! * **Flushes** follow SDM vol. 3, 4.10.4.1 "Operations that Invalidate TLBs and
//!   Paging-Structure Caches": [`Tlb::invlpg`], [`Tlb::invpcid`], [`Tlb::mov_cr3`],
//!   [`Tlb::on_cr_write`] (CR0/CR4/EFER changes), plus a page fault invalidating
//!   the faulting page. Where the SDM allows it ("the processor is always free to
//!   invalidate additional entries") we flush more: any paging-mode, CR4.PSE or
//!   EFER.NXE change flushes everything.

use crate::access::{Access, AccessKind};
use crate::context::{
    PagingContext, PagingMode, CR0_WP, CR4_PCIDE, CR4_PGE, CR4_PKE, CR4_PSE, CR4_SMAP, CR4_SMEP,
    EFER_NXE,
};
use crate::fault::WalkError;
use crate::phys::PhysMemory;
use crate::track::{entry_overlaps, Catchup, TrackEvent, WriteTracker, LOG_CAPACITY};
use crate::walk::{walk, AdUpdate, Translation};
use std::sync::Arc;

#[cfg(test)]
mod tests;

/// Number of sets (a power of two).
pub const TLB_SETS: usize = 256;
/// Entries per set.
pub const TLB_WAYS: usize = 4;

/// The access-rights state a cached permission depends on.
///
/// SDM vol. 3, 4.6 "Access Rights" (CR0.WP, CR4.SMEP, CR4.SMAP, EFLAGS.AC),
/// 4.6.2 "Protection Keys" (CR4.PKE, PKRU), 4.1.1 (the paging mode, CR4.PSE),
/// and EFER.NXE (4.6: execute-disable only with NXE = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights {
    bits: u16,
    pkru: u32,
}

impl Rights {
    /// The signature of `ctx`.
    pub fn of(ctx: &PagingContext) -> Self {
        let mode = match ctx.mode() {
            PagingMode::None => 0,
            PagingMode::Bits32 => 1,
            PagingMode::Pae => 2,
            PagingMode::Level4 => 3,
            PagingMode::Level5 => 4,
        };
        let flag = |cond: bool, bit: u16| if cond { bit } else { 0 };
        let pke = ctx.cr4 & CR4_PKE != 0;
        Self {
            bits: mode
                | flag(ctx.cr0 & CR0_WP != 0, 1 << 3)
                | flag(ctx.cr4 & CR4_SMEP != 0, 1 << 4)
                | flag(ctx.cr4 & CR4_SMAP != 0, 1 << 5)
                | flag(ctx.rflags_ac, 1 << 6)
                | flag(ctx.efer & EFER_NXE != 0, 1 << 7)
                | flag(pke, 1 << 8)
                | flag(ctx.cr4 & CR4_PSE != 0, 1 << 9),
            pkru: if pke { ctx.pkru } else { 0 },
        }
    }
}

/// The bit for `access` in an "already allowed" mask: one class per access kind
/// × (CPL = 3) × implicit-supervisor, the inputs the walker's rights check uses.
pub fn access_class(access: Access) -> u16 {
    let kind = match access.kind {
        AccessKind::Read => 0,
        AccessKind::Write => 1,
        AccessKind::Execute => 2,
    };
    let idx = kind * 4 + usize::from(access.cpl == 3) * 2 + usize::from(access.implicit_supervisor);
    1 << idx
}

/// The INVPCID type operand (SDM vol. 3, 4.10.4.1; INVPCID in vol. 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvpcidKind {
    /// Type 0: one linear address in one PCID, except global translations.
    IndividualAddress,
    /// Type 1: everything of one PCID except global translations.
    SingleContext,
    /// Type 2: everything, including global translations.
    AllContextsInclGlobal,
    /// Type 3: everything except global translations.
    AllContexts,
}

/// An INVPCID type above 3 (the instruction raises #GP(0)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid INVPCID type {0} (only 0-3 are defined)")]
pub struct InvalidInvpcidType(pub u64);

impl TryFrom<u64> for InvpcidKind {
    type Error = InvalidInvpcidType;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        match v {
            0 => Ok(Self::IndividualAddress),
            1 => Ok(Self::SingleContext),
            2 => Ok(Self::AllContextsInclGlobal),
            3 => Ok(Self::AllContexts),
            _ => Err(InvalidInvpcidType(v)),
        }
    }
}

/// CR3 bit 63 in a MOV to CR3 source with CR4.PCIDE = 1: do not invalidate
/// (SDM vol. 3, 4.10.4.1).
pub const CR3_NOFLUSH: u64 = 1 << 63;

/// What a TLB hit gives the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlbHit {
    /// Guest-physical address of the byte at the looked-up linear address.
    pub gpa: u64,
    /// The caller's cookie for the 4-KiB guest page (e.g. a host address), as filled.
    pub host: u64,
}

/// A read-only view of one valid entry (for diagnostics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlbEntryView {
    /// Linear address of the 4-KiB page.
    pub linear: u64,
    /// PCID it was filled under.
    pub pcid: u16,
    /// Global translation.
    pub global: bool,
    /// Guest-physical address of the 4-KiB page.
    pub gpa: u64,
    /// Host cookie.
    pub host: u64,
}

/// Hit/miss counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlbStats {
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries filled.
    pub fills: u64,
    /// Valid entries replaced to make room.
    pub evictions: u64,
    /// Full flushes because the tracker log overflowed.
    pub overflows: u64,
}

/// The generation of the VM's tracker read before a walk; see [`Tlb::fill_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillToken(u64);

const INVALID: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    vpn: u64,
    pcid: u16,
    global: bool,
    dirty: bool,
    allowed: u16,
    rights: Rights,
    page: u64,
    host: u64,
    tables: [u64; 5],
    entry_size: u8,
}

const EMPTY: Entry = Entry {
    vpn: INVALID,
    pcid: 0,
    global: false,
    dirty: false,
    allowed: 0,
    rights: Rights { bits: 0, pkru: 0 },
    page: 0,
    host: 0,
    tables: [INVALID; 5],
    entry_size: 8,
};

#[derive(Debug, Clone, Copy)]
struct Set {
    ways: [Entry; TLB_WAYS],
    next: u8,
}

/// One vCPU's software TLB.
pub struct Tlb {
    sets: Box<[Set]>,
    tracker: Arc<WriteTracker>,
    seen: u64,
    stats: TlbStats,
}

impl std::fmt::Debug for Tlb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tlb")
            .field("valid", &self.len())
            .field("seen", &self.seen)
            .field("stats", &self.stats)
            .finish()
    }
}

fn set_index(vpn: u64) -> usize {
    (vpn as usize) & (TLB_SETS - 1)
}

impl Entry {
    fn matches(&self, vpn: u64, pcid: u16) -> bool {
        self.vpn == vpn && (self.global || self.pcid == pcid)
    }

    fn depends_on(&self, start: u64, end: u64) -> bool {
        let size = u64::from(self.entry_size);
        self.tables
            .iter()
            .any(|&e| entry_overlaps(e, size, start, end))
    }
}

/// Size of one paging-structure entry in `mode` (4 bytes in 32-bit paging).
pub(crate) fn entry_size(mode: PagingMode) -> u8 {
    if mode == PagingMode::Bits32 {
        4
    } else {
        8
    }
}

impl Tlb {
    /// An empty TLB following `tracker` (the VM's shared write tracker).
    pub fn new(tracker: Arc<WriteTracker>) -> Self {
        let seen = tracker.generation();
        Self {
            sets: vec![
                Set {
                    ways: [EMPTY; TLB_WAYS],
                    next: 0
                };
                TLB_SETS
            ]
            .into_boxed_slice(),
            tracker,
            seen,
            stats: TlbStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> TlbStats {
        self.stats
    }

    /// Number of valid entries.
    pub fn len(&self) -> usize {
        self.entries().count()
    }

    /// Whether no entry is valid.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every valid entry.
    pub fn entries(&self) -> impl Iterator<Item = TlbEntryView> + '_ {
        self.sets
            .iter()
            .flat_map(|s| s.ways.iter())
            .filter(|e| e.vpn != INVALID)
            .map(|e| TlbEntryView {
                linear: e.vpn << 12,
                pcid: e.pcid,
                global: e.global,
                gpa: e.page,
                host: e.host,
            })
    }

    /// Applies the tracker events this TLB has not seen yet.
    fn sync(&mut self) {
        if self.tracker.generation() == self.seen {
            return;
        }
        self.sync_slow();
    }

    #[cold]
    fn sync_slow(&mut self) {
        let mut buf = [TrackEvent::Write { start: 0, end: 0 }; LOG_CAPACITY];
        match self.tracker.events_since(self.seen, &mut buf) {
            Catchup::Overflow { upto } => {
                self.stats.overflows += 1;
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
        let (start, end) = ev.range();
        let slot = matches!(ev, TrackEvent::SlotChange { .. });
        self.retain(|e| {
            !(e.depends_on(start, end)
                || (slot && e.page < end && e.page.saturating_add(4096) > start))
        });
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        for e in self.sets.iter_mut().flat_map(|s| s.ways.iter_mut()) {
            if e.vpn != INVALID && !keep(e) {
                *e = EMPTY;
            }
        }
    }

    /// Looks up `linear` for `access` under `ctx`: `Some` only when an entry
    /// filled under the same [`Rights`] already allowed this access class (and,
    /// for a write, the page was dirty).
    #[inline]
    pub fn lookup(&mut self, ctx: &PagingContext, linear: u64, access: Access) -> Option<TlbHit> {
        self.sync();
        let vpn = linear >> 12;
        let pcid = ctx.pcid();
        let set = &self.sets[set_index(vpn)];
        let hit = set
            .ways
            .iter()
            .find(|e| e.matches(vpn, pcid))
            .and_then(|e| {
                let ok = e.rights == Rights::of(ctx)
                    && e.allowed & access_class(access) != 0
                    && (access.kind != AccessKind::Write || e.dirty);
                ok.then_some(TlbHit {
                    gpa: e.page | (linear & 0xfff),
                    host: e.host,
                })
            });
        if hit.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        hit
    }

    /// The tracker generation to read *before* a walk whose result will be
    /// passed to [`Tlb::insert`].
    pub fn fill_token(&self) -> FillToken {
        FillToken(self.tracker.generation())
    }

    /// Caches the result `t` of a successful walk of `linear` for `access` under
    /// `ctx` (walked after `token` was taken; `t.gpa` is the byte at `linear`),
    /// with `host` the caller's cookie for
    /// the 4-KiB guest page. Returns `false` without caching when a table frame
    /// was newly tracked or the token is stale (walk again, see [`crate::track`]).
    pub fn insert(
        &mut self,
        token: FillToken,
        ctx: &PagingContext,
        linear: u64,
        access: Access,
        t: &Translation,
        host: u64,
    ) -> bool {
        if self.tracker.track_entries(&t.table_entries) || token.0 < self.seen {
            return false;
        }
        let vpn = linear >> 12;
        let pcid = ctx.pcid();
        let page = t.gpa & !0xfff;
        let rights = Rights::of(ctx);
        let class = access_class(access);
        let new = Entry {
            vpn,
            pcid,
            global: t.global,
            dirty: t.dirty,
            allowed: class,
            rights,
            page,
            host,
            tables: t.table_entries,
            entry_size: entry_size(ctx.mode()),
        };
        self.stats.fills += 1;
        let set = &mut self.sets[set_index(vpn)];
        if let Some(e) = set.ways.iter_mut().find(|e| e.matches(vpn, pcid)) {
            let same = e.page == page
                && e.rights == rights
                && e.global == t.global
                && e.tables == t.table_entries
                && e.host == host;
            let allowed = if same { e.allowed | class } else { class };
            *e = Entry { allowed, ..new };
            return true;
        }
        let way = match set.ways.iter().position(|e| e.vpn == INVALID) {
            Some(w) => w,
            None => {
                let w = usize::from(set.next) % TLB_WAYS;
                set.next = ((w + 1) % TLB_WAYS) as u8;
                self.stats.evictions += 1;
                w
            }
        };
        set.ways[way] = new;
        true
    }

    /// Looks `linear` up and, on a miss, walks the guest's tables (setting A/D
    /// bits), caches the result and returns it. `host_of` maps a 4-KiB-aligned
    /// guest-physical page to the caller's cookie. A page fault invalidates the
    /// faulting page first (SDM vol. 3, 4.10.4.1, last paragraph on page faults).
    pub fn translate<M: PhysMemory + ?Sized>(
        &mut self,
        mem: &M,
        ctx: &PagingContext,
        linear: u64,
        access: Access,
        mut host_of: impl FnMut(u64) -> u64,
    ) -> Result<TlbHit, WalkError> {
        if let Some(hit) = self.lookup(ctx, linear, access) {
            return Ok(hit);
        }
        let mut retried = false;
        loop {
            let token = self.fill_token();
            let t = match walk(mem, ctx, linear, access, AdUpdate::Set) {
                Ok(t) => t,
                Err(e) => {
                    self.invalidate_page(ctx.pcid(), linear, true);
                    return Err(e);
                }
            };
            let hit = TlbHit {
                gpa: t.gpa,
                host: host_of(t.gpa & !0xfff),
            };
            // A refused first fill means a table frame was newly tracked: the
            // second walk happens after tracking, so it may be cached. If even
            // that is refused, the walk is still valid for this one access.
            if self.insert(token, ctx, linear, access, &t, hit.host) || retried {
                return Ok(hit);
            }
            retried = true;
        }
    }

    fn invalidate_page(&mut self, pcid: u16, linear: u64, globals: bool) {
        let vpn = linear >> 12;
        for e in self.sets[set_index(vpn)].ways.iter_mut() {
            if e.vpn == vpn && ((!e.global && e.pcid == pcid) || (e.global && globals)) {
                *e = EMPTY;
            }
        }
    }

    /// Drops every entry, global or not, of every PCID.
    pub fn flush_all(&mut self) {
        self.retain(|_| false);
    }

    /// Drops the non-global entries of `pcid`.
    pub fn flush_pcid(&mut self, pcid: u16) {
        self.retain(|e| e.global || e.pcid != pcid);
    }

    /// INVLPG `linear`: drops its entries of the current PCID and its global
    /// entries of every PCID (SDM vol. 3, 4.10.4.1).
    pub fn invlpg(&mut self, ctx: &PagingContext, linear: u64) {
        self.invalidate_page(ctx.pcid(), linear, true);
    }

    /// INVPCID of `kind` for `pcid` (and `linear` for type 0) (SDM vol. 3,
    /// 4.10.4.1). Type 0 keeps global translations, as the SDM requires of
    /// nothing but allows.
    pub fn invpcid(&mut self, kind: InvpcidKind, pcid: u16, linear: u64) {
        match kind {
            InvpcidKind::IndividualAddress => self.invalidate_page(pcid, linear, false),
            InvpcidKind::SingleContext => self.flush_pcid(pcid),
            InvpcidKind::AllContextsInclGlobal => self.flush_all(),
            InvpcidKind::AllContexts => self.retain(|e| e.global),
        }
    }

    /// MOV to CR3 (or a task switch loading CR3) with source operand `source`;
    /// `new` is the context after the write. SDM vol. 3, 4.10.4.1: with
    /// CR4.PCIDE = 0 drop the non-global entries of PCID 0; with CR4.PCIDE = 1
    /// drop the non-global entries of the new PCID unless bit 63 is set.
    pub fn mov_cr3(&mut self, new: &PagingContext, source: u64) {
        if new.cr4 & CR4_PCIDE != 0 && source & CR3_NOFLUSH != 0 {
            return;
        }
        self.flush_pcid(new.pcid());
    }

    /// Applies the flushes a change from `old` to `new` requires (MOV to CR0,
    /// CR4, WRMSR to EFER, or a CR3 change; SDM vol. 3, 4.10.4.1):
    ///
    /// * CR4.PGE changes, CR4.PCIDE 1 → 0, CR0.PG 1 → 0: everything, globals too.
    ///   We also flush everything on any paging-mode change (CR0.PG, CR4.PAE,
    ///   EFER.LME, CR4.LA57) and on CR4.PSE or EFER.NXE changes (allowed: "the
    ///   processor is always free to invalidate additional entries").
    /// * CR4.SMEP 0 → 1: all entries of the current PCID.
    /// * CR3 changed: as [`Tlb::mov_cr3`] without bit 63. A MOV to CR3 that
    ///   rewrites the same value must call `mov_cr3` itself.
    /// * CR0.WP, CR4.SMAP/PKE, EFLAGS.AC, PKRU: nothing; entries record the
    ///   [`Rights`] they were filled under and miss under different ones.
    pub fn on_cr_write(&mut self, old: &PagingContext, new: &PagingContext) {
        let changed = |a: u64, b: u64, bit: u64| (a ^ b) & bit != 0;
        if old.mode() != new.mode()
            || changed(old.cr4, new.cr4, CR4_PGE)
            || (old.cr4 & CR4_PCIDE != 0 && new.cr4 & CR4_PCIDE == 0)
            || changed(old.cr4, new.cr4, CR4_PSE)
            || changed(old.efer, new.efer, EFER_NXE)
        {
            self.flush_all();
            return;
        }
        if old.cr4 & CR4_SMEP == 0 && new.cr4 & CR4_SMEP != 0 {
            let pcid = old.pcid();
            self.retain(|e| e.pcid != pcid);
        }
        if old.cr3 != new.cr3 {
            self.flush_pcid(new.pcid());
        }
    }

    /// Drops the entries whose data page or paging structures lie in
    /// `[gpa, gpa+len)` (this vCPU only; use
    /// [`WriteTracker::on_slot_change`] to reach every vCPU).
    pub fn invalidate_gpa_range(&mut self, gpa: u64, len: u64) {
        self.apply_event(&TrackEvent::SlotChange {
            start: gpa,
            end: gpa.saturating_add(len),
        });
    }
}
