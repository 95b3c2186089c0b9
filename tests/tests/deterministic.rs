//! User story: a developer reproduces a timing-dependent guest run exactly.
//! With `--deterministic` on a software backend the virtual clock follows
//! retired guest instructions and timers fire at instruction boundaries, so
//! a guest that counts loop iterations between timer interrupts prints the
//! same number every time; on the host's clock it does not (and kvm, which
//! cannot count instructions, refuses the option).

mod support;

use hyperplug_tests::platform_guests::{pit_spin_guest, smp_race_guest};
use support::*;

fn spin(extra: &[&str]) -> RunResult {
    let g = pit_spin_guest().expect("assemble spin guest");
    run_guest(&g, "spin", extra, b"")
}

#[test]
fn deterministic_runs_repeat_exactly() {
    for paging in [&[][..], &["--nested-paging"][..]] {
        let mut args = vec!["--backend", "svm", "--deterministic"];
        args.extend_from_slice(paging);
        let first = spin(&args);
        assert_eq!(first.code, Some(0), "{}", first.stderr);
        let count = first.stdout.trim();
        assert_eq!(count.len(), 8, "8 hex digits: {:?}", first.stdout);
        let n = u32::from_str_radix(count, 16).expect("hex count");
        assert!(n > 100, "the loop ran between ticks: {n}");
        for _ in 0..2 {
            let again = spin(&args);
            assert_eq!(again.code, Some(0), "{}", again.stderr);
            assert_eq!(
                again.stdout, first.stdout,
                "{paging:?}: same count every run"
            );
        }
    }
}

#[test]
fn deterministic_smp_interleaving_repeats_exactly() {
    // Four vCPUs take turns of a fixed instruction quantum: the number of
    // times the BSP polls for the APs to finish is the same on every run.
    let g = smp_race_guest(3, 200_000).expect("assemble SMP guest");
    let args = ["--backend", "svm", "--deterministic", "--cpus", "4"];
    let first = run_guest(&g, "smp-race", &args, b"");
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(
        first.stdout.starts_with("total=600000 waits="),
        "{}",
        first.stdout
    );
    for _ in 0..2 {
        let again = run_guest(&g, "smp-race", &args, b"");
        assert_eq!(again.code, Some(0), "{}", again.stderr);
        assert_eq!(again.stdout, first.stdout);
    }
}

#[test]
fn deterministic_needs_a_software_backend() {
    let r = run_hyperplug(
        &["run", "--backend", "kvm", "--deterministic"],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--deterministic needs a software backend"),
        "{}",
        r.stderr
    );
}
