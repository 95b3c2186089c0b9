//! Instruction families added to the engine: bit operations (BT*, BSF/BSR,
//! POPCNT/LZCNT/TZCNT, BMI1/BMI2), atomics (XADD, CMPXCHG*, LOCK rules),
//! BCD, PUSHA/POPA, MOVBE, LAHF/SAHF in 64-bit mode, SYSCALL/SYSRET,
//! SYSENTER/SYSEXIT and the descriptor instructions (LLDT/SLDT/LTR/STR,
//! LAR/LSL/VERR/VERW, ARPL, SWAPGS). Expected values are computed here
//! independently (Rust integer methods, hand-worked SDM examples).

mod common;

use common::*;
use hyperplug_emulator::flags::{AF, CF, OF, PF, SF, ZF};
use hyperplug_emulator::policy::InterceptKind;
use hyperplug_emulator::{Event, EventKind, SegReg};
use iced_x86::code_asm::*;

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;

/// A machine in `mode` that stops on every exception instead of delivering it.
fn machine(mode: M) -> Machine {
    let mut m = Machine::new(mode);
    m.policy.exceptions = u32::MAX;
    m
}

/// Loads `f` followed by HLT, runs, and asserts it reached the HLT.
fn run_ok(m: &mut Machine, f: impl FnOnce(&mut CodeAssembler)) -> Event {
    m.load(|a| {
        f(a);
        a.hlt().unwrap();
    });
    m.run_to_hlt()
}

/// The exception an event reports (vector, error code), if any.
fn exc(e: &Event) -> Option<(u8, Option<u32>)> {
    match e.kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception {
                vector, error_code, ..
            } => Some((vector, error_code)),
            _ => None,
        },
        _ => None,
    }
}

/// Runs raw bytes (plus HLT) and returns the event.
fn run_bytes(m: &mut Machine, bytes: &[u8]) -> Event {
    let mut b = bytes.to_vec();
    b.push(0xf4);
    assert!(m.bus.load(CODE, &b));
    m.eng.invalidate_gpa(CODE, b.len() as u64);
    m.cpu.rip = m.code_base();
    m.cpu.halted = false;
    m.run(100)
}

fn ones(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

const VALUES: [u64; 8] = [
    0,
    1,
    0x8000_0000_0000_0000,
    0x0000_0000_8000_0000,
    0x0000_0000_0000_8000,
    0xdead_beef_1234_5678,
    u64::MAX,
    0x0f0f_0000_00f0_0100,
];

#[test]
fn bt_register_forms() {
    #[derive(Clone, Copy)]
    enum Op {
        Bt,
        Bts,
        Btr,
        Btc,
    }
    for op in [Op::Bt, Op::Bts, Op::Btr, Op::Btc] {
        for bits in [16u32, 32, 64] {
            for &v in &VALUES {
                for off in [0u64, 1, 7, 15, 31, 33, 63, 64 + 5, 200] {
                    for imm in [false, true] {
                        let mut m = machine(M::Long64);
                        m.cpu.gpr[RAX] = 0x5555_5555_5555_5555;
                        m.cpu.gpr[RAX] = (m.cpu.gpr[RAX] & !ones(bits)) | (v & ones(bits));
                        m.cpu.gpr[RCX] = off;
                        m.cpu.rflags = 0x2 | ZF | OF;
                        let before = m.cpu.gpr[RAX];
                        let o8 = (off & 0xff) as u32;
                        run_ok(&mut m, |a| {
                            macro_rules! emit {
                                ($r:ident, $c:ident) => {
                                    if imm {
                                        match op {
                                            Op::Bt => a.bt($r, o8).unwrap(),
                                            Op::Bts => a.bts($r, o8).unwrap(),
                                            Op::Btr => a.btr($r, o8).unwrap(),
                                            Op::Btc => a.btc($r, o8).unwrap(),
                                        }
                                    } else {
                                        match op {
                                            Op::Bt => a.bt($r, $c).unwrap(),
                                            Op::Bts => a.bts($r, $c).unwrap(),
                                            Op::Btr => a.btr($r, $c).unwrap(),
                                            Op::Btc => a.btc($r, $c).unwrap(),
                                        }
                                    }
                                };
                            }
                            match bits {
                                16 => emit!(ax, cx),
                                32 => emit!(eax, ecx),
                                _ => emit!(rax, rcx),
                            }
                        });
                        let bit = (if imm { off & 0xff } else { off }) % u64::from(bits);
                        let val = before & ones(bits);
                        let want_cf = (val >> bit) & 1 == 1;
                        let nv = match op {
                            Op::Bt => val,
                            Op::Bts => val | (1 << bit),
                            Op::Btr => val & !(1 << bit),
                            Op::Btc => val ^ (1 << bit),
                        };
                        let want = match (op, bits) {
                            (Op::Bt, _) => before,
                            (_, 32) => nv,
                            _ => (before & !ones(bits)) | nv,
                        };
                        assert_eq!(m.cpu.gpr[RAX], want, "bits {bits} v {v:#x} off {off}");
                        assert_eq!(m.cpu.rflags & CF != 0, want_cf, "CF v {v:#x} off {off}");
                        assert_eq!(m.cpu.rflags & (ZF | OF), ZF | OF, "ZF/OF unchanged");
                    }
                }
            }
        }
    }
}

#[test]
fn bt_memory_register_offset_addresses_beyond_operand() {
    // Bit string of 64 bytes at DATA+64; offsets from -256 to +255 bits.
    for bits in [16u32, 32, 64] {
        for off in [-256i64, -33, -1, 0, 1, 31, 32, 63, 100, 255] {
            let mut m = machine(M::Long64);
            let base = DATA + 64;
            let pattern: Vec<u8> = (0..128u32).map(|i| (i * 37 + 11) as u8).collect();
            m.bus.load(DATA, &pattern);
            m.cpu.gpr[RBX] = base;
            m.cpu.gpr[RCX] = off as u64 & ones(bits);
            run_ok(&mut m, |a| match bits {
                16 => a.btc(word_ptr(rbx), cx).unwrap(),
                32 => a.btc(dword_ptr(rbx), ecx).unwrap(),
                _ => a.btc(qword_ptr(rbx), rcx).unwrap(),
            });
            // The bit string is little-endian bytes: bit n is byte n>>3, bit n&7.
            let abs = (64 * 8) as i64 + off;
            let byte = (abs >> 3) as usize;
            let b = (abs & 7) as u32;
            assert_eq!(
                m.cpu.rflags & CF != 0,
                (pattern[byte] >> b) & 1 == 1,
                "bits {bits} off {off}"
            );
            let after = m.bus.peek(DATA, 128).unwrap();
            for (i, (&x, &y)) in pattern.iter().zip(after.iter()).enumerate() {
                let want = if i == byte { x ^ (1 << b) } else { x };
                assert_eq!(y, want, "byte {i} bits {bits} off {off}");
            }
        }
    }
}

#[test]
fn bt_memory_immediate_offset_is_masked() {
    let mut m = machine(M::Prot32);
    m.bus.load(DATA, &[0u8; 16]);
    m.cpu.gpr[RBX] = DATA;
    // bts dword [ebx], 33 → bit 1 of the dword at EBX (the immediate is masked to 5 bits).
    run_ok(&mut m, |a| a.bts(dword_ptr(ebx), 33).unwrap());
    assert_eq!(m.bus.peek(DATA, 8).unwrap(), vec![2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(m.cpu.rflags & CF, 0);
}

#[test]
fn bsf_bsr_popcnt_lzcnt_tzcnt() {
    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        Bsf,
        Bsr,
        Popcnt,
        Lzcnt,
        Tzcnt,
    }
    for op in [Op::Bsf, Op::Bsr, Op::Popcnt, Op::Lzcnt, Op::Tzcnt] {
        for bits in [16u32, 32, 64] {
            for &v in &VALUES {
                let mut m = machine(M::Long64);
                let old_dest = 0xaaaa_bbbb_cccc_dddd;
                m.cpu.gpr[RAX] = old_dest;
                m.cpu.gpr[RCX] = v;
                run_ok(&mut m, |a| {
                    macro_rules! emit {
                        ($d:ident, $s:ident) => {
                            match op {
                                Op::Bsf => a.bsf($d, $s).unwrap(),
                                Op::Bsr => a.bsr($d, $s).unwrap(),
                                Op::Popcnt => a.popcnt($d, $s).unwrap(),
                                Op::Lzcnt => a.lzcnt($d, $s).unwrap(),
                                Op::Tzcnt => a.tzcnt($d, $s).unwrap(),
                            }
                        };
                    }
                    match bits {
                        16 => emit!(ax, cx),
                        32 => emit!(eax, ecx),
                        _ => emit!(rax, rcx),
                    }
                });
                let s = v & ones(bits);
                let fl = m.cpu.rflags;
                let (res, zf, cf): (Option<u64>, bool, Option<bool>) = match op {
                    Op::Bsf if s == 0 => (None, true, None),
                    Op::Bsr if s == 0 => (None, true, None),
                    Op::Bsf => (Some(u64::from(s.trailing_zeros())), false, None),
                    Op::Bsr => (Some(u64::from(63 - s.leading_zeros())), false, None),
                    Op::Popcnt => (Some(u64::from(s.count_ones())), s == 0, Some(false)),
                    Op::Lzcnt => {
                        let n = u64::from(s.leading_zeros()) - (64 - u64::from(bits));
                        (Some(n), n == 0, Some(s == 0))
                    }
                    Op::Tzcnt => {
                        let n = if s == 0 {
                            u64::from(bits)
                        } else {
                            u64::from(s.trailing_zeros())
                        };
                        (Some(n), n == 0, Some(s == 0))
                    }
                };
                let want = match res {
                    None => old_dest,
                    Some(r) if bits == 16 => (old_dest & !0xffff) | r,
                    Some(r) => r,
                };
                let name = ["bsf", "bsr", "popcnt", "lzcnt", "tzcnt"][op as usize];
                assert_eq!(m.cpu.gpr[RAX], want, "{name} {bits} {v:#x}");
                assert_eq!(fl & ZF != 0, zf, "{name} ZF {bits} {v:#x}");
                if let Some(c) = cf {
                    assert_eq!(fl & CF != 0, c, "{name} CF {bits} {v:#x}");
                }
                if op == Op::Popcnt {
                    assert_eq!(fl & (OF | SF | AF | PF), 0, "popcnt clears flags");
                }
            }
        }
    }
}

/// Independent PDEP/PEXT (bit by bit, scanning the mask from the top down).
fn pdep_ref(src: u64, mask: u64) -> u64 {
    let k = mask.count_ones();
    let mut out = 0;
    let mut n = k;
    for i in (0..64).rev() {
        if mask & (1 << i) != 0 {
            n -= 1;
            out |= ((src >> n) & 1) << i;
        }
    }
    out
}

fn pext_ref(src: u64, mask: u64) -> u64 {
    let mut out = 0;
    let mut n = mask.count_ones();
    for i in (0..64).rev() {
        if mask & (1 << i) != 0 {
            n -= 1;
            out |= ((src >> i) & 1) << n;
        }
    }
    out
}

/// (mnemonic, expected result, expected (ZF, CF) where defined).
type BmiCase = (&'static str, u64, Option<(bool, bool)>);

#[test]
fn bmi1_bmi2_table() {
    let pairs = [
        (0x1234_5678_9abc_def0u64, 0xff00_fff0_0f0f_0101u64),
        (0, 0),
        (u64::MAX, 0x0000_0000_0000_0804),
        (0x8000_0000_0000_0001, 0x0000_0000_0000_2010),
        (0xdead_beef_0000_0010, 0x0000_0000_0000_ff40),
        (0x0000_0000_8000_0000, 3),
    ];
    for bits in [32u32, 64] {
        let mk = ones(bits);
        for &(x, y) in &pairs {
            let (xs, ys) = (x & mk, y & mk);
            // ANDN rax, rcx, rdx: ~rcx & rdx.
            let cases: Vec<BmiCase> = vec![
                ("andn", !xs & ys & mk, Some(((!xs & ys & mk) == 0, false))),
                (
                    "bextr",
                    {
                        let start = ys & 0xff;
                        let len = (ys >> 8) & 0xff;
                        let sh = if start >= u64::from(bits) {
                            0
                        } else {
                            xs >> start
                        };
                        if len >= 64 {
                            sh
                        } else {
                            sh & ((1u64 << len) - 1)
                        }
                    },
                    None,
                ),
                (
                    "blsi",
                    xs & xs.wrapping_neg() & mk,
                    Some(((xs & xs.wrapping_neg()) == 0, xs != 0)),
                ),
                (
                    "blsmsk",
                    (xs ^ xs.wrapping_sub(1)) & mk,
                    Some((false, xs == 0)),
                ),
                (
                    "blsr",
                    xs & xs.wrapping_sub(1) & mk,
                    Some(((xs & xs.wrapping_sub(1) & mk) == 0, xs == 0)),
                ),
                (
                    "bzhi",
                    {
                        let n = ys & 0xff;
                        if n < u64::from(bits) {
                            xs & ((1u64 << n) - 1)
                        } else {
                            xs
                        }
                    },
                    None,
                ),
                ("pdep", pdep_ref(xs, ys), None),
                ("pext", pext_ref(xs, ys), None),
                ("shlx", (xs << (ys & u64::from(bits - 1))) & mk, None),
                ("shrx", xs >> (ys & u64::from(bits - 1)), None),
                (
                    "sarx",
                    {
                        let n = ys & u64::from(bits - 1);
                        if bits == 32 {
                            u64::from(((xs as u32 as i32) >> n) as u32)
                        } else {
                            ((xs as i64) >> n) as u64
                        }
                    },
                    None,
                ),
                (
                    "rorx",
                    if bits == 32 {
                        u64::from((xs as u32).rotate_right(13))
                    } else {
                        xs.rotate_right(13)
                    },
                    None,
                ),
            ];
            for (name, want, zc) in cases {
                let mut m = machine(M::Long64);
                m.cpu.gpr[RCX] = x;
                m.cpu.gpr[RDX] = y;
                m.cpu.gpr[RAX] = 0x7777_7777_7777_7777;
                run_ok(&mut m, |a| {
                    macro_rules! emit {
                        ($d:ident, $c:ident, $x:ident) => {
                            match name {
                                "andn" => a.andn($d, $c, $x).unwrap(),
                                "bextr" => a.bextr($d, $c, $x).unwrap(),
                                "blsi" => a.blsi($d, $c).unwrap(),
                                "blsmsk" => a.blsmsk($d, $c).unwrap(),
                                "blsr" => a.blsr($d, $c).unwrap(),
                                "bzhi" => a.bzhi($d, $c, $x).unwrap(),
                                "pdep" => a.pdep($d, $c, $x).unwrap(),
                                "pext" => a.pext($d, $c, $x).unwrap(),
                                "shlx" => a.shlx($d, $c, $x).unwrap(),
                                "shrx" => a.shrx($d, $c, $x).unwrap(),
                                "sarx" => a.sarx($d, $c, $x).unwrap(),
                                _ => a.rorx($d, $c, 13).unwrap(),
                            }
                        };
                    }
                    if bits == 32 {
                        emit!(eax, ecx, edx)
                    } else {
                        emit!(rax, rcx, rdx)
                    }
                });
                assert_eq!(m.cpu.gpr[RAX], want, "{name}/{bits} x {x:#x} y {y:#x}");
                if let Some((zf, cf)) = zc {
                    let fl = m.cpu.rflags;
                    assert_eq!(fl & ZF != 0, zf, "{name} ZF x {x:#x}");
                    assert_eq!(fl & CF != 0, cf, "{name} CF x {x:#x}");
                    assert_eq!(fl & OF, 0, "{name} OF");
                }
                if name == "bzhi" {
                    let n = ys & 0xff;
                    assert_eq!(m.cpu.rflags & CF != 0, n > u64::from(bits) - 1, "bzhi CF");
                }
            }
            // MULX rax (hi), rbx (lo), rcx: rdx × rcx, flags unchanged.
            let mut m = machine(M::Long64);
            m.cpu.gpr[RCX] = x;
            m.cpu.gpr[RDX] = y;
            m.cpu.rflags = 0x2 | CF | ZF;
            run_ok(&mut m, |a| {
                if bits == 32 {
                    a.mulx(eax, ebx, ecx).unwrap()
                } else {
                    a.mulx(rax, rbx, rcx).unwrap()
                }
            });
            let full = u128::from(xs) * u128::from(ys);
            assert_eq!(m.cpu.gpr[RBX], (full as u64) & mk, "mulx lo");
            assert_eq!(m.cpu.gpr[RAX], ((full >> bits) as u64) & mk, "mulx hi");
            assert_eq!(m.cpu.rflags & (CF | ZF), CF | ZF, "mulx leaves flags");
        }
    }
}

#[test]
fn bmi_is_ud_in_real_mode_only() {
    // ANDN eax, eax, eax (VEX) in 32-bit protected mode works; in real mode
    // C4 with mod=11 is still VEX to the decoder, and the engine raises #UD.
    let vex_andn = [0xc4, 0xe2, 0x78, 0xf2, 0xc0];
    let mut m = machine(M::Prot32);
    m.cpu.gpr[RAX] = 0x1234;
    let e = run_bytes(&mut m, &vex_andn);
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_eq!(m.cpu.gpr[RAX], 0);
    let mut m = machine(M::Real);
    let e = run_bytes(&mut m, &vex_andn);
    assert_eq!(exc(&e), Some((6, None)), "{e:?}");
}

/// CMP-style flags of `a - b` in `bits`, computed independently.
fn cmp_flags(a: u64, b: u64, bits: u32) -> u64 {
    let mk = ones(bits);
    let (a, b) = (a & mk, b & mk);
    let r = a.wrapping_sub(b) & mk;
    let sign = 1u64 << (bits - 1);
    let mut f = 0;
    if a < b {
        f |= CF;
    }
    if r == 0 {
        f |= ZF;
    }
    if r & sign != 0 {
        f |= SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    if (a & 0xf) < (b & 0xf) {
        f |= AF;
    }
    let (sa, sb, sr) = (a & sign != 0, b & sign != 0, r & sign != 0);
    if sa != sb && sr != sa {
        f |= OF;
    }
    f
}

#[test]
fn cmpxchg_register_and_memory() {
    let status = CF | PF | AF | ZF | SF | OF;
    for bits in [8u32, 16, 32, 64] {
        for (acc, dest) in [(5u64, 5u64), (5, 7), (0x80, 0x7f), (u64::MAX, 1)] {
            for mem in [false, true] {
                let mut m = machine(M::Long64);
                let src = 0x1111_2222_3333_4444u64;
                m.cpu.gpr[RAX] = 0xaaaa_aaaa_aaaa_aa00 | acc;
                if bits == 64 {
                    m.cpu.gpr[RAX] = acc;
                }
                m.cpu.gpr[RCX] = 0xcccc_cccc_cccc_cc00 | dest;
                if bits == 64 {
                    m.cpu.gpr[RCX] = dest;
                }
                m.cpu.gpr[RDX] = src;
                m.cpu.gpr[RBX] = DATA;
                m.bus.load(DATA, &m.cpu.gpr[RCX].to_le_bytes());
                let (rax0, rcx0) = (m.cpu.gpr[RAX], m.cpu.gpr[RCX]);
                run_ok(&mut m, |a| match (bits, mem) {
                    (8, false) => a.cmpxchg(cl, dl).unwrap(),
                    (16, false) => a.cmpxchg(cx, dx).unwrap(),
                    (32, false) => a.cmpxchg(ecx, edx).unwrap(),
                    (64, false) => a.cmpxchg(rcx, rdx).unwrap(),
                    (8, true) => a.cmpxchg(byte_ptr(rbx), dl).unwrap(),
                    (16, true) => a.cmpxchg(word_ptr(rbx), dx).unwrap(),
                    (32, true) => a.cmpxchg(dword_ptr(rbx), edx).unwrap(),
                    _ => a.cmpxchg(qword_ptr(rbx), rdx).unwrap(),
                });
                let mk = ones(bits);
                let equal = rax0 & mk == rcx0 & mk;
                assert_eq!(m.cpu.rflags & status, cmp_flags(rax0, rcx0, bits), "flags");
                let merge = |old: u64, v: u64| {
                    if bits == 32 {
                        v & mk
                    } else {
                        (old & !mk) | (v & mk)
                    }
                };
                let (want_rax, want_dest) = if equal {
                    (rax0, merge(rcx0, src))
                } else {
                    (merge(rax0, rcx0), rcx0)
                };
                assert_eq!(m.cpu.gpr[RAX], want_rax, "rax {bits} {acc:#x} {dest:#x}");
                if mem {
                    assert_eq!(m.bus.peek_u64(DATA), want_dest, "memory");
                    assert_eq!(m.cpu.gpr[RCX], rcx0);
                } else {
                    assert_eq!(m.cpu.gpr[RCX], want_dest, "reg dest {bits}");
                }
            }
        }
    }
}

#[test]
fn xadd_all_sizes() {
    for bits in [8u32, 16, 32, 64] {
        for (d, s) in [
            (1u64, 2u64),
            (0xff, 1),
            (0x7fff_ffff, 1),
            (u64::MAX, u64::MAX),
        ] {
            let mut m = machine(M::Long64);
            m.cpu.gpr[RBX] = DATA;
            m.bus.load(DATA, &d.to_le_bytes());
            m.cpu.gpr[RCX] = s;
            run_ok(&mut m, |a| match bits {
                8 => a.xadd(byte_ptr(rbx), cl).unwrap(),
                16 => a.xadd(word_ptr(rbx), cx).unwrap(),
                32 => a.xadd(dword_ptr(rbx), ecx).unwrap(),
                _ => a.xadd(qword_ptr(rbx), rcx).unwrap(),
            });
            let mk = ones(bits);
            let sum = d.wrapping_add(s) & mk;
            let mem = m.bus.peek_u64(DATA);
            assert_eq!(mem & mk, sum, "xadd {bits}");
            assert_eq!(mem & !mk, d & !mk, "bytes beyond the operand");
            let want_rcx = if bits == 32 {
                d & mk
            } else {
                (s & !mk) | (d & mk)
            };
            assert_eq!(m.cpu.gpr[RCX], want_rcx, "source gets old dest");
            assert_eq!(
                m.cpu.rflags & CF != 0,
                u128::from(d & mk) + u128::from(s & mk) > u128::from(mk),
                "CF"
            );
            assert_eq!(m.cpu.rflags & ZF != 0, sum == 0, "ZF");
        }
    }
    // XADD with the same register: the sum remains.
    let mut m = machine(M::Long64);
    m.cpu.gpr[RAX] = 21;
    run_ok(&mut m, |a| a.xadd(rax, rax).unwrap());
    assert_eq!(m.cpu.gpr[RAX], 42);
}

#[test]
fn cmpxchg8b_16b() {
    for wide in [false, true] {
        for equal in [false, true] {
            let mut m = machine(M::Long64);
            let (lo, hi) = (0x0102_0304_0506_0708u64, 0x1112_1314_1516_1718u64);
            m.bus.load(DATA, &lo.to_le_bytes());
            m.bus.load(DATA + 8, &hi.to_le_bytes());
            m.cpu.gpr[RSI] = DATA;
            let (h, mk) = if wide {
                (8, u64::MAX)
            } else {
                (4, 0xffff_ffff)
            };
            let (mlo, mhi) = if wide { (lo, hi) } else { (lo & mk, lo >> 32) };
            m.cpu.gpr[RAX] =
                (if equal { mlo } else { mlo ^ 1 }) | (0xdead_0000_0000_0000 * u64::from(!wide));
            m.cpu.gpr[RDX] = mhi;
            m.cpu.gpr[RBX] = 0xaaaa_aaaa_bbbb_bbbb;
            m.cpu.gpr[RCX] = 0xcccc_cccc_dddd_dddd;
            m.cpu.rflags = 0x2 | CF | (if equal { 0 } else { ZF });
            run_ok(&mut m, |a| {
                if wide {
                    a.cmpxchg16b(xmmword_ptr(rsi)).unwrap()
                } else {
                    a.cmpxchg8b(qword_ptr(rsi)).unwrap()
                }
            });
            assert_eq!(m.cpu.rflags & ZF != 0, equal);
            assert_eq!(m.cpu.rflags & CF, CF, "other flags unaffected");
            let (got_lo, got_hi) = (m.bus.peek_u64(DATA), m.bus.peek_u64(DATA + 8));
            if equal {
                if wide {
                    assert_eq!((got_lo, got_hi), (m.cpu.gpr[RBX], m.cpu.gpr[RCX]));
                } else {
                    assert_eq!(got_lo, 0xdddd_dddd_bbbb_bbbb);
                    assert_eq!(got_hi, hi);
                }
            } else {
                assert_eq!((got_lo, got_hi), (lo, hi), "memory written back unchanged");
                assert_eq!(m.cpu.gpr[RAX], mlo, "rAX loaded (32-bit: zero-extended)");
                assert_eq!(m.cpu.gpr[RDX], mhi);
            }
            let _ = h;
        }
    }
    // CMPXCHG16B on a misaligned operand: #GP(0); nothing changes.
    let mut m = machine(M::Long64);
    m.cpu.gpr[RSI] = DATA + 8;
    m.load(|a| {
        a.cmpxchg16b(xmmword_ptr(rsi)).unwrap();
        a.hlt().unwrap();
    });
    let e = m.run(10);
    assert_eq!(exc(&e), Some((13, Some(0))), "{e:?}");
    assert_eq!(m.cpu.rip, CODE);
    // Register operand (0F C7 /1 with mod = 11): #UD.
    let mut m = machine(M::Long64);
    assert_eq!(
        exc(&run_bytes(&mut m, &[0x0f, 0xc7, 0xc8])),
        Some((6, None))
    );
    let mut m = machine(M::Long64);
    assert_eq!(
        exc(&run_bytes(&mut m, &[0x48, 0x0f, 0xc7, 0xc8])),
        Some((6, None))
    );
}

#[test]
fn lock_prefix_legality() {
    // (bytes, #UD expected): SDM vol. 2, LOCK.
    let t: [(&[u8], bool); 9] = [
        (&[0xf0, 0x01, 0xc0], true),        // lock add eax, eax (register dest)
        (&[0xf0, 0x90], true),              // lock nop
        (&[0xf0, 0x0f, 0xa3, 0x03], true),  // lock bt [rbx], eax (BT is not lockable)
        (&[0xf0, 0x8b, 0x03], true),        // lock mov eax, [rbx]
        (&[0xf0, 0x0f, 0xab, 0x03], false), // lock bts [rbx], eax
        (&[0xf0, 0x01, 0x03], false),       // lock add [rbx], eax
        (&[0xf0, 0x0f, 0xc1, 0x03], false), // lock xadd [rbx], eax
        (&[0xf0, 0x0f, 0xb1, 0x0b], false), // lock cmpxchg [rbx], ecx
        (&[0xf0, 0x48, 0x0f, 0xc7, 0x0e], false), // lock cmpxchg16b [rsi]
    ];
    for (bytes, ud) in t {
        let mut m = machine(M::Long64);
        m.cpu.gpr[RBX] = DATA;
        m.cpu.gpr[RSI] = DATA;
        let e = run_bytes(&mut m, bytes);
        if ud {
            assert_eq!(exc(&e), Some((6, None)), "{bytes:02x?}: {e:?}");
        } else {
            assert_eq!(e.kind, EventKind::Hlt, "{bytes:02x?}: {e:?}");
        }
    }
}

/// Runs `prefix` (setting AL/AH/flags by real arithmetic) then a BCD
/// instruction in 32-bit protected mode.
fn bcd(f: impl FnOnce(&mut CodeAssembler), ax0: u16, bl0: u8) -> (u16, u64) {
    let mut m = machine(M::Prot32);
    m.cpu.gpr[RAX] = u64::from(ax0);
    m.cpu.gpr[RBX] = u64::from(bl0);
    run_ok(&mut m, f);
    (m.cpu.gpr[RAX] as u16, m.cpu.rflags)
}

#[test]
fn bcd_sdm_examples() {
    // DAA: 79 + 35 = AEh → 14, CF = 1, AF = 1 (SDM vol. 2, DAA "Example").
    let (r, fl) = bcd(
        |a| {
            a.add(al, bl).unwrap();
            a.daa().unwrap();
        },
        0x79,
        0x35,
    );
    assert_eq!((r & 0xff, fl & CF != 0, fl & AF != 0), (0x14, true, true));
    // DAS: 35 - 47 = EEh → 88, CF = 1, AF = 1 (SDM vol. 2, DAS "Example").
    let (r, fl) = bcd(
        |a| {
            a.sub(al, bl).unwrap();
            a.das().unwrap();
        },
        0x35,
        0x47,
    );
    assert_eq!((r & 0xff, fl & CF != 0, fl & AF != 0), (0x88, true, true));
    // AAA: 05 + 09 = 0Eh → AX = 0104h, CF = AF = 1.
    let (r, fl) = bcd(
        |a| {
            a.add(al, bl).unwrap();
            a.aaa().unwrap();
        },
        0x05,
        0x09,
    );
    assert_eq!((r, fl & CF != 0, fl & AF != 0), (0x0104, true, true));
    // AAS: 08 - 09 = FFh (AF = 1) → AX = FF09h, CF = 1.
    let (r, fl) = bcd(
        |a| {
            a.sub(al, bl).unwrap();
            a.aas().unwrap();
        },
        0x08,
        0x09,
    );
    assert_eq!((r, fl & CF != 0), (0xff09, true));
    // AAM: AL = 63 → AH = 6, AL = 3; AAM 16 splits nibbles.
    let (r, fl) = bcd(|a| a.aam(10).unwrap(), 63, 0);
    assert_eq!((r, fl & ZF != 0), (0x0603, false));
    let (r, _) = bcd(|a| a.aam(16).unwrap(), 0x5a, 0);
    assert_eq!(r, 0x050a);
    // AAD: AX = 0603h → AL = 63, AH = 0; AAD 16 joins nibbles.
    let (r, _) = bcd(|a| a.aad(10).unwrap(), 0x0603, 0);
    assert_eq!(r, 63);
    let (r, fl) = bcd(|a| a.aad(16).unwrap(), 0x0000, 0);
    assert_eq!((r, fl & ZF != 0, fl & PF != 0), (0, true, true));
}

#[test]
fn daa_das_exhaustive_bcd_pairs() {
    // Packed-BCD addition and subtraction of every pair 0..=99 give the
    // BCD of the decimal result mod 100 with CF = carry/borrow.
    let bcd_of = |n: u32| ((n / 10) << 4 | (n % 10)) as u8;
    let mut m = machine(M::Prot32);
    m.load(|a| {
        a.add(al, bl).unwrap();
        a.daa().unwrap();
        a.hlt().unwrap();
        a.sub(al, bl).unwrap();
        a.das().unwrap();
        a.hlt().unwrap();
    });
    for x in 0..100u32 {
        for y in 0..100u32 {
            for (start, sum) in [(0u64, true), (4u64, false)] {
                m.cpu.rip = CODE + start;
                m.cpu.gpr[RAX] = u64::from(bcd_of(x));
                m.cpu.gpr[RBX] = u64::from(bcd_of(y));
                m.cpu.halted = false;
                let e = m.run(10);
                assert_eq!(e.kind, EventKind::Hlt);
                let (want, carry) = if sum {
                    ((x + y) % 100, x + y >= 100)
                } else {
                    ((x + 100 - y) % 100, x < y)
                };
                let got = m.cpu.gpr[RAX] as u8;
                assert_eq!(got, bcd_of(want), "{x} {} {y}", if sum { "+" } else { "-" });
                assert_eq!(m.cpu.rflags & CF != 0, carry, "CF {x} {y}");
                assert_eq!(m.cpu.rflags & ZF != 0, want == 0, "ZF {x} {y}");
            }
        }
    }
}

#[test]
fn aam_zero_is_de_and_bcd_is_ud_in_64_bit_mode() {
    let mut m = machine(M::Prot32);
    assert_eq!(exc(&run_bytes(&mut m, &[0xd4, 0x00])), Some((0, None)));
    for b in [
        &[0x27u8][..],
        &[0x2f],
        &[0x37],
        &[0x3f],
        &[0xd4, 0x0a],
        &[0xd5, 0x0a],
    ] {
        let mut m = machine(M::Long64);
        assert_eq!(exc(&run_bytes(&mut m, b)), Some((6, None)), "{b:02x?}");
    }
}

#[test]
fn pusha_popa_and_ud_in_64_bit_mode() {
    let mut m = machine(M::Prot32);
    let vals = [0x11u64, 0x22, 0x33, 0x44, STACK, 0x66, 0x77, 0x88];
    for (i, v) in vals.iter().enumerate() {
        m.cpu.gpr[i] = *v;
    }
    run_ok(&mut m, |a| {
        a.pushad().unwrap();
        a.mov(ebp, 0).unwrap();
        a.mov(eax, 0).unwrap();
        a.mov(edi, 0).unwrap();
        a.mov(dword_ptr(esp + 12), 0x1234u32).unwrap(); // saved ESP is ignored by POPAD
        a.popad().unwrap();
    });
    // Stack image: EDI at the lowest address … EAX at the highest.
    for (k, i) in [7usize, 6, 5, 4, 3, 2, 1, 0].into_iter().enumerate() {
        let want = if i == RSP { 0x1234 } else { vals[i] };
        let got = u32::from_le_bytes(
            m.bus
                .peek(STACK - 32 + 4 * k as u64, 4)
                .unwrap()
                .try_into()
                .unwrap(),
        );
        assert_eq!(u64::from(got), want, "slot {k}");
    }
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(m.cpu.gpr[i], *v, "reg {i} restored");
    }
    // 16-bit PUSHA in real mode: 16 bytes.
    let mut m = machine(M::Real);
    m.cpu.gpr[RAX] = 0xabcd;
    run_ok(&mut m, |a| a.pusha().unwrap());
    assert_eq!(m.cpu.gpr[RSP], STACK - 16);
    assert_eq!(m.bus.peek(STACK - 2, 2).unwrap(), vec![0xcd, 0xab]);
    assert_eq!(
        m.bus.peek(STACK - 10, 2).unwrap(),
        (STACK as u16).to_le_bytes().to_vec()
    );
    for b in [0x60u8, 0x61] {
        let mut m = machine(M::Long64);
        assert_eq!(exc(&run_bytes(&mut m, &[b])), Some((6, None)));
    }
}

#[test]
fn movbe_and_lahf_sahf_in_64_bit_mode() {
    let mut m = machine(M::Long64);
    m.cpu.gpr[RBX] = DATA;
    m.bus.load(DATA, &0x0102_0304_0506_0708u64.to_le_bytes());
    m.cpu.gpr[RCX] = 0xffff_ffff_ffff_ffff;
    m.cpu.gpr[RDX] = 0xffff_ffff_ffff_ffff;
    run_ok(&mut m, |a| {
        a.movbe(rax, qword_ptr(rbx)).unwrap();
        a.movbe(ecx, dword_ptr(rbx)).unwrap();
        a.movbe(dx, word_ptr(rbx)).unwrap();
        a.mov(rsi, 0x1122_3344u64).unwrap();
        a.movbe(dword_ptr(rbx + 8), esi).unwrap();
    });
    assert_eq!(m.cpu.gpr[RAX], 0x0807_0605_0403_0201);
    assert_eq!(m.cpu.gpr[RCX], 0x0807_0605);
    assert_eq!(m.cpu.gpr[RDX], 0xffff_ffff_ffff_0807);
    assert_eq!(
        m.bus.peek(DATA + 8, 4).unwrap(),
        vec![0x11, 0x22, 0x33, 0x44]
    );

    let mut m = machine(M::Long64);
    m.cpu.rflags = 0x2 | CF | ZF | SF;
    m.cpu.gpr[RBX] = 0xff00 | u64::from(0xd5u8 & !(SF as u8));
    run_ok(&mut m, |a| {
        a.lahf().unwrap();
        a.mov(cl, ah).unwrap();
        a.mov(ah, bl).unwrap();
        a.sahf().unwrap();
    });
    assert_eq!(
        m.cpu.gpr[RCX] & 0xff,
        0xc3,
        "LAHF image SF:ZF:0:AF:0:PF:1:CF"
    );
    assert_eq!(m.cpu.rflags & 0xd5, 0xd5 & !SF, "SAHF loads AH");
}

#[test]
fn xlat_uses_rbx_plus_al_with_segment_override() {
    let mut m = machine(M::Long64);
    m.bus.load(DATA + 0x80, &[0x5a]);
    m.bus.load(0x40_0000 + 0x81, &[0xa5]);
    m.cpu.gpr[RBX] = DATA;
    m.cpu.gpr[RAX] = 0x1234_5680;
    m.cpu.seg[SegReg::Fs as usize].base = 0x40_0000 - DATA;
    run_ok(&mut m, |a| {
        a.xlatb().unwrap();
        a.mov(ecx, eax).unwrap();
        a.mov(eax, 0x81u32).unwrap();
        a.db(&[0x64, 0xd7]).unwrap(); // fs xlat
    });
    assert_eq!(m.cpu.gpr[RCX], 0x1234_565a);
    assert_eq!(m.cpu.gpr[RAX] & 0xff, 0xa5);
}

/// Kernel entry for SYSCALL: HLT at CODE + 0x800.
const ENTRY: u64 = CODE + 0x800;

#[test]
fn syscall_sysret_round_trip_in_long_mode() {
    let mut m = machine(M::Long64);
    assert!(m.bus.load(ENTRY, &[0xf4]));
    // STAR[47:32] = 0x18 (kernel CS, SS = 0x20); STAR[63:48] = 0x10
    // (64-bit user CS = 0x10 + 16 | 3 = 0x23, SS = 0x10 + 8 | 3 = 0x1b).
    m.cpu.msrs.star = (0x10u64 << 48) | (0x18u64 << 32);
    m.cpu.msrs.lstar = ENTRY;
    m.cpu.msrs.sfmask = 0x200 | 0x400;
    let bytes = m.load(|a| {
        // EFER.SCE through WRMSR.
        a.mov(ecx, 0xc000_0080u32).unwrap();
        a.rdmsr().unwrap();
        a.or(eax, 1).unwrap();
        a.wrmsr().unwrap();
        let mut user = a.create_label();
        a.lea(rcx, ptr(user)).unwrap();
        a.mov(r11, 0x2c3u64).unwrap(); // IF | CF | ZF | PF | SF... image for user RFLAGS
        a.sysretq().unwrap();
        a.set_label(&mut user).unwrap();
        a.mov(eax, 42u32).unwrap();
        a.syscall().unwrap();
        a.hlt().unwrap();
    });
    // 7 instructions to the SYSRETQ; the user code starts after it.
    let e = m.run(7);
    assert_eq!(e.retired, 7, "{e:?}");
    assert_eq!(m.cpu.cpl(), 3);
    assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0x23);
    assert!(m.cpu.seg(SegReg::Cs).l);
    assert_eq!(m.cpu.seg(SegReg::Ss).selector, 0x1b);
    assert_eq!(m.cpu.rflags, 0x2c3 & 0x3c_7fd7 | 2);
    let user_rip = m.cpu.rip;
    assert!(user_rip > CODE && user_rip < CODE + bytes.len() as u64);
    let e = m.run_to_hlt();
    assert_eq!(e.retired, 3, "mov, syscall, hlt at the entry");
    assert_eq!(m.cpu.rip, ENTRY + 1);
    assert_eq!(m.cpu.cpl(), 0);
    assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0x18);
    assert_eq!(m.cpu.seg(SegReg::Ss).selector, 0x20);
    assert_eq!(m.cpu.gpr[RCX], user_rip + 5 + 2, "RCX = RIP after SYSCALL");
    assert_eq!(m.cpu.gpr[11], 0x2c3, "R11 = user RFLAGS");
    assert_eq!(m.cpu.rflags & 0x600, 0, "IF and DF masked by SFMASK");
    assert_eq!(m.cpu.gpr[RAX], 42);
}

#[test]
fn syscall_sysret_faults() {
    // SCE = 0: SYSCALL is #UD.
    let mut m = machine(M::Long64);
    assert_eq!(exc(&run_bytes(&mut m, &[0x0f, 0x05])), Some((6, None)));
    // Outside 64-bit mode (Intel): #UD even with SCE = 1.
    let mut m = machine(M::Prot32);
    m.cpu.efer |= 1;
    assert_eq!(exc(&run_bytes(&mut m, &[0x0f, 0x05])), Some((6, None)));
    // SYSRET to a non-canonical RCX: #GP(0), state untouched.
    let mut m = machine(M::Long64);
    m.cpu.efer |= 1;
    m.cpu.gpr[RCX] = 0x0000_8000_0000_0000;
    let e = run_bytes(&mut m, &[0x48, 0x0f, 0x07]);
    assert_eq!(exc(&e), Some((13, Some(0))));
    assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0x18);
    // SYSRET at CPL 3: #GP(0).
    let mut m = machine(M::Long64);
    m.cpu.efer |= 1;
    m.cpu.seg[SegReg::Cs as usize].dpl = 3;
    m.cpu.seg[SegReg::Cs as usize].selector = 0x23;
    m.cpu.seg[SegReg::Ss as usize].dpl = 3;
    m.cpu.gpr[RCX] = CODE;
    let e = run_bytes(&mut m, &[0x48, 0x0f, 0x07]);
    assert_eq!(exc(&e), Some((13, Some(0))));
}

#[test]
fn sysenter_sysexit() {
    // 32-bit: SYSENTER_CS = 0x08 → CS 0x08, SS 0x10; SYSEXIT → CS 0x1b, SS 0x23.
    let mut m = machine(M::Prot32);
    m.cpu.msrs.sysenter_cs = 0x08;
    m.cpu.msrs.sysenter_esp = 0x7000;
    m.cpu.msrs.sysenter_eip = ENTRY;
    m.cpu.rflags |= 0x200;
    // Kernel entry: SYSEXIT to EDX with ESP = ECX.
    assert!(m.bus.load(ENTRY, &[0x0f, 0x35]));
    m.cpu.gpr[RDX] = CODE + 0x900;
    m.cpu.gpr[RCX] = 0x6000;
    assert!(m.bus.load(CODE + 0x900, &[0xf4]));
    let e = run_bytes(&mut m, &[0x0f, 0x34]);
    assert_eq!(e.retired, 2, "{e:?}");
    assert_eq!(exc(&e), Some((13, Some(0))), "HLT at CPL 3 after SYSEXIT");
    assert_eq!(m.cpu.rip, CODE + 0x900);
    assert_eq!(m.cpu.gpr[RSP], 0x6000);
    assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0x1b);
    assert_eq!(m.cpu.seg(SegReg::Ss).selector, 0x23);
    assert_eq!(m.cpu.cpl(), 3);
    assert_eq!(m.cpu.rflags & 0x200, 0, "SYSENTER cleared IF");
    // Stopped at SYSENTER's kernel side? Check one step only.
    let mut m = machine(M::Prot32);
    m.cpu.msrs.sysenter_cs = 0x08;
    m.cpu.msrs.sysenter_esp = 0x7000;
    m.cpu.msrs.sysenter_eip = ENTRY;
    assert!(m.bus.load(ENTRY, &[0xf4]));
    let e = run_bytes(&mut m, &[0x0f, 0x34]);
    assert_eq!(e.kind, EventKind::Hlt);
    assert_eq!(
        (
            m.cpu.seg(SegReg::Cs).selector,
            m.cpu.seg(SegReg::Ss).selector
        ),
        (0x08, 0x10)
    );
    assert_eq!(m.cpu.gpr[RSP], 0x7000);
    // SYSENTER_CS = 0: #GP(0).
    let mut m = machine(M::Prot32);
    assert_eq!(exc(&run_bytes(&mut m, &[0x0f, 0x34])), Some((13, Some(0))));
    // 64-bit SYSEXITQ: CS = SYSENTER_CS + 32 | 3, SS = + 40 | 3.
    let mut m = machine(M::Long64);
    m.cpu.msrs.sysenter_cs = 0x08;
    m.cpu.gpr[RDX] = CODE + 0x900;
    m.cpu.gpr[RCX] = 0x6000;
    assert!(m.bus.load(CODE + 0x900, &[0x90, 0x90]));
    let e = run_bytes(&mut m, &[0x48, 0x0f, 0x35]);
    assert!(e.retired >= 1, "{e:?}");
    assert_eq!(
        (
            m.cpu.seg(SegReg::Cs).selector,
            m.cpu.seg(SegReg::Ss).selector
        ),
        (0x2b, 0x33)
    );
    assert!(m.cpu.seg(SegReg::Cs).l);
}

/// Adds GDT entries at 0x40 (LDT, base 0x5000, limit 0x17; 16 bytes in
/// long mode) and returns the new GDT limit.
fn add_ldt(m: &mut Machine) {
    let lo: u64 = 0x17 | (0x5000u64 << 16) | (0x82u64 << 40);
    m.bus.load(GDT + 0x40, &lo.to_le_bytes());
    m.bus.load(GDT + 0x48, &0u64.to_le_bytes());
    m.cpu.gdtr.limit = 0x4f;
    // LDT entry 1: a flat writable data segment, DPL 0.
    m.bus.load(0x5008, &0x00cf_9200_0000_ffffu64.to_le_bytes());
}

#[test]
fn lldt_sldt_and_ldt_use() {
    for mode in [M::Prot32, M::Long64] {
        let mut m = machine(mode);
        add_ldt(&mut m);
        run_ok(&mut m, |a| {
            a.mov(ax, 0x40).unwrap();
            a.lldt(ax).unwrap();
            a.mov(ecx, 0xffff_ffffu32).unwrap();
            a.sldt(ecx).unwrap();
            a.mov(dx, 0x0c).unwrap();
            a.mov(es, dx).unwrap();
        });
        assert_eq!(m.cpu.ldtr.selector, 0x40);
        assert_eq!(m.cpu.ldtr.base, 0x5000);
        assert_eq!(m.cpu.gpr[RCX], 0x40, "SLDT r32 zero-extends");
        assert_eq!(m.cpu.seg(SegReg::Es).selector, 0x0c);
        // LLDT of a non-LDT descriptor: #GP(sel); of an LDT selector: #GP(sel).
        for sel in [0x10u16, 0x44] {
            let mut m = machine(mode);
            add_ldt(&mut m);
            m.cpu.gpr[RAX] = u64::from(sel);
            let e = run_bytes(&mut m, &[0x0f, 0x00, 0xd0]);
            assert_eq!(exc(&e), Some((13, Some(u32::from(sel & !3)))), "{sel:#x}");
        }
    }
    // SLDT / STR are not recognised in real mode.
    let mut m = machine(M::Real);
    assert_eq!(
        exc(&run_bytes(&mut m, &[0x0f, 0x00, 0xc0])),
        Some((6, None))
    );
}

#[test]
fn ltr_marks_the_tss_busy() {
    for mode in [M::Prot32, M::Long64] {
        let mut m = machine(mode);
        m.cpu.tr = Default::default();
        run_ok(&mut m, |a| {
            a.mov(ax, 0x30).unwrap();
            a.ltr(ax).unwrap();
            a.str(ecx).unwrap();
        });
        assert_eq!(
            m.bus.peek(GDT + 0x30 + 5, 1).unwrap()[0],
            0x8b,
            "busy TSS type"
        );
        assert_eq!(m.cpu.tr.selector, 0x30);
        assert_eq!(m.cpu.tr.typ, 0xb);
        assert_eq!(m.cpu.tr.base, TSS);
        assert_eq!(m.cpu.gpr[RCX], 0x30);
        // LTR again: the descriptor is busy now → #GP(0x30).
        let e = run_bytes(&mut m, &[0x0f, 0x00, 0xd8]);
        assert_eq!(exc(&e), Some((13, Some(0x30))), "{mode:?}");
        // Null selector → #GP(0); code segment → #GP(sel); not present → #NP(sel).
        let mut m = machine(mode);
        m.cpu.gpr[RAX] = 0;
        assert_eq!(
            exc(&run_bytes(&mut m, &[0x0f, 0x00, 0xd8])),
            Some((13, Some(0)))
        );
        let mut m = machine(mode);
        m.cpu.gpr[RAX] = 0x08;
        assert_eq!(
            exc(&run_bytes(&mut m, &[0x0f, 0x00, 0xd8])),
            Some((13, Some(8)))
        );
        let mut m = machine(mode);
        let lo = m.bus.peek_u64(GDT + 0x30) & !(1 << 47);
        m.bus.load(GDT + 0x30, &lo.to_le_bytes());
        m.cpu.gpr[RAX] = 0x30;
        assert_eq!(
            exc(&run_bytes(&mut m, &[0x0f, 0x00, 0xd8])),
            Some((11, Some(0x30)))
        );
        assert_eq!(
            m.bus.peek(GDT + 0x35, 1).unwrap()[0],
            0x09,
            "no busy bit on a fault"
        );
    }
}

/// (selector, LAR result, LSL result, VERR, VERW).
type DescCase = (u16, Option<u64>, Option<u64>, bool, bool);

#[test]
fn lar_lsl_verr_verw_table() {
    // (selector, LAR result, LSL result, VERR, VERW) in 32-bit protected mode at CPL 0.
    let t: [DescCase; 8] = [
        (0x08, Some(0x00cf_9a00), Some(0xffff_ffff), true, false),
        (0x10, Some(0x00cf_9200), Some(0xffff_ffff), true, true),
        (0x2b, Some(0x00cf_f200), Some(0xffff_ffff), true, true),
        (0x13, None, None, false, false), // RPL 3 > DPL 0
        (0x30, Some(0x0000_8900), Some(0x67), false, false),
        (0x00, None, None, false, false),
        (0x1000, None, None, false, false), // beyond the GDT limit
        (0x04, None, None, false, false),   // LDT unusable
    ];
    for (sel, lar, lsl, verr, verw) in t {
        let mut m = machine(M::Prot32);
        m.cpu.ldtr.unusable = true;
        m.cpu.gpr[RBX] = u64::from(sel);
        m.cpu.gpr[RAX] = 0xdead_beef;
        m.cpu.gpr[RCX] = 0xdead_beef;
        run_ok(&mut m, |a| {
            a.lar(eax, ebx).unwrap();
            a.setz(dl).unwrap();
            a.lsl(ecx, ebx).unwrap();
            a.setz(dh).unwrap();
            a.verr(bx).unwrap();
            a.setz(byte_ptr(DATA as u32)).unwrap();
            a.verw(bx).unwrap();
            a.setz(byte_ptr(DATA as u32 + 1)).unwrap();
        });
        assert_eq!(m.cpu.gpr[RAX], lar.unwrap_or(0xdead_beef), "LAR {sel:#x}");
        assert_eq!(
            m.cpu.gpr[RDX] & 0xff,
            u64::from(lar.is_some()),
            "LAR ZF {sel:#x}"
        );
        assert_eq!(m.cpu.gpr[RCX], lsl.unwrap_or(0xdead_beef), "LSL {sel:#x}");
        assert_eq!(
            (m.cpu.gpr[RDX] >> 8) & 0xff,
            u64::from(lsl.is_some()),
            "LSL ZF"
        );
        let z = m.bus.peek(DATA, 2).unwrap();
        assert_eq!((z[0] != 0, z[1] != 0), (verr, verw), "VERR/VERW {sel:#x}");
    }
}

#[test]
fn arpl_and_movsxd_and_swapgs() {
    let mut m = machine(M::Prot32);
    m.cpu.gpr[RAX] = 0x10;
    m.cpu.gpr[RBX] = 0x2b;
    run_ok(&mut m, |a| {
        a.arpl(ax, bx).unwrap();
        a.setz(cl).unwrap();
        a.arpl(ax, bx).unwrap();
        a.setz(ch).unwrap();
    });
    assert_eq!(m.cpu.gpr[RAX], 0x13);
    assert_eq!(m.cpu.gpr[RCX] & 0xffff, 0x0001, "ZF=1 then ZF=0");
    // 63 /r is MOVSXD in 64-bit mode.
    let mut m = machine(M::Long64);
    m.cpu.gpr[RBX] = 0x8000_0000;
    let e = run_bytes(&mut m, &[0x48, 0x63, 0xc3]);
    assert_eq!(e.kind, EventKind::Hlt);
    assert_eq!(m.cpu.gpr[RAX], 0xffff_ffff_8000_0000);
    // ARPL in real mode: #UD.
    let mut m = machine(M::Real);
    assert_eq!(exc(&run_bytes(&mut m, &[0x63, 0xd8])), Some((6, None)));
    // SWAPGS at CPL 0 in 64-bit mode.
    let mut m = machine(M::Long64);
    m.cpu.seg[SegReg::Gs as usize].base = 0x1111;
    m.cpu.msrs.kernel_gs_base = 0x2222;
    run_ok(&mut m, |a| a.swapgs().unwrap());
    assert_eq!(m.cpu.seg(SegReg::Gs).base, 0x2222);
    assert_eq!(m.cpu.msrs.kernel_gs_base, 0x1111);
    // SWAPGS outside 64-bit mode: #UD.
    let mut m = machine(M::Prot32);
    assert_eq!(
        exc(&run_bytes(&mut m, &[0x0f, 0x01, 0xf8])),
        Some((6, None))
    );
}

#[test]
fn cpuid_advertises_the_new_families() {
    let mut m = machine(M::Long64);
    run_ok(&mut m, |a| {
        a.mov(eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.mov(r8d, ecx).unwrap();
        a.mov(r9d, edx).unwrap();
        a.mov(eax, 7u32).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
        a.mov(r10d, ebx).unwrap();
        a.mov(eax, 0x8000_0001u32).unwrap();
        a.cpuid().unwrap();
    });
    let g = |i: usize| m.cpu.gpr[i];
    assert_ne!(g(8) & (1 << 23), 0, "POPCNT");
    assert_ne!(g(8) & (1 << 22), 0, "MOVBE");
    assert_ne!(g(8) & (1 << 13), 0, "CMPXCHG16B");
    assert_ne!(g(9) & (1 << 8), 0, "CX8");
    assert_ne!(g(9) & (1 << 11), 0, "SEP");
    assert_eq!(g(10) & 0x108, 0x108, "BMI1, BMI2");
    assert_eq!(g(RCX) & 0x21, 0x21, "LAHF-SAHF, LZCNT");
    assert_ne!(g(RDX) & (1 << 11), 0, "SYSCALL");
    let _ = RDI;
}
