//! EPT walk tests: page sizes, 4/5 levels, permissions × access with exact
//! exit qualifications, misconfigurations, EPTP decoding, accessed/dirty flags.

use super::ept::*;
use super::testutil::Builder;
use super::{Ept, GpaAccess, GpaSource, SecondLevel, SlError};
use crate::access::AccessKind::{self, Execute, Read, Write};
use crate::fault::{NestedFault, NestedKind};
use crate::walk::AdUpdate;

const MAXPHY: u8 = 46;
const LINEAR: u64 = 0x7fff_1234_5678;

fn ept(b: &Builder, levels: u8, ad: bool) -> Ept {
    Ept::new(
        Eptp {
            memory_type: MEMTYPE_WB,
            levels,
            ad,
            root: b.root,
        },
        MAXPHY,
    )
}

fn final_src() -> GpaSource {
    GpaSource::Final {
        linear: LINEAR,
        user_page: true,
        writable_page: false,
        executable_page: true,
    }
}

fn acc(kind: AccessKind) -> GpaAccess {
    GpaAccess {
        kind,
        source: final_src(),
    }
}

/// Leaf entry for `level` with RWX `perms` and write-back type.
fn leaf(hpa: u64, level: u8, perms: u64) -> u64 {
    let ps = if level > 1 { EPT_PS } else { 0 };
    hpa | perms | ps | (u64::from(MEMTYPE_WB) << EPT_MEMTYPE_SHIFT)
}

fn violation(gpa: u64, q: u64) -> Result<u64, SlError> {
    Err(SlError::Fault(NestedFault {
        kind: NestedKind::EptViolation,
        gpa,
        linear: Some(LINEAR),
        info: q,
    }))
}

/// Qualification bits 7, 8 and the advanced bits for `final_src()`:
/// user page (9), read-only (10 clear), executable (11 clear).
const FINAL_BITS: u64 = 1 << 7 | 1 << 8 | 1 << 9;

#[test]
fn permissions_page_sizes_and_levels() {
    // (page level, gpa, host page address)
    let sizes = [
        (
            1u8,
            0x0000_1234_5678_9abc_u64 & 0xffff_ffff_ffff,
            0x3000_0000u64,
        ),
        (2, 0x0000_0040_0034_5678, 0x0060_0000),
        (3, 0x0000_0123_4567_89ab, 0x8000_0000),
    ];
    for levels in [4u8, 5] {
        for &(level, gpa, host) in &sizes {
            let size = 1u64 << (12 + 9 * (u32::from(level) - 1));
            for perms in 0..8u64 {
                for kind in [Read, Write, Execute] {
                    let mut b = Builder::new(levels);
                    b.map(gpa, level, leaf(host, level, perms), |_| 7);
                    let e = ept(&b, levels, false);
                    let got = e.translate(&b.mem, gpa, acc(kind), AdUpdate::Set).map(|t| {
                        assert_eq!(t.page_size, size);
                        t.hpa
                    });
                    let (r, w, x) = (perms & 1 != 0, perms & 2 != 0, perms & 4 != 0);
                    let allowed = match kind {
                        Read => r,
                        Write => w,
                        Execute => x,
                    };
                    let access_bit = match kind {
                        Read => 1,
                        Write => 2,
                        Execute => 4,
                    };
                    let want = if w && !r {
                        Err(SlError::Fault(NestedFault {
                            kind: NestedKind::EptMisconfig,
                            gpa,
                            linear: Some(LINEAR),
                            info: 0,
                        }))
                    } else if allowed {
                        Ok(host | (gpa & (size - 1)))
                    } else {
                        // perms == 0 is "not present": the AND bits are 0 too.
                        violation(gpa, access_bit | perms << 3 | FINAL_BITS)
                    };
                    assert_eq!(
                        got, want,
                        "levels {levels} level {level} perms {perms:03b} {kind:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn upper_levels_restrict_and_report_the_and() {
    // (non-leaf perms at level 3, leaf perms, access, expected qualification or Ok)
    let cases: [(u64, u64, AccessKind, Option<u64>); 6] = [
        (1, 7, Read, None),
        (1, 7, Write, Some(2 | 1 << 3)),
        (1, 7, Execute, Some(4 | 1 << 3)),
        (5, 3, Execute, Some(4 | 1 << 3)),
        (3, 5, Write, Some(2 | 1 << 3)),
        (7, 5, Execute, None),
    ];
    let gpa = 0x1_2345_6000;
    for (upper, perms, kind, want) in cases {
        let mut b = Builder::new(4);
        b.map(gpa, 1, leaf(0x9000, 1, perms), |l| {
            if l == 3 {
                upper
            } else {
                7
            }
        });
        let got = ept(&b, 4, false).translate(&b.mem, gpa, acc(kind), AdUpdate::None);
        match want {
            None => assert_eq!(got.map(|t| t.hpa), Ok(0x9000), "{upper} {perms} {kind:?}"),
            Some(q) => assert_eq!(
                got.map(|t| t.hpa),
                violation(gpa, q | FINAL_BITS),
                "{upper} {perms} {kind:?}"
            ),
        }
    }
}

#[test]
fn not_present_at_each_level() {
    for levels in [4u8, 5] {
        for missing in 1..=levels {
            let gpa = 0xabc_def0_1000;
            let mut b = Builder::new(levels);
            let entries = b.map(gpa, 1, leaf(0x5000, 1, 7), |_| 7);
            // Clear the entry at `missing` (entries are outermost first).
            b.mem
                .write_u64(entries[(levels - missing) as usize], 0)
                .unwrap();
            let got = ept(&b, levels, false).translate(&b.mem, gpa, acc(Write), AdUpdate::Set);
            assert_eq!(
                got.map(|t| t.hpa),
                violation(gpa, 2 | FINAL_BITS),
                "levels {levels} missing {missing}"
            );
        }
    }
}

#[test]
fn gpa_beyond_the_walk_length_is_a_violation() {
    let b = Builder::new(4);
    let got = ept(&b, 4, false).translate(&b.mem, 1 << 48, acc(Read), AdUpdate::Set);
    assert_eq!(got.map(|t| t.hpa), violation(1 << 48, 1 | FINAL_BITS));
}

#[test]
fn qualification_by_source() {
    let gpa = 0x7000;
    let table = GpaSource::GuestTable { linear: LINEAR };
    let fin = |user_page, writable_page, executable_page| GpaSource::Final {
        linear: LINEAR,
        user_page,
        writable_page,
        executable_page,
    };
    // (A/D enabled, advanced info, access kind, source, qualification); leaf is read-only (R=1).
    let cases = [
        (false, true, Write, GpaSource::Physical, 2 | 1 << 3),
        (false, true, Write, table, 2 | 1 << 3 | 1 << 7),
        (true, true, Read, table, 3 | 1 << 3 | 1 << 7),
        (true, true, Write, table, 3 | 1 << 3 | 1 << 7),
        (
            false,
            true,
            Write,
            fin(false, false, true),
            2 | 1 << 3 | 1 << 7 | 1 << 8,
        ),
        (
            false,
            true,
            Write,
            fin(true, true, false),
            2 | 1 << 3 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11,
        ),
        (
            false,
            false,
            Write,
            fin(true, true, false),
            2 | 1 << 3 | 1 << 7 | 1 << 8,
        ),
        (
            false,
            true,
            Execute,
            fin(false, false, false),
            4 | 1 << 3 | 1 << 7 | 1 << 8 | 1 << 11,
        ),
    ];
    for (ad, advanced, kind, source, q) in cases {
        let mut b = Builder::new(4);
        b.map(gpa, 1, leaf(0x5000, 1, EPT_R), |_| 7);
        let mut e = ept(&b, 4, ad);
        e.advanced_info = advanced;
        let got = e.translate(&b.mem, gpa, GpaAccess { kind, source }, AdUpdate::Set);
        let want = SlError::Fault(NestedFault {
            kind: NestedKind::EptViolation,
            gpa,
            linear: source.linear(),
            info: q,
        });
        assert_eq!(got, Err(want), "ad {ad} adv {advanced} {kind:?} {source:?}");
    }
    // Without A/D, a guest-table read of a read-only page succeeds.
    let mut b = Builder::new(4);
    b.map(gpa, 1, leaf(0x5000, 1, EPT_R), |_| 7);
    let t = ept(&b, 4, false).translate(
        &b.mem,
        gpa,
        GpaAccess {
            kind: Read,
            source: table,
        },
        AdUpdate::Set,
    );
    assert_eq!(t.map(|t| t.hpa), Ok(0x5000));
}

#[test]
fn misconfigurations() {
    let gpa = 0x40_2000; // PDE index 2, PTE index 2
    struct Case {
        name: &'static str,
        level: u8,
        entry: u64,
        exec_only: bool,
        gb_pages: bool,
        misconfig: bool,
    }
    let c = |name, level, entry, misconfig| Case {
        name,
        level,
        entry,
        exec_only: true,
        gb_pages: true,
        misconfig,
    };
    let wb = u64::from(MEMTYPE_WB) << 3;
    let cases = [
        c("write-only leaf", 1, 0x5000 | 2 | wb, true),
        c("write+execute leaf", 1, 0x5000 | 6 | wb, true),
        c("write-only non-leaf", 2, 0x3000 | 2, true),
        c("execute-only leaf, supported", 1, 0x5000 | 4 | wb, false),
        Case {
            exec_only: false,
            ..c("execute-only leaf, unsupported", 1, 0x5000 | 4 | wb, true)
        },
        c("PTE memtype 2", 1, 0x5000 | 7 | 2 << 3, true),
        c("PTE memtype 3", 1, 0x5000 | 7 | 3 << 3, true),
        c("PTE memtype 7", 1, 0x5000 | 7 | 7 << 3, true),
        c("PTE memtype 0 (UC)", 1, 0x5000 | 7, false),
        c("PTE memtype 1 (WC)", 1, 0x5000 | 7 | 1 << 3, false),
        c("PTE memtype 4 (WT)", 1, 0x5000 | 7 | 4 << 3, false),
        c("PTE memtype 5 (WP)", 1, 0x5000 | 7 | 5 << 3, false),
        c("PTE bit 7 ignored", 1, 0x5000 | 7 | wb | EPT_PS, false),
        c(
            "PTE address above MAXPHYADDR",
            1,
            1 << 46 | 0x5000 | 7 | wb,
            true,
        ),
        c(
            "PTE bits 63:52 ignored",
            1,
            0x7ff0_0000_0000_5000 | 7 | wb,
            false,
        ),
        c(
            "2-MiB leaf bit 12 reserved",
            2,
            0x20_1000 | 7 | wb | EPT_PS,
            true,
        ),
        c(
            "2-MiB leaf bit 20 reserved",
            2,
            0x30_0000 | 7 | wb | EPT_PS,
            true,
        ),
        c(
            "2-MiB leaf memtype 7",
            2,
            0x20_0000 | 7 | 7 << 3 | EPT_PS,
            true,
        ),
        c("2-MiB leaf ok", 2, 0x20_0000 | 7 | wb | EPT_PS, false),
        c("PDE non-leaf bit 3 reserved", 2, 0x3000 | 7 | 1 << 3, true),
        c("PDE non-leaf bit 6 reserved", 2, 0x3000 | 7 | 1 << 6, true),
        c(
            "1-GiB leaf bit 12 reserved",
            3,
            0x4000_1000 | 7 | wb | EPT_PS,
            true,
        ),
        c(
            "1-GiB leaf bit 29 reserved",
            3,
            0x2000_0000 | 7 | wb | EPT_PS,
            true,
        ),
        c("1-GiB leaf ok", 3, 0x4000_0000 | 7 | wb | EPT_PS, false),
        Case {
            gb_pages: false,
            ..c(
                "1-GiB leaf without 1-GiB support",
                3,
                0x4000_0000 | 7 | wb | EPT_PS,
                true,
            )
        },
        c("PML4E bit 7 reserved", 4, 0x3000 | 7 | EPT_PS, true),
        c("PML4E bit 4 reserved", 4, 0x3000 | 7 | 1 << 4, true),
    ];
    for case in cases {
        let mut b = Builder::new(4);
        if case.level > 1 && case.entry & EPT_PS == 0 {
            // A non-leaf under test: build a valid path below it, then patch it.
            let entries = b.map(gpa, 1, leaf(0x5000, 1, 7), |_| 7);
            let ea = entries[(4 - case.level) as usize];
            let below = b.entry(ea) & 0x000f_ffff_ffff_f000;
            b.mem
                .write_u64(ea, (case.entry & !0x000f_ffff_ffff_f000) | below)
                .unwrap();
        } else {
            b.map(gpa, case.level, case.entry, |_| 7);
        }
        let mut e = ept(&b, 4, false);
        e.exec_only = case.exec_only;
        e.gb_pages = case.gb_pages;
        let kind = if case.entry & 1 == 0 { Execute } else { Read };
        let got = e.translate(&b.mem, gpa, acc(kind), AdUpdate::Set);
        let is_misconfig = matches!(
            got,
            Err(SlError::Fault(NestedFault {
                kind: NestedKind::EptMisconfig,
                ..
            }))
        );
        assert_eq!(is_misconfig, case.misconfig, "{}: {got:?}", case.name);
        if !case.misconfig {
            assert!(got.is_ok(), "{}: {got:?}", case.name);
        }
    }
}

#[test]
fn misconfig_wins_over_a_deeper_missing_entry() {
    let gpa = 0x40_2000;
    let mut b = Builder::new(4);
    let entries = b.map(gpa, 1, 0, |l| if l == 3 { 7 | 1 << 5 } else { 7 });
    let got = ept(&b, 4, false).translate(&b.mem, gpa, acc(Read), AdUpdate::Set);
    assert!(matches!(
        got,
        Err(SlError::Fault(NestedFault {
            kind: NestedKind::EptMisconfig,
            ..
        }))
    ));
    // And a missing entry hides whatever garbage lies below it.
    b.mem.write_u64(entries[1], 0).unwrap();
    let got = ept(&b, 4, false).translate(&b.mem, gpa, acc(Read), AdUpdate::Set);
    assert_eq!(got.map(|t| t.hpa), violation(gpa, 1 | FINAL_BITS));
}

#[test]
fn mode_based_execute_control() {
    let gpa = 0x9000;
    // (leaf bits, user page, allowed, qualification bits 3-6 on violation)
    let cases = [
        (EPT_R | EPT_X, false, true, 0),
        (EPT_R | EPT_X, true, false, 1 << 3 | 1 << 5),
        (EPT_R | EPT_UX, true, true, 0),
        (EPT_R | EPT_UX, false, false, 1 << 3 | 1 << 6),
        (EPT_UX, true, true, 0),
        (EPT_R, true, false, 1 << 3),
    ];
    for (bits, user_page, allowed, perm_q) in cases {
        let mut b = Builder::new(4);
        b.map(gpa, 1, leaf(0x5000, 1, bits), |_| 7 | EPT_UX);
        let mut e = ept(&b, 4, false);
        e.mbec = true;
        let source = GpaSource::Final {
            linear: LINEAR,
            user_page,
            writable_page: true,
            executable_page: true,
        };
        let got = e.translate(
            &b.mem,
            gpa,
            GpaAccess {
                kind: Execute,
                source,
            },
            AdUpdate::Set,
        );
        let want = if allowed {
            Ok(0x5000)
        } else {
            let adv = if user_page { 1 << 9 } else { 0 } | 1 << 10;
            violation(gpa, 4 | perm_q | 1 << 7 | 1 << 8 | adv)
        };
        assert_eq!(got.map(|t| t.hpa), want, "bits {bits:#x} user {user_page}");
    }
}

#[test]
fn accessed_and_dirty_flags() {
    let gpa = 0x40_2000;
    let table = GpaSource::GuestTable { linear: LINEAR };
    // (EPTP A/D, AdUpdate, kind, source, leaf perms, A expected, D expected)
    let cases = [
        (true, AdUpdate::Set, Read, final_src(), 7, true, false),
        (true, AdUpdate::Set, Execute, final_src(), 7, true, false),
        (true, AdUpdate::Set, Write, final_src(), 7, true, true),
        (true, AdUpdate::Set, Read, table, 7, true, true),
        (true, AdUpdate::None, Write, final_src(), 7, false, false),
        (false, AdUpdate::Set, Write, final_src(), 7, false, false),
        (true, AdUpdate::Set, Write, final_src(), 5, false, false),
    ];
    for (ad, upd, kind, source, perms, want_a, want_d) in cases {
        let mut b = Builder::new(4);
        let entries = b.map(gpa, 1, leaf(0x5000, 1, perms), |_| 7);
        let _ = ept(&b, 4, ad).translate(&b.mem, gpa, GpaAccess { kind, source }, upd);
        for (i, &ea) in entries.iter().enumerate() {
            let e = b.entry(ea);
            let name = format!("ad {ad} {upd:?} {kind:?} {source:?} perms {perms} entry {i}");
            assert_eq!(e & EPT_A != 0, want_a, "A: {name}");
            let d_expected = want_d && i == entries.len() - 1;
            assert_eq!(e & EPT_D != 0, d_expected, "D: {name}");
        }
    }
}

#[test]
fn eptp_decoding() {
    let cases: [(u64, Result<Eptp, EptpError>); 7] = [
        (
            0x1234_5000 | 6 | 3 << 3,
            Ok(Eptp {
                memory_type: 6,
                levels: 4,
                ad: false,
                root: 0x1234_5000,
            }),
        ),
        (
            0x1234_5000 | 3 << 3 | 1 << 6,
            Ok(Eptp {
                memory_type: 0,
                levels: 4,
                ad: true,
                root: 0x1234_5000,
            }),
        ),
        (
            0x1000 | 6 | 4 << 3,
            Ok(Eptp {
                memory_type: 6,
                levels: 5,
                ad: false,
                root: 0x1000,
            }),
        ),
        (0x1000 | 1 | 3 << 3, Err(EptpError::MemoryType(1))),
        (0x1000 | 6 | 2 << 3, Err(EptpError::WalkLength(3))),
        (
            0x1000 | 6 | 3 << 3 | 1 << 8,
            Err(EptpError::Reserved(0x1000 | 6 | 3 << 3 | 1 << 8)),
        ),
        (
            1 << 46 | 6 | 3 << 3,
            Err(EptpError::Reserved(1 << 46 | 6 | 3 << 3)),
        ),
    ];
    for (raw, want) in cases {
        let got = Eptp::parse(raw, MAXPHY);
        assert_eq!(got, want, "{raw:#x}");
        if let Ok(p) = got {
            assert_eq!(p.encode(), raw, "round trip {raw:#x}");
        }
    }
    assert!(EptpError::WalkLength(3).to_string().contains("not 4 or 5"));
}

#[test]
fn unreadable_host_table_is_a_host_error() {
    let mut b = Builder::new(4);
    b.map(0x1000, 2, 0, |_| 7);
    let e = ept(&b, 4, false);
    // Point the PML4E far outside the host memory.
    b.mem.write_u64(b.root, 0x3f_0000_0000 | 7).unwrap();
    let got = SecondLevel::Ept(e).translate(&b.mem, 0x1000, acc(Read), AdUpdate::Set);
    assert!(matches!(got, Err(SlError::Host(_))), "{got:?}");
}
