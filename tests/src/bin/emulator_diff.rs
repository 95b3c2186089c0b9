//! `emulator-diff`: the differential test of the Hyperplug emulator against the host
//! CPU (64-bit user mode), for any number of cases from a seed.
//!
//! ```text
//! emulator-diff [--seed S] [--cases N] [--start I] [--families a,b,..] [--max-groups G]
//!               [--show I] [--keep-going] [--exclude mnemonic,..]
//! ```
//!
//! Runs cases `I .. I+N` of seed `S` (each case depends only on the seed, its index
//! and the generator settings), skips cases with instructions the emulator does not
//! support, and stops at the first mismatch (unless `--keep-going`), printing the
//! case, the CPU's and the emulator's outcome and the differences; `--show I`
//! re-runs just case `I`; `--exclude` skips cases using the listed mnemonics (e.g.
//! instructions still being written), counted as skipped. Exit status: 0 with no mismatch, 1 otherwise, 2 on usage.

use hyperplug_oracle::{Family, GenConfig};
use hyperplug_tests::emu_runner::{diff_case, parse_mnemonics, CaseResult, DiffStats, EmuRunner};
use iced_x86::Mnemonic;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: emulator-diff [--seed S] [--cases N] [--start I] \
[--families a,b,..] [--max-groups G] [--show I] [--keep-going] [--exclude m1,m2,..]";

struct Args {
    seed: u64,
    cases: u64,
    start: u64,
    show: Option<u64>,
    keep_going: bool,
    families: Option<String>,
    max_groups: Option<usize>,
    exclude: Vec<Mnemonic>,
    exclude_text: Option<String>,
    cfg: GenConfig,
}

fn parse_u64(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let r = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    r.map_err(|_| format!("{flag}: not a number: {v}"))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        cases: 10_000,
        start: 0,
        show: None,
        keep_going: false,
        families: None,
        max_groups: None,
        exclude: Vec::new(),
        exclude_text: None,
        cfg: GenConfig::host_default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => a.seed = parse_u64("--seed", it.next())?,
            "--cases" => a.cases = parse_u64("--cases", it.next())?,
            "--start" => a.start = parse_u64("--start", it.next())?,
            "--show" => a.show = Some(parse_u64("--show", it.next())?),
            "--keep-going" => a.keep_going = true,
            "--exclude" => {
                let v = it.next().ok_or("--exclude needs a value")?;
                a.exclude = parse_mnemonics(&v)?;
                a.exclude_text = Some(v);
            }
            "--max-groups" => {
                let g = parse_u64("--max-groups", it.next())?.clamp(1, 64) as usize;
                a.cfg.max_groups = g;
                a.max_groups = Some(g);
            }
            "--families" => {
                let v = it.next().ok_or("--families needs a value")?;
                let mut fams = Vec::new();
                for name in v.split(',').filter(|s| !s.is_empty()) {
                    let f = Family::parse(name).ok_or_else(|| {
                        let all: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                        format!("unknown family {name}; known: {}", all.join(","))
                    })?;
                    fams.push(f);
                }
                a.cfg.families = fams;
                a.families = Some(v);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// The command line that reproduces case `index` alone.
fn repro(a: &Args, index: u64) -> String {
    let mut s = format!(
        "cargo run -p hyperplug-tests --bin emulator-diff -- --seed {} --show {index}",
        a.seed
    );
    if let Some(f) = &a.families {
        s += &format!(" --families {f}");
    }
    if let Some(g) = a.max_groups {
        s += &format!(" --max-groups {g}");
    }
    if let Some(x) = &a.exclude_text {
        s += &format!(" --exclude {x}");
    }
    s
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut runner = EmuRunner::new();
    if let Some(i) = a.show {
        return match diff_case(&mut runner, a.seed, i, &a.cfg, &a.exclude) {
            CaseResult::Match(kind) => {
                let case = hyperplug_oracle::case_for(a.seed, i, &a.cfg);
                if let Ok(c) = case {
                    print!("{}", hyperplug_oracle::show::describe(&c, None));
                }
                println!("seed {} case {i}: match ({kind})", a.seed);
                ExitCode::SUCCESS
            }
            CaseResult::Skipped(why) => {
                println!("seed {} case {i}: skipped ({why})", a.seed);
                ExitCode::SUCCESS
            }
            CaseResult::Mismatch(m) => {
                println!("MISMATCH {m}");
                ExitCode::FAILURE
            }
        };
    }
    let t0 = Instant::now();
    let mut stats = DiffStats::default();
    let mut first: Option<u64> = None;
    for i in a.start..a.start.saturating_add(a.cases) {
        let r = diff_case(&mut runner, a.seed, i, &a.cfg, &a.exclude);
        let mismatch = matches!(r, CaseResult::Mismatch(_));
        if mismatch && first.is_none() {
            first = Some(i);
            if let CaseResult::Mismatch(m) = &r {
                println!("MISMATCH {m}");
                println!("reproduce: {}", repro(&a, i));
            }
        }
        stats.add(r, 0);
        if mismatch && !a.keep_going {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    print!("{}", stats.summary());
    let done = stats.matched_total() + stats.mismatch_count + stats.skipped_total();
    println!(
        "{done} cases in {secs:.2} s ({:.0} cases/s)",
        done as f64 / secs.max(1e-9)
    );
    if stats.mismatch_count == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
