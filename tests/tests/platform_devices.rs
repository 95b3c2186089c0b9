//! User stories for the PC devices as a guest sees them: the CMOS clock
//! tells the time the operator set, and the keyboard controller's reset
//! command ends the VM with "guest reset".

mod support;

use hyperplug_tests::platform_guests::{apic_base_guest, rtc_guest};
use support::*;

/// 2026-11-25 13:45:07 UTC.
const BASE: u64 = 1_795_614_307;

#[test]
fn guest_reads_the_rtc_time() {
    if !kvm_usable_or_skip("RTC guest") {
        return;
    }
    let g = rtc_guest().expect("assemble RTC guest");
    let d = scratch_dir("rtc");
    let img = d.join("rtc.bin");
    std::fs::write(&img, &g.bytes).unwrap();
    let load = format!("{:#x}", g.load_addr);
    let dev = format!("rtc,base={BASE}");
    let r = run_hyperplug(
        &[
            "run",
            "--device",
            &dev,
            "--image",
            img.to_str().unwrap(),
            "--load-addr",
            &load,
            "--entry",
            &load,
            "--mode",
            "real",
        ],
        b"",
        TIMEOUT,
    );
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
    let d = scratch_dir("kbdreset");
    let img = d.join("reset.bin");
    // Real mode: mov al, 0xfe; out 0x64, al (pulse the reset line); hlt
    std::fs::write(&img, [0xb0, 0xfe, 0xe6, 0x64, 0xf4]).unwrap();
    let r = run_hyperplug(
        &[
            "run",
            "--image",
            img.to_str().unwrap(),
            "--load-addr",
            "0x8000",
            "--entry",
            "0x8000",
            "--mode",
            "real",
        ],
        b"",
        TIMEOUT,
    );
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
    let d = scratch_dir("apicbase");
    let img = d.join("apicbase.bin");
    std::fs::write(&img, &g.bytes).unwrap();
    let load = format!("{:#x}", g.load_addr);
    let r = run_hyperplug(
        &[
            "run",
            "--trace",
            "exits",
            "--image",
            img.to_str().unwrap(),
            "--load-addr",
            &load,
            "--entry",
            &load,
            "--mode",
            "real",
        ],
        b"",
        TIMEOUT,
    );
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
