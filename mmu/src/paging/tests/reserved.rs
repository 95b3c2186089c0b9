//! Reserved-bit checks per mode and level (SDM vol. 3 Tables 4-4, 4-8..4-11,
//! 4-14..4-20): RSVD | P on a violation, and nearby bits that are *not*
//! reserved (address, PAT, ignored, protection-key bits) must translate.

use super::*;
use crate::access::{Access, AccessKind};
use crate::context::{CR4_PSE, EFER_NXE};
use crate::paging::entry::{P, PS, RW, US};
use crate::walk::{walk, AdUpdate};
use crate::WalkError;
use PageSize::*;
use PagingMode::*;

/// (mode, size, level index from the top, bits to set, MAXPHYADDR, NXE, reserved?)
type Case = (PagingMode, PageSize, usize, u64, u8, bool, bool);

const B: fn(u32) -> u64 = |n| 1u64 << n;

fn cases() -> Vec<Case> {
    vec![
        // 32-bit paging, 4-MiB PDE: bit 21 reserved; PSE-36 bits 20:13 up to M = min(MAXPHYADDR, 40).
        (Bits32, Size4M, 0, B(21), 52, false, true),
        (Bits32, Size4M, 0, B(20), 52, false, false),
        (Bits32, Size4M, 0, B(20), 40, false, false),
        (Bits32, Size4M, 0, B(17), 36, false, true),
        (Bits32, Size4M, 0, B(20), 36, false, true),
        (Bits32, Size4M, 0, B(16), 36, false, false),
        (Bits32, Size4M, 0, B(12), 36, false, false),
        (Bits32, Size4M, 0, 0xe00 | B(8), 36, false, false),
        // 32-bit 4-KiB path: no reserved bits at all.
        (Bits32, Size4K, 0, 0xe40 | B(8), 36, true, false),
        (Bits32, Size4K, 1, 0xf80, 36, true, false),
        // PAE PDPTE: bits 2:1, 8:5, 63:M reserved; 11:9 ignored.
        (Pae, Size4K, 0, B(1), 52, true, true),
        (Pae, Size4K, 0, B(2), 52, true, true),
        (Pae, Size4K, 0, B(5), 52, true, true),
        (Pae, Size4K, 0, B(6), 52, true, true),
        (Pae, Size4K, 0, B(7), 52, true, true),
        (Pae, Size4K, 0, B(8), 52, true, true),
        (Pae, Size4K, 0, B(63), 52, true, true),
        (Pae, Size4K, 0, B(36), 36, true, true),
        (Pae, Size4K, 0, 0xe00, 36, true, false),
        // PAE PDE/PTE: 62:M reserved (including 62:52), XD reserved without NXE.
        (Pae, Size4K, 1, B(62), 52, true, true),
        (Pae, Size4K, 1, B(52), 52, true, true),
        (Pae, Size4K, 1, B(63), 52, false, true),
        (Pae, Size4K, 1, B(63), 52, true, false),
        (Pae, Size4K, 2, B(62), 52, true, true),
        (Pae, Size4K, 2, B(52), 52, true, true),
        (Pae, Size4K, 2, B(40), 40, true, true),
        (Pae, Size4K, 2, B(39), 40, true, false),
        (Pae, Size4K, 2, B(63), 52, false, true),
        (Pae, Size4K, 2, B(7) | B(8) | 0xe00, 36, true, false),
        // PAE 2-MiB PDE: 20:13 reserved, 12 is PAT.
        (Pae, Size2M, 1, B(13), 52, true, true),
        (Pae, Size2M, 1, B(20), 52, true, true),
        (Pae, Size2M, 1, B(12), 52, true, false),
        (Pae, Size2M, 1, B(40), 40, true, true),
        (Pae, Size2M, 1, B(39), 40, true, false),
        // 4-level: PS reserved in the PML4E; 51:M reserved; 62:52 ignored above the leaf.
        (Level4, Size4K, 0, PS, 52, true, true),
        (Level4, Size4K, 0, B(51), 48, true, true),
        (Level4, Size4K, 0, 0x7ff << 52, 48, true, false),
        (Level4, Size4K, 0, B(63), 52, false, true),
        (Level4, Size4K, 0, B(63), 52, true, false),
        (Level4, Size4K, 1, B(63), 52, false, true),
        (Level4, Size4K, 2, B(46), 46, true, true),
        (Level4, Size4K, 3, B(51), 51, true, true),
        (Level4, Size4K, 3, B(50), 51, true, false),
        (Level4, Size4K, 3, 0x7f << 52, 52, true, false),
        (Level4, Size4K, 3, 0xf << 59, 52, true, false),
        (Level4, Size4K, 3, B(63), 52, false, true),
        (Level4, Size4K, 3, B(7) | B(8), 52, true, false),
        // 1-GiB PDPTE: 29:13 reserved, 12 PAT.
        (Level4, Size1G, 1, B(13), 52, true, true),
        (Level4, Size1G, 1, B(29), 52, true, true),
        (Level4, Size1G, 1, B(21), 52, true, true),
        (Level4, Size1G, 1, B(12), 52, true, false),
        (Level4, Size1G, 1, B(30), 52, true, false),
        (Level4, Size1G, 1, B(45), 45, true, true),
        (Level4, Size1G, 1, 0xf << 59, 52, true, false),
        // 2-MiB PDE: 20:13 reserved.
        (Level4, Size2M, 2, B(13), 52, true, true),
        (Level4, Size2M, 2, B(20), 52, true, true),
        (Level4, Size2M, 2, B(12), 52, true, false),
        (Level4, Size2M, 2, B(63), 52, false, true),
        // 5-level: PS reserved in PML5E and PML4E.
        (Level5, Size4K, 0, PS, 52, true, true),
        (Level5, Size4K, 1, PS, 52, true, true),
        (Level5, Size4K, 0, B(63), 52, false, true),
        (Level5, Size4K, 0, B(50), 50, true, true),
        (Level5, Size4K, 4, B(50), 50, true, true),
        (Level5, Size1G, 2, B(14), 52, true, true),
        (Level5, Size2M, 3, B(19), 52, true, true),
    ]
}

#[test]
fn reserved_bits_table() {
    let cases = cases();
    for &(mode, size, level, bits, maxphy, nxe, rsvd) in &cases {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, size);
        let path = b
            .map(lin, sample_gpa(size), size, P | RW | US)
            .expect("map");
        let e = path.as_slice()[level];
        let v = b.read(e).expect("read");
        b.write(e, v | bits).expect("write");
        let mut ctx = b.context();
        ctx.maxphyaddr = maxphy;
        ctx.efer |= if nxe { EFER_NXE } else { 0 };
        let what = format!("{mode:?} {size:?} level {level} bits {bits:#x} M={maxphy} nxe={nxe}");
        for (access, base) in [
            (Access::new(AccessKind::Read, 0), 0u32),
            (Access::new(AccessKind::Write, 3), 0b110),
        ] {
            match (rsvd, walk(&m, &ctx, lin + 4, access, AdUpdate::Set)) {
                (true, Err(WalkError::PageFault(f))) => {
                    assert_eq!(f.error_code.bits(), base | 0b1001, "{what}")
                }
                (false, Ok(t)) => assert_eq!(t.page_size, size.bytes(), "{what}"),
                (_, other) => panic!("{what}: reserved={rsvd}, got {other:?}"),
            }
        }
    }
    assert!(cases.len() >= 60);
}

/// With CR4.PSE = 0 a 32-bit PDE's PS bit is ignored: the PDE points to a page table.
#[test]
fn pse_off_ignores_ps() {
    let m = mem();
    let mut b = builder(&m, Bits32);
    let path = b.map(0x40_3000, 0x7000, Size4K, P | RW).expect("map");
    let pde = path.as_slice()[0];
    let v = b.read(pde).expect("read");
    b.write(pde, v | PS).expect("write");
    let mut ctx = b.context();
    let read = Access::new(AccessKind::Read, 0);
    // With PSE on, the same PDE maps a 4-MiB page: bits 31:22 of the table
    // address, and its bits 20:13 read as PSE-36 physical bits 39:32.
    let t = walk(&m, &ctx, 0x40_3004, read, AdUpdate::None).expect("large page");
    let frame = (v & 0xffc0_0000) | (((v >> 13) & 0xff) << 32);
    assert_ne!(frame, 0x7000);
    assert_eq!((t.gpa, t.page_size), (frame + 0x3004, 4 << 20));
    ctx.cr4 &= !CR4_PSE;
    let t = walk(&m, &ctx, 0x40_3004, read, AdUpdate::None).expect("table walk");
    assert_eq!((t.gpa, t.page_size), (0x7004, 4096));
}

/// The first problem from the top wins: a reserved bit above a non-present
/// entry gives RSVD; a non-present entry above a reserved one gives P = 0.
#[test]
fn fault_order_is_top_down() {
    for mode in [Pae, Level4, Level5] {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, Size4K);
        let path = b.map(lin, 0x9000, Size4K, P | RW).expect("map");
        let es = path.as_slice();
        let (upper, lower) = (es[es.len() - 2], es[es.len() - 1]);
        let (uv, lv) = (b.read(upper).expect("r"), b.read(lower).expect("r"));
        let ctx = b.context(); // NXE = 0: bit 63 is reserved.
        let read = Access::new(AccessKind::Read, 0);
        b.write(upper, uv | B(63)).expect("w");
        b.write(lower, lv & !P).expect("w");
        let code = |r| match r {
            Err(WalkError::PageFault(f)) => f.error_code.bits(),
            other => panic!("{mode:?}: {other:?}"),
        };
        assert_eq!(
            code(walk(&m, &ctx, lin, read, AdUpdate::None)),
            0b1001,
            "{mode:?}"
        );
        b.write(upper, uv & !P).expect("w");
        b.write(lower, lv | B(63)).expect("w");
        assert_eq!(
            code(walk(&m, &ctx, lin, read, AdUpdate::None)),
            0,
            "{mode:?}"
        );
    }
}
