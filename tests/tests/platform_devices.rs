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
    let g = apic_base_guest().expect("assemble APIC base guest");
    let mut cases: Vec<(&[&str], &str)> = vec![
        // svm: the MSR permission map intercepts 0x1b (VMEXIT_MSR, EXITINFO1 0 = RDMSR).
        (&["--backend", "svm"], "VMEXIT_MSR exitinfo1=0x0"),
        (
            &["--backend", "svm", "--nested-paging"],
            "VMEXIT_MSR exitinfo1=0x0",
        ),
    ];
    if kvm_usable_or_skip("IA32_APIC_BASE under kvm") {
        // The RDMSR left KVM through the user-space MSR filter.
        cases.push((&["--backend", "kvm"], "KVM_EXIT_X86_RDMSR index=0x1b"));
    }
    for (backend, exit) in cases {
        let mut args = backend.to_vec();
        args.extend(["--trace", "exits"]);
        let r = run_guest(&g, "apicbase", &args, b"");
        assert_eq!(
            r.code,
            Some(0),
            "{backend:?} stdout: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
        assert_eq!(
            r.stdout, "apic base fee00900\n",
            "{backend:?} stderr: {}",
            r.stderr
        );
        // The RDMSR reached the host's local APIC model through the backend's exit.
        assert!(r.stderr.contains(exit), "{backend:?}: {}", r.stderr);
    }
}
