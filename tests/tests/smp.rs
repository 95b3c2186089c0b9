//! User story: a guest with four vCPUs starts its application processors
//! with INIT/SIPI through the local APIC, and all of them increment one
//! counter with locked instructions; the total is exact.

mod support;

use hyperplug_tests::platform_guests::smp_counter_guest;
use support::*;

/// Increments per application processor (the issue asks for a million).
const ITERATIONS: u32 = 1_000_000;

#[test]
fn four_vcpus_count_with_locked_adds() {
    let aps = 3;
    let g = smp_counter_guest(aps, ITERATIONS).expect("assemble SMP guest");
    let start = std::time::Instant::now();
    let r = run_guest(&g, "smp", &["--cpus", "4"], b"");
    eprintln!("4-vCPU counter guest took {:?}", start.elapsed());
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout,
        format!("total={}\n", u64::from(aps) * u64::from(ITERATIONS))
    );
}

#[test]
fn bad_cpu_counts_are_refused() {
    for bad in ["0", "65", "many"] {
        let r = run_hyperplug(&["run", "--cpus", bad], b"", TIMEOUT);
        assert_eq!(r.code, Some(2), "--cpus {bad}: {}", r.stderr);
        assert!(r.stderr.contains("--cpus"), "{}", r.stderr);
    }
}
