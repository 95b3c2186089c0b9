//! The full permission cross product, every mode and page size, against
//! [`super::reference::expect`]; A/D bits are checked on every case too.

use super::reference::{expect, Env, Kind, Page};
use super::*;
use crate::access::{Access, AccessKind};
use crate::context::*;
use crate::paging::entry::{A, D, P, PKEY_SHIFT, RW, US, XD};
use crate::paging::testutil::EntryRef;
use crate::walk::{walk, AdUpdate};
use crate::WalkError;

/// Where the U/S, R/W and XD restrictions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In the final entry.
    Leaf,
    /// In the outermost entry that has rights bits (PDE for 32-bit/PAE, PML4E/PML5E).
    Top,
}

/// (PKE, PKRU) variants: keys off, then key 5 with every AD/WD combination
/// (and a decoy: the other keys' bits set the opposite way).
fn pk_variants(mode: PagingMode) -> Vec<(bool, u32)> {
    let mut v = vec![(false, 0xffff_ffff)];
    if matches!(mode, PagingMode::Level4 | PagingMode::Level5) {
        for adwd in 0..4u32 {
            let decoy = !(3u32 << 10);
            let other = if adwd == 0 { decoy } else { 0 };
            v.push((true, other | (adwd << 10)));
        }
    }
    v
}

#[test]
fn permission_cross_product() {
    let mut checked = 0u32;
    for mode in MODES {
        for &size in PageSize::for_mode(mode) {
            checked += run_mode(mode, size);
        }
    }
    // 32-bit: 2 sizes x 2 places(4K) ... just make sure the product really ran.
    assert!(checked > 100_000, "only {checked} cases");
}

fn run_mode(mode: PagingMode, size: PageSize) -> u32 {
    let m = mem();
    let mut b = builder(&m, mode);
    let linear = sample_linear(mode, size);
    let gpa = sample_gpa(size);
    let path = b.map(linear, gpa, size, P | RW | US).expect("map");
    let entries: Vec<EntryRef> = path.as_slice().to_vec();
    let pristine: Vec<u64> = entries.iter().map(|&e| b.read(e).expect("read")).collect();
    // The outermost entry with rights bits (the PAE PDPTE has none).
    let top = if mode == PagingMode::Pae { 1 } else { 0 };
    let leaf = entries.len() - 1;
    let places: &[Place] = if top == leaf {
        &[Place::Leaf]
    } else {
        &[Place::Leaf, Place::Top]
    };
    let wide = mode != PagingMode::Bits32;
    let long = matches!(mode, PagingMode::Level4 | PagingMode::Level5);
    let base_ctx = b.context();
    let mut n = 0;

    for &place in places {
        for bits in 0..8u32 {
            let (user, writable, xd) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            if xd && !wide {
                continue;
            }
            for flags in 0..32u32 {
                let (nxe, wp, smep, smap, ac) = (
                    flags & 1 != 0,
                    flags & 2 != 0,
                    flags & 4 != 0,
                    flags & 8 != 0,
                    flags & 16 != 0,
                );
                for (pke, pkru) in pk_variants(mode) {
                    let mut ctx = base_ctx;
                    ctx.efer |= if nxe { EFER_NXE } else { 0 };
                    ctx.cr0 |= if wp { CR0_WP } else { 0 };
                    ctx.cr4 |= if smep { CR4_SMEP } else { 0 };
                    ctx.cr4 |= if smap { CR4_SMAP } else { 0 };
                    ctx.cr4 |= if pke { CR4_PKE } else { 0 };
                    ctx.rflags_ac = ac;
                    ctx.pkru = pkru;
                    let env = Env {
                        mode,
                        nxe,
                        wp,
                        smep,
                        smap,
                        ac,
                        pke,
                        pkru,
                    };
                    let page = Page {
                        user,
                        writable,
                        xd_bit: xd,
                        pkey: if long { 5 } else { 0 },
                    };
                    let restrict = (if user { US } else { 0 })
                        | (if writable { RW } else { 0 })
                        | (if xd { XD } else { 0 });
                    for kind in [Kind::Read, Kind::Write, Kind::Fetch] {
                        for (cpl, implicit) in [(0, false), (3, false), (0, true), (3, true)] {
                            // Fresh entries (A/D clear) with the case's rights.
                            for (i, (&e, &v)) in entries.iter().zip(&pristine).enumerate() {
                                let mut v = v & !(A | D);
                                let target = match place {
                                    Place::Leaf => i == leaf,
                                    Place::Top => i == top,
                                };
                                if target {
                                    v = (v & !(US | RW)) | restrict;
                                }
                                if i == leaf && long {
                                    v |= 5 << PKEY_SHIFT;
                                }
                                b.write(e, v).expect("write");
                            }
                            let before: Vec<u64> =
                                entries.iter().map(|&e| b.read(e).expect("read")).collect();
                            let ak = match kind {
                                Kind::Read => AccessKind::Read,
                                Kind::Write => AccessKind::Write,
                                Kind::Fetch => AccessKind::Execute,
                            };
                            let access = Access {
                                kind: ak,
                                cpl,
                                implicit_supervisor: implicit,
                            };
                            let want = expect(env, page, kind, cpl, implicit);
                            let got = walk(&m, &ctx, linear | 0x123, access, AdUpdate::Set);
                            let what = format!("{mode:?} {size:?} {place:?} u={user} w={writable} xd={xd} nxe={nxe} wp={wp} smep={smep} smap={smap} ac={ac} pke={pke} pkru={pkru:#x} {kind:?} cpl={cpl} implicit={implicit}");
                            let after: Vec<u64> =
                                entries.iter().map(|&e| b.read(e).expect("read")).collect();
                            match (want, got) {
                                (Ok(()), Ok(t)) => {
                                    assert_eq!(t.gpa, gpa | 0x123, "{what}");
                                    assert_eq!(t.user, user, "{what}");
                                    assert_eq!(t.writable, writable, "{what}");
                                    assert_eq!(t.executable, !(xd && nxe), "{what}");
                                    assert_eq!(t.pkey, if pke { 5 } else { 0 }, "{what}");
                                    for (i, (&x, &y)) in before.iter().zip(&after).enumerate() {
                                        let pdpte = mode == PagingMode::Pae && i == 0;
                                        let want_a = if pdpte { 0 } else { A };
                                        let want_d = if i == leaf && kind == Kind::Write {
                                            D
                                        } else {
                                            0
                                        };
                                        assert_eq!(y, x | want_a | want_d, "{what}: entry {i}");
                                    }
                                    assert_eq!(t.dirty, kind == Kind::Write, "{what}");
                                }
                                (Err(code), Err(WalkError::PageFault(f))) => {
                                    assert_eq!(f.error_code.bits(), code, "{what}");
                                    assert_eq!(f.linear, linear | 0x123, "{what}");
                                    assert_eq!(
                                        before, after,
                                        "{what}: a faulting walk must not set A/D"
                                    );
                                }
                                (w, g) => panic!("{what}: want {w:?}, got {g:?}"),
                            }
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    n
}
