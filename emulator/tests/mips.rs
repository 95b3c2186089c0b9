//! Throughput probe (run with `cargo test -p hyperplug-emulator --test mips
//! -- --ignored --nocapture`): a register ALU loop in 64-bit mode with
//! 4-level paging, reported in million guest instructions per second.

mod common;

use common::*;
use hyperplug_emulator::EventKind;
use iced_x86::code_asm::*;
use std::time::Instant;

#[test]
#[ignore = "timing probe, not a check"]
fn alu_loop_mips() {
    let mut m = Machine::new(M::Long64);
    m.load(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 2_000_000u32).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(rax, rcx).unwrap();
        a.xor(rbx, rax).unwrap();
        a.sub(rdx, 3).unwrap();
        a.and(rsi, rbx).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.hlt().unwrap();
    });
    let t = Instant::now();
    let e = m.run(u64::MAX);
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(e.kind, EventKind::Hlt);
    assert_eq!(e.retired, 2 + 6 * 2_000_000);
    println!(
        "ALU loop: {} instructions in {dt:.3} s = {:.1} MIPS",
        e.retired,
        e.retired as f64 / dt / 1e6
    );
}
