//! Two-dimensional walks: a 4-level guest whose own tables are read through
//! EPT/NPT; faults at either level come back at the right level with the
//! right addresses and flavour.

use super::ept::{Eptp, EPT_A, EPT_D, EPT_R, EPT_X, MEMTYPE_WB};
use super::npt::{Npt, NPF_FINAL, NPF_GUEST_TABLE};
use super::testutil::Builder;
use super::{translate_nested, Ept, FaultOutcome, SecondLevel, SlotRange, TdpMmu};
use crate::access::{Access, AccessKind};
use crate::context::{PagingContext, CR0_PG, CR0_WP, CR4_PAE, EFER_LMA, EFER_LME, EFER_NXE};
use crate::fault::{NestedFault, NestedKind, PageFault, PfErrorCode, WalkError};
use crate::phys::{PhysError, PhysMemory};
use crate::testmem::FlatMemory;
use crate::walk::AdUpdate;

/// Guest-physical page p lives at host p + HOST_OFF.
const HOST_OFF: u64 = 0x10_0000;
/// Linear address with PML4/PDPT/PD index 1 and PT index 3.
const LINEAR: u64 = 1 << 39 | 1 << 30 | 1 << 21 | 3 << 12 | 0x123;
/// Guest tables: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000; data 0x5000.
const GUEST_PAGES: [u64; 5] = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000];
/// Guest-physical address of each guest entry used for LINEAR.
const GUEST_ENTRIES: [u64; 4] = [0x1008, 0x2008, 0x3008, 0x4018];
const P_RW_US: u64 = 7;

fn ctx() -> PagingContext {
    PagingContext {
        cr0: CR0_PG | CR0_WP | 1,
        cr3: 0x1000,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA | EFER_NXE,
        maxphyaddr: 46,
        ..Default::default()
    }
}

/// Host memory with the guest's 4-level tables for LINEAR at `base` host offset.
fn guest_memory(host: &FlatMemory, base: u64) {
    for (i, &ea) in GUEST_ENTRIES.iter().enumerate() {
        host.write_u64(ea + base, GUEST_PAGES[i + 1] | P_RW_US)
            .unwrap();
    }
}

/// Hand-built second level mapping every guest page to page + HOST_OFF with
/// `perms(page)` (EPT RWX bits or NPT flags; 0 = unmapped).
fn second(npt: bool, ad: bool, perms: impl Fn(u64) -> u64) -> (Builder, SecondLevel) {
    let mut b = Builder::new(4);
    for gpa in GUEST_PAGES {
        let p = perms(gpa);
        let leaf = if npt {
            if p == 0 {
                0
            } else {
                (gpa + HOST_OFF) | p
            }
        } else {
            (gpa + HOST_OFF) | p | u64::from(MEMTYPE_WB) << 3
        };
        b.map(gpa, 1, leaf, |_| 7);
    }
    let sl = if npt {
        SecondLevel::Npt(Npt::new(b.root, true, 46))
    } else {
        let eptp = Eptp {
            memory_type: MEMTYPE_WB,
            levels: 4,
            ad,
            root: b.root,
        };
        SecondLevel::Ept(Ept::new(eptp, 46))
    };
    (b, sl)
}

fn run(
    b: &Builder,
    sl: &SecondLevel,
    host: &FlatMemory,
    kind: AccessKind,
) -> Result<u64, WalkError> {
    let access = Access::new(kind, 3);
    translate_nested(sl, &b.mem, host, &ctx(), LINEAR, access, AdUpdate::Set).map(|t| {
        assert_eq!(t.guest.gpa, 0x5123);
        t.hpa
    })
}

fn nested(kind: NestedKind, gpa: u64, info: u64) -> Result<u64, WalkError> {
    Err(WalkError::Phys(PhysError::Nested(NestedFault {
        kind,
        gpa,
        linear: Some(LINEAR),
        info,
    })))
}

#[test]
fn walks_through_both_levels_and_sets_both_levels_flags() {
    for npt in [false, true] {
        let host = FlatMemory::new(2 << 20);
        guest_memory(&host, HOST_OFF);
        let (b, sl) = second(npt, true, |_| 7);
        assert_eq!(
            run(&b, &sl, &host, AccessKind::Write),
            Ok(0x10_5123),
            "npt {npt}"
        );
        // Guest A on every level, D on the PTE (SDM 4.8).
        for (i, ea) in GUEST_ENTRIES.iter().enumerate() {
            let e = host.read_u64(ea + HOST_OFF).unwrap();
            assert_eq!(
                e & 0x60,
                if i == 3 { 0x60 } else { 0x20 },
                "npt {npt} guest entry {i}"
            );
        }
        // Second-level leaves: every page written (guest A/D updates and the data write).
        let (a, d) = if npt {
            (1 << 5, 1 << 6)
        } else {
            (EPT_A, EPT_D)
        };
        for gpa in GUEST_PAGES {
            let t = sl
                .translate(
                    &b.mem,
                    gpa,
                    super::GpaAccess::physical(AccessKind::Read),
                    AdUpdate::None,
                )
                .unwrap();
            let leaf = b.entry(t.leaf_entry);
            assert_eq!(
                leaf & (a | d),
                a | d,
                "npt {npt} second-level leaf for {gpa:#x}"
            );
        }
    }
}

#[test]
fn guest_table_page_unmapped_is_a_paging_structure_fault() {
    // (npt, EPT A/D, missing guest page, expected kind, gpa, info)
    let cases = [
        (
            false,
            false,
            0x2000,
            NestedKind::EptViolation,
            0x2008,
            1 | 1 << 7,
        ),
        (
            false,
            true,
            0x2000,
            NestedKind::EptViolation,
            0x2008,
            3 | 1 << 7,
        ),
        (
            false,
            false,
            0x1000,
            NestedKind::EptViolation,
            0x1008,
            1 | 1 << 7,
        ),
        (
            false,
            false,
            0x4000,
            NestedKind::EptViolation,
            0x4018,
            1 | 1 << 7,
        ),
        (
            true,
            false,
            0x2000,
            NestedKind::Npf,
            0x2008,
            0b100 | NPF_GUEST_TABLE,
        ),
        (
            true,
            false,
            0x4000,
            NestedKind::Npf,
            0x4018,
            0b100 | NPF_GUEST_TABLE,
        ),
    ];
    for (npt, ad, missing, kind, gpa, info) in cases {
        let host = FlatMemory::new(2 << 20);
        guest_memory(&host, HOST_OFF);
        let (b, sl) = second(npt, ad, |p| if p == missing { 0 } else { 7 });
        assert_eq!(
            run(&b, &sl, &host, AccessKind::Read),
            nested(kind, gpa, info),
            "npt {npt} ad {ad} {missing:#x}"
        );
    }
}

#[test]
fn final_page_unmapped_is_a_final_translation_fault() {
    // Guest page is user, writable, executable: advanced bits 9 and 10 set.
    let fin = 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10;
    let cases = [
        (false, AccessKind::Read, NestedKind::EptViolation, 1 | fin),
        (false, AccessKind::Write, NestedKind::EptViolation, 2 | fin),
        (
            false,
            AccessKind::Execute,
            NestedKind::EptViolation,
            4 | fin,
        ),
        (true, AccessKind::Read, NestedKind::Npf, 0b100 | NPF_FINAL),
        (true, AccessKind::Write, NestedKind::Npf, 0b110 | NPF_FINAL),
        (
            true,
            AccessKind::Execute,
            NestedKind::Npf,
            0b10100 | NPF_FINAL,
        ),
    ];
    for (npt, access, kind, info) in cases {
        let host = FlatMemory::new(2 << 20);
        guest_memory(&host, HOST_OFF);
        let (b, sl) = second(npt, false, |p| if p == 0x5000 { 0 } else { 7 });
        assert_eq!(
            run(&b, &sl, &host, access),
            nested(kind, 0x5123, info),
            "npt {npt} {access:?}"
        );
    }
}

#[test]
fn guest_accessed_flag_update_is_a_second_level_write() {
    // The guest PML4 page is read-only (R+X) at the second level.
    let ro = |p| if p == 0x1000 { EPT_R | EPT_X } else { 7 };
    // (EPT A/D, guest PML4E already accessed, expected)
    let cases = [
        // The walk's A update (a cmpxchg) is a data write to the guest table.
        (
            false,
            false,
            nested(
                NestedKind::EptViolation,
                0x1008,
                2 | 1 << 3 | 1 << 5 | 1 << 7,
            ),
        ),
        // With EPT A/D every guest-table access is a write, even a plain read.
        (
            true,
            true,
            nested(
                NestedKind::EptViolation,
                0x1008,
                3 | 1 << 3 | 1 << 5 | 1 << 7,
            ),
        ),
        // Without EPT A/D and no update needed, reading the table is fine.
        (false, true, Ok(0x10_5123)),
    ];
    for (ad, accessed, want) in cases {
        let host = FlatMemory::new(2 << 20);
        guest_memory(&host, HOST_OFF);
        if accessed {
            host.write_u64(0x1008 + HOST_OFF, 0x2000 | P_RW_US | 0x20)
                .unwrap();
        }
        let (b, sl) = second(false, ad, ro);
        assert_eq!(
            run(&b, &sl, &host, AccessKind::Read),
            want,
            "ad {ad} accessed {accessed}"
        );
    }
    // NPT: a read-only guest table page faults the A update with P|W|U/S and bit 33.
    let host = FlatMemory::new(2 << 20);
    guest_memory(&host, HOST_OFF);
    let (b, sl) = second(true, false, |p| if p == 0x1000 { 0b101 } else { 7 });
    assert_eq!(
        run(&b, &sl, &host, AccessKind::Read),
        nested(NestedKind::Npf, 0x1008, 0b111 | NPF_GUEST_TABLE)
    );
}

#[test]
fn guest_page_faults_pass_through() {
    let host = FlatMemory::new(2 << 20);
    guest_memory(&host, HOST_OFF);
    host.write_u64(0x4018 + HOST_OFF, 0).unwrap();
    let (b, sl) = second(false, false, |_| 7);
    let want = Err(WalkError::PageFault(PageFault {
        linear: LINEAR,
        error_code: PfErrorCode::USER | PfErrorCode::WRITE,
    }));
    assert_eq!(run(&b, &sl, &host, AccessKind::Write), want);
}

#[test]
fn paging_off_guest_translates_gpa_with_a_valid_linear_address() {
    let host = FlatMemory::new(2 << 20);
    let (b, sl) = second(false, false, |p| if p == 0x5000 { 0 } else { 7 });
    let ctx = PagingContext::default();
    let ok = translate_nested(
        &sl,
        &b.mem,
        &host,
        &ctx,
        0x4010,
        Access::new(AccessKind::Read, 0),
        AdUpdate::Set,
    );
    assert_eq!(ok.map(|t| t.hpa), Ok(0x10_4010));
    let err = translate_nested(
        &sl,
        &b.mem,
        &host,
        &ctx,
        0x5010,
        Access::new(AccessKind::Write, 0),
        AdUpdate::Set,
    );
    let want = NestedFault {
        kind: NestedKind::EptViolation,
        gpa: 0x5010,
        linear: Some(0x5010),
        info: 2 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10,
    };
    assert_eq!(err, Err(WalkError::Phys(PhysError::Nested(want))));
}

/// Runs the access until it succeeds, resolving second-level faults with the
/// lazily built tables; returns the host address and the fault count.
fn run_lazily(
    tdp: &mut TdpMmu,
    host: &FlatMemory,
    linear: u64,
    kind: AccessKind,
) -> Result<(u64, usize), FaultOutcome> {
    let access = Access::new(kind, 3);
    for faults in 0..16 {
        let r = translate_nested(
            tdp.second_level(),
            tdp.tables(),
            host,
            &ctx(),
            linear,
            access,
            AdUpdate::Set,
        );
        match r {
            Ok(t) => return Ok((t.hpa, faults)),
            Err(WalkError::Phys(PhysError::Nested(f))) => {
                let write = f.info & 2 != 0 && f.kind != NestedKind::EptMisconfig;
                match tdp.handle_fault(f.gpa, 8, write).unwrap() {
                    FaultOutcome::Retry => {}
                    mmio => return Err(mmio),
                }
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("no progress");
}

#[test]
fn lazily_built_tables_fault_install_retry() {
    // (npt, large pages, faults expected: one 2-MiB page, or five 4-KiB pages)
    let cases = [
        (false, true, 1),
        (false, false, 5),
        (true, true, 1),
        (true, false, 5),
    ];
    for (npt, large, want_faults) in cases {
        let host = FlatMemory::new(4 << 20);
        guest_memory(&host, 2 << 20);
        let mut tdp = if npt {
            TdpMmu::new_npt(4, true, 46)
        } else {
            TdpMmu::new_ept(4, true, 46)
        }
        .unwrap();
        tdp.set_large_pages(large);
        tdp.add_slot(SlotRange {
            id: 0,
            gpa: 0,
            size: 2 << 20,
            host_base: 2 << 20,
            read_only: false,
        })
        .unwrap();
        let got = run_lazily(&mut tdp, &host, LINEAR, AccessKind::Write);
        assert_eq!(
            got,
            Ok(((2 << 20) + 0x5123, want_faults)),
            "npt {npt} large {large}"
        );
        // Now everything is mapped: no more faults.
        assert_eq!(
            run_lazily(&mut tdp, &host, LINEAR, AccessKind::Read),
            Ok(((2 << 20) + 0x5123, 0))
        );
        // A guest PTE pointing outside every slot yields MMIO.
        host.write_u64((2 << 20) + 0x4020, 0xfee0_0000 | P_RW_US)
            .unwrap();
        let mmio = run_lazily(&mut tdp, &host, LINEAR + 0x1000 - 0x123, AccessKind::Write);
        let want = FaultOutcome::Mmio(super::MmioAccess {
            gpa: 0xfee0_0000,
            size: 8,
            write: true,
        });
        assert_eq!(mmio, Err(want), "npt {npt} large {large}");
    }
}
