//! Engine throughput in guest instructions per second (criterion prints
//! Melem/s = MIPS): (a) a register ALU loop, (b) loads and stores over
//! 16 MiB of 4-KiB pages with 4-level paging, (c) REP MOVSB / REP STOSB,
//! (d) a CALL/RET-heavy loop. All run in 64-bit mode on a [`FlatBus`].
//!
//! Run with `cargo bench -p hyperplug-emulator` (`ENGINE_BENCH=a_alu` limits
//! it to one workload, setup included). For (c) an element is one
//! REP iteration (a budget step, see `Engine::execute`); for the others it
//! is one retired instruction.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperplug_emulator::cpu::{Seg, SegReg};
use hyperplug_emulator::{Cpu, Engine, EventKind, FlatBus, InterceptPolicy};
use iced_x86::code_asm::*;
use std::time::Duration;

/// RAM: 32 MiB.
const RAM: usize = 32 << 20;
/// Code.
const CODE: u64 = 0x10000;
/// Stack top.
const STACK: u64 = 0x80000;
/// PML4; PDPT, identity PD and the data PD/PTs follow.
const PML4: u64 = 0x100000;
/// Linear base of the 4-KiB-mapped data region of (b).
const DATA_LIN: u64 = 0x4000_0000;
/// Guest-physical base of that region.
const DATA_GPA: u64 = 0x100_0000;
/// Its size.
const DATA_SPAN: u64 = 16 << 20;
/// REP buffers (identity-mapped, 2-MiB pages).
const REP_SRC: u64 = 0x20_0000;
const REP_DST: u64 = 0x40_0000;

/// A 64-bit flat code or data segment.
fn flat(sel: u16, code: bool) -> Seg {
    Seg {
        selector: sel,
        base: 0,
        limit: 0xffff_ffff,
        typ: if code { 0xb } else { 0x3 },
        s: true,
        dpl: 0,
        present: true,
        avl: false,
        l: code,
        db: !code,
        g: true,
        unusable: false,
    }
}

/// A long-mode machine: the first 1 GiB identity-mapped with 2-MiB pages,
/// `DATA_LIN..+16 MiB` mapped to `DATA_GPA` with 4-KiB pages (4-level).
fn machine(program: impl FnOnce(&mut CodeAssembler)) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(RAM);
    let pdpt = PML4 + 0x1000;
    let pd_id = PML4 + 0x2000;
    let pd_data = PML4 + 0x3000;
    let pts = PML4 + 0x4000;
    let put = |bus: &mut FlatBus, at: u64, v: u64| assert!(bus.load(at, &v.to_le_bytes()));
    put(&mut bus, PML4, pdpt | 7);
    put(&mut bus, pdpt, pd_id | 7);
    put(&mut bus, pdpt + 8, pd_data | 7);
    for i in 0..512u64 {
        put(&mut bus, pd_id + 8 * i, (i << 21) | 0x87);
    }
    let pages = DATA_SPAN >> 12;
    for p in 0..pages {
        if p % 512 == 0 {
            put(&mut bus, pd_data + 8 * (p / 512), (pts + 8 * p) | 7);
        }
        put(&mut bus, pts + 8 * p, (DATA_GPA + (p << 12)) | 7);
    }
    let mut a = CodeAssembler::new(64).expect("bitness");
    program(&mut a);
    let bytes = a.assemble(CODE).expect("assemble");
    assert!(bus.load(CODE, &bytes));
    let mut cpu = Cpu::default();
    for s in [SegReg::Ds, SegReg::Es, SegReg::Ss, SegReg::Fs, SegReg::Gs] {
        cpu.seg[s as usize] = flat(0x10, false);
    }
    cpu.seg[SegReg::Cs as usize] = flat(0x08, true);
    cpu.rip = CODE;
    cpu.gpr[4] = STACK;
    cpu.cr3 = PML4;
    cpu.cr4 = 0x20;
    cpu.efer = 0x500;
    cpu.cr0 = 0x8000_0011;
    (cpu, bus)
}

/// (a) A register ALU loop.
fn alu(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(ecx, 200_000u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.add(rax, rcx).unwrap();
    a.xor(rbx, rax).unwrap();
    a.sub(rdx, 3).unwrap();
    a.and(rsi, rbx).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.hlt().unwrap();
}

/// (b) A load and a store per 64 bytes over the 16-MiB 4-KiB-page region.
fn mem(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(rdi, DATA_LIN).unwrap();
    a.mov(ecx, (DATA_SPAN / 64) as u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rax, qword_ptr(rdi)).unwrap();
    a.add(rax, rcx).unwrap();
    a.mov(qword_ptr(rdi + 8), rax).unwrap();
    a.add(rdi, 64).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.hlt().unwrap();
}

/// (c) REP MOVSB then REP STOSB of 64 KiB, 8 times.
fn rep(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(edx, 8u32).unwrap();
    a.cld().unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(esi, REP_SRC as u32).unwrap();
    a.mov(edi, REP_DST as u32).unwrap();
    a.mov(ecx, 0x10000u32).unwrap();
    a.rep().movsb().unwrap();
    a.mov(ecx, 0x10000u32).unwrap();
    a.mov(al, 0x5au32).unwrap();
    a.rep().stosb().unwrap();
    a.dec(edx).unwrap();
    a.jnz(top).unwrap();
    a.hlt().unwrap();
}

/// (d) Nested near calls and returns.
fn calls(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    let mut f = a.create_label();
    let mut g = a.create_label();
    a.mov(ecx, 200_000u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.call(f).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.hlt().unwrap();
    a.set_label(&mut f).unwrap();
    a.push(rbx).unwrap();
    a.call(g).unwrap();
    a.pop(rbx).unwrap();
    a.ret().unwrap();
    a.set_label(&mut g).unwrap();
    a.ret().unwrap();
}

/// One workload: runs the program to HLT per iteration, counting retired
/// instructions (or steps, for REP).
fn workload(c: &mut Criterion, name: &str, program: fn(&mut CodeAssembler), count_steps: bool) {
    // `ENGINE_BENCH=<name part>` skips the other workloads' setup (profiling).
    if let Ok(only) = std::env::var("ENGINE_BENCH") {
        if !name.contains(&only) {
            return;
        }
    }
    let (cpu0, mut bus) = machine(program);
    let mut eng = Engine::standalone();
    let policy = InterceptPolicy::default();
    let run = |eng: &mut Engine, bus: &mut FlatBus| {
        let mut cpu = cpu0.clone();
        let e = eng.execute(&mut cpu, bus, &policy, u64::MAX);
        assert_eq!(e.kind, EventKind::Hlt, "{name}: stopped at {:#x}", cpu.rip);
        if count_steps {
            e.steps
        } else {
            e.retired
        }
    };
    let n = run(&mut eng, &mut bus);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n));
    g.bench_function(name, |b| {
        b.iter(|| {
            let m = run(&mut eng, &mut bus);
            assert_eq!(m, n);
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    workload(c, "a_alu_loop", alu, false);
    workload(c, "b_mem_16MiB_4level", mem, false);
    workload(c, "c_rep_movsb_stosb", rep, true);
    workload(c, "d_call_ret", calls, false);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! { name = engine; config = config(); targets = benches }
criterion_main!(engine);
