//! User story: a developer traces a guest under the svm backend and sees
//! each #VMEXIT as the APM names it, with EXITINFO1/EXITINFO2 encoded as the
//! APM defines them; one guest per intercept class, asserted field by field.

mod support;

use hyperplug_tests::{triple_fault_guest, Guest, Mode};
use support::*;

/// One traced #VMEXIT.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Traced {
    name: String,
    info1: u64,
    info2: u64,
    rip: u64,
}

fn hex(s: &str, key: &str) -> Option<u64> {
    let v = s.split_whitespace().find_map(|w| w.strip_prefix(key))?;
    u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

/// The #VMEXITs in a `--trace exits` log.
fn traced(stderr: &str) -> Vec<Traced> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split("exits: vcpu0 ").nth(1)?;
            let name = rest.split_whitespace().next()?.to_string();
            Some(Traced {
                name,
                info1: hex(rest, "exitinfo1=")?,
                info2: hex(rest, "exitinfo2=")?,
                rip: hex(rest, "rip=")?,
            })
        })
        .collect()
}

fn find<'a>(t: &'a [Traced], name: &str) -> &'a Traced {
    t.iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no {name} in {t:#?}"))
}

/// A real-mode guest at 0x8000: CPUID, INVLPG [0x9000], WBINVD, INVD, OUT
/// 0xf4 (debug-exit with status (0 << 1) | 1).
fn insn_guest() -> Guest {
    let bytes = vec![
        0x66, 0x31, 0xc0, // xor eax, eax
        0x0f, 0xa2, // cpuid
        0x0f, 0x01, 0x3e, 0x00, 0x90, // invlpg [0x9000]
        0x0f, 0x09, // wbinvd
        0x0f, 0x08, // invd
        0xb0, 0x00, // mov al, 0
        0xe6, 0xf4, // out 0xf4, al
    ];
    Guest {
        code: 0..bytes.len(),
        bytes,
        load_addr: 0x8000,
        entry: 0x8000,
        mode: Mode::Real,
    }
}

fn run_traced(g: &Guest, name: &str, extra: &[&str]) -> (Option<i32>, Vec<Traced>, String) {
    let mut args = vec!["--backend", "svm", "--trace", "exits"];
    args.extend_from_slice(extra);
    let r = run_guest(g, name, &args, b"");
    (r.code, traced(&r.stderr), r.stderr)
}

#[test]
fn instruction_intercepts_cpuid_invlpg_ioio() {
    let (code, t, err) = run_traced(&insn_guest(), "svm-insn", &[]);
    assert_eq!(code, Some(1), "{err}");
    let cpuid = find(&t, "VMEXIT_CPUID");
    assert_eq!((cpuid.info1, cpuid.info2, cpuid.rip), (0, 0, 0x8003));
    // Decode assist: EXITINFO1 of INVLPG is the linear address (APM 15.35).
    let inv = find(&t, "VMEXIT_INVLPG");
    assert_eq!((inv.info1, inv.rip), (0x9000, 0x8005));
    // IOIO (APM 15.10.2): port 31:16, SZ8 bit 4, A16 bit 7 (real mode),
    // TYPE bit 0 clear for OUT, not STR/REP; EXITINFO2 = the next RIP.
    let io = find(&t, "VMEXIT_IOIO");
    assert_eq!(io.info1 >> 16, 0xf4, "{io:?}");
    assert_eq!(io.info1 & 0x3ff, (1 << 4) | (1 << 7), "{io:?}");
    assert_eq!((io.info2, io.rip), (0x8012, 0x8010));
    assert_eq!(find(&t, "VMEXIT_WBINVD").rip, 0x800a);
    assert_eq!(find(&t, "VMEXIT_INVD").rip, 0x800c);
}

#[test]
fn control_register_msr_and_page_fault_intercepts_under_shadow_paging() {
    // The embedded guest enters protected and long mode: shadow paging
    // intercepts every CR0/CR3/CR4 access, EFER goes through the MSR
    // permission map, and the first fetch with paging on misses the shadow.
    let r = run_hyperplug(
        &["run", "--backend", "svm", "--trace", "exits"],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let t = traced(&r.stderr);
    // MOV to/from CR with decode assists: bit 63 = MOV, bits 3:0 = GPR (APM 15.35.2).
    for n in [
        "VMEXIT_CR0_READ",
        "VMEXIT_CR0_WRITE",
        "VMEXIT_CR3_WRITE",
        "VMEXIT_CR4_WRITE",
    ] {
        let x = find(&t, n);
        assert_eq!(x.info1 >> 63, 1, "{n}: {x:?}");
    }
    let msrs: Vec<u64> = t
        .iter()
        .filter(|x| x.name == "VMEXIT_MSR")
        .map(|x| x.info1)
        .collect();
    assert!(
        msrs.contains(&0) && msrs.contains(&1),
        "RDMSR and WRMSR: {msrs:?}"
    );
    // #PF intercept: EXITINFO1 = error code, EXITINFO2 = faulting address;
    // the first is the instruction fetch right after paging was turned on
    // (I/D set, not present in the shadow).
    let pf = find(&t, "VMEXIT_EXCP14");
    assert_eq!(pf.info1, 0x10, "{pf:?}");
    assert_eq!(pf.info2, pf.rip, "fetch fault at RIP: {pf:?}");
}

#[test]
fn nested_page_faults_and_selective_cr0_writes_under_npt() {
    let r = run_hyperplug(
        &[
            "run",
            "--backend",
            "svm",
            "--nested-paging",
            "--trace",
            "exits",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let t = traced(&r.stderr);
    // NPF (APM 15.25.6): US always set, bit 32 = final guest-physical
    // address; EXITINFO2 = that address (the first fetch at the entry).
    let npf = find(&t, "VMEXIT_NPF");
    assert_eq!(npf.info1, (1 << 32) | (1 << 2), "{npf:?}");
    assert_eq!(npf.info2, npf.rip & !0xfff | (npf.rip & 0xfff), "{npf:?}");
    assert!(
        t.iter().all(|x| x.name != "VMEXIT_EXCP14"),
        "no #PF intercept with NPT"
    );
    assert!(
        t.iter().all(|x| x.name != "VMEXIT_CR3_WRITE"),
        "CR3 is the guest's with NPT"
    );
    find(&t, "VMEXIT_CR0_SEL_WRITE");
    // The MMIO marker: an access to an unbacked page exits with RSVD set.
    let g = hyperplug_tests::platform_guests::lapic_timer_guest().expect("assemble");
    let (code, t, err) = run_traced(&g, "svm-npt-mmio", &["--nested-paging"]);
    assert_eq!(code, Some(0), "{err}");
    let mmio = t
        .iter()
        .find(|x| x.name == "VMEXIT_NPF" && x.info1 & (1 << 3) != 0)
        .unwrap_or_else(|| panic!("no RSVD NPF in {t:#?}"));
    assert_eq!(mmio.info2 & !0xfff, 0xfee0_0000, "{mmio:?}");
}

#[test]
fn shutdown_and_hlt_intercepts() {
    let (code, t, err) = run_traced(&triple_fault_guest().expect("assemble"), "svm-tf", &[]);
    assert_eq!(code, Some(4), "{err}");
    assert!(t.iter().any(|x| x.name == "VMEXIT_SHUTDOWN"), "{t:#?}");
    let g = hyperplug_tests::platform_guests::pit_pic_real_mode_guest().expect("assemble");
    let (code, t, err) = run_traced(&g, "svm-pit", &[]);
    assert_eq!(code, Some(0), "{err}");
    // HLT is intercepted (the timer interrupts then arrive through EVENTINJ).
    let hlt = find(&t, "VMEXIT_HLT");
    assert_eq!((hlt.info1, hlt.info2), (0, 0));
}

#[test]
fn dump_control_block_shows_the_vmcb_by_name_and_offset() {
    let r = run_guest(
        &insn_guest(),
        "svm-dump",
        &["--backend", "svm", "--dump-control-block"],
        b"",
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    for needle in [
        "0x070 EXITCODE = 0x7b",
        "0x058 GUEST_ASID = 0x1",
        "0x4d0 EFER",
    ] {
        assert!(r.stderr.contains(needle), "{needle} in {}", r.stderr);
    }
}

/// A real-mode guest that keeps interrupts off while the firmware-programmed
/// PIT (18.2 Hz) raises IRQ 0, then executes STI: the host asks for an
/// interrupt window, which svm opens with V_IRQ and the VINTR intercept
/// (VMEXIT_VINTR, APM vol. 2, 15.21.4); the firmware's IRET stub takes the
/// interrupt and the guest exits through debug-exit.
fn window_guest() -> Guest {
    let bytes = vec![
        0xfa, // cli
        // mov ecx, 0x0200_0000: spins longer than a PIT tick even at 1 GIPS.
        0x66, 0xb9, 0x00, 0x00, 0x00, 0x02, 0x66, 0x49, // dec ecx
        0x75, 0xfc, // jnz (dec ecx)
        0xfb, // sti
        0x90, // nop
        0x90, // nop
        0xb0, 0x00, // mov al, 0
        0xe6, 0xf4, // out 0xf4, al
    ];
    Guest {
        code: 0..bytes.len(),
        bytes,
        load_addr: 0x8000,
        entry: 0x8000,
        mode: Mode::Real,
    }
}

#[test]
fn interrupt_window_and_external_interrupt_intercepts() {
    let (code, t, err) = run_traced(&window_guest(), "svm-vintr", &[]);
    assert_eq!(code, Some(1), "{err}");
    // STI's interrupt shadow covers the first NOP (SDM vol. 3, 6.8.3): the
    // window opens at the second.
    let w = find(&t, "VMEXIT_VINTR");
    assert_eq!((w.info1, w.info2, w.rip), (0, 0, 0x800d), "{w:?}");
    // While the guest spun with IF = 0, the host's timer thread kicked the
    // vCPU to request the window: a physical interrupt, VMEXIT_INTR.
    let k = find(&t, "VMEXIT_INTR");
    assert_eq!((k.info1, k.info2), (0, 0), "{k:?}");
}

/// Real mode: MOV CR0 setting TS, CLTS, MOV CR0 setting WP, then debug-exit.
fn cr0_guest() -> Guest {
    let bytes = vec![
        0x0f, 0x20, 0xc0, // mov eax, cr0
        0x66, 0x83, 0xc8, 0x08, // or eax, 8 (TS)
        0x0f, 0x22, 0xc0, // mov cr0, eax
        0x0f, 0x06, // clts
        0x66, 0x0d, 0x00, 0x00, 0x01, 0x00, // or eax, 0x10000 (WP)
        0x0f, 0x22, 0xc0, // mov cr0, eax
        0xb0, 0x00, // mov al, 0
        0xe6, 0xf4, // out 0xf4, al
    ];
    Guest {
        code: 0..bytes.len(),
        bytes,
        load_addr: 0x8000,
        entry: 0x8000,
        mode: Mode::Real,
    }
}

#[test]
fn selective_cr0_write_ignores_ts_and_mp_but_the_full_intercept_does_not() {
    // NPT: only the selective CR0-write intercept is set (APM 15.9.1).
    let (code, t, err) = run_traced(&cr0_guest(), "svm-cr0-npt", &["--nested-paging"]);
    assert_eq!(code, Some(1), "{err}");
    let sel: Vec<u64> = t
        .iter()
        .filter(|x| x.name == "VMEXIT_CR0_SEL_WRITE")
        .map(|x| x.rip)
        .collect();
    assert_eq!(sel, vec![0x8012], "only the WP change exits: {t:#?}");
    // Shadow paging intercepts every CR0 write; CLTS has no MOV/GPR decode.
    let (code, t, err) = run_traced(&cr0_guest(), "svm-cr0-shadow", &[]);
    assert_eq!(code, Some(1), "{err}");
    let full: Vec<(u64, u64)> = t
        .iter()
        .filter(|x| x.name == "VMEXIT_CR0_WRITE")
        .map(|x| (x.rip, x.info1 >> 63))
        .collect();
    assert_eq!(full, vec![(0x8007, 1), (0x800a, 0), (0x8012, 1)], "{t:#?}");
}
