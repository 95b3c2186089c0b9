//! User story: a guest that triple-faults stops cleanly: a clear message, a
//! register dump, a non-zero status, and nothing else disturbed.

mod support;

use hyperplug_tests::triple_fault_guest;
use support::*;

#[test]
fn triple_fault_stops_with_register_dump() {
    if !kvm_usable_or_skip("triple fault") {
        return;
    }
    let g = triple_fault_guest().expect("assemble triple-fault guest");
    let d = scratch_dir("triple");
    let img = d.join("tf.bin");
    std::fs::write(&img, &g.bytes).unwrap();
    let load = format!("{:#x}", g.load_addr);
    let entry = format!("{:#x}", g.entry);
    let r = run_hyperplug(
        &[
            "run",
            "--image",
            img.to_str().unwrap(),
            "--load-addr",
            &load,
            "--entry",
            &entry,
            "--mode",
            "protected",
        ],
        b"",
        TIMEOUT,
    );
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
    if !kvm_usable_or_skip("cli; hlt") {
        return;
    }
    let d = scratch_dir("clihlt");
    let img = d.join("clihlt.bin");
    // cli; hlt in 32-bit protected mode.
    std::fs::write(&img, [0xfa, 0xf4]).unwrap();
    let r = run_hyperplug(
        &[
            "run",
            "--image",
            img.to_str().unwrap(),
            "--load-addr",
            "0x100000",
            "--entry",
            "0x100000",
            "--mode",
            "protected",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code, Some(6), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("guest halted with interrupts disabled"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("RIP=0000000000100002"), "{}", r.stderr);
}
