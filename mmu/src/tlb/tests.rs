use super::*;
use crate::context::{CR0_PG, CR0_WP, CR4_PAE, CR4_SMEP, EFER_LMA, EFER_LME};
use crate::track::LOG_CAPACITY;

const NO_TABLES: [u64; 5] = [u64::MAX; 5];
const V: u64 = 0x7f00_1234_5000;
const PCID_A: u16 = 1;
const PCID_B: u16 = 2;

fn ctx(pcide: bool, pcid: u16) -> PagingContext {
    PagingContext {
        cr0: CR0_PG | CR0_WP | 1,
        cr3: 0x10_0000 | u64::from(pcid),
        cr4: CR4_PAE | CR4_PGE | if pcide { CR4_PCIDE } else { 0 },
        efer: EFER_LME | EFER_LMA | EFER_NXE,
        rflags_ac: false,
        pkru: 0,
        maxphyaddr: 52,
    }
}

fn tr(gpa: u64, global: bool, dirty: bool, tables: [u64; 5]) -> Translation {
    Translation {
        gpa,
        page_size: 4096,
        writable: true,
        user: true,
        executable: true,
        global,
        dirty,
        pkey: 0,
        table_entries: tables,
    }
}

const R0: Access = Access::new(AccessKind::Read, 0);
const W0: Access = Access::new(AccessKind::Write, 0);

fn fill(tlb: &mut Tlb, c: &PagingContext, linear: u64, access: Access, t: &Translation) {
    let tok = tlb.fill_token();
    assert!(
        tlb.insert(tok, c, linear, access, t, 0xdead_0000),
        "fill {linear:#x}"
    );
}

fn new_tlb() -> Tlb {
    Tlb::new(Arc::new(WriteTracker::new()))
}

#[test]
fn hit_returns_gpa_and_host_and_counts() {
    let mut tlb = new_tlb();
    let c = ctx(false, 0);
    assert_eq!(tlb.lookup(&c, V + 0x10, R0), None);
    fill(
        &mut tlb,
        &c,
        V + 0x10,
        R0,
        &tr(0x3_4010, false, true, NO_TABLES),
    );
    assert_eq!(
        tlb.lookup(&c, V + 0xabc, R0),
        Some(TlbHit {
            gpa: 0x3_4abc,
            host: 0xdead_0000
        })
    );
    assert_eq!(tlb.lookup(&c, V + 0x1000, R0), None, "next page");
    let s = tlb.stats();
    assert_eq!((s.hits, s.misses, s.fills), (1, 2, 1));
}

#[test]
fn only_allowed_access_classes_hit() {
    let mut tlb = new_tlb();
    let c = ctx(false, 0);
    fill(&mut tlb, &c, V, R0, &tr(0x5000, false, true, NO_TABLES));
    let cases = [
        (Access::new(AccessKind::Read, 0), true),
        (Access::new(AccessKind::Read, 1), true),
        (Access::new(AccessKind::Read, 3), false),
        (Access::new(AccessKind::Write, 0), false),
        (Access::new(AccessKind::Execute, 0), false),
        (Access::implicit(AccessKind::Read), false),
    ];
    for (a, want) in cases {
        assert_eq!(tlb.lookup(&c, V, a).is_some(), want, "{a:?}");
    }
    // A walk for another class on the same translation adds it.
    fill(&mut tlb, &c, V, W0, &tr(0x5000, false, true, NO_TABLES));
    assert!(tlb.lookup(&c, V, R0).is_some());
    assert!(tlb.lookup(&c, V, W0).is_some());
    assert_eq!(tlb.len(), 1);
}

#[test]
fn write_to_clean_entry_misses_until_dirty() {
    let mut tlb = new_tlb();
    let c = ctx(false, 0);
    // Entries filled with D = 0 never satisfy a write, whatever the class mask.
    fill(&mut tlb, &c, V, W0, &tr(0x5000, false, false, NO_TABLES));
    assert_eq!(tlb.lookup(&c, V, W0), None);
    fill(&mut tlb, &c, V, W0, &tr(0x5000, false, true, NO_TABLES));
    assert!(tlb.lookup(&c, V, W0).is_some());
}

#[test]
fn rights_changes_miss() {
    let mut tlb = new_tlb();
    let base = ctx(false, 0);
    fill(&mut tlb, &base, V, R0, &tr(0x5000, false, true, NO_TABLES));
    let pke = |mut c: PagingContext, pkru| {
        c.cr4 |= CR4_PKE;
        c.pkru = pkru;
        c
    };
    let cases: [(&str, PagingContext, bool); 6] = [
        ("same", base, true),
        (
            "WP off",
            PagingContext {
                cr0: base.cr0 & !CR0_WP,
                ..base
            },
            false,
        ),
        (
            "SMAP on",
            PagingContext {
                cr4: base.cr4 | CR4_SMAP,
                ..base
            },
            false,
        ),
        (
            "AC set",
            PagingContext {
                rflags_ac: true,
                ..base
            },
            false,
        ),
        ("PKRU without PKE", PagingContext { pkru: 4, ..base }, true),
        ("PKE on", pke(base, 0), false),
    ];
    for (what, c, want) in cases {
        assert_eq!(tlb.lookup(&c, V, R0).is_some(), want, "{what}");
    }
    let mut tlb = new_tlb();
    fill(
        &mut tlb,
        &pke(base, 0),
        V,
        R0,
        &tr(0x5000, false, true, NO_TABLES),
    );
    assert!(tlb.lookup(&pke(base, 0), V, R0).is_some());
    assert!(
        tlb.lookup(&pke(base, 4), V, R0).is_none(),
        "PKRU changed under PKE"
    );
}

#[test]
fn pcid_isolation_and_globals() {
    let mut tlb = new_tlb();
    let (a, b) = (ctx(true, PCID_A), ctx(true, PCID_B));
    fill(&mut tlb, &a, V, R0, &tr(0x5000, false, true, NO_TABLES));
    fill(
        &mut tlb,
        &a,
        V + 0x1000,
        R0,
        &tr(0x6000, true, true, NO_TABLES),
    );
    assert!(tlb.lookup(&a, V, R0).is_some());
    assert!(
        tlb.lookup(&b, V, R0).is_none(),
        "non-global of another PCID"
    );
    assert!(
        tlb.lookup(&b, V + 0x1000, R0).is_some(),
        "global under any PCID"
    );
    fill(&mut tlb, &b, V, R0, &tr(0x7000, false, true, NO_TABLES));
    assert_eq!(tlb.lookup(&a, V, R0).map(|h| h.gpa), Some(0x5000));
    assert_eq!(tlb.lookup(&b, V, R0).map(|h| h.gpa), Some(0x7000));
}

/// Which of four entries at page `V` survive: [non-global PCID A, global filled
/// under A, non-global PCID B, global filled under B]. The current PCID is A.
#[test]
fn flush_rules_table() {
    type Op = fn(&mut Tlb);
    let a = ctx(true, PCID_A);
    let with = |f: fn(&mut PagingContext)| {
        let mut c = a;
        f(&mut c);
        c
    };
    let rows: Vec<(&str, Op, [bool; 4])> = vec![
        (
            "MOV CR3 same PCID",
            |t| t.mov_cr3(&ctx(true, PCID_A), 0x10_0000 | 1),
            [false, true, true, true],
        ),
        (
            "MOV CR3 bit 63",
            |t| t.mov_cr3(&ctx(true, PCID_A), CR3_NOFLUSH | 0x10_0000 | 1),
            [true; 4],
        ),
        (
            "MOV CR3 to PCID B",
            |t| t.mov_cr3(&ctx(true, PCID_B), 0x10_0000 | 2),
            [true, true, false, true],
        ),
        (
            "INVLPG V",
            |t| t.invlpg(&ctx(true, PCID_A), V),
            [false, false, true, false],
        ),
        (
            "INVLPG other page",
            |t| t.invlpg(&ctx(true, PCID_A), V + 0x1000),
            [true; 4],
        ),
        (
            "INVPCID 0 A",
            |t| t.invpcid(InvpcidKind::IndividualAddress, PCID_A, V),
            [false, true, true, true],
        ),
        (
            "INVPCID 0 B",
            |t| t.invpcid(InvpcidKind::IndividualAddress, PCID_B, V),
            [true, true, false, true],
        ),
        (
            "INVPCID 0 A other page",
            |t| t.invpcid(InvpcidKind::IndividualAddress, PCID_A, V + 0x1000),
            [true; 4],
        ),
        (
            "INVPCID 1 A",
            |t| t.invpcid(InvpcidKind::SingleContext, PCID_A, 0),
            [false, true, true, true],
        ),
        (
            "INVPCID 2",
            |t| t.invpcid(InvpcidKind::AllContextsInclGlobal, 0, 0),
            [false; 4],
        ),
        (
            "INVPCID 3",
            |t| t.invpcid(InvpcidKind::AllContexts, 0, 0),
            [false, true, false, true],
        ),
        ("flush_all", |t| t.flush_all(), [false; 4]),
    ];
    let cr_rows: Vec<(&str, PagingContext, [bool; 4])> = vec![
        ("CR4.PGE 1->0", with(|c| c.cr4 &= !CR4_PGE), [false; 4]),
        (
            "CR4.PCIDE 1->0",
            with(|c| {
                c.cr4 &= !CR4_PCIDE;
                c.cr3 &= !0xfff;
            }),
            [false; 4],
        ),
        ("CR0.PG 1->0", with(|c| c.cr0 &= !CR0_PG), [false; 4]),
        (
            "CR4.SMEP 0->1",
            with(|c| c.cr4 |= CR4_SMEP),
            [false, false, true, true],
        ),
        ("CR0.WP 1->0", with(|c| c.cr0 &= !CR0_WP), [true; 4]),
        ("CR4.SMAP 0->1", with(|c| c.cr4 |= CR4_SMAP), [true; 4]),
        ("EFER.NXE 1->0", with(|c| c.efer &= !EFER_NXE), [false; 4]),
        ("CR4.PSE 0->1", with(|c| c.cr4 |= CR4_PSE), [false; 4]),
        (
            "CR3 changes to PCID B",
            ctx(true, PCID_B),
            [true, true, false, true],
        ),
        (
            "CR3 address changes, PCID A",
            with(|c| c.cr3 += 0x1000),
            [false, true, true, true],
        ),
        ("nothing changes", a, [true; 4]),
    ];
    let kinds = [
        (PCID_A, false),
        (PCID_A, true),
        (PCID_B, false),
        (PCID_B, true),
    ];
    let run = |what: &str, op: &dyn Fn(&mut Tlb), want: [bool; 4]| {
        for (k, &(pcid, global)) in kinds.iter().enumerate() {
            let mut tlb = new_tlb();
            fill(
                &mut tlb,
                &ctx(true, pcid),
                V,
                R0,
                &tr(0x5000, global, true, NO_TABLES),
            );
            op(&mut tlb);
            let alive = tlb
                .entries()
                .any(|e| e.linear == V && e.pcid == pcid && e.global == global);
            assert_eq!(alive, want[k], "{what}: pcid {pcid} global {global}");
        }
    };
    for (what, op, want) in rows {
        run(what, &op, want);
    }
    for (what, new, want) in cr_rows {
        run(what, &|t: &mut Tlb| t.on_cr_write(&a, &new), want);
    }
}

/// An operation on a TLB, its name, and which of [non-global, global] survive.
type FlushRow = (&'static str, Box<dyn Fn(&mut Tlb)>, [bool; 2]);

#[test]
fn flush_rules_without_pcid() {
    let c = ctx(false, 0);
    let rows: Vec<FlushRow> = vec![
        (
            "MOV CR3 same value",
            Box::new(move |t| t.mov_cr3(&c, c.cr3)),
            [false, true],
        ),
        // Bit 63 means nothing with CR4.PCIDE = 0 (it is reserved there; we flush).
        (
            "MOV CR3 bit 63, PCIDE=0",
            Box::new(move |t| t.mov_cr3(&c, c.cr3 | CR3_NOFLUSH)),
            [false, true],
        ),
        (
            "CR3 write",
            Box::new(move |t| {
                let n = PagingContext {
                    cr3: c.cr3 + 0x1000,
                    ..c
                };
                t.on_cr_write(&c, &n)
            }),
            [false, true],
        ),
        (
            "PGE toggle",
            Box::new(move |t| {
                let n = PagingContext {
                    cr4: c.cr4 & !CR4_PGE,
                    ..c
                };
                t.on_cr_write(&c, &n)
            }),
            [false, false],
        ),
        ("INVLPG", Box::new(move |t| t.invlpg(&c, V)), [false, false]),
    ];
    for (what, op, want) in rows {
        for (k, global) in [false, true].into_iter().enumerate() {
            let mut tlb = new_tlb();
            fill(&mut tlb, &c, V, R0, &tr(0x5000, global, true, NO_TABLES));
            op(&mut tlb);
            assert_eq!(
                tlb.lookup(&c, V, R0).is_some(),
                want[k],
                "{what}: global {global}"
            );
        }
    }
}

#[test]
fn capacity_and_round_robin_eviction() {
    let mut tlb = new_tlb();
    let c = ctx(false, 0);
    let cap = TLB_SETS * TLB_WAYS;
    for i in 0..cap as u64 {
        fill(
            &mut tlb,
            &c,
            i << 12,
            R0,
            &tr(i << 12, false, true, NO_TABLES),
        );
    }
    assert_eq!(tlb.len(), cap);
    assert_eq!(tlb.stats().evictions, 0);
    for i in 0..cap as u64 {
        assert!(tlb.lookup(&c, i << 12, R0).is_some(), "page {i}");
    }
    // Refilling a present page replaces it in place.
    fill(&mut tlb, &c, 0, R0, &tr(0x9000, false, true, NO_TABLES));
    assert_eq!((tlb.len(), tlb.stats().evictions), (cap, 0));
    // One more page in set 0 evicts the oldest way of that set only.
    let extra = (cap as u64) << 12;
    fill(&mut tlb, &c, extra, R0, &tr(0x5000, false, true, NO_TABLES));
    assert_eq!((tlb.len(), tlb.stats().evictions), (cap, 1));
    assert!(tlb.lookup(&c, extra, R0).is_some());
    assert!(
        tlb.lookup(&c, 0, R0).is_none(),
        "way 0 of set 0 was replaced"
    );
    assert!(
        tlb.lookup(&c, (TLB_SETS as u64) << 12, R0).is_some(),
        "way 1 of set 0 kept"
    );
    assert!(
        tlb.lookup(&c, 1 << 12, R0).is_some(),
        "other sets untouched"
    );
}

fn tables(pte: u64) -> [u64; 5] {
    [0x1000, 0x2008, 0x3010, pte, u64::MAX]
}

#[test]
fn write_by_another_thread_invalidates_dependent_entries_only() {
    let tracker = Arc::new(WriteTracker::new());
    let mut mine = Tlb::new(Arc::clone(&tracker));
    let mut other = Tlb::new(Arc::clone(&tracker));
    let c = ctx(false, 0);
    for (tlb, first_ok) in [(&mut mine, false), (&mut other, true)] {
        // The first fill ever newly tracks the tables and is refused.
        let t1 = tr(0x5000, false, true, tables(0x4008));
        let tok = tlb.fill_token();
        assert_eq!(tlb.insert(tok, &c, V, R0, &t1, 0), first_ok);
        fill(tlb, &c, V, R0, &t1);
        fill(
            tlb,
            &c,
            V + 0x1000,
            R0,
            &tr(0x6000, false, true, tables(0x4010)),
        );
    }
    assert_eq!(tracker.tracked_count(), 4);
    let t2 = Arc::clone(&tracker);
    std::thread::spawn(move || assert!(t2.on_guest_write(0x4008, 8)))
        .join()
        .expect("writer thread");
    for tlb in [&mut mine, &mut other] {
        assert!(tlb.lookup(&c, V, R0).is_none(), "PTE written");
        assert!(
            tlb.lookup(&c, V + 0x1000, R0).is_some(),
            "neighbouring PTE not written"
        );
    }
    // A write to an upper-level entry both depend on drops both.
    assert!(tracker.on_guest_write(0x2000, 16));
    assert!(mine.lookup(&c, V + 0x1000, R0).is_none());
}

#[test]
fn newly_tracked_or_stale_fill_is_refused() {
    let tracker = Arc::new(WriteTracker::new());
    let mut tlb = Tlb::new(Arc::clone(&tracker));
    let c = ctx(false, 0);
    let t = tr(0x5000, false, true, tables(0x4008));
    let tok = tlb.fill_token();
    assert!(
        !tlb.insert(tok, &c, V, R0, &t, 0),
        "tables were not tracked"
    );
    assert!(tlb.is_empty());
    let stale = tlb.fill_token();
    assert!(tracker.on_guest_write(0x4008, 8));
    assert!(tlb.lookup(&c, V, R0).is_none()); // catches up past `stale`
    assert!(
        !tlb.insert(stale, &c, V, R0, &t, 0),
        "walk predates a processed write"
    );
    let tok = tlb.fill_token();
    assert!(tlb.insert(tok, &c, V, R0, &t, 0));
}

#[test]
fn slot_change_and_overflow() {
    let tracker = Arc::new(WriteTracker::new());
    let mut tlb = Tlb::new(Arc::clone(&tracker));
    let c = ctx(false, 0);
    fill(&mut tlb, &c, V, R0, &tr(0x5000, false, true, NO_TABLES));
    fill(
        &mut tlb,
        &c,
        V + 0x1000,
        R0,
        &tr(0x8000, false, true, NO_TABLES),
    );
    tracker.on_slot_change(0x4000, 0x2000);
    assert!(tlb.lookup(&c, V, R0).is_none());
    assert!(tlb.lookup(&c, V + 0x1000, R0).is_some());
    tlb.invalidate_gpa_range(0x8fff, 1);
    assert!(tlb.lookup(&c, V + 0x1000, R0).is_none());
    fill(&mut tlb, &c, V, R0, &tr(0x5000, false, true, NO_TABLES));
    for _ in 0..=LOG_CAPACITY {
        tracker.on_slot_change(0x100_0000, 1);
    }
    assert!(
        tlb.lookup(&c, V, R0).is_none(),
        "overflow flushes everything"
    );
    assert_eq!(tlb.stats().overflows, 1);
}

#[test]
fn translate_without_paging_walks_once() {
    let mem = crate::testmem::FlatMemory::new(0x10000);
    let mut tlb = new_tlb();
    let c = PagingContext::default();
    let mut calls = 0;
    for _ in 0..3 {
        let hit = tlb
            .translate(&mem, &c, 0x1234, R0, |p| {
                calls += 1;
                p + 0x7000_0000
            })
            .expect("no paging");
        assert_eq!(
            hit,
            TlbHit {
                gpa: 0x1234,
                host: 0x7000_1000
            }
        );
    }
    assert_eq!(calls, 1);
    assert_eq!(tlb.stats().hits, 2);
}

#[test]
fn invpcid_type_decoding() {
    assert_eq!(
        InvpcidKind::try_from(2),
        Ok(InvpcidKind::AllContextsInclGlobal)
    );
    let e = InvpcidKind::try_from(4).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid INVPCID type 4 (only 0-3 are defined)"
    );
}

mod with_walker {
    use super::*;
    use crate::context::CR4_SMEP;
    use crate::shadow::testpt::{ctx4, Pt, A, D, P, RW, US};
    use crate::testmem::FlatMemory;

    const ROOT: u64 = 0x10_0000;
    const DATA: u64 = 0x40_0000;
    const NX: u64 = 1 << 63;

    fn read(mem: &FlatMemory, gpa: u64) -> u64 {
        PhysMemory::read_u64(mem, gpa).expect("in memory")
    }

    #[test]
    fn translate_caches_and_follows_guest_pte_writes() {
        let mem = FlatMemory::new(0x80_0000);
        let tracker = Arc::new(WriteTracker::new());
        let pte = Pt::new(&mem, ROOT, ROOT + 0x1000).map4k(V, DATA, P | RW | US);
        let c = ctx4(ROOT);
        let mut tlb = Tlb::new(Arc::clone(&tracker));
        let host = |p: u64| p;
        assert_eq!(
            tlb.translate(&mem, &c, V + 8, R0, host).map(|h| h.gpa),
            Ok(DATA + 8)
        );
        assert_eq!(
            tlb.stats().fills,
            1,
            "first fill refused (new tables), second cached"
        );
        assert_eq!(
            tlb.translate(&mem, &c, V + 16, R0, host).map(|h| h.gpa),
            Ok(DATA + 16)
        );
        assert_eq!(tlb.stats().hits, 1);
        // The guest remaps the page; the next translation walks again.
        mem.write_u64(pte, (DATA + 0x3000) | P | RW | US)
            .expect("in memory");
        assert!(tracker.on_guest_write(pte, 8));
        assert_eq!(
            tlb.translate(&mem, &c, V, R0, host).map(|h| h.gpa),
            Ok(DATA + 0x3000)
        );
    }

    #[test]
    fn write_through_clean_entry_sets_dirty() {
        let mem = FlatMemory::new(0x80_0000);
        let pte = Pt::new(&mem, ROOT, ROOT + 0x1000).map4k(V, DATA, P | RW | US);
        let c = ctx4(ROOT);
        let mut tlb = new_tlb();
        tlb.translate(&mem, &c, V, R0, |p| p).expect("read");
        assert_eq!(read(&mem, pte) & (A | D), A);
        assert!(tlb.lookup(&c, V, W0).is_none());
        tlb.translate(&mem, &c, V, W0, |p| p).expect("write");
        assert_eq!(read(&mem, pte) & (A | D), A | D);
        assert!(tlb.lookup(&c, V, W0).is_some());
    }

    #[test]
    fn page_fault_invalidates_the_page() {
        let mem = FlatMemory::new(0x80_0000);
        Pt::new(&mem, ROOT, ROOT + 0x1000).map4k(V, DATA, P | RW);
        let c = ctx4(ROOT);
        let mut tlb = new_tlb();
        tlb.translate(&mem, &c, V, R0, |p| p)
            .expect("supervisor read");
        assert_eq!(tlb.len(), 1);
        let err = tlb.translate(&mem, &c, V, Access::new(AccessKind::Read, 3), |p| p);
        assert!(matches!(err, Err(WalkError::PageFault(pf))
            if pf.error_code == crate::fault::PfErrorCode::PRESENT | crate::fault::PfErrorCode::USER));
        assert!(tlb.is_empty());
    }

    /// Differential check: whatever the TLB holds from earlier contexts and
    /// accesses, `translate` gives exactly what a fresh walk gives.
    #[test]
    fn translate_matches_walk_for_every_combination() {
        let mem = FlatMemory::new(0x80_0000);
        let mut pt = Pt::new(&mem, ROOT, ROOT + 0x1000);
        let leaves = [
            P | RW | US,
            P | US,
            P | RW,
            P,
            P | RW | US | NX,
            P | RW | NX,
        ];
        for (i, &f) in leaves.iter().enumerate() {
            // Pre-set A and D so that walks do not change the tables.
            pt.map4k(V + ((i as u64) << 12), DATA + ((i as u64) << 12), f | A | D);
        }
        let base = ctx4(ROOT);
        let ctxs = [
            base,
            PagingContext {
                cr0: base.cr0 & !CR0_WP,
                ..base
            },
            PagingContext {
                cr4: base.cr4 | CR4_SMAP,
                ..base
            },
            PagingContext {
                cr4: base.cr4 | CR4_SMAP,
                rflags_ac: true,
                ..base
            },
            PagingContext {
                cr4: base.cr4 | CR4_SMEP,
                ..base
            },
            PagingContext {
                efer: base.efer & !EFER_NXE,
                ..base
            },
        ];
        let kinds = [AccessKind::Read, AccessKind::Write, AccessKind::Execute];
        let mut tlb = new_tlb();
        let mut checked = 0;
        for round in 0..2 {
            for c in &ctxs {
                for i in 0..leaves.len() as u64 {
                    for kind in kinds {
                        for cpl in [0, 3] {
                            for implicit in [false, true] {
                                let a = Access {
                                    kind,
                                    cpl,
                                    implicit_supervisor: implicit,
                                };
                                let lin = V + (i << 12) + 0x18;
                                let want = walk(&mem, c, lin, a, AdUpdate::None).map(|t| t.gpa);
                                for again in 0..2 {
                                    let got = tlb.translate(&mem, c, lin, a, |p| p).map(|h| h.gpa);
                                    assert_eq!(
                                        got, want,
                                        "round {round}/{again} leaf {i} {a:?} {c:x?}"
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 6 * 6 * 3 * 2 * 2 * 2);
        assert!(tlb.stats().hits > 0);
    }

    /// A writer thread remaps the page over and over and publishes each step
    /// after reporting it; a reader translating through its TLB must never see
    /// a mapping older than the last step published before its lookup. Starts
    /// with untracked tables and runs past the write-flood threshold, so it
    /// exercises the first-track and untrack paths too.
    #[test]
    fn concurrent_remaps_are_never_missed() {
        use std::sync::atomic::{AtomicU64, Ordering};
        const STEPS: u64 = 200;
        let mem = Arc::new(FlatMemory::new(0x80_0000));
        let tracker = Arc::new(WriteTracker::new());
        let pte = Pt::new(&mem, ROOT, ROOT + 0x1000).map4k(V, DATA, P | RW | US);
        let published = Arc::new(AtomicU64::new(0));
        let writer = {
            let (mem, tracker, published) = (
                Arc::clone(&mem),
                Arc::clone(&tracker),
                Arc::clone(&published),
            );
            std::thread::spawn(move || {
                for k in 1..=STEPS {
                    mem.write_u64(pte, (DATA + (k << 12)) | P | RW | US)
                        .expect("in memory");
                    tracker.on_guest_write(pte, 8);
                    published.store(k, Ordering::Release);
                    std::thread::yield_now();
                }
            })
        };
        let c = ctx4(ROOT);
        let mut tlb = Tlb::new(Arc::clone(&tracker));
        loop {
            let p = published.load(Ordering::Acquire);
            let gpa = tlb.translate(&*mem, &c, V, R0, |x| x).expect("mapped");
            let seen = (gpa.gpa - DATA) >> 12;
            assert!(seen >= p, "saw step {seen} after step {p} was published");
            if p == STEPS {
                break;
            }
        }
        writer.join().expect("writer thread");
    }
}
