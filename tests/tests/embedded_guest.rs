//! User story: a newcomer runs `hyperplug run` with no image and sees the
//! embedded guest walk real -> protected -> long mode on the chosen backend,
//! then power off with status 0.

mod support;

use support::*;

#[test]
fn embedded_guest_under_kvm_prints_banner_and_powers_off() {
    if !kvm_usable_or_skip("embedded guest") {
        return;
    }
    let r = run_hyperplug(&["run", "--backend", "kvm"], b"", TIMEOUT);
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout,
        "Hyperplug embedded guest: real mode -> protected mode -> long mode on backend kvm\n",
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn auto_backend_runs_the_embedded_guest_too() {
    if !kvm_usable_or_skip("embedded guest, auto") {
        return;
    }
    let r = run_hyperplug(&["run"], b"", TIMEOUT);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stdout.contains("long mode on backend kvm"),
        "stdout: {}",
        r.stdout
    );
}

#[test]
fn trace_exits_names_kvm_exits() {
    if !kvm_usable_or_skip("trace exits") {
        return;
    }
    let r = run_hyperplug(
        &["run", "--backend", "kvm", "--trace", "exits"],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    // Every serial byte is an OUT to 0x3f8; the power-off is a 16-bit OUT to 0x604.
    assert!(
        r.stderr
            .contains("KVM_EXIT_IO port=0x3f8 size=1 count=1 dir=out"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("KVM_EXIT_IO port=0x604 size=2"),
        "{}",
        r.stderr
    );
}

#[test]
fn serial_output_to_a_file() {
    if !kvm_usable_or_skip("serial path option") {
        return;
    }
    let d = scratch_dir("serialfile");
    let f = d.join("console.log");
    let dev = format!("serial,path={}", f.display());
    let r = run_hyperplug(&["run", "--device", &dev], b"", TIMEOUT);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "", "output must go to the file only");
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("on backend kvm"), "{text}");
}

#[test]
fn backends_command_explains_its_choice() {
    let r = run_hyperplug(&["backends"], b"", TIMEOUT);
    assert!(r.stdout.contains("Host CPU"), "{}", r.stdout);
    assert!(r.stdout.contains("/dev/kvm"), "{}", r.stdout);
    assert!(r.stdout.contains("auto picks:"), "{}", r.stdout);
    if kvm_detection().usable {
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stdout.contains("auto picks: kvm"), "{}", r.stdout);
        assert!(r.stdout.contains("kvm    usable"), "{}", r.stdout);
    } else {
        assert_ne!(r.code, Some(0));
        assert!(r.stdout.contains("kvm    not usable"), "{}", r.stdout);
    }
}

#[test]
fn plugins_command_lists_devices_with_abi() {
    let r = run_hyperplug(&["plugins"], b"", TIMEOUT);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for needle in [
        "serial       ABI 1.1.0",
        "debug-exit   ABI 1.1.0",
        "kvm          ABI 1.1.0",
    ] {
        assert!(
            r.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            r.stdout
        );
    }
}
