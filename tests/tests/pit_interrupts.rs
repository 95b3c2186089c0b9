//! User story: a guest programs the 8259A PIC and the 8254 PIT (both device
//! plugins), enables interrupts and halts; timer interrupts reach it through
//! the host's interrupt routing and the backend's interrupt window, and it
//! counts them. The same for the local APIC's own timer.

mod support;

use hyperplug_tests::platform_guests::{
    lapic_timer_guest, pit_pic_guest, pit_pic_real_mode_guest, LAPIC_TICKS, PIT_TICKS,
};
use support::*;

/// Runs `g` (with `extra` options) and expects the tick line and a clean
/// power-off.
fn expect_ticks(g: &hyperplug_tests::Guest, extra: &[&str]) {
    let r = run_guest(g, "pit", extra, b"");
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout,
        format!("{PIT_TICKS} ticks\n"),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn pit_interrupts_arrive_through_the_pic_in_real_mode() {
    expect_ticks(&pit_pic_real_mode_guest().expect("assemble"), &[]);
}

/// The protected-mode guest needs IRET in protected mode, which a paravirtual
/// KVM's CPL0 emulation cannot do: it runs on svm, which every machine has
/// (and `backend_parity` runs it on kvm too where KVM is hardware-assisted).
#[test]
fn pit_interrupts_arrive_through_the_pic_in_protected_mode() {
    expect_ticks(&pit_pic_guest().expect("assemble"), &["--backend", "svm"]);
}

#[test]
fn without_a_pic_the_ticks_never_come() {
    let g = pit_pic_real_mode_guest().expect("assemble PIT guest");
    let d = scratch_dir("pit-nopic");
    let img = d.join("pit.bin");
    std::fs::write(&img, &g.bytes).unwrap();
    let load = format!("{:#x}", g.load_addr);
    // The guest halts with interrupts enabled and nothing can deliver one: the
    // host keeps waiting. Stop it from the outside after a while.
    let mut child = std::process::Command::new(hyperplug_bin())
        .args(["--plugin-dir", target_dir().to_str().unwrap()])
        .args([
            "run",
            "--no-device",
            "pic",
            "--image",
            img.to_str().unwrap(),
        ])
        .args(["--load-addr", &load, "--entry", &load, "--mode", "real"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "must still be waiting for an interrupt"
    );
    child.kill().expect("kill");
    let out = child.wait_with_output().expect("output");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ticks"));
}

#[test]
fn lapic_timer_interrupts_are_counted() {
    let g = lapic_timer_guest().expect("assemble LAPIC timer guest");
    let r = run_guest(&g, "lapic", &[], b"");
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout,
        format!("{LAPIC_TICKS} lapic ticks\n"),
        "stderr: {}",
        r.stderr
    );
}
