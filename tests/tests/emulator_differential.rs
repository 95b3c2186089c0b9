//! The differential test of the emulator against the host CPU in 64-bit user mode:
//! random cases from the oracle's generator run natively (ptrace'd child) and on the
//! emulator ([`hyperplug_tests::emu_runner`]); registers, compared flags, the data
//! area and the raised exception must agree.
//!
//! Cases with a mnemonic the emulator does not list in `SUPPORTED` are skipped and
//! reported, never counted as passes. To run more, or to reproduce a mismatch:
//! `cargo run -p hyperplug-tests --bin emulator-diff -- --seed S --cases N`.

use hyperplug_oracle::{Family, GenConfig};
use hyperplug_tests::emu_runner::{diff_case, CaseResult, DiffStats, EmuRunner};
use std::time::Instant;

/// Compared (non-skipped) cases the test requires.
const TARGET: u64 = 20_000;
/// Cases per family in the single-family pass (each family alone, full-length snippets).
const PER_FAMILY: u64 = 400;
/// Give up generating after this many case indexes in the mixed pass.
const MAX_INDEX: u64 = 200_000;

#[test]
fn emulator_matches_host_cpu_in_user_mode() {
    let t0 = Instant::now();
    let mut runner = EmuRunner::new();
    let mut stats = DiffStats::default();
    let mut per_family = Vec::new();

    // Pass 1: every family on its own, so each one is compared even if mixed
    // snippets that contain it are often skipped.
    for (k, fam) in Family::ALL.into_iter().enumerate() {
        let cfg = GenConfig {
            families: vec![fam],
            ..GenConfig::host_default()
        };
        let mut fs = DiffStats::default();
        for i in 0..PER_FAMILY {
            let seed = 0x0d1f_f000 + k as u64;
            let r = match diff_case(&mut runner, seed, i, &cfg, &[]) {
                CaseResult::Mismatch(m) => {
                    CaseResult::Mismatch(format!("(with --families {}) {m}", fam.name()))
                }
                r => r,
            };
            fs.add(r.clone(), 0);
            stats.add(r, 3);
        }
        per_family.push((
            fam.name(),
            fs.matched_total(),
            fs.skipped_total(),
            fs.mismatch_count,
        ));
    }

    // Pass 2: mixed snippets from all families until TARGET cases are compared.
    let cfg = GenConfig::host_default();
    let mut i = 0;
    while stats.matched_total() + stats.mismatch_count < TARGET && i < MAX_INDEX {
        stats.add(diff_case(&mut runner, 0x0d1f_f0ff, i, &cfg, &[]), 3);
        i += 1;
    }

    let secs = t0.elapsed().as_secs_f64();
    println!("{}", stats.summary());
    for (name, m, s, x) in &per_family {
        println!("  family {name:<8} matched {m:>4} skipped {s:>4} mismatches {x}");
    }
    println!("{} mixed case indexes; {secs:.1} s", i);
    for m in &stats.mismatches {
        println!("MISMATCH {m}");
    }
    assert_eq!(
        stats.mismatch_count, 0,
        "{} mismatches (first ones printed above; reproduce with emulator-diff --show)",
        stats.mismatch_count
    );
    assert!(
        stats.matched_total() >= TARGET,
        "only {} cases compared (target {TARGET})",
        stats.matched_total()
    );
}
