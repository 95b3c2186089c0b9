//! Table-driven flag tests: each case runs the real instruction in the
//! engine (64-bit mode) and compares result and CF/PF/AF/ZF/SF/OF with
//! values computed independently here from Rust's wrapping/overflowing ops.

mod common;

use common::*;
use hyperplug_emulator::flags::{AF, CF, OF, PF, SF, ZF};
use iced_x86::code_asm::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Adc,
    Sub,
    Sbb,
    And,
    Or,
    Xor,
    Inc,
    Dec,
    Neg,
}

const VALUES: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000_0000,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_ffff_ffff,
];

fn run_case(op: Op, size: u8, a0: u64, b0: u64, carry: bool) -> (u64, u64) {
    let mut m = Machine::new(M::Long64);
    m.load(|x| {
        x.mov(rax, a0).unwrap();
        x.mov(rcx, b0).unwrap();
        if carry {
            x.stc().unwrap();
        } else {
            x.clc().unwrap();
        }
        macro_rules! emit {
            ($d:expr, $s:expr) => {
                match op {
                    Op::Add => x.add($d, $s).unwrap(),
                    Op::Adc => x.adc($d, $s).unwrap(),
                    Op::Sub => x.sub($d, $s).unwrap(),
                    Op::Sbb => x.sbb($d, $s).unwrap(),
                    Op::And => x.and($d, $s).unwrap(),
                    Op::Or => x.or($d, $s).unwrap(),
                    Op::Xor => x.xor($d, $s).unwrap(),
                    Op::Inc => x.inc($d).unwrap(),
                    Op::Dec => x.dec($d).unwrap(),
                    Op::Neg => x.neg($d).unwrap(),
                }
            };
        }
        match size {
            1 => emit!(al, cl),
            2 => emit!(ax, cx),
            4 => emit!(eax, ecx),
            _ => emit!(rax, rcx),
        }
        x.hlt().unwrap();
    });
    m.run_to_hlt();
    (m.gpr(0), m.cpu.rflags)
}

fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

macro_rules! expected {
    ($u:ty, $i:ty, $op:expr, $a:expr, $b:expr, $c:expr) => {{
        let a = $a as $u;
        let b = $b as $u;
        let c = $c as $u;
        let bits = <$u>::BITS;
        let (res, cf, of, af): ($u, bool, bool, Option<bool>) = match $op {
            Op::Add | Op::Adc => {
                let c = if $op == Op::Adc { c } else { 0 };
                let (r1, c1) = a.overflowing_add(b);
                let (r, c2) = r1.overflowing_add(c);
                let wide = (a as i128 as $i as i128) + (b as $i as i128) + c as i128;
                let of = wide != (r as $i as i128);
                (r, c1 || c2, of, Some(((a & 0xf) + (b & 0xf) + c) > 0xf))
            }
            Op::Sub | Op::Sbb => {
                let c = if $op == Op::Sbb { c } else { 0 };
                let (r1, c1) = a.overflowing_sub(b);
                let (r, c2) = r1.overflowing_sub(c);
                let wide = (a as $i as i128) - (b as $i as i128) - c as i128;
                let of = wide != (r as $i as i128);
                (r, c1 || c2, of, Some((a & 0xf) < (b & 0xf) + c))
            }
            Op::And => (a & b, false, false, None),
            Op::Or => (a | b, false, false, None),
            Op::Xor => (a ^ b, false, false, None),
            Op::Inc => {
                let (r, o) = (a as $i).overflowing_add(1);
                (r as $u, $c, o, Some(a & 0xf == 0xf))
            }
            Op::Dec => {
                let (r, o) = (a as $i).overflowing_sub(1);
                (r as $u, $c, o, Some(a & 0xf == 0))
            }
            Op::Neg => {
                let (r, o) = (a as $i).overflowing_neg();
                (r as $u, a != 0, o, Some(a & 0xf != 0))
            }
        };
        let res = res as u64;
        let mut f = 0u64;
        if cf {
            f |= CF;
        }
        if of {
            f |= OF;
        }
        if parity(res) {
            f |= PF;
        }
        if res == 0 {
            f |= ZF;
        }
        if res >> (bits - 1) & 1 != 0 {
            f |= SF;
        }
        if af == Some(true) {
            f |= AF;
        }
        (res, f, af.is_some())
    }};
}

#[test]
fn arithmetic_and_logic_flags_all_sizes() {
    let ops = [
        Op::Add,
        Op::Adc,
        Op::Sub,
        Op::Sbb,
        Op::And,
        Op::Or,
        Op::Xor,
        Op::Inc,
        Op::Dec,
        Op::Neg,
    ];
    let mut cases = 0;
    for op in ops {
        for size in [1u8, 2, 4, 8] {
            for &a in &VALUES {
                for &b in &VALUES[..if matches!(op, Op::Inc | Op::Dec | Op::Neg) {
                    1
                } else {
                    VALUES.len()
                }] {
                    for carry in [false, true] {
                        let (want, wf, af_defined) = match size {
                            1 => expected!(u8, i8, op, a, b, carry),
                            2 => expected!(u16, i16, op, a, b, carry),
                            4 => expected!(u32, i32, op, a, b, carry),
                            _ => expected!(u64, i64, op, a, b, carry),
                        };
                        let (got, gf) = run_case(op, size, a, b, carry);
                        let mask = if size == 8 {
                            u64::MAX
                        } else {
                            (1u64 << (size * 8)) - 1
                        };
                        assert_eq!(
                            got & mask,
                            want,
                            "{op:?} size {size} a {a:#x} b {b:#x} c {carry}"
                        );
                        let check = CF | OF | PF | ZF | SF | if af_defined { AF } else { 0 };
                        assert_eq!(
                            gf & check,
                            wf & check,
                            "flags {op:?} size {size} a {a:#x} b {b:#x} c {carry}"
                        );
                        if size == 4 {
                            assert_eq!(got >> 32, 0, "32-bit result zero-extends");
                        } else if size < 4 {
                            assert_eq!(got & !mask, a & !mask, "upper bits kept");
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases > 2000);
}

#[test]
fn shift_flags_against_independent_model() {
    use hyperplug_emulator::shift::shift_value;
    use iced_x86::Mnemonic;
    for size in [1u8, 2, 4, 8] {
        let bits = u32::from(size) * 8;
        let mask = if size == 8 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        for &v in &VALUES {
            let v = v & mask;
            for count in 1..bits {
                let (r, f) = shift_value(Mnemonic::Shl, v, u64::from(count), size, 0);
                let want = (v << count) & mask;
                assert_eq!(r, want);
                assert_eq!(
                    f & CF != 0,
                    (v >> (bits - count)) & 1 != 0,
                    "shl cf {v:#x} {count}"
                );
                let (r, f) = shift_value(Mnemonic::Shr, v, u64::from(count), size, 0);
                assert_eq!(r, v >> count);
                assert_eq!(f & CF != 0, (v >> (count - 1)) & 1 != 0);
                let (r, _) = shift_value(Mnemonic::Rol, v, u64::from(count), size, 0);
                let rot = ((v << count) | (v >> (bits - count))) & mask;
                assert_eq!(r, rot, "rol {v:#x} {count} size {size}");
                let (r, f) = shift_value(Mnemonic::Sar, v, u64::from(count), size, 0);
                let sv = ((v << (64 - bits)) as i64) >> (64 - bits);
                assert_eq!(r, ((sv >> count) as u64) & mask);
                assert_eq!(f & ZF != 0, r == 0);
                if count == 1 {
                    let (r, f) = shift_value(Mnemonic::Shl, v, 1, size, 0);
                    let msb = r >> (bits - 1) & 1 != 0;
                    assert_eq!(f & OF != 0, msb != (f & CF != 0), "OF for count 1");
                }
            }
        }
    }
}
