//! Shifts and rotates: SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD
//! (SDM vol. 2, "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR", "SHLD", "SHRD").
//!
//! Rules encoded here: the count is masked to 5 bits (6 with a 64-bit
//! operand); a masked count of 0 changes nothing (not even flags); OF is
//! defined only for a masked count of 1. Undefined results we pick (until the
//! differential oracle says otherwise for the host CPU): OF for counts > 1
//! is computed with the count-1 formula on the final result; AF is cleared
//! for non-zero shift counts; SHL/SHR CF for counts ≥ the operand width is
//! the bit the shift would produce with an unbounded register (0 for counts
//! above the width); SHLD/SHRD with a count above a 16-bit width shift
//! in zeros past the source operand.

use crate::bus::Bus;
use crate::exception::OpResult;
use crate::exec::Ctx;
use crate::flags::{mask, merge, sext, sign_bit, szp, AF, CF, OF, STATUS};
use iced_x86::Mnemonic;

/// Result and new RFLAGS of a shift/rotate `m` of `v` (`size` bytes) by `count`
/// (not yet masked) with incoming flags `rflags`. Public for table tests.
pub fn shift_value(m: Mnemonic, v: u64, count: u64, size: u8, rflags: u64) -> (u64, u64) {
    let bits = u32::from(size) * 8;
    let cmask = if size == 8 { 0x3f } else { 0x1f };
    let c = (count & cmask) as u32;
    let v = v & mask(size);
    if c == 0 {
        return (v, rflags);
    }
    let sb = sign_bit(size);
    let cf_in = rflags & CF != 0;
    let msb = |x: u64| x & sb != 0;
    match m {
        Mnemonic::Shl | Mnemonic::Sal => {
            let res = if c >= bits { 0 } else { (v << c) & mask(size) };
            let cf = if c > bits {
                false
            } else {
                (v >> (bits - c)) & 1 != 0
            };
            let mut f = szp(res, size);
            if cf {
                f |= CF;
            }
            if msb(res) != cf {
                f |= OF;
            }
            (res, merge(rflags, f, STATUS))
        }
        Mnemonic::Shr => {
            let res = if c >= bits { 0 } else { v >> c };
            let cf = if c > bits {
                false
            } else {
                (v >> (c - 1)) & 1 != 0
            };
            let mut f = szp(res, size);
            if cf {
                f |= CF;
            }
            if c == 1 && msb(v) {
                f |= OF;
            }
            (res, merge(rflags, f, STATUS))
        }
        Mnemonic::Sar => {
            let s = sext(v, size) as i64;
            let res = (s >> c.min(63)) as u64 & mask(size);
            let cf = (s >> (c - 1).min(63)) & 1 != 0;
            let mut f = szp(res, size);
            if cf {
                f |= CF;
            }
            (res, merge(rflags, f, STATUS))
        }
        Mnemonic::Rol | Mnemonic::Ror => {
            let r = c % bits;
            let res = if m == Mnemonic::Rol {
                ((v << r) | (v >> ((bits - r) % bits))) & mask(size)
            } else {
                ((v >> r) | (v << ((bits - r) % bits))) & mask(size)
            };
            let (cf, of) = if m == Mnemonic::Rol {
                let cf = res & 1 != 0;
                (cf, msb(res) != cf)
            } else {
                let cf = msb(res);
                (cf, msb(res) != (res & (sb >> 1) != 0))
            };
            let mut f = rflags & !(CF | OF);
            if cf {
                f |= CF;
            }
            if of {
                f |= OF;
            }
            (res, f)
        }
        _ => {
            // RCL / RCR rotate through CF: a (bits+1)-bit rotation.
            let r = if size <= 2 { c % (bits + 1) } else { c };
            let mut x = v;
            let mut cf = cf_in;
            let of_before = msb(v) != cf_in;
            for _ in 0..r {
                if m == Mnemonic::Rcl {
                    let out = msb(x);
                    x = ((x << 1) | u64::from(cf)) & mask(size);
                    cf = out;
                } else {
                    let out = x & 1 != 0;
                    x = (x >> 1) | if cf { sb } else { 0 };
                    cf = out;
                }
            }
            let of = if m == Mnemonic::Rcl {
                msb(x) != cf
            } else {
                of_before
            };
            let mut f = rflags & !(CF | OF);
            if cf {
                f |= CF;
            }
            if of {
                f |= OF;
            }
            (x, f)
        }
    }
}

/// SHLD/SHRD result and flags: `dst` shifted by `count` with bits from `src`.
pub fn double_value(
    left: bool,
    dst: u64,
    src: u64,
    count: u64,
    size: u8,
    rflags: u64,
) -> (u64, u64) {
    let bits = u32::from(size) * 8;
    let cmask = if size == 8 { 0x3f } else { 0x1f };
    let c = (count & cmask) as u32;
    let dst = dst & mask(size);
    let src = src & mask(size);
    if c == 0 {
        return (dst, rflags);
    }
    // A 2×width concatenation: counts above a 16-bit width shift in zeros.
    let (res, cf) = if left {
        let cat = (u128::from(dst) << bits) | u128::from(src);
        let res = (((cat << c) >> bits) as u64) & mask(size);
        (res, (cat >> (2 * bits - c)) & 1 != 0)
    } else {
        let cat = (u128::from(src) << bits) | u128::from(dst);
        (((cat >> c) as u64) & mask(size), (cat >> (c - 1)) & 1 != 0)
    };
    let sb = sign_bit(size);
    let mut f = szp(res, size);
    if cf {
        f |= CF;
    }
    if (res ^ dst) & sb != 0 {
        f |= OF;
    }
    (res, merge(rflags, f, STATUS) & !AF)
}

/// SHL/SAL/SHR/SAR/ROL/ROR/RCL/RCR.
pub(super) fn shift<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let size = cx.op_size(0);
    let v = cx.read_rmw(0)?;
    let count = if cx.insn.op_count() > 1 {
        cx.read_op(1)?
    } else {
        1
    };
    let (res, f) = shift_value(m, v, count, size, cx.cpu.rflags);
    cx.write_op(0, res)?;
    let cmask = if size == 8 { 0x3f } else { 0x1f };
    cx.cpu.rflags = if count & cmask != 0
        && !matches!(
            m,
            Mnemonic::Rol | Mnemonic::Ror | Mnemonic::Rcl | Mnemonic::Rcr
        ) {
        f & !AF
    } else {
        f
    };
    Ok(())
}

/// SHLD / SHRD.
pub(super) fn double<B: Bus>(cx: &mut Ctx<'_, B>, left: bool) -> OpResult {
    let size = cx.op_size(0);
    let d = cx.read_rmw(0)?;
    let s = cx.read_op(1)?;
    let count = cx.read_op(2)?;
    let (res, f) = double_value(left, d, s, count, size, cx.cpu.rflags);
    cx.write_op(0, res)?;
    cx.cpu.rflags = f;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{PF, SF, ZF};

    #[test]
    fn shl_table() {
        // (value, count, size, result, CF, OF)
        let t = [
            (0x81u64, 1u64, 1u8, 0x02u64, true, true),
            (0x40, 1, 1, 0x80, false, true),
            (0x81, 2, 1, 0x04, false, false),
            (0x01, 8, 1, 0x00, true, false),
            (0x01, 9, 1, 0x00, false, false),
            (0x8000, 1, 2, 0, true, true),
            (1, 31, 4, 0x8000_0000, false, true),
            (1, 63, 8, 1 << 63, false, true),
            (3, 64, 8, 3, false, false), // count masked to 0: unchanged
        ];
        for (v, c, s, want, cf, of) in t {
            let (r, f) = shift_value(Mnemonic::Shl, v, c, s, 0);
            assert_eq!(r, want, "shl {v:#x},{c} size {s}");
            if c & if s == 8 { 0x3f } else { 0x1f } != 0 {
                assert_eq!(f & CF != 0, cf, "CF shl {v:#x},{c}");
                if c == 1 {
                    assert_eq!(f & OF != 0, of, "OF shl {v:#x},{c}");
                }
            } else {
                assert_eq!(f, 0, "count 0 leaves flags");
            }
        }
    }

    #[test]
    fn count_zero_preserves_flags() {
        for m in [
            Mnemonic::Shl,
            Mnemonic::Shr,
            Mnemonic::Sar,
            Mnemonic::Rol,
            Mnemonic::Ror,
            Mnemonic::Rcl,
            Mnemonic::Rcr,
        ] {
            let fl = CF | OF | ZF | SF | PF | 2;
            assert_eq!(shift_value(m, 0x55, 32, 4, fl), (0x55, fl), "{m:?}");
        }
    }

    #[test]
    fn rotates() {
        // ROL 8-bit by 8: value unchanged, CF = LSB (masked count non-zero).
        let (r, f) = shift_value(Mnemonic::Rol, 0x81, 8, 1, 0);
        assert_eq!((r, f & CF), (0x81, CF));
        let (r, f) = shift_value(Mnemonic::Ror, 0x01, 1, 1, 0);
        assert_eq!(r, 0x80);
        assert_eq!(f & (CF | OF), CF | OF);
        // RCL 8-bit by 9 is the identity, CF unchanged.
        let (r, f) = shift_value(Mnemonic::Rcl, 0x5a, 9, 1, CF);
        assert_eq!((r, f & CF), (0x5a, CF));
        let (r, f) = shift_value(Mnemonic::Rcl, 0x80, 1, 1, 0);
        assert_eq!((r, f & CF, f & OF), (0, CF, OF));
        let (r, f) = shift_value(Mnemonic::Rcr, 0x01, 1, 1, CF);
        assert_eq!((r, f & CF, f & OF), (0x80, CF, OF));
    }

    #[test]
    fn sar_sign() {
        let (r, f) = shift_value(Mnemonic::Sar, 0x80, 7, 1, 0);
        assert_eq!((r, f & CF), (0xff, 0));
        let (r, f) = shift_value(Mnemonic::Sar, 0x80, 1, 1, OF);
        assert_eq!((r, f & OF), (0xc0, 0));
        let (r, f) = shift_value(Mnemonic::Shr, 0x80, 1, 1, 0);
        assert_eq!((r, f & OF), (0x40, OF));
    }

    #[test]
    fn shld_shrd() {
        let (r, f) = double_value(true, 0x1234_5678, 0x9abc_def0, 8, 4, 0);
        assert_eq!(r, 0x3456_789a);
        assert_eq!(f & CF, 0x12 & 1);
        let (r, f) = double_value(false, 0x1234_5678, 0x9abc_def0, 4, 4, 0);
        assert_eq!(r, 0x0123_4567);
        assert_eq!(f & CF, CF);
        let (r, _) = double_value(true, 0xffff_0000_0000_0001, 0x8000_0000_0000_0000, 1, 8, 0);
        assert_eq!(r, 0xfffe_0000_0000_0003);
        assert_eq!(double_value(true, 5, 6, 0, 4, OF), (5, OF));
    }
}
