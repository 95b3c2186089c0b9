//! NPT walk tests: page sizes, user-mode permission semantics, NX with the
//! host's EFER.NXE, reserved bits, EXITINFO1 bits (incl. 32/33), A/D flags.

use super::npt::*;
use super::testutil::Builder;
use super::{GpaAccess, GpaSource, Npt, SlError};
use crate::access::AccessKind::{self, Execute, Read, Write};
use crate::fault::{NestedFault, NestedKind};
use crate::walk::AdUpdate;

const MAXPHY: u8 = 46;
const LINEAR: u64 = 0xffff_8000_0010_2000;
const ALL: u64 = NPT_P | NPT_RW | NPT_US;

fn npt(b: &Builder, nxe: bool) -> Npt {
    Npt::new(b.root, nxe, MAXPHY)
}

fn fin() -> GpaSource {
    GpaSource::Final {
        linear: LINEAR,
        user_page: false,
        writable_page: true,
        executable_page: true,
    }
}

fn npf(gpa: u64, source: GpaSource, info: u64) -> Result<u64, SlError> {
    Err(SlError::Fault(NestedFault {
        kind: NestedKind::Npf,
        gpa,
        linear: source.linear(),
        info,
    }))
}

#[test]
fn permissions_and_exitinfo1() {
    // (leaf flags, upper flags, host NXE, access, EXITINFO1 low bits or None = ok)
    let cases: [(u64, u64, bool, AccessKind, Option<u64>); 16] = [
        (ALL, ALL, true, Read, None),
        (ALL, ALL, true, Write, None),
        (ALL, ALL, true, Execute, None),
        (0, ALL, true, Read, Some(0b00100)),
        (0, ALL, true, Write, Some(0b00110)),
        (0, ALL, true, Execute, Some(0b10100)),
        (0, ALL, false, Execute, Some(0b00100)),
        (NPT_P | NPT_US, ALL, true, Read, None),
        (NPT_P | NPT_US, ALL, true, Write, Some(0b00111)),
        (NPT_P | NPT_RW, ALL, true, Read, Some(0b00101)),
        (ALL, NPT_P | NPT_RW, true, Write, Some(0b00111)),
        (ALL, NPT_P | NPT_US, true, Write, Some(0b00111)),
        (ALL, NPT_P | NPT_US, true, Read, None),
        (ALL | NPT_NX, ALL, true, Execute, Some(0b10101)),
        (ALL, ALL | NPT_NX, true, Execute, Some(0b10101)),
        (ALL | NPT_NX, ALL, true, Read, None),
    ];
    let gpa = 0x12_3456_7890;
    for (leaf, upper, nxe, kind, want) in cases {
        let mut b = Builder::new(4);
        b.map(gpa, 1, 0x7000 | leaf, |_| upper);
        let got = npt(&b, nxe).translate(
            &b.mem,
            gpa,
            GpaAccess {
                kind,
                source: fin(),
            },
            AdUpdate::Set,
        );
        let want = match want {
            None => Ok(0x7890),
            Some(bits) => npf(gpa, fin(), bits | NPF_FINAL),
        };
        assert_eq!(
            got.map(|t| t.hpa),
            want,
            "leaf {leaf:#x} upper {upper:#x} nxe {nxe} {kind:?}"
        );
    }
}

#[test]
fn page_sizes_and_levels() {
    // (leaf level, gpa, host page)
    let cases = [
        (1u8, 0x1234_5678_9abc_u64, 0x3000_0000u64),
        (2, 0x40_0034_5678, 0x60_0000),
        (3, 0x123_4567_89ab, 0x8000_0000),
    ];
    for levels in [4u8, 5] {
        for (level, gpa, host) in cases {
            let size = 1u64 << (12 + 9 * (u32::from(level) - 1));
            let mut b = Builder::new(levels);
            let ps = if level > 1 { NPT_PS } else { 0 };
            b.map(gpa, level, host | ALL | ps, |_| ALL);
            let mut n = npt(&b, true);
            n.levels = levels;
            let t = n
                .translate(&b.mem, gpa, GpaAccess::physical(Read), AdUpdate::Set)
                .unwrap();
            assert_eq!(
                (t.hpa, t.page_size),
                (host | (gpa & (size - 1)), size),
                "levels {levels} level {level}"
            );
        }
    }
}

#[test]
fn reserved_bits() {
    let gpa = 0x40_2000;
    let rsvd = 0b01101; // P, U/S, RSVD (read access)
                        // (name, level, entry, nxe, 1-GiB pages, reserved?)
    let cases = [
        (
            "NX without NXE",
            1,
            0x5000 | ALL | NPT_NX,
            false,
            true,
            true,
        ),
        ("NX with NXE", 1, 0x5000 | ALL | NPT_NX, true, true, false),
        (
            "address above MAXPHYADDR",
            1,
            1 << 46 | 0x5000 | ALL,
            true,
            true,
            true,
        ),
        (
            "PTE bit 7 is PAT",
            1,
            0x5000 | ALL | NPT_PS,
            true,
            true,
            false,
        ),
        (
            "2-MiB leaf bit 13",
            2,
            0x20_2000 | ALL | NPT_PS,
            true,
            true,
            true,
        ),
        (
            "2-MiB leaf bit 12 is PAT",
            2,
            0x20_1000 | ALL | NPT_PS,
            true,
            true,
            false,
        ),
        (
            "1-GiB leaf bit 13",
            3,
            0x4000_2000 | ALL | NPT_PS,
            true,
            true,
            true,
        ),
        (
            "1-GiB leaf bit 29",
            3,
            0x6000_0000 | ALL | NPT_PS,
            true,
            true,
            true,
        ),
        (
            "1-GiB leaf ok",
            3,
            0x4000_0000 | ALL | NPT_PS,
            true,
            true,
            false,
        ),
        (
            "1-GiB leaf unsupported",
            3,
            0x4000_0000 | ALL | NPT_PS,
            true,
            false,
            true,
        ),
        ("PML4E PS", 4, 0x3000 | ALL | NPT_PS, true, true, true),
    ];
    for (name, level, entry, nxe, gb, reserved) in cases {
        let mut b = Builder::new(4);
        b.map(gpa, level, entry, |_| ALL);
        let mut n = npt(&b, nxe);
        n.gb_pages = gb;
        let got = n.translate(&b.mem, gpa, GpaAccess::physical(Read), AdUpdate::Set);
        if reserved {
            assert_eq!(
                got.map(|t| t.hpa),
                npf(gpa, GpaSource::Physical, rsvd),
                "{name}"
            );
        } else {
            assert!(got.is_ok(), "{name}: {got:?}");
        }
    }
}

#[test]
fn exitinfo1_flavour_by_source() {
    let gpa = 0x9000;
    let table = GpaSource::GuestTable { linear: LINEAR };
    // Leaf read-only: writes fault. (kind, source, EXITINFO1)
    let cases = [
        (Write, GpaSource::Physical, 0b111),
        (Write, table, 0b111 | NPF_GUEST_TABLE),
        (Write, fin(), 0b111 | NPF_FINAL),
        (Read, table, 0),
    ];
    for (kind, source, info) in cases {
        let mut b = Builder::new(4);
        b.map(gpa, 1, 0x5000 | NPT_P | NPT_US, |_| ALL);
        let got = npt(&b, true).translate(&b.mem, gpa, GpaAccess { kind, source }, AdUpdate::Set);
        if info == 0 {
            assert_eq!(got.map(|t| t.hpa), Ok(0x5000), "{kind:?} {source:?}");
        } else {
            assert_eq!(
                got.map(|t| t.hpa),
                npf(gpa, source, info),
                "{kind:?} {source:?}"
            );
        }
    }
}

#[test]
fn accessed_and_dirty_flags() {
    let gpa = 0x40_2000;
    // (AdUpdate, kind, leaf flags, A expected, D expected on the leaf)
    let cases = [
        (AdUpdate::Set, Read, ALL, true, false),
        (AdUpdate::Set, Execute, ALL, true, false),
        (AdUpdate::Set, Write, ALL, true, true),
        (AdUpdate::None, Write, ALL, false, false),
        (AdUpdate::Set, Write, NPT_P | NPT_US, false, false),
    ];
    for (upd, kind, leaf, want_a, want_d) in cases {
        let mut b = Builder::new(4);
        let entries = b.map(gpa, 1, 0x5000 | leaf, |_| ALL);
        let _ = npt(&b, true).translate(
            &b.mem,
            gpa,
            GpaAccess {
                kind,
                source: fin(),
            },
            upd,
        );
        for (i, &ea) in entries.iter().enumerate() {
            let e = b.entry(ea);
            assert_eq!(e & NPT_A != 0, want_a, "A {upd:?} {kind:?} entry {i}");
            assert_eq!(
                e & NPT_D != 0,
                want_d && i == 3,
                "D {upd:?} {kind:?} entry {i}"
            );
        }
    }
}
