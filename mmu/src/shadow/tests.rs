use super::testpt::{ctx4, Pt, A, D, G, P, RW, US};
use super::*;
use crate::context::{CR0_WP, CR4_PCIDE};
use crate::testmem::FlatMemory;

const ROOT_A: u64 = 0x10_0000;
const ROOT_B: u64 = 0x18_0000;
const ROOT_C: u64 = 0x1c_0000;
const DATA: u64 = 0x40_0000;
const V: u64 = 0x7f12_3456_7000;

const R0: Access = Access::new(AccessKind::Read, 0);
const W0: Access = Access::new(AccessKind::Write, 0);
const R3: Access = Access::new(AccessKind::Read, 3);
const W3: Access = Access::new(AccessKind::Write, 3);
const X0: Access = Access::new(AccessKind::Execute, 0);

fn setup() -> (FlatMemory, Arc<WriteTracker>) {
    (FlatMemory::new(0x80_0000), Arc::new(WriteTracker::new()))
}

fn fixed(f: ShadowFault) -> Translation {
    match f {
        ShadowFault::Fixed(t) => t,
        other => panic!("expected Fixed, got {other:?}"),
    }
}

/// The guest writes `v` at `gpa` (memory first, then the tracker).
fn guest_write(mem: &FlatMemory, tracker: &WriteTracker, gpa: u64, v: u64) {
    mem.write_u64(gpa, v).expect("in memory");
    tracker.on_guest_write(gpa, 8);
}

fn read(mem: &FlatMemory, gpa: u64) -> u64 {
    PhysMemory::read_u64(mem, gpa).expect("in memory")
}

#[test]
fn fault_installs_shadow_then_lookup_hits() {
    let (mem, tracker) = setup();
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    let pte = pt.map4k(V, DATA, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    assert_eq!(s.lookup(&c, V + 0x10, R0), None);
    let t = fixed(s.page_fault(&mem, &c, V + 0x10, R0));
    assert_eq!(t.gpa, DATA + 0x10);
    assert_eq!(read(&mem, pte) & (A | D), A, "walk set A only");
    assert_eq!(
        s.lookup(&c, V + 0x123, R0).map(|t| t.gpa),
        Some(DATA + 0x123)
    );
    assert_eq!(s.shadow_count(), 1);
    assert_eq!(tracker.tracked_count(), 4, "PML4, PDPT, PD and PT frames");
    assert_eq!(s.tracked_frames(), 4);
    assert!(s.lookup(&c, V, R3).is_none(), "user class not yet checked");
    fixed(s.page_fault(&mem, &c, V, R3));
    assert!(s.lookup(&c, V, R3).is_some());
    assert!(s.lookup(&c, V, R0).is_some(), "classes accumulate");
    assert_eq!(s.shadow_count(), 1);
}

#[test]
fn reflects_exact_error_codes() {
    const NX: u64 = 1 << 63;
    let ec = |bits: &[PfErrorCode]| bits.iter().fold(PfErrorCode::empty(), |a, b| a | *b);
    use PfErrorCode as E;
    // (leaf flags or None = not mapped, access, MAXPHYADDR, expected error code)
    let rows: [(Option<u64>, Access, u8, PfErrorCode); 9] = [
        (None, R0, 52, ec(&[])),
        (None, W3, 52, ec(&[E::WRITE, E::USER])),
        (None, X0, 52, ec(&[E::FETCH])),
        (Some(P | RW), R3, 52, ec(&[E::PRESENT, E::USER])),
        (Some(P | US), W3, 52, ec(&[E::PRESENT, E::WRITE, E::USER])),
        (Some(P), W0, 52, ec(&[E::PRESENT, E::WRITE])),
        (Some(P | RW | NX), X0, 52, ec(&[E::PRESENT, E::FETCH])),
        (Some(P | RW | US), X0, 52, ec(&[E::PRESENT, E::FETCH])), // SMEP
        (Some(P | RW | (1 << 45)), R0, 40, ec(&[E::PRESENT, E::RSVD])),
    ];
    for (i, (leaf, access, maxphy, want)) in rows.into_iter().enumerate() {
        let (mem, tracker) = setup();
        let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
        if let Some(flags) = leaf {
            pt.map4k(V, DATA, flags);
        } else {
            pt.map4k(V + 0x1000, DATA, P | RW | US); // tables exist, this PTE is 0
        }
        let mut c = ctx4(ROOT_A);
        c.maxphyaddr = maxphy;
        if i == 7 {
            c.cr4 |= crate::context::CR4_SMEP;
        }
        let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
        let got = s.page_fault(&mem, &c, V + 8, access);
        assert_eq!(
            got,
            ShadowFault::Reflect(PageFault {
                linear: V + 8,
                error_code: want
            }),
            "row {i}: {leaf:x?} {access:?}"
        );
        assert_eq!(s.shadow_count(), 0, "row {i}");
        assert_eq!(s.stats().reflected, 1);
    }
}

#[test]
fn guest_write_to_its_pte_drops_exactly_that_shadow() {
    let (mem, tracker) = setup();
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    let pte = pt.map4k(V, DATA, P | RW | US);
    pt.map4k(V + 0x1000, DATA + 0x1000, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    fixed(s.page_fault(&mem, &c, V, R0));
    fixed(s.page_fault(&mem, &c, V + 0x1000, R0));
    // Remap V: only its shadow goes.
    guest_write(&mem, &tracker, pte, (DATA + 0x5000) | P | RW | US);
    assert!(!s.is_shadowed(&c, V));
    assert!(s.is_shadowed(&c, V + 0x1000));
    assert_eq!(s.stats().write_drops, 1);
    assert_eq!(s.lookup(&c, V, R0), None);
    assert_eq!(fixed(s.page_fault(&mem, &c, V, R0)).gpa, DATA + 0x5000);
    // Unmap V: the next fault is reflected as not-present.
    guest_write(&mem, &tracker, pte, 0);
    assert_eq!(s.lookup(&c, V, R0), None);
    assert_eq!(
        s.page_fault(&mem, &c, V, R0),
        ShadowFault::Reflect(PageFault {
            linear: V,
            error_code: PfErrorCode::empty()
        })
    );
}

#[test]
fn write_to_pde_drops_every_shadow_under_it() {
    let (mem, tracker) = setup();
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    let big = 0x4000_0000;
    let pde = pt.map2m(big, 0x60_0000, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    assert_eq!(
        fixed(s.page_fault(&mem, &c, big + 0x3004, R0)).gpa,
        0x60_3004
    );
    fixed(s.page_fault(&mem, &c, big + 0x1f_f000, R0));
    assert_eq!(s.shadow_count(), 2, "per-4-KiB shadows of one 2-MiB page");
    // Another entry in the same PD page: nothing depends on it.
    guest_write(&mem, &tracker, pde + 8, 0);
    assert_eq!(s.shadow_count(), 2);
    assert!(s.lookup(&c, big + 0x3000, R0).is_some());
    guest_write(
        &mem,
        &tracker,
        pde,
        0x80_0000 | P | RW | US | crate::shadow::testpt::PS,
    );
    assert!(s.lookup(&c, big + 0x3000, R0).is_none());
    assert_eq!(s.shadow_count(), 0);
}

#[test]
fn write_by_another_vcpu_thread_invalidates_every_vcpu() {
    let (mem, tracker) = setup();
    let mem = Arc::new(mem);
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    let pte = pt.map4k(V, DATA, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut cpu0 = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    let mut cpu1 = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    fixed(cpu0.page_fault(&*mem, &c, V, R0));
    fixed(cpu1.page_fault(&*mem, &c, V, R0));
    let (m, t) = (Arc::clone(&mem), Arc::clone(&tracker));
    std::thread::spawn(move || guest_write(&m, &t, pte, (DATA + 0x2000) | P | RW | US))
        .join()
        .expect("writer thread");
    for s in [&mut cpu0, &mut cpu1] {
        assert!(s.lookup(&c, V, R0).is_none());
        assert_eq!(fixed(s.page_fault(&*mem, &c, V, R0)).gpa, DATA + 0x2000);
    }
}

#[test]
fn first_write_to_clean_page_faults_and_sets_dirty() {
    let (mem, tracker) = setup();
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    let pte = pt.map4k(V, DATA, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
    fixed(s.page_fault(&mem, &c, V, R0));
    assert!(!fixed_dirty(&mut s, &c));
    assert!(
        s.lookup(&c, V, W0).is_none(),
        "clean page: write must fault"
    );
    let t = fixed(s.page_fault(&mem, &c, V, W0));
    assert!(t.dirty);
    assert_eq!(read(&mem, pte) & (A | D), A | D);
    assert!(s.lookup(&c, V, W0).is_some());
}

fn fixed_dirty(s: &mut ShadowMmu, c: &PagingContext) -> bool {
    s.lookup(c, V, R0).expect("shadowed").dirty
}

#[test]
fn cr3_switch_keeps_roots_and_back() {
    let (mem, tracker) = setup();
    Pt::new(&mem, ROOT_A, ROOT_A + 0x1000).map4k(V, DATA, P | RW | US);
    Pt::new(&mem, ROOT_B, ROOT_B + 0x1000).map4k(V, DATA + 0x1000, P | RW | US);
    Pt::new(&mem, ROOT_C, ROOT_C + 0x1000).map4k(V, DATA + 0x2000, P | RW | US);
    let (a, b, cc) = (ctx4(ROOT_A), ctx4(ROOT_B), ctx4(ROOT_C));
    let mut s = ShadowMmu::new(tracker, 2);
    fixed(s.page_fault(&mem, &a, V, R0));
    s.on_cr_write(&a, &b);
    assert!(s.lookup(&b, V, R0).is_none());
    assert_eq!(fixed(s.page_fault(&mem, &b, V, R0)).gpa, DATA + 0x1000);
    s.on_cr_write(&b, &a);
    let installs = s.stats().installs;
    assert_eq!(
        s.lookup(&a, V, R0).map(|t| t.gpa),
        Some(DATA),
        "root A kept"
    );
    assert_eq!(s.stats().installs, installs);
    assert_eq!(s.root_count(), 2);
    // A third root evicts the least recently used (B).
    s.mov_cr3(&cc);
    assert_eq!(fixed(s.page_fault(&mem, &cc, V, R0)).gpa, DATA + 0x2000);
    assert_eq!((s.root_count(), s.stats().root_evictions), (2, 1));
    assert!(s.lookup(&b, V, R0).is_none());
    assert!(s.lookup(&a, V, R0).is_some());
}

#[test]
fn global_shadows_survive_cr3_switch_until_pge_or_invlpg() {
    let (mem, tracker) = setup();
    let gv = 0xffff_8000_0000_0000;
    let mut pa = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    pa.map4k(gv, DATA, P | RW | G);
    pa.map4k(V, DATA + 0x1000, P | RW | US);
    Pt::new(&mem, ROOT_B, ROOT_B + 0x1000).map4k(V + 0x1000, DATA, P | RW | US);
    let (a, b) = (ctx4(ROOT_A), ctx4(ROOT_B));
    let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
    assert!(fixed(s.page_fault(&mem, &a, gv, R0)).global);
    fixed(s.page_fault(&mem, &a, V, R0));
    s.on_cr_write(&a, &b);
    assert_eq!(
        s.lookup(&b, gv, R0).map(|t| t.gpa),
        Some(DATA),
        "global kept"
    );
    assert!(
        s.lookup(&b, V, R0).is_none(),
        "non-global of A not visible in B"
    );
    s.invlpg(&b, gv);
    assert!(s.lookup(&b, gv, R0).is_none(), "INVLPG drops globals");
    s.on_cr_write(&b, &a);
    fixed(s.page_fault(&mem, &a, gv, R0));
    let no_pge = PagingContext {
        cr4: a.cr4 & !crate::context::CR4_PGE,
        ..a
    };
    s.on_cr_write(&a, &no_pge);
    assert_eq!(s.shadow_count(), 0, "CR4.PGE change drops everything");
}

#[test]
fn invlpg_drops_one_page() {
    let (mem, tracker) = setup();
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    pt.map4k(V, DATA, P | RW | US);
    pt.map4k(V + 0x1000, DATA + 0x1000, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
    fixed(s.page_fault(&mem, &c, V, R0));
    fixed(s.page_fault(&mem, &c, V + 0x1000, R0));
    s.invlpg(&c, V + 0xfff);
    assert!(!s.is_shadowed(&c, V));
    assert!(s.is_shadowed(&c, V + 0x1000));
    assert_eq!(
        s.tracked_frames(),
        4,
        "the other shadow still uses the tables"
    );
}

#[test]
fn invpcid_single_context_drops_that_pcid_only() {
    let (mem, tracker) = setup();
    Pt::new(&mem, ROOT_A, ROOT_A + 0x1000).map4k(V, DATA, P | RW | US);
    let pc = |pcid: u64| {
        let mut c = ctx4(ROOT_A | pcid);
        c.cr4 |= CR4_PCIDE;
        c
    };
    let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
    fixed(s.page_fault(&mem, &pc(1), V, R0));
    fixed(s.page_fault(&mem, &pc(2), V, R0));
    assert_eq!(s.root_count(), 2);
    s.invpcid(InvpcidKind::SingleContext, 1, 0);
    assert!(s.lookup(&pc(1), V, R0).is_none());
    assert!(s.lookup(&pc(2), V, R0).is_some());
    s.invpcid(InvpcidKind::IndividualAddress, 2, V);
    assert!(s.lookup(&pc(2), V, R0).is_none());
}

#[test]
fn slot_change_drops_shadows_in_range() {
    let (mem, tracker) = setup();
    let mut pt = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000);
    pt.map4k(V, DATA, P | RW | US);
    pt.map4k(V + 0x1000, DATA + 0x1000, P | RW | US);
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    fixed(s.page_fault(&mem, &c, V, R0));
    fixed(s.page_fault(&mem, &c, V + 0x1000, R0));
    s.on_slot_change(DATA, 0x1000);
    assert!(!s.is_shadowed(&c, V));
    assert!(s.is_shadowed(&c, V + 0x1000));
    fixed(s.page_fault(&mem, &c, V, R0));
    // Through the tracker (reaches every vCPU): the slot holding the tables.
    tracker.on_slot_change(ROOT_A, 0x1_0000);
    assert_eq!(s.lookup(&c, V + 0x1000, R0), None);
    assert_eq!(s.shadow_count(), 0);
}

#[test]
fn rights_change_needs_a_new_walk() {
    let (mem, tracker) = setup();
    Pt::new(&mem, ROOT_A, ROOT_A + 0x1000).map4k(V, DATA, P | US);
    let c = ctx4(ROOT_A);
    let no_wp = PagingContext {
        cr0: c.cr0 & !CR0_WP,
        ..c
    };
    let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
    // Supervisor write to a read-only page: refused with WP = 1, allowed with WP = 0.
    assert!(matches!(
        s.page_fault(&mem, &c, V, W0),
        ShadowFault::Reflect(_)
    ));
    s.on_cr_write(&c, &no_wp);
    let t = fixed(s.page_fault(&mem, &no_wp, V, W0));
    assert!(!t.writable);
    assert!(s.lookup(&no_wp, V, W0).is_some());
    s.on_cr_write(&no_wp, &c);
    assert!(
        s.lookup(&c, V, W0).is_none(),
        "WP back on: the shadow no longer allows it"
    );
    assert!(matches!(
        s.page_fault(&mem, &c, V, W0),
        ShadowFault::Reflect(_)
    ));
}

#[test]
fn unbacked_table_is_reported() {
    let (mem, tracker) = setup();
    let c = ctx4(0x1_0000_0000); // PML4 outside memory
    let mut s = ShadowMmu::new(tracker, DEFAULT_MAX_ROOTS);
    assert!(matches!(
        s.page_fault(&mem, &c, V, R0),
        ShadowFault::Phys(PhysError::Unbacked { .. })
    ));
}

#[test]
fn access_from_error_code_table() {
    use PfErrorCode as E;
    let rows = [
        (E::empty(), Access::new(AccessKind::Read, 0)),
        (E::WRITE, Access::new(AccessKind::Write, 0)),
        (E::USER | E::PRESENT, Access::new(AccessKind::Read, 3)),
        (E::USER | E::WRITE, Access::new(AccessKind::Write, 3)),
        (E::FETCH | E::USER, Access::new(AccessKind::Execute, 3)),
        (E::FETCH, Access::new(AccessKind::Execute, 0)),
    ];
    for (ec, want) in rows {
        assert_eq!(access_from_error_code(ec), want, "{ec:?}");
    }
}

/// A writer thread remaps the page and publishes each step after reporting it;
/// a vCPU using its shadows never sees a mapping older than the last published
/// step (see the TLB twin of this test).
#[test]
fn concurrent_remaps_are_never_missed() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const STEPS: u64 = 200;
    let (mem, tracker) = setup();
    let mem = Arc::new(mem);
    let pte = Pt::new(&mem, ROOT_A, ROOT_A + 0x1000).map4k(V, DATA, P | RW | US);
    let published = Arc::new(AtomicU64::new(0));
    let writer = {
        let (mem, tracker, published) = (
            Arc::clone(&mem),
            Arc::clone(&tracker),
            Arc::clone(&published),
        );
        std::thread::spawn(move || {
            for k in 1..=STEPS {
                guest_write(&mem, &tracker, pte, (DATA + (k << 12)) | P | RW | US);
                published.store(k, Ordering::Release);
                std::thread::yield_now();
            }
        })
    };
    let c = ctx4(ROOT_A);
    let mut s = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
    loop {
        let p = published.load(Ordering::Acquire);
        let t = match s.lookup(&c, V, R0) {
            Some(t) => t,
            None => fixed(s.page_fault(&*mem, &c, V, R0)),
        };
        let seen = (t.gpa - DATA) >> 12;
        assert!(seen >= p, "saw step {seen} after step {p} was published");
        if p == STEPS {
            break;
        }
    }
    writer.join().expect("writer thread");
}

/// Every paging mode, 4-KiB and large pages: a write to exactly one leaf entry
/// (4 bytes in 32-bit paging, 8 otherwise) drops exactly the shadows built from
/// it; its neighbour survives; the re-fault sees the new mapping.
#[test]
fn leaf_writes_drop_exact_shadows_in_every_mode() {
    use crate::context::PagingMode;
    use crate::paging::testutil::{PageSize, PageTableBuilder};
    for mode in [
        PagingMode::Bits32,
        PagingMode::Pae,
        PagingMode::Level4,
        PagingMode::Level5,
    ] {
        for &size in PageSize::for_mode(mode) {
            let (mem, tracker) = setup();
            let mut b = PageTableBuilder::new(&mem, mode, 0x10_0000..0x20_0000).expect("builder");
            let sz = size.bytes();
            let lin = 0x4000_0000u64; // aligned for every size
            let p0 = b.map(lin, 0, size, P | RW | US).expect("map");
            b.map(lin + sz, sz, size, P | RW | US).expect("map");
            let c = b.context();
            let mut s = ShadowMmu::new(Arc::clone(&tracker), DEFAULT_MAX_ROOTS);
            let what = format!("{mode:?} {size:?}");
            assert_eq!(
                fixed(s.page_fault(&mem, &c, lin + 0x10, R0)).gpa,
                0x10,
                "{what}"
            );
            fixed(s.page_fault(&mem, &c, lin + sz, R0));
            let leaf = p0.leaf();
            let width = if leaf.wide { 8 } else { 4 };
            let ps = if size == PageSize::Size4K {
                0
            } else {
                super::testpt::PS
            };
            let moved = 4 * sz; // data is never touched: only the gpa is checked
            b.write(leaf, moved | P | RW | US | ps).expect("write");
            tracker.on_guest_write(leaf.gpa, width);
            assert!(!s.is_shadowed(&c, lin), "{what}: written leaf");
            assert!(s.is_shadowed(&c, lin + sz), "{what}: neighbour leaf");
            assert_eq!(
                fixed(s.page_fault(&mem, &c, lin + 0x10, R0)).gpa,
                moved + 0x10,
                "{what}"
            );
        }
    }
}
