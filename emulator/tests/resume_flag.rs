//! RF in the RFLAGS image saved by event delivery (SDM vol. 3, 17.3.1.1
//! "Instruction-Breakpoint Exception Condition"): 1 for every fault-class
//! exception except the instruction-breakpoint #DB, 1 for an interrupt or
//! trap after any iteration of a REP string instruction but the last, else
//! the value RFLAGS.RF has (0 for software interrupts: RF is cleared at the
//! start of every instruction). IRET and task switches load RF back.

mod common;

use common::*;
use hyperplug_emulator::cpu::PendingEvent;
use hyperplug_emulator::flags::{IF, RF, TF};
use iced_x86::code_asm::*;

/// Where every handler lives (a HLT).
const HANDLER: u64 = CODE + 0x800;

/// A 64-bit machine whose vectors 0-0x41 go to a HLT (vector 8 and 13 may be removed).
fn machine() -> Machine {
    let mut m = Machine::new(M::Long64);
    assert!(m.bus.load(HANDLER, &[0xf4]));
    for v in 0..=0x41u8 {
        m.gate(v, HANDLER);
    }
    m
}

/// The RFLAGS image the handler got (skipping the error code if `ec`).
fn pushed_rflags(m: &Machine, ec: bool) -> u64 {
    let top = m.gpr(4) + if ec { 8 } else { 0 };
    m.bus.peek_u64(top + 16)
}

/// How a case sets its machine up before running.
type Setup = fn(&mut Machine);

fn no_setup(_: &mut Machine) {}
fn rf_on(m: &mut Machine) {
    m.cpu.rflags |= RF;
}
fn tf_on(m: &mut Machine) {
    m.cpu.rflags |= TF;
}
fn insn_bp_at_code(m: &mut Machine) {
    m.cpu.dr[0] = CODE;
    m.cpu.dr[7] = 1;
}
fn write_bp_at_data(m: &mut Machine) {
    m.cpu.dr[0] = DATA;
    m.cpu.dr[7] = 1 | 0b01 << 16;
}
fn no_gp_gate(m: &mut Machine) {
    assert!(m.bus.load(IDT + 16 * 13, &[0; 16]));
}
fn injected_gp(m: &mut Machine) {
    m.cpu.pending_exception = Some(PendingEvent {
        vector: 13,
        error_code: Some(0),
    });
}
fn external_with_rf(m: &mut Machine) {
    m.cpu.rflags |= RF | IF;
    m.cpu.pending_interrupt = Some(0x40);
}
fn external_without_rf(m: &mut Machine) {
    m.cpu.rflags |= IF;
    m.cpu.pending_interrupt = Some(0x40);
}

/// A program that raises vector `v`.
fn program(a: &mut CodeAssembler, v: u8) {
    match v {
        0 => {
            a.xor(ecx, ecx).unwrap();
            a.div(ecx).unwrap();
        }
        1 => {
            a.mov(rbx, DATA).unwrap();
            a.mov(dword_ptr(rbx), ecx).unwrap();
            a.nop().unwrap();
        }
        3 => a.int3().unwrap(),
        6 => a.ud2().unwrap(),
        8 | 13 => {
            a.mov(rax, 0x8000_0000_0000_0000u64).unwrap();
            a.mov(dword_ptr(rax), ecx).unwrap();
        }
        14 => {
            a.mov(rax, 0x4000_0000u64).unwrap();
            a.mov(dword_ptr(rax), ecx).unwrap();
        }
        _ => {
            a.int(u32::from(v)).unwrap();
            a.nop().unwrap();
        }
    }
}

#[test]
fn pushed_rf_table() {
    // (name, setup, program vector, error code pushed, pushed RF)
    let rows: [(&str, Setup, u8, bool, bool); 15] = [
        ("#DE fault", no_setup, 0, false, true),
        ("#UD fault", no_setup, 6, false, true),
        ("#GP fault", no_setup, 13, true, true),
        ("#GP fault with RF set", rf_on, 13, true, true),
        ("#PF fault", no_setup, 14, true, true),
        ("#DF abort (no #GP gate)", no_gp_gate, 8, true, false),
        ("#BP trap, RF set before", rf_on, 3, false, false),
        ("INT n, RF set before", rf_on, 0x40, false, false),
        ("single-step #DB trap", tf_on, 0x40, false, false),
        ("data-bp #DB trap", write_bp_at_data, 1, false, false),
        ("insn-bp #DB fault", insn_bp_at_code, 6, false, false),
        ("injected #GP keeps RF 0", injected_gp, 6, true, false),
        ("interrupt, RF 1", external_with_rf, 6, false, true),
        ("interrupt, RF 0", external_without_rf, 6, false, false),
        ("#NP while delivering INT n", no_setup, 0x41, true, true),
    ];
    for (name, setup, v, ec, rf) in rows {
        let mut m = machine();
        if v == 0x41 {
            // Gate 0x41 not present: INT 0x41 faults with #NP.
            let lo = m.bus.peek_u64(IDT + 16 * 0x41) & !(1u64 << 47);
            assert!(m.bus.load(IDT + 16 * 0x41, &lo.to_le_bytes()));
        }
        m.load(|a| program(a, v));
        setup(&mut m);
        m.run_to_hlt();
        assert_eq!(m.cpu.rip, HANDLER + 1, "{name}: handler ran");
        let fl = pushed_rflags(&m, ec);
        assert_eq!(fl & RF != 0, rf, "{name}: pushed RFLAGS {fl:#x}");
        assert_eq!(m.cpu.rflags & RF, 0, "{name}: handler runs with RF clear");
    }
}

/// Runs REP STOSB (`count` bytes) with `budget` steps, then delivers
/// interrupt 0x40; returns the pushed RFLAGS and the remaining RCX.
fn rep_interrupted(count: u64, budget: u64, fast: bool) -> (u64, u64) {
    let mut m = machine();
    m.eng.set_fast_path(fast);
    m.load(|a| {
        a.mov(rdi, DATA).unwrap();
        a.mov(ecx, count as u32).unwrap();
        a.rep().stosb().unwrap();
        a.hlt().unwrap();
    });
    m.run(budget);
    let left = m.gpr(1);
    m.cpu.rflags |= IF;
    m.cpu.pending_interrupt = Some(0x40);
    m.run_to_hlt();
    (pushed_rflags(&m, false), left)
}

#[test]
fn interrupt_between_rep_iterations_pushes_rf() {
    for fast in [false, true] {
        // Two set-up instructions, then 3 of the 10 iterations.
        let (fl, left) = rep_interrupted(10, 5, fast);
        assert_eq!(left, 7, "fast {fast}");
        assert_ne!(fl & RF, 0, "fast {fast}: mid-REP interrupt pushes RF = 1");
        // All 10 iterations done: the interrupt comes after the last one.
        let (fl, left) = rep_interrupted(10, 12, fast);
        assert_eq!(left, 0, "fast {fast}");
        assert_eq!(fl & RF, 0, "fast {fast}: after the last iteration RF = 0");
    }
}

#[test]
fn data_breakpoint_on_rep_iteration_pushes_rf_unless_last() {
    // (breakpoint byte, pushed RF): iteration 1 of 4, then the last.
    for (brk, rf) in [(DATA, true), (DATA + 3, false)] {
        let mut m = machine();
        m.load(|a| {
            a.mov(rdi, DATA).unwrap();
            a.mov(ecx, 4u32).unwrap();
            a.rep().stosb().unwrap();
            a.hlt().unwrap();
        });
        m.cpu.dr[0] = brk;
        m.cpu.dr[7] = 1 | 0b01 << 16;
        m.run_to_hlt();
        let fl = pushed_rflags(&m, false);
        assert_eq!(fl & RF != 0, rf, "breakpoint {brk:#x}: {fl:#x}");
    }
}

#[test]
fn instruction_breakpoint_on_rep_reported_once() {
    let mut m = Machine::new(M::Long64);
    m.policy.exceptions = 1 << 1;
    m.load(|a| {
        a.mov(rdi, DATA).unwrap();
        a.mov(ecx, 4u32).unwrap();
        a.rep().stosb().unwrap();
        a.hlt().unwrap();
    });
    m.cpu.dr[0] = CODE + 15; // the REP STOSB (mov rdi, imm64 is 10 bytes; mov ecx 5)
    m.cpu.dr[7] = 1;
    let e = m.run(100);
    assert_eq!(m.cpu.rip, CODE + 15, "{e:?}");
    // The debugger resumes with RF set: all four iterations run.
    m.cpu.rflags |= RF;
    m.run_to_hlt();
    assert_eq!(m.gpr(1), 0);
    assert_eq!(
        m.cpu.rflags & RF,
        0,
        "cleared once the instruction completes"
    );
}

#[test]
fn iretq_restores_rf_from_the_image() {
    // The #DB handler sets RF in the image and returns: the instruction
    // under the breakpoint runs once, the next visit faults again.
    let mut m = Machine::new(M::Long64);
    let bytes = {
        let mut a = CodeAssembler::new(64).unwrap();
        a.inc(esi).unwrap();
        a.or(qword_ptr(rsp + 16), RF as i32).unwrap();
        a.iretq().unwrap();
        a.assemble(HANDLER).unwrap()
    };
    assert!(m.bus.load(HANDLER, &bytes));
    m.gate(1, HANDLER);
    m.load(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.inc(edi).unwrap();
        a.cmp(edi, 3).unwrap();
        a.jne(top).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.dr[0] = CODE;
    m.cpu.dr[7] = 1;
    m.run_to_hlt();
    assert_eq!(m.gpr(7), 3, "the loop ran to its end");
    assert_eq!(m.gpr(6), 3, "one #DB per visit of the breakpoint");
}
