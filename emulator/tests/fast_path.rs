//! The fast path (pre-decoded blocks, lazy flags, micro-TLB, bulk REP
//! MOVS/STOS) against the general path: random 64-bit loops of fast-form
//! and general instructions, with loads, stores, stack traffic, branches,
//! REP string moves and self-modifying code, run with the fast path on
//! (in one call and split into small budgets) and off; the final CPU state,
//! memory and retired/step counts must be identical.

mod common;

use common::*;
use hyperplug_emulator::{Event, EventKind};
use iced_x86::code_asm::*;

const R64: [AsmRegister64; 9] = [rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11];
const R32: [AsmRegister32; 9] = [eax, ecx, edx, esi, edi, r8d, r9d, r10d, r11d];
const R16: [AsmRegister16; 9] = [ax, cx, dx, si, di, r8w, r9w, r10w, r11w];
const R8: [AsmRegister8; 9] = [al, cl, dl, sil, dil, r8b, r9b, r10b, r11b];

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

macro_rules! alu {
    ($a:expr, $op:ident, $r:expr) => {{
        let (k, i, j, imm) = ($r.below(8), $r.below(9), $r.below(9), $r.next() as i32);
        match k {
            0 => $a.$op(R64[i], R64[j]),
            1 => $a.$op(R32[i], R32[j]),
            2 => $a.$op(R16[i], R16[j]),
            3 => $a.$op(R8[i], R8[j]),
            4 => $a.$op(R64[i], imm),
            5 => $a.$op(R32[i], imm),
            6 => $a.$op(R16[i], i32::from(imm as i16)),
            _ => $a.$op(R8[i], i32::from(imm as i8)),
        }
        .unwrap()
    }};
}

/// A marker instruction the self-modifying store rewrites (mov eax, imm32).
const MARK: u32 = 0x5a5a_1234;

/// A function on its own page whose first instruction (mov eax, imm32)
/// the main loop rewrites.
const SMC_FN: u64 = CODE + 0x8000;

fn smc_fn(a: &mut CodeAssembler) {
    a.mov(eax, MARK).unwrap();
    a.add(rdx, rax).unwrap();
    a.ret().unwrap();
}

/// Self-modifying code (when this program has it): rewrites the
/// function's immediate, then calls it (its cached block is stale now).
fn smc(a: &mut CodeAssembler, smc_on: bool) {
    if smc_on {
        // Every other pass, so that the function's block gets built and
        // then goes stale.
        let mut skip = a.create_label();
        a.add(ecx, r15d).unwrap();
        a.test(r15b, 1).unwrap();
        a.jz(skip).unwrap();
        a.mov(dword_ptr(SMC_FN + 1), ecx).unwrap();
        a.set_label(&mut skip).unwrap();
        a.mov(r14, SMC_FN).unwrap();
        a.call(r14).unwrap();
    }
}

/// Emits one random instruction (or a short group).
fn emit(a: &mut CodeAssembler, r: &mut Rng, smc_on: bool) {
    let (i, j) = (r.below(9), r.below(9));
    // Data accesses at rbx + disp (rbx = DATA), a few crossing a page.
    let disp = (r.below(0x1ff0) as i32) & !if r.below(4) == 0 { 0 } else { 7 };
    match r.below(30) {
        0 => alu!(a, add, r),
        1 => alu!(a, or, r),
        2 => alu!(a, adc, r),
        3 => alu!(a, sbb, r),
        4 => alu!(a, and, r),
        5 => alu!(a, sub, r),
        6 => alu!(a, xor, r),
        7 => alu!(a, cmp, r),
        8 => alu!(a, test, r),
        9 => a.inc(R32[i]).unwrap(),
        10 => a.dec(R64[i]).unwrap(),
        11 => a.dec(R8[i]).unwrap(),
        12 => a.mov(R64[i], R64[j]).unwrap(),
        13 => a.mov(R16[i], R16[j]).unwrap(),
        14 => a.mov(R64[i], r.next()).unwrap(),
        15 => a.mov(R64[i], qword_ptr(rbx + disp)).unwrap(),
        16 => a.mov(R32[i], dword_ptr(rbx + disp)).unwrap(),
        17 => a.mov(qword_ptr(rbx + disp), R64[i]).unwrap(),
        18 => a.mov(word_ptr(rbx + disp), R16[i]).unwrap(),
        19 => {
            a.push(R64[i]).unwrap();
            a.pop(R64[j]).unwrap();
        }
        // General-path instructions between fast ones (flags consumers and producers).
        20 => a.shl(R64[i], (r.below(64)) as u32).unwrap(),
        21 => a.imul_2(R64[i], R64[j]).unwrap(),
        22 => a.setb(R8[i]).unwrap(),
        23 => a.cmovle(R64[i], R64[j]).unwrap(),
        24 => {
            a.pushfq().unwrap();
            a.pop(R64[i]).unwrap();
        }
        25 => a.lea(R64[i], qword_ptr(R64[j] + disp)).unwrap(),
        26 => {
            // A forward Jcc over one instruction.
            let mut l = a.create_label();
            match r.below(4) {
                0 => a.jne(l).unwrap(),
                1 => a.jb(l).unwrap(),
                2 => a.jle(l).unwrap(),
                _ => a.jp(l).unwrap(),
            }
            a.add(R64[i], 1).unwrap();
            a.set_label(&mut l).unwrap();
            a.nop().unwrap();
        }
        27 => {
            // A call to a local function.
            let (mut f, mut over) = (a.create_label(), a.create_label());
            a.call(f).unwrap();
            a.jmp(over).unwrap();
            a.set_label(&mut f).unwrap();
            a.xor(R32[i], R32[j]).unwrap();
            a.ret().unwrap();
            a.set_label(&mut over).unwrap();
            a.nop().unwrap();
        }
        28 => {
            // REP MOVSB / STOSQ inside the data area (overlapping either way).
            a.push(rsi).unwrap();
            a.push(rdi).unwrap();
            a.push(rcx).unwrap();
            a.lea(rsi, qword_ptr(rbx + (disp & 0xfff))).unwrap();
            a.lea(rdi, qword_ptr(rbx + (r.below(0x1000) as i32)))
                .unwrap();
            a.mov(ecx, r.below(0x1800) as u32).unwrap();
            if r.below(2) == 0 {
                a.rep().movsb().unwrap();
            } else {
                a.rep().stosq().unwrap();
            }
            a.pop(rcx).unwrap();
            a.pop(rdi).unwrap();
            a.pop(rsi).unwrap();
        }
        _ => smc(a, smc_on),
    }
}

/// A loop of `n` random instructions run `iters` times, then HLT.
fn program(seed: u64, n: usize, iters: u32, smc_on: bool) -> impl FnOnce(&mut CodeAssembler) {
    move |a: &mut CodeAssembler| {
        let mut r = Rng(seed | 1);
        let mut top = a.create_label();
        a.mov(rbx, DATA).unwrap();
        a.mov(r15d, iters).unwrap();
        for (k, reg) in R64.iter().enumerate() {
            a.mov(*reg, r.next() >> (k * 7)).unwrap();
        }
        a.set_label(&mut top).unwrap();
        smc(a, smc_on);
        for _ in 0..n {
            emit(a, &mut r, smc_on);
        }
        a.dec(r15d).unwrap();
        a.jnz(top).unwrap();
        a.hlt().unwrap();
    }
}

/// Runs to HLT in chunks of `chunk` steps; the summed event counts.
fn run_chunked(m: &mut Machine, chunk: u64) -> (u64, u64) {
    let (mut retired, mut steps) = (0, 0);
    for _ in 0..10_000_000 {
        let e: Event = m.run(chunk);
        retired += e.retired;
        steps += e.steps;
        match e.kind {
            EventKind::Budget => continue,
            EventKind::Hlt => return (retired, steps),
            k => panic!("stopped with {k:?} at {:#x}", m.cpu.rip),
        }
    }
    panic!("did not halt");
}

fn machine_for(seed: u64, n: usize, iters: u32) -> Machine {
    let smc_on = seed.is_multiple_of(2);
    let mut m = Machine::new(M::Long64);
    m.load(program(seed, n, iters, smc_on));
    let mut f = CodeAssembler::new(64).expect("bitness");
    smc_fn(&mut f);
    assert!(m.bus.load(SMC_FN, &f.assemble(SMC_FN).expect("assemble")));
    m
}

#[test]
fn fast_path_equals_general_path() {
    for seed in 1..=80u64 {
        let n = 8 + (seed as usize * 7) % 40;
        let iters = 4 + (seed as u32 % 5);
        let mut slow = machine_for(seed, n, iters);
        slow.eng.set_fast_path(false);
        let want = run_chunked(&mut slow, u64::MAX);
        for chunk in [u64::MAX, 7, 1] {
            let mut fast = machine_for(seed, n, iters);
            let got = run_chunked(&mut fast, chunk);
            assert_eq!(got, want, "seed {seed} chunk {chunk}: retired/steps");
            assert_eq!(fast.cpu, slow.cpu, "seed {seed} chunk {chunk}: cpu");
            assert!(
                fast.bus.peek(0, RAM) == slow.bus.peek(0, RAM),
                "seed {seed} chunk {chunk}: memory"
            );
        }
    }
}
