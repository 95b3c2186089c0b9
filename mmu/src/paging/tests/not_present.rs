//! Not-present entries at each level: P = 0 in the error code (with the
//! access bits), no A/D written, and reserved bits of a non-present entry ignored.

use super::*;
use crate::access::{Access, AccessKind};
use crate::context::{CR4_SMEP, EFER_NXE};
use crate::paging::entry::{P, RW, US};
use crate::walk::{walk, AdUpdate};
use crate::WalkError;

#[test]
fn each_level_not_present() {
    // (access, NXE, SMEP, expected error code)
    let accesses = [
        (Access::new(AccessKind::Read, 0), false, false, 0u32),
        (Access::new(AccessKind::Write, 0), false, false, 0b10),
        (Access::new(AccessKind::Read, 3), false, false, 0b100),
        (Access::new(AccessKind::Write, 3), false, false, 0b110),
        (Access::implicit(AccessKind::Write), false, false, 0b10),
        (Access::new(AccessKind::Execute, 3), false, false, 0b100),
        (Access::new(AccessKind::Execute, 3), true, false, 0b1_0100),
        (Access::new(AccessKind::Execute, 0), false, true, 0b1_0000),
        (Access::new(AccessKind::Execute, 0), true, true, 0b1_0000),
    ];
    let mut n = 0;
    for mode in MODES {
        for &size in PageSize::for_mode(mode) {
            let m = mem();
            let mut b = builder(&m, mode);
            let lin = sample_linear(mode, size);
            let path = b
                .map(lin, sample_gpa(size), size, P | RW | US)
                .expect("map");
            for (level, &e) in path.as_slice().iter().enumerate() {
                let saved = b.read(e).expect("read");
                // Clear P but leave other bits, including ones that would be reserved.
                b.write(e, (saved & !P) | (1 << 21) | 0x1e6).expect("write");
                let snapshot: Vec<u64> = path
                    .as_slice()
                    .iter()
                    .map(|&x| b.read(x).expect("read"))
                    .collect();
                for &(access, nxe, smep, code) in &accesses {
                    let mut ctx = b.context();
                    ctx.efer |= if nxe { EFER_NXE } else { 0 };
                    ctx.cr4 |= if smep { CR4_SMEP } else { 0 };
                    // I/D needs PAE (or SMEP): 32-bit paging with NXE only clears it.
                    let code = if mode == PagingMode::Bits32 && nxe && !smep {
                        code & !0x10
                    } else {
                        code
                    };
                    match walk(&m, &ctx, lin + 8, access, AdUpdate::Set) {
                        Err(WalkError::PageFault(f)) => {
                            assert_eq!(
                                f.error_code.bits(),
                                code,
                                "{mode:?} {size:?} level {level} {access:?}"
                            );
                            assert_eq!(f.linear, lin + 8);
                        }
                        other => panic!("{mode:?} {size:?} level {level}: {other:?}"),
                    }
                    let now: Vec<u64> = path
                        .as_slice()
                        .iter()
                        .map(|&x| b.read(x).expect("read"))
                        .collect();
                    assert_eq!(
                        now, snapshot,
                        "{mode:?} {size:?} level {level}: no A/D on a fault"
                    );
                    n += 1;
                }
                b.write(e, saved).expect("restore");
            }
        }
    }
    // 32-bit: 2+1 levels; PAE: 3+2; 4-level: 4+3+2; 5-level: 5+4+3.
    assert_eq!(n, (3 + 5 + 9 + 12) * accesses.len());
}
