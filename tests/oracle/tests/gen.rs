//! Generator properties, and random cases on the native oracle.

use hyperplug_oracle::case::{rflags, CODE_ADDR};
use hyperplug_oracle::flags::{flag_effect, from_iced};
use hyperplug_oracle::{case_for, contains_syscall, Case, Family, GenConfig, NativeOracle};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
use std::collections::BTreeSet;

fn cfg() -> GenConfig {
    GenConfig::host_default()
}

fn decode(case: &Case) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, &case.code, CODE_ADDR, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        out.push(d.decode());
    }
    out
}

#[test]
fn same_seed_same_bytes() {
    let c = cfg();
    for k in 0..200 {
        let a = case_for(7, k, &c).expect("generates");
        let b = case_for(7, k, &c).expect("generates");
        assert_eq!(a, b, "case {k}");
    }
    let differ = (0..50)
        .filter(|k| {
            case_for(7, *k, &c).ok().map(|x| x.code) != case_for(8, *k, &c).ok().map(|x| x.code)
        })
        .count();
    assert!(
        differ > 45,
        "seeds 7 and 8 should give different code ({differ}/50 differ)"
    );
}

#[test]
fn no_generated_case_makes_a_syscall() {
    let c = cfg();
    for k in 0..3000 {
        let case = case_for(11, k, &c).expect("generates");
        assert!(!contains_syscall(&case.code), "case {k}");
        for i in decode(&case) {
            assert!(
                !matches!(
                    i.mnemonic(),
                    Mnemonic::Syscall | Mnemonic::Sysenter | Mnemonic::Sysexit | Mnemonic::Sysret
                ),
                "case {k}: {:?}",
                i.mnemonic()
            );
        }
    }
    // The checker itself finds them.
    assert!(contains_syscall(&[0x90, 0x0F, 0x05]));
    assert!(contains_syscall(&[0x0F, 0x34]));
    assert!(contains_syscall(&[0xCD, 0x80]));
    assert!(!contains_syscall(&[0xCD, 0x21, 0x90]));
}

#[test]
fn flag_consumers_never_read_possibly_undefined_flags() {
    let c = cfg();
    let mut consumers = 0;
    for k in 0..2000 {
        let case = case_for(3, k, &c).expect("generates");
        for i in decode(&case) {
            let reads = from_iced(i.rflags_read()) & rflags::STATUS;
            if reads == 0 {
                continue;
            }
            consumers += 1;
            let undef = case.undefined_flags_at(i.ip());
            assert_eq!(
                reads & undef,
                0,
                "seed 3 case {k}: {i} at {:#x} reads {} but {} may be undefined",
                i.ip(),
                rflags::describe(reads),
                rflags::describe(undef)
            );
        }
    }
    assert!(
        consumers > 1000,
        "only {consumers} flag consumers generated"
    );
}

#[test]
fn every_family_and_key_instruction_is_generated() {
    let base = cfg();
    let mut seen = BTreeSet::new();
    for fam in Family::ALL {
        let c = GenConfig {
            families: vec![fam],
            ..base.clone()
        };
        let mut n = 0;
        for k in 0..300 {
            let case = case_for(5, k, &c).expect("generates");
            let ins = decode(&case);
            n += ins.len();
            seen.extend(ins.iter().map(|i| format!("{:?}", i.mnemonic())));
        }
        assert!(
            n > 300,
            "family {} produced only {n} instructions",
            fam.name()
        );
    }
    let mut want = vec![
        "Mov",
        "Movzx",
        "Movsx",
        "Movsxd",
        "Add",
        "Adc",
        "Sbb",
        "Neg",
        "Inc",
        "Mul",
        "Imul",
        "Div",
        "Idiv",
        "And",
        "Xor",
        "Test",
        "Not",
        "Rol",
        "Rcl",
        "Rcr",
        "Sar",
        "Shld",
        "Shrd",
        "Bt",
        "Btc",
        "Bsf",
        "Bsr",
        "Cmove",
        "Setl",
        "Movsb",
        "Stosq",
        "Lodsw",
        "Cmpsd",
        "Scasb",
        "Push",
        "Pop",
        "Pushfq",
        "Popfq",
        "Enter",
        "Leave",
        "Lea",
        "Xchg",
        "Xadd",
        "Cmpxchg",
        "Cmpxchg8b",
        "Cmpxchg16b",
        "Bswap",
        "Cbw",
        "Cqo",
        "Lahf",
        "Sahf",
        "Cmc",
        "Std",
        "Call",
        "Ret",
        "Jmp",
        "Jrcxz",
        "Loop",
        "Ud2",
        "Int3",
        "Hlt",
        "Int",
    ];
    let f = base.features;
    if f.popcnt {
        want.push("Popcnt");
    }
    if f.lzcnt {
        want.push("Lzcnt");
    }
    if f.bmi1 {
        want.extend(["Tzcnt", "Andn", "Bextr", "Blsr"]);
    }
    if f.bmi2 {
        want.extend(["Bzhi", "Pdep", "Pext", "Mulx", "Rorx", "Shlx"]);
    }
    if f.movbe {
        want.push("Movbe");
    }
    if f.adx {
        want.extend(["Adcx", "Adox"]);
    }
    let missing: Vec<&str> = want.into_iter().filter(|m| !seen.contains(*m)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

#[test]
fn table_covers_iced_undefined_flags() {
    // For instructions whose flag effect does not depend on a run-time count, every flag
    // iced-x86 calls undefined must be undefined in our SDM table too (and vice versa).
    let c = cfg();
    let mut checked = 0;
    for k in 0..1000 {
        let case = case_for(9, k, &c).expect("generates");
        for i in decode(&case) {
            let m = i.mnemonic();
            if matches!(
                m,
                Mnemonic::Shl
                    | Mnemonic::Shr
                    | Mnemonic::Sar
                    | Mnemonic::Rol
                    | Mnemonic::Ror
                    | Mnemonic::Rcl
                    | Mnemonic::Rcr
                    | Mnemonic::Shld
                    | Mnemonic::Shrd
            ) {
                continue;
            }
            // MOV to/from CR/DR leaves every status flag undefined (SDM vol. 2B), but the
            // table is keyed by mnemonic and they #GP at CPL 3 anyway.
            let ctl = (0..i.op_count()).any(|n| {
                let r = i.op_register(n);
                r.is_cr() || r.is_dr()
            });
            if ctl {
                continue;
            }
            let ours = flag_effect(m, 64, None).undefined;
            let iced = from_iced(i.rflags_undefined()) & rflags::STATUS;
            assert_eq!(
                ours,
                iced,
                "{i}: ours {} iced {}",
                rflags::describe(ours),
                rflags::describe(iced)
            );
            checked += 1;
        }
    }
    assert!(checked > 5000);
}

#[test]
fn two_thousand_random_cases_run_cleanly() {
    let c = cfg();
    let mut oracle = NativeOracle::new().expect("oracle");
    let mut completed = 0;
    let mut exceptions = 0;
    for k in 0..2000 {
        let case = case_for(1, k, &c).expect("generates");
        match oracle.run(&case) {
            Ok(o) => {
                if o.exception.is_some() {
                    exceptions += 1;
                } else {
                    completed += 1;
                    assert_eq!(o.regs.rip, case.end_rip(), "case {k}");
                }
                assert!(
                    o.regs.rip >= CODE_ADDR && o.regs.rip <= case.end_rip(),
                    "case {k}: rip {:#x} outside the snippet",
                    o.regs.rip
                );
            }
            Err(e) => panic!("case {k}: harness error {e} (reproduce: oracle --seed 1 --show {k})"),
        }
    }
    assert!(completed > 1000, "{completed} completed");
    assert!(exceptions > 50, "{exceptions} exceptions");
}

#[test]
fn outcomes_are_reproducible() {
    let c = cfg();
    let mut a = NativeOracle::new().expect("oracle");
    let mut b = NativeOracle::new().expect("oracle");
    for k in 0..300 {
        let case = case_for(21, k, &c).expect("generates");
        let x = a.run(&case).expect("runs");
        let y = b.run(&case).expect("runs");
        let again = a.run(&case).expect("runs");
        assert_eq!(x, y, "case {k} differs between children");
        assert_eq!(x, again, "case {k} differs on rerun");
    }
}
