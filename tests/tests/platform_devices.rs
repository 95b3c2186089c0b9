//! User stories for the PC devices as a guest sees them: the CMOS clock
//! tells the time the operator set, the keyboard controller's reset command
//! ends the VM with "guest reset", and IA32_APIC_BASE is the host's local APIC.

mod support;

use hyperplug_tests::platform_guests::{apic_base_guest, rtc_guest};
use hyperplug_tests::{Guest, Mode};
use support::*;

/// 2026-11-25 13:45:07 UTC.
const BASE: u64 = 1_795_614_307;

#[test]
fn guest_reads_the_rtc_time() {
    if !kvm_usable_or_skip("RTC guest") {
        return;
    }
    let g = rtc_guest().expect("assemble RTC guest");
    let dev = format!("rtc,base={BASE}");
    let r = run_guest(&g, "rtc", &["--device", &dev], b"");
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    // The clock started at 13:45:07; the guest reads it well within a minute.
    assert_eq!(r.stdout, "rtc 26-11-25 13:45\n", "stderr: {}", r.stderr);
}

#[test]
fn i8042_reset_ends_the_vm_with_guest_reset() {
    if !kvm_usable_or_skip("i8042 reset") {
        return;
    }
    // Real mode: mov al, 0xfe; out 0x64, al (pulse the reset line); hlt
    let bytes = vec![0xb0, 0xfe, 0xe6, 0x64, 0xf4];
    let g = Guest {
        code: 0..bytes.len(),
        bytes,
        load_addr: 0x8000,
        entry: 0x8000,
        mode: Mode::Real,
    };
    let r = run_guest(&g, "kbdreset", &[], b"");
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("guest reset"), "{}", r.stderr);
    assert!(r.stderr.contains("i8042"), "{}", r.stderr);
}

#[test]
fn every_pc_device_plugin_is_built_and_listed() {
    let r = run_hyperplug(&["plugins"], b"", TIMEOUT);
    for d in ["pic ", "pit ", "rtc ", "i8042", "fw-cfg", "pm-timer"] {
        assert!(r.stdout.contains(d), "{d} missing from\n{}", r.stdout);
    }
}

#[test]
fn apic_base_msr_is_the_host_local_apic() {
    if !kvm_usable_or_skip("IA32_APIC_BASE") {
        return;
    }
    let g = apic_base_guest().expect("assemble APIC base guest");
    let r = run_guest(&g, "apicbase", &["--trace", "exits"], b"");
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout, "apic base fee00900\n", "stderr: {}", r.stderr);
    // The RDMSR left KVM and was answered by the host's local APIC model.
    assert!(
        r.stderr.contains("KVM_EXIT_X86_RDMSR index=0x1b"),
        "{}",
        r.stderr
    );
}
