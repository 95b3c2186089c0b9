//! Flags for the fast path: branch-free helpers equal to [`flags::add`],
//! [`flags::sub`] and [`flags::szp`] for operand sizes 1, 2, 4 and 8, and
//! lazy status flags.
//!
//! Inside the fast loop an ALU instruction records its inputs instead of
//! computing RFLAGS; the flags are computed when something reads them
//! (Jcc, ADC/SBB's carry, INC/DEC's preserved CF) and always before the
//! loop hands the CPU back, so nothing outside the loop ever sees a lazy
//! state. The computed value is exactly the eager one: the same helpers,
//! the same inputs.

use crate::cpu::Cpu;
use crate::flags::{self, merge, CF, STATUS};

/// All-ones mask of `size` (1, 2, 4 or 8) bytes, without a branch.
#[inline(always)]
pub(crate) fn mask_of(size: u8) -> u64 {
    u64::MAX >> (64 - 8 * u32::from(size))
}

/// PF, ZF and SF of the masked result `r` of `size` bytes; equal to
/// [`flags::szp`] (PF: even parity of bits 7:0, by a 16-entry table).
#[inline(always)]
fn szp(r: u64, size: u8) -> u64 {
    let x = r ^ (r >> 4);
    let pf = ((0x9669u64 >> (x & 0xf)) & 1) << 2;
    let zf = u64::from(r == 0) << 6;
    let sf = ((r >> (8 * u32::from(size) - 1)) & 1) << 7;
    pf | zf | sf
}

/// [`flags::add`] for sizes 1, 2, 4, 8.
#[inline(always)]
fn add(a: u64, b: u64, carry: bool, size: u8) -> (u64, u64) {
    let m = mask_of(size);
    let (a, b) = (a & m, b & m);
    let wide = u128::from(a) + u128::from(b) + u128::from(carry);
    let res = (wide as u64) & m;
    let cf = u64::from(wide > u128::from(m));
    let af = (a ^ b ^ res) & flags::AF;
    let of = (((a ^ res) & (b ^ res)) >> (8 * u32::from(size) - 1) & 1) << 11;
    (res, szp(res, size) | cf | af | of)
}

/// [`flags::sub`] for sizes 1, 2, 4, 8.
#[inline(always)]
fn sub(a: u64, b: u64, borrow: bool, size: u8) -> (u64, u64) {
    let m = mask_of(size);
    let (a, b) = (a & m, b & m);
    let res = a.wrapping_sub(b).wrapping_sub(u64::from(borrow)) & m;
    let cf = u64::from(u128::from(a) < u128::from(b) + u128::from(borrow));
    let af = (a ^ b ^ res) & flags::AF;
    let of = (((a ^ b) & (a ^ res)) >> (8 * u32::from(size) - 1) & 1) << 11;
    (res, szp(res, size) | cf | af | of)
}

/// The operation whose flags are pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// RFLAGS is up to date.
    None,
    /// `a + b + carry`.
    Add,
    /// `a - b - carry`.
    Sub,
    /// A logical result `a` (CF = OF = AF = 0).
    Logic,
}

/// Pending status flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lazy {
    op: Op,
    a: u64,
    b: u64,
    carry: bool,
    size: u8,
    /// INC/DEC: CF is not affected (it is already in RFLAGS).
    keep_cf: bool,
    /// The (masked) result.
    res: u64,
}

impl Lazy {
    /// Nothing pending.
    pub(crate) const NONE: Lazy = Lazy {
        op: Op::None,
        a: 0,
        b: 0,
        carry: false,
        size: 8,
        keep_cf: false,
        res: 0,
    };

    /// Writes the pending flags into `cpu.rflags`.
    #[inline(always)]
    pub(crate) fn materialize(&mut self, cpu: &mut Cpu) {
        let (f, which) = match self.op {
            Op::None => return,
            Op::Add => (add(self.a, self.b, self.carry, self.size).1, STATUS),
            Op::Sub => (sub(self.a, self.b, self.carry, self.size).1, STATUS),
            Op::Logic => (szp(self.a, self.size), STATUS),
        };
        let which = if self.keep_cf { which & !CF } else { which };
        cpu.rflags = merge(cpu.rflags, f, which);
        self.op = Op::None;
    }

    /// Condition code `cc` (as [`flags::cond`]), computing the flags only
    /// when the condition needs more than ZF or CF.
    #[inline(always)]
    pub(crate) fn cond(&mut self, cpu: &mut Cpu, cc: u8) -> bool {
        if self.op != Op::None {
            // ZF = (result == 0) for every recorded operation.
            let r = match cc >> 1 {
                1 => self.cf(cpu),
                2 => self.res == 0,
                _ => {
                    self.materialize(cpu);
                    return flags::cond(cpu.rflags, cc);
                }
            };
            return r != (cc & 1 != 0);
        }
        flags::cond(cpu.rflags, cc)
    }

    /// The current CF.
    #[inline(always)]
    pub(crate) fn cf(&self, cpu: &Cpu) -> bool {
        if self.keep_cf {
            return cpu.rflags & CF != 0;
        }
        let wide = || {
            let m = u128::from(mask_of(self.size));
            (u128::from(self.a) & m, u128::from(self.b) & m, m)
        };
        match self.op {
            Op::None => cpu.rflags & CF != 0,
            Op::Add => {
                let (a, b, m) = wide();
                a + b + u128::from(self.carry) > m
            }
            Op::Sub => {
                let (a, b, _) = wide();
                a < b + u128::from(self.carry)
            }
            Op::Logic => false,
        }
    }

    /// Records ADD/ADC (`carry`) and returns the result.
    #[inline(always)]
    pub(crate) fn add(&mut self, a: u64, b: u64, carry: bool, size: u8) -> u64 {
        let res = a.wrapping_add(b).wrapping_add(u64::from(carry)) & mask_of(size);
        *self = Lazy {
            op: Op::Add,
            a,
            b,
            carry,
            size,
            keep_cf: false,
            res,
        };
        res
    }

    /// Records SUB/SBB/CMP (`borrow`) and returns the result.
    #[inline(always)]
    pub(crate) fn sub(&mut self, a: u64, b: u64, borrow: bool, size: u8) -> u64 {
        let res = a.wrapping_sub(b).wrapping_sub(u64::from(borrow)) & mask_of(size);
        *self = Lazy {
            op: Op::Sub,
            a,
            b,
            carry: borrow,
            size,
            keep_cf: false,
            res,
        };
        res
    }

    /// Records a logical result `r` (masked to `size`).
    #[inline(always)]
    pub(crate) fn logic(&mut self, r: u64, size: u8) {
        *self = Lazy {
            op: Op::Logic,
            a: r,
            b: 0,
            carry: false,
            size,
            keep_cf: false,
            res: r,
        };
    }

    /// Records INC (`inc`) or DEC of `a`, preserving CF, and returns the result.
    #[inline(always)]
    pub(crate) fn incdec(&mut self, cpu: &mut Cpu, a: u64, inc: bool, size: u8) -> u64 {
        let cf = self.cf(cpu);
        cpu.rflags = (cpu.rflags & !CF) | u64::from(cf);
        let r = if inc {
            self.add(a, 1, false, size)
        } else {
            self.sub(a, 1, false, size)
        };
        self.keep_cf = true;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free flag helpers equal the general ones.
    #[test]
    fn flag_helpers_match_general_ones() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let edges = [
            0,
            1,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff_ffff,
            u64::MAX,
        ];
        for i in 0..20_000 {
            let (a, b) = if i < 81 {
                (edges[i % 9], edges[i / 9])
            } else {
                (next(), next())
            };
            for size in [1u8, 2, 4, 8] {
                for c in [false, true] {
                    assert_eq!(
                        add(a, b, c, size),
                        flags::add(a, b, c, size),
                        "add {a:#x} {b:#x} {c} {size}"
                    );
                    assert_eq!(
                        sub(a, b, c, size),
                        flags::sub(a, b, c, size),
                        "sub {a:#x} {b:#x} {c} {size}"
                    );
                }
                let r = a & flags::mask(size);
                assert_eq!(flags::szp(r, size), szp(r, size));
                assert_eq!(szp(r, size), flags::logic(r, size));
                assert_eq!(mask_of(size), flags::mask(size));
            }
        }
    }

    #[test]
    fn lazy_equals_eager() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let (a, b) = (next(), next());
            let size = [1u8, 2, 4, 8][(next() % 4) as usize];
            let start = next() & (STATUS | flags::DF) | flags::FIXED;
            let mut cpu = Cpu {
                rflags: start,
                ..Cpu::default()
            };
            let mut eager = start;
            let mut lz = Lazy::NONE;
            let c = start & CF != 0;
            match next() % 6 {
                0 => {
                    let r = lz.add(a, b, c, size);
                    let (r2, f) = flags::add(a, b, c, size);
                    assert_eq!(r, r2);
                    eager = merge(eager, f, STATUS);
                }
                1 => {
                    let r = lz.sub(a, b, c, size);
                    let (r2, f) = flags::sub(a, b, c, size);
                    assert_eq!(r, r2);
                    eager = merge(eager, f, STATUS);
                }
                2 => {
                    let r = a & b & flags::mask(size);
                    lz.logic(r, size);
                    eager = merge(eager, flags::logic(r, size), STATUS);
                }
                3 => {
                    // ADD then INC: CF comes from the ADD.
                    let r = lz.add(a, b, false, size);
                    let (_, f) = flags::add(a, b, false, size);
                    eager = merge(eager, f, STATUS);
                    assert_eq!(lz.cf(&cpu), eager & CF != 0);
                    let r2 = lz.incdec(&mut cpu, r, true, size);
                    let (r3, f2) = flags::add(r, 1, false, size);
                    assert_eq!(r2, r3);
                    eager = merge(eager, f2, STATUS & !CF);
                }
                4 => {
                    let r = lz.sub(a, b, false, size);
                    let (_, f) = flags::sub(a, b, false, size);
                    eager = merge(eager, f, STATUS);
                    let r2 = lz.incdec(&mut cpu, r, false, size);
                    let (r3, f2) = flags::sub(r, 1, false, size);
                    assert_eq!(r2, r3);
                    eager = merge(eager, f2, STATUS & !CF);
                    assert_eq!(lz.cf(&cpu), eager & CF != 0);
                }
                _ => {}
            }
            assert_eq!(lz.cf(&cpu), eager & CF != 0);
            for cc in 0..16u8 {
                let mut l2 = lz;
                let mut c2 = cpu.clone();
                assert_eq!(l2.cond(&mut c2, cc), flags::cond(eager, cc), "cc {cc}");
            }
            lz.materialize(&mut cpu);
            assert_eq!(cpu.rflags, eager, "size {size} a {a:#x} b {b:#x}");
        }
    }
}
