//! Debug-register breakpoints (SDM vol. 3, 17.2-17.3): instruction
//! breakpoints fault before the instruction, data breakpoints trap after
//! it, RF suppresses instruction breakpoints, disabled ones never fire,
//! and the fast path does not skip them.

mod common;

use common::*;
use hyperplug_emulator::flags::RF;
use hyperplug_emulator::policy::InterceptKind;
use hyperplug_emulator::{Event, EventKind};
use iced_x86::code_asm::*;

/// DR7 with breakpoint 0 enabled locally, R/W0 = `rw`, LEN0 = `len`.
fn dr7(rw: u64, len: u64) -> u64 {
    1 | rw << 16 | len << 18
}

/// Whether `e` is an intercepted #DB.
fn is_db(e: &Event) -> bool {
    matches!(
        e.kind,
        EventKind::Intercept(ref i) if matches!(i.kind, InterceptKind::Exception { vector: 1, .. })
    )
}

/// A 64-bit machine intercepting #DB.
fn machine() -> Machine {
    let mut m = Machine::new(M::Long64);
    m.policy.exceptions = 1 << 1;
    m
}

#[test]
fn instruction_breakpoint_faults_before_instruction() {
    let mut m = machine();
    m.load(|a| {
        a.mov(eax, 1u32).unwrap(); // 5 bytes
        a.mov(eax, 2u32).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.dr[0] = CODE + 5;
    m.cpu.dr[7] = dr7(0, 0);
    let e = m.run(100);
    assert!(is_db(&e), "{e:?}");
    assert_eq!(m.cpu.rip, CODE + 5, "RIP stays on the instruction");
    assert_eq!(m.gpr(0), 1, "the instruction did not execute");
    assert_eq!(m.cpu.dr[6] & 0xf, 1, "DR6.B0");
    assert_eq!(e.retired, 1);
}

#[test]
fn rf_suppresses_instruction_breakpoint_once() {
    let mut m = machine();
    m.load(|a| {
        a.mov(eax, 1u32).unwrap();
        a.jmp(CODE).unwrap();
    });
    m.cpu.dr[0] = CODE;
    m.cpu.dr[7] = dr7(0, 0);
    m.cpu.rflags |= RF;
    let e = m.run(100);
    assert!(is_db(&e), "{e:?}");
    assert_eq!(m.gpr(0), 1, "executed once with RF set");
    assert_eq!(m.cpu.rip, CODE, "faulted on the second visit");
    assert_eq!(m.cpu.rflags & RF, 0, "RF cleared after the instruction");
    assert_eq!(e.retired, 2);
}

#[test]
fn delivered_instruction_breakpoint_keeps_rf_clear() {
    let mut m = Machine::new(M::Long64);
    let handler = CODE + 0x800;
    assert!(m.bus.load(handler, &[0xf4])); // hlt
    m.gate(1, handler);
    m.load(|a| {
        a.nop().unwrap();
        a.mov(eax, 2u32).unwrap();
    });
    m.cpu.dr[0] = CODE + 1;
    m.cpu.dr[7] = dr7(0, 0);
    m.run_to_hlt();
    let top = m.gpr(4);
    assert_eq!(
        m.bus.peek_u64(top),
        CODE + 1,
        "saved RIP is the instruction"
    );
    // The one fault that does not set RF in the image: the handler must
    // (SDM vol. 3, 17.3.1.1).
    assert_eq!(m.bus.peek_u64(top + 16) & RF, 0, "saved RFLAGS.RF");
    assert_eq!(m.cpu.rflags & RF, 0, "handler runs with RF clear");
    assert_eq!(m.cpu.dr[6] & 1, 1);
}

/// Runs a store then a load of `DATA + 2` with breakpoint 0 at `DATA` (LEN 4).
/// Also returns the address after the access (mov eax, imm32 and hlt follow it).
fn data_run(rw: u64, store: bool) -> (Machine, Event, u64) {
    let mut m = machine();
    let bytes = m.load(|a| {
        a.mov(rbx, DATA + 2).unwrap();
        if store {
            a.mov(word_ptr(rbx), cx).unwrap();
        } else {
            a.mov(cx, word_ptr(rbx)).unwrap();
        }
        a.mov(eax, 9u32).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.dr[0] = DATA + 1; // aligned down to DATA by LEN 4
    m.cpu.dr[7] = dr7(rw, 3);
    let e = m.run(100);
    let after = CODE + bytes.len() as u64 - 6;
    (m, e, after)
}

#[test]
fn write_breakpoint_traps_after_store() {
    let (m, e, after) = data_run(1, true);
    assert!(is_db(&e), "{e:?}");
    assert_eq!(m.cpu.rip, after, "trap: RIP after the store");
    assert_eq!(m.gpr(0), 0, "the next instruction did not run");
    assert_eq!(m.cpu.dr[6] & 0xf, 1);
    assert_eq!(e.retired, 2);
}

#[test]
fn write_breakpoint_ignores_read() {
    let (m, e, _) = data_run(1, false);
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_eq!(m.gpr(0), 9);
    assert_eq!(m.cpu.dr[6] & 0xf, 0);
}

#[test]
fn read_write_breakpoint_traps_after_read() {
    let (m, e, after) = data_run(3, false);
    assert!(is_db(&e), "{e:?}");
    assert_eq!(m.cpu.rip, after);
    assert_eq!(m.cpu.dr[6] & 0xf, 1);
}

#[test]
fn non_overlapping_access_does_not_trap() {
    let mut m = machine();
    m.load(|a| {
        a.mov(rbx, DATA + 4).unwrap();
        a.mov(dword_ptr(rbx), ecx).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.dr[0] = DATA;
    m.cpu.dr[7] = dr7(3, 3);
    assert_eq!(m.run(100).kind, EventKind::Hlt);
}

#[test]
fn disabled_breakpoints_never_trigger() {
    for rw in [0u64, 1, 3] {
        let mut m = machine();
        m.load(|a| {
            a.mov(rbx, DATA).unwrap();
            a.mov(dword_ptr(rbx), ecx).unwrap();
            a.mov(ecx, dword_ptr(rbx)).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.dr[0] = if rw == 0 { CODE } else { DATA };
        m.cpu.dr[7] = dr7(rw, 3) & !0xff;
        assert_eq!(m.run(100).kind, EventKind::Hlt, "rw {rw}");
        assert_eq!(m.cpu.dr[6] & 0xf, 0);
    }
}

#[test]
fn fast_path_loop_still_hits_breakpoints() {
    for rw in [1u64, 0] {
        let mut m = machine();
        let bytes = m.load(|a| {
            let mut top = a.create_label();
            a.mov(rbx, DATA).unwrap();
            a.xor(ecx, ecx).unwrap();
            a.set_label(&mut top).unwrap();
            a.mov(qword_ptr(rbx + rcx * 8), rcx).unwrap();
            a.inc(ecx).unwrap();
            a.cmp(ecx, 100).unwrap();
            a.jne(top).unwrap();
            a.hlt().unwrap();
        });
        // The 51st store, or the HLT after the loop.
        let hlt = CODE + bytes.len() as u64 - 1;
        m.cpu.dr[0] = if rw == 1 { DATA + 8 * 50 } else { hlt };
        m.cpu.dr[7] = dr7(rw, 2);
        let e = m.run(10_000);
        assert!(is_db(&e), "rw {rw}: {e:?}");
        if rw == 1 {
            assert_eq!(m.gpr(1), 50, "trapped after the 51st store");
        } else {
            assert_eq!((m.gpr(1), m.cpu.rip), (100, hlt));
        }
        assert_eq!(m.cpu.dr[6] & 1, 1);
    }
}
