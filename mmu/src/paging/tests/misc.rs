//! PSE-36, global pages, 5-level addressing, CR3 details, protection keys in
//! the translation, and unbacked page-table memory.

use super::*;
use crate::access::{Access, AccessKind};
use crate::context::{CR4_PCIDE, CR4_PGE, CR4_PKE};
use crate::paging::entry::{G, P, PKEY_SHIFT, RW, US};
use crate::phys::{PhysError, PhysMemory};
use crate::walk::{walk, AdUpdate};
use crate::WalkError;

const READ: Access = Access::new(AccessKind::Read, 0);

#[test]
fn pse36_high_physical_bits() {
    // (physical page, MAXPHYADDR)
    for (gpa, maxphy) in [
        (0x1_0040_0000u64, 36u8),
        (0xf_ffc0_0000, 36),
        (0xff_ffc0_0000, 40),
        (0xab_1240_0000, 52),
    ] {
        let m = mem();
        let mut b = builder(&m, PagingMode::Bits32);
        b.map(0x8040_0000, gpa, PageSize::Size4M, P | RW)
            .expect("map");
        let mut ctx = b.context();
        ctx.maxphyaddr = maxphy;
        let t = walk(&m, &ctx, 0x8043_2101, READ, AdUpdate::None).expect("walk");
        assert_eq!(t.gpa, gpa + 0x3_2101, "{gpa:#x}");
        assert_eq!(t.page_size, 4 << 20);
    }
}

#[test]
fn global_needs_pge_and_g_on_the_final_entry() {
    for mode in MODES {
        for &size in PageSize::for_mode(mode) {
            // (G on the leaf, G on the upper entries, CR4.PGE, expected global)
            for (leaf_g, upper_g, pge, want) in [
                (true, false, true, true),
                (true, false, false, false),
                (false, true, true, false),
                (false, false, true, false),
            ] {
                let m = mem();
                let mut b = builder(&m, mode);
                if upper_g && mode != PagingMode::Pae {
                    b.set_table_flags(P | RW | US | G);
                }
                let lin = sample_linear(mode, size);
                b.map(lin, sample_gpa(size), size, P | if leaf_g { G } else { 0 })
                    .expect("map");
                let mut ctx = b.context();
                if pge {
                    ctx.cr4 |= CR4_PGE;
                }
                let t = walk(&m, &ctx, lin, READ, AdUpdate::None).expect("walk");
                assert_eq!(
                    t.global, want,
                    "{mode:?} {size:?} leaf_g={leaf_g} upper_g={upper_g} pge={pge}"
                );
            }
        }
    }
}

#[test]
fn five_level_uses_bits_56_48() {
    let m = mem();
    let mut b = builder(&m, PagingMode::Level5);
    // Two addresses that differ only in bits 56:48 (the PML5 index).
    let lo = 0x0000_1234_5678_9000u64;
    let hi = lo | (0x1a5 << 48);
    b.map(lo, 0x11_000, PageSize::Size4K, P).expect("map");
    b.map(hi, 0x22_000, PageSize::Size4K, P).expect("map");
    let ctx = b.context();
    assert_eq!(
        walk(&m, &ctx, lo + 5, READ, AdUpdate::None)
            .expect("lo")
            .gpa,
        0x11_005
    );
    assert_eq!(
        walk(&m, &ctx, hi + 5, READ, AdUpdate::None)
            .expect("hi")
            .gpa,
        0x22_005
    );
    // Canonical upper-half form: bits 63:57 copy bit 56; the walk ignores them.
    let upper = 0xff00_0000_0000_0000 | (0x1a5 << 48) | 0x1234_5678_9000;
    assert_eq!(
        walk(&m, &ctx, upper, READ, AdUpdate::None)
            .expect("upper")
            .gpa,
        0x22_000
    );
    let pml5e = b.path(hi).expect("path").as_slice()[0].gpa;
    assert_eq!(pml5e, b.root() + 0x1a5 * 8);
    // The same tables read as 4-level see only the PML4 level of `lo`: not mapped there.
    let mut ctx4 = ctx;
    ctx4.cr4 &= !crate::context::CR4_LA57;
    assert!(walk(&m, &ctx4, lo, READ, AdUpdate::None).is_err());
}

#[test]
fn cr3_low_bits_are_not_address_bits() {
    // PCID (CR3[11:0]) in 4-level paging and PWT/PCD in 32-bit paging.
    for (mode, low, pcide) in [
        (PagingMode::Level4, 0xabc, true),
        (PagingMode::Level4, 0x18, false),
        (PagingMode::Bits32, 0x18, false),
        (PagingMode::Level5, 0x001, true),
    ] {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, PageSize::Size4K);
        b.map(lin, 0x6000, PageSize::Size4K, P).expect("map");
        let mut ctx = b.context();
        ctx.cr3 |= low;
        if pcide {
            ctx.cr4 |= CR4_PCIDE;
        }
        assert_eq!(
            walk(&m, &ctx, lin, READ, AdUpdate::None).expect("walk").gpa,
            0x6000,
            "{mode:?}"
        );
    }
}

#[test]
fn pae_pdpt_is_32_byte_aligned() {
    // A PDPT at a 32-byte (not 4-KiB) boundary inside the builder's root page.
    let m = mem();
    let mut b = builder(&m, PagingMode::Pae);
    b.map(0x4000_0000, 0x7000, PageSize::Size4K, P)
        .expect("map");
    let pdpte = m.read_u64(b.root() + 8).expect("r");
    m.write_u64(b.root() + 0x60 + 8, pdpte).expect("w");
    let mut ctx = b.context();
    ctx.cr3 = (b.root() + 0x60) | 0x18; // PWT/PCD in bits 4:3 are not address bits
    let t = walk(&m, &ctx, 0x4000_0abc, READ, AdUpdate::None).expect("walk");
    assert_eq!(t.gpa, 0x7abc);
    assert_eq!(t.table_entries[0], b.root() + 0x68);
}

#[test]
fn protection_key_reported_only_with_pke() {
    for mode in [PagingMode::Level4, PagingMode::Level5] {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, PageSize::Size2M);
        b.map(
            lin,
            0x20_0000,
            PageSize::Size2M,
            P | US | (11 << PKEY_SHIFT),
        )
        .expect("map");
        let mut ctx = b.context();
        assert_eq!(
            walk(&m, &ctx, lin, READ, AdUpdate::None)
                .expect("walk")
                .pkey,
            0
        );
        ctx.cr4 |= CR4_PKE;
        assert_eq!(
            walk(&m, &ctx, lin, READ, AdUpdate::None)
                .expect("walk")
                .pkey,
            11
        );
    }
}

#[test]
fn maxphyaddr_zero_means_52() {
    let m = mem();
    let mut b = builder(&m, PagingMode::Level4);
    let lin = sample_linear(PagingMode::Level4, PageSize::Size4K);
    b.map(lin, 0x000f_ffff_ffff_f000, PageSize::Size4K, P)
        .expect("map");
    let mut ctx = b.context();
    ctx.maxphyaddr = 0;
    assert_eq!(
        walk(&m, &ctx, lin, READ, AdUpdate::None).expect("walk").gpa,
        0x000f_ffff_ffff_f000
    );
    ctx.maxphyaddr = 51;
    assert!(walk(&m, &ctx, lin, READ, AdUpdate::None).is_err());
}

#[test]
fn unbacked_tables_are_phys_errors() {
    for mode in MODES {
        let m = mem();
        let mut b = builder(&m, mode);
        let lin = sample_linear(mode, PageSize::Size4K);
        let path = b.map(lin, 0x5000, PageSize::Size4K, P | RW).expect("map");
        let ctx = b.context();
        // The root itself beyond memory.
        let mut far = ctx;
        far.cr3 = 0x8000_0000;
        let first = walk(&m, &far, lin, READ, AdUpdate::Set);
        let Err(WalkError::Phys(PhysError::Unbacked { gpa })) = first else {
            panic!("{mode:?}: {first:?}");
        };
        assert_eq!(gpa & !0xfff, 0x8000_0000, "{mode:?}");
        // An entry in the middle pointing past the end of memory.
        let es = path.as_slice();
        let mid = es[es.len() - 2];
        let v = b.read(mid).expect("r");
        b.write(mid, (v & 0xfff) | 0x4000_0000).expect("w");
        let second = walk(&m, &ctx, lin, READ, AdUpdate::Set);
        let Err(WalkError::Phys(PhysError::Unbacked { gpa })) = second else {
            panic!("{mode:?}: {second:?}");
        };
        assert_eq!(gpa & !0xfff, 0x4000_0000, "{mode:?}");
    }
}
