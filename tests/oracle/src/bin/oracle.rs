//! `oracle`: runs random cases on the host CPU and prints throughput and an outcome
//! histogram, or shows one case reproducibly.
//!
//! ```text
//! oracle [--seed S] [--cases N] [--families a,b,...] [--max-groups G] [--show K]
//! ```

use hyperplug_oracle::{case_for, show, Family, GenConfig, NativeOracle};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    seed: u64,
    cases: u64,
    show: Option<u64>,
    cfg: GenConfig,
}

const USAGE: &str =
    "usage: oracle [--seed S] [--cases N] [--families a,b,..] [--max-groups G] [--show K]";

fn parse_u64(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let r = if let Some(h) = v.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else {
        v.parse()
    };
    r.map_err(|_| format!("{flag}: not a number: {v}"))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        cases: 10_000,
        show: None,
        cfg: GenConfig::host_default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => a.seed = parse_u64("--seed", it.next())?,
            "--cases" => a.cases = parse_u64("--cases", it.next())?,
            "--show" => a.show = Some(parse_u64("--show", it.next())?),
            "--max-groups" => {
                a.cfg.max_groups = parse_u64("--max-groups", it.next())?.clamp(1, 64) as usize
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
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut oracle = match NativeOracle::new() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot start the native oracle: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(k) = args.show {
        let case = match case_for(args.seed, k, &args.cfg) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: case {k}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("seed {} case {k}", args.seed);
        match oracle.run(&case) {
            Ok(o) => print!("{}", show::describe(&case, Some(&o))),
            Err(e) => {
                print!("{}", show::describe(&case, None));
                println!("oracle error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }

    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = 0u64;
    let mut first_error: Option<(u64, String)> = None;
    let mut gen_time = 0f64;
    let start = Instant::now();
    for k in 0..args.cases {
        let t = Instant::now();
        let case = match case_for(args.seed, k, &args.cfg) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: generating case {k}: {e}");
                return ExitCode::FAILURE;
            }
        };
        gen_time += t.elapsed().as_secs_f64();
        match oracle.run(&case) {
            Ok(o) => *hist.entry(o.kind().to_string()).or_default() += 1,
            Err(e) => {
                errors += 1;
                *hist.entry("harness error".into()).or_default() += 1;
                if first_error.is_none() {
                    first_error = Some((k, e.to_string()));
                }
            }
        }
    }
    let total = start.elapsed().as_secs_f64();
    let run = (total - gen_time).max(1e-9);
    println!(
        "seed {}: {} cases in {:.2} s: {:.0} cases/s overall, {:.0} cases/s oracle only (generation {:.2} s)",
        args.seed,
        args.cases,
        total,
        args.cases as f64 / total.max(1e-9),
        args.cases as f64 / run,
        gen_time
    );
    for (kind, n) in &hist {
        println!(
            "  {kind:<14} {n:>9}  {:5.1}%",
            100.0 * *n as f64 / args.cases.max(1) as f64
        );
    }
    if let Some((k, e)) = first_error {
        println!(
            "first harness error: case {k}: {e}  (reproduce: --seed {} --show {k})",
            args.seed
        );
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
