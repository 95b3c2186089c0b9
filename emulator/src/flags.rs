//! RFLAGS bits and eager arithmetic-flag computation (SDM vol. 1, 3.4.3 and
//! Appendix A "EFLAGS Cross-Reference"). Sizes are in bytes (1, 2, 4, 8).

/// Carry.
pub const CF: u64 = 1 << 0;
/// Reserved, always 1.
pub const FIXED: u64 = 1 << 1;
/// Parity (of the low byte of the result).
pub const PF: u64 = 1 << 2;
/// Auxiliary carry (out of bit 3).
pub const AF: u64 = 1 << 4;
/// Zero.
pub const ZF: u64 = 1 << 6;
/// Sign.
pub const SF: u64 = 1 << 7;
/// Trap (single-step).
pub const TF: u64 = 1 << 8;
/// Interrupt enable.
pub const IF: u64 = 1 << 9;
/// Direction.
pub const DF: u64 = 1 << 10;
/// Overflow.
pub const OF: u64 = 1 << 11;
/// I/O privilege level (2 bits).
pub const IOPL: u64 = 3 << 12;
/// Nested task.
pub const NT: u64 = 1 << 14;
/// Resume.
pub const RF: u64 = 1 << 16;
/// Virtual-8086 mode.
pub const VM: u64 = 1 << 17;
/// Alignment check / access control.
pub const AC: u64 = 1 << 18;
/// Virtual interrupt flag.
pub const VIF: u64 = 1 << 19;
/// Virtual interrupt pending.
pub const VIP: u64 = 1 << 20;
/// CPUID available.
pub const ID: u64 = 1 << 21;
/// The six status flags.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;

/// All-ones mask of `size` bytes.
#[inline]
pub const fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

/// The sign bit of `size` bytes.
#[inline]
pub const fn sign_bit(size: u8) -> u64 {
    let size = if size == 0 || size > 8 { 8 } else { size };
    1u64 << (size as u32 * 8 - 1)
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
#[inline]
pub const fn sext(v: u64, size: u8) -> u64 {
    let size = if size == 0 || size > 8 { 8 } else { size };
    let sh = 64 - size as u32 * 8;
    (((v << sh) as i64) >> sh) as u64
}

/// PF, ZF and SF of a result (PF: even parity of bits 7:0).
#[inline]
pub fn szp(res: u64, size: u8) -> u64 {
    let r = res & mask(size);
    let mut f = 0;
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    if r == 0 {
        f |= ZF;
    }
    if r & sign_bit(size) != 0 {
        f |= SF;
    }
    f
}

/// Result and status flags of `a + b + carry` (ADD/ADC, SDM vol. 2 "ADD", "ADC").
#[inline]
pub fn add(a: u64, b: u64, carry: bool, size: u8) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let wide = u128::from(a) + u128::from(b) + u128::from(carry);
    let res = (wide as u64) & m;
    let mut f = szp(res, size);
    if wide > u128::from(m) {
        f |= CF;
    }
    if (a ^ b ^ res) & 0x10 != 0 {
        f |= AF;
    }
    if (a ^ res) & (b ^ res) & sign_bit(size) != 0 {
        f |= OF;
    }
    (res, f)
}

/// Result and status flags of `a - b - borrow` (SUB/SBB/CMP/NEG).
#[inline]
pub fn sub(a: u64, b: u64, borrow: bool, size: u8) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let res = a.wrapping_sub(b).wrapping_sub(u64::from(borrow)) & m;
    let mut f = szp(res, size);
    if u128::from(a) < u128::from(b) + u128::from(borrow) {
        f |= CF;
    }
    if (a ^ b ^ res) & 0x10 != 0 {
        f |= AF;
    }
    if (a ^ b) & (a ^ res) & sign_bit(size) != 0 {
        f |= OF;
    }
    (res, f)
}

/// Status flags of a logical result (AND/OR/XOR/TEST): CF = OF = 0, SF/ZF/PF
/// from the result; AF is undefined and we clear it (as AMD and Intel parts do).
#[inline]
pub fn logic(res: u64, size: u8) -> u64 {
    szp(res, size)
}

/// Merges new status flags `f` (only the bits in `which`) into `rflags`.
#[inline]
pub fn merge(rflags: u64, f: u64, which: u64) -> u64 {
    (rflags & !which) | (f & which)
}

/// Evaluates condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc,
/// SDM vol. 1, Appendix B "EFLAGS Condition Codes").
#[inline]
pub fn cond(rflags: u64, cc: u8) -> bool {
    let f = |b: u64| rflags & b != 0;
    let r = match cc >> 1 {
        0 => f(OF),
        1 => f(CF),
        2 => f(ZF),
        3 => f(CF) || f(ZF),
        4 => f(SF),
        5 => f(PF),
        6 => f(SF) != f(OF),
        _ => f(ZF) || f(SF) != f(OF),
    };
    r != (cc & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sext_and_mask() {
        assert_eq!(sext(0x80, 1), 0xffff_ffff_ffff_ff80);
        assert_eq!(sext(0x7fff, 2), 0x7fff);
        assert_eq!(mask(4), 0xffff_ffff);
        assert_eq!(mask(8), u64::MAX);
        assert_eq!(sign_bit(2), 0x8000);
    }

    #[test]
    fn conditions() {
        // (cc, flags, expected)
        let t = [
            (0x0, OF, true),
            (0x1, OF, false),
            (0x2, CF, true),
            (0x4, ZF, true),
            (0x6, ZF, true),
            (0x7, 0, true),
            (0x8, SF, true),
            (0xa, PF, true),
            (0xc, SF, true),
            (0xc, SF | OF, false),
            (0xe, ZF, true),
            (0xf, 0, true),
            (0xf, OF, false),
        ];
        for (cc, fl, want) in t {
            assert_eq!(cond(fl, cc), want, "cc {cc:#x} flags {fl:#x}");
        }
    }
}
