//! Translation addresses, page sizes and the recorded entry addresses, for
//! every mode and page size at several linear addresses.

use super::*;
use crate::access::{Access, AccessKind};
use crate::paging::entry::{P, RW};
use crate::walk::{walk, AdUpdate};

/// Offsets inside a page to translate (clipped to the page size).
const OFFSETS: [u64; 6] = [0, 1, 0x7ff, 0xfff, 0x1_2345, 0x3fff_ffff];

#[test]
fn addresses_sizes_and_entry_gpas() {
    let read = Access::new(AccessKind::Read, 0);
    let mut n = 0;
    for mode in MODES {
        for &size in PageSize::for_mode(mode) {
            let m = mem();
            let mut b = builder(&m, mode);
            // Three pages that share upper tables and one that does not.
            let base = sample_linear(mode, size);
            let other = match mode {
                PagingMode::Level4 | PagingMode::Level5 => base ^ (1 << 40),
                _ => base ^ (1 << 31),
            } & !(size.bytes() - 1);
            let pages = [
                (base, sample_gpa(size)),
                (base + size.bytes(), sample_gpa(size) + 3 * size.bytes()),
                (base + 2 * size.bytes(), 0),
                (other, sample_gpa(size) + size.bytes()),
            ];
            for &(lin, gpa) in &pages {
                b.map(lin, gpa, size, P | RW).expect("map");
            }
            let ctx = b.context();
            for &(lin, gpa) in &pages {
                let path = b.path(lin).expect("path");
                for off in OFFSETS {
                    let off = off & (size.bytes() - 1);
                    let t = walk(&m, &ctx, lin + off, read, AdUpdate::None)
                        .unwrap_or_else(|e| panic!("{mode:?} {size:?} {lin:#x}+{off:#x}: {e:?}"));
                    assert_eq!(t.gpa, gpa + off, "{mode:?} {size:?} {lin:#x}+{off:#x}");
                    assert_eq!(t.page_size, size.bytes());
                    let want: Vec<u64> = path.as_slice().iter().map(|e| e.gpa).collect();
                    assert_eq!(&t.table_entries[..want.len()], &want[..]);
                    assert!(t.table_entries[want.len()..].iter().all(|&g| g == u64::MAX));
                    n += 1;
                }
            }
            // An unmapped neighbour faults not-present.
            let hole = base + 3 * size.bytes();
            assert!(
                walk(&m, &ctx, hole, read, AdUpdate::None).is_err(),
                "{mode:?} {size:?}"
            );
        }
    }
    assert_eq!(n, 10 * 4 * OFFSETS.len());
}

#[test]
fn paging_off_is_identity_on_32_bits() {
    let m = mem();
    let ctx = crate::context::PagingContext::default();
    for (lin, want) in [
        (0u64, 0u64),
        (0xb8000, 0xb8000),
        (0xffff_fff0, 0xffff_fff0),
        (0x1_0000_1234, 0x1234),
    ] {
        let t = walk(
            &m,
            &ctx,
            lin,
            Access::new(AccessKind::Write, 3),
            AdUpdate::Set,
        )
        .expect("no paging");
        assert_eq!(t.gpa, want);
        assert!(t.writable && t.user && t.executable && t.dirty && !t.global);
        assert_eq!(t.table_entries, [u64::MAX; 5]);
    }
}

#[test]
fn legacy_modes_ignore_linear_bits_above_31() {
    for mode in [PagingMode::Bits32, PagingMode::Pae] {
        let m = mem();
        let mut b = builder(&m, mode);
        b.map(0x8000_0000, 0x5000, PageSize::Size4K, P)
            .expect("map");
        let t = walk(
            &m,
            &b.context(),
            0x7_8000_0010,
            Access::new(AccessKind::Read, 0),
            AdUpdate::None,
        )
        .expect("walk");
        assert_eq!(t.gpa, 0x5010, "{mode:?}");
    }
}
