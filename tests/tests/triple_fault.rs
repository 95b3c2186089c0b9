//! User story: a guest that triple-faults stops cleanly: a clear message, a
//! register dump, a non-zero status, and nothing else disturbed.

mod support;

use hyperplug_tests::triple_fault_guest;
use support::*;

#[test]
fn triple_fault_stops_with_register_dump() {
    let g = triple_fault_guest().expect("assemble triple-fault guest");
    let r = run_guest(&g, "triple", &[], b"");
    assert_eq!(
        r.code,
        Some(4),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout, "triple fault next\n");
    assert!(
        r.stderr.contains("guest shutdown (triple fault)"),
        "{}",
        r.stderr
    );
    for reg in ["RAX=", "RIP=", "CS =", "CR0=", "IDT="] {
        assert!(r.stderr.contains(reg), "dump lacks {reg}: {}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn halt_with_interrupts_disabled_stops_cleanly() {
    // cli; hlt in 32-bit protected mode.
    let g = hyperplug_tests::Guest {
        bytes: vec![0xfa, 0xf4],
        load_addr: 0x10_0000,
        entry: 0x10_0000,
        mode: hyperplug_tests::Mode::Protected,
        code: 0..2,
    };
    let r = run_guest(&g, "clihlt", &[], b"");
    assert_eq!(r.code, Some(6), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("guest halted with interrupts disabled"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("RIP=0000000000100002"), "{}", r.stderr);
}
