//! Known snippets with known outcomes on the native oracle.

use hyperplug_oracle::case::{gpr, rflags, CODE_ADDR, DATA_ADDR, DATA_SIZE, UNMAPPED_ADDR};
use hyperplug_oracle::{Case, NativeOracle, OracleError, Outcome, Regs};
use iced_x86::code_asm::*;

const RSP0: u64 = DATA_ADDR + 0xC000;

/// Assembles with code_asm at CODE_ADDR.
fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    f(&mut a).expect("assemble");
    a.assemble(CODE_ADDR).expect("encode")
}

fn case(code: Vec<u8>, set: &[(usize, u64)], rfl: u64) -> Case {
    let mut regs = Regs {
        rip: CODE_ADDR,
        rflags: rfl,
        ..Regs::default()
    };
    regs.gpr[gpr::RSP] = RSP0;
    for &(i, v) in set {
        regs.gpr[i] = v;
    }
    Case {
        code,
        regs,
        data: (0..DATA_SIZE).map(|i| (i * 7 + 3) as u8).collect(),
        undefined_flags: Vec::new(),
    }
}

fn run(c: &Case) -> Outcome {
    let mut o = NativeOracle::new().expect("oracle starts");
    o.run(c).expect("case runs")
}

fn status(o: &Outcome) -> u64 {
    o.regs.rflags & rflags::STATUS
}

#[test]
fn add_sets_exact_flags() {
    // (a, b) -> (sum, status flags) per SDM vol. 1, 3.4.3.1 for ADD.
    let table: &[(u64, u64, u64, u64)] = &[
        (
            0x7FFF_FFFF_FFFF_FFFF,
            1,
            0x8000_0000_0000_0000,
            rflags::OF | rflags::SF | rflags::AF | rflags::PF,
        ),
        (
            u64::MAX,
            1,
            0,
            rflags::CF | rflags::ZF | rflags::AF | rflags::PF,
        ),
        (1, 2, 3, rflags::PF),
        (
            0x8000_0000_0000_0000,
            0x8000_0000_0000_0000,
            0,
            rflags::CF | rflags::OF | rflags::ZF | rflags::PF,
        ),
    ];
    let code = asm(|a| a.add(rax, rbx));
    let mut o = NativeOracle::new().expect("oracle starts");
    for &(x, y, sum, fl) in table {
        // Start with every settable flag set, to see that all are written.
        let c = case(
            code.clone(),
            &[(gpr::RAX, x), (gpr::RBX, y)],
            rflags::STATUS,
        );
        let out = o.run(&c).expect("runs");
        assert_eq!(out.exception, None);
        assert_eq!(out.regs.gpr[gpr::RAX], sum, "{x:#x}+{y:#x}");
        assert_eq!(status(&out), fl, "{x:#x}+{y:#x} flags");
        assert_eq!(out.regs.rip, c.end_rip());
        assert_eq!(out.regs.rflags & rflags::IF, rflags::IF);
    }
}

#[test]
fn registers_and_flags_pass_through_unchanged() {
    let code = asm(|a| a.nop());
    let set: Vec<(usize, u64)> = (0..16)
        .filter(|i| *i != gpr::RSP)
        .map(|i| (i, 0x0123_4567_89AB_CDEF ^ ((i as u64) << 56)))
        .collect();
    let fl = rflags::CF | rflags::ZF | rflags::OF | rflags::DF;
    let c = case(code, &set, fl);
    let out = run(&c);
    assert_eq!(out.regs.gpr, c.regs.gpr);
    assert_eq!(out.regs.rflags & rflags::SETTABLE, fl);
    assert_eq!(out.data, c.data);
}

#[test]
fn div_by_zero_is_de_at_the_div() {
    let code = asm(|a| {
        a.mov(eax, 5)?;
        a.div(rcx)
    });
    let c = case(code, &[(gpr::RCX, 0), (gpr::RDX, 0)], 0);
    let out = run(&c);
    let e = out.exception.expect("exception");
    assert_eq!((e.vector, e.error_code_known), (0, false));
    assert_eq!(
        out.regs.rip,
        CODE_ADDR + 5,
        "#DE is a fault: RIP of the DIV"
    );
    assert_eq!(out.regs.gpr[gpr::RAX], 5, "the MOV before it retired");
}

#[test]
fn unmapped_load_and_store_are_pf_with_address_and_code() {
    // #PF error code (SDM vol. 3A 4.7): bit 1 W/R, bit 2 U/S; P=0 for a missing page.
    for (store, code_expected) in [(false, 0x4u64), (true, 0x6)] {
        let code = asm(|a| {
            if store {
                a.mov(qword_ptr(rbx + 0x10), rax)
            } else {
                a.mov(rax, qword_ptr(rbx + 0x10))
            }
        });
        let c = case(code, &[(gpr::RBX, UNMAPPED_ADDR)], 0);
        let out = run(&c);
        let e = out.exception.expect("exception");
        assert_eq!(e.vector, 14);
        assert!(e.error_code_known);
        assert_eq!(e.error_code, code_expected, "store={store}");
        assert_eq!(e.fault_addr, UNMAPPED_ADDR + 0x10);
        assert_eq!(out.regs.rip, CODE_ADDR);
    }
}

#[test]
fn ud2_is_ud_and_int3_is_a_bp_trap() {
    let out = run(&case(
        asm(|a| {
            a.nop()?;
            a.ud2()
        }),
        &[],
        0,
    ));
    assert_eq!(out.exception.map(|e| e.vector), Some(6));
    assert_eq!(out.regs.rip, CODE_ADDR + 1);

    let out = run(&case(
        asm(|a| {
            a.int3()?;
            a.nop()
        }),
        &[],
        0,
    ));
    let e = out.exception.expect("#BP");
    assert_eq!((e.vector, e.error_code_known), (3, false));
    assert_eq!(out.regs.rip, CODE_ADDR + 1, "#BP is a trap: RIP after INT3");
}

#[test]
fn privileged_and_int_n_are_gp_with_error_codes() {
    // HLT at CPL 3: #GP(0). INT n through a DPL-0 gate: #GP(n*8 + 2) (SDM vol. 3A 6.13:
    // IDT bit 1, EXT 0).
    let cases: Vec<(Vec<u8>, u64)> = vec![
        (asm(|a| a.hlt()), 0),
        (asm(|a| a.cli()), 0),
        (asm(|a| a.int(0x21)), 0x21 * 8 + 2),
    ];
    let mut o = NativeOracle::new().expect("oracle");
    for (code, err) in cases {
        let c = case(code, &[], 0);
        let out = o.run(&c).expect("runs");
        let e = out.exception.expect("#GP");
        assert_eq!(
            (e.vector, e.error_code_known, e.error_code),
            (13, true, err)
        );
        assert_eq!(out.regs.rip, CODE_ADDR);
        // Host behaviour: the CPU sets RF in the RFLAGS image saved for a fault.
        assert_eq!(out.regs.rflags & rflags::RF, rflags::RF);
    }
}

#[test]
fn non_canonical_is_gp_or_ss() {
    let nc = 0x8000_0000_0000_0000u64;
    let out = run(&case(
        asm(|a| a.mov(rax, qword_ptr(rbx))),
        &[(gpr::RBX, nc)],
        0,
    ));
    let e = out.exception.expect("#GP");
    assert_eq!((e.vector, e.error_code), (13, 0));
    // An RBP base references SS: #SS(0) (SDM vol. 2 MOV "64-Bit Mode Exceptions").
    let out = run(&case(
        asm(|a| a.mov(rax, qword_ptr(rbp))),
        &[(gpr::RBP, nc)],
        0,
    ));
    let e = out.exception.expect("#SS");
    assert_eq!((e.vector, e.error_code_known, e.error_code), (12, true, 0));
}

#[test]
fn alignment_check_with_ac_set() {
    let code = asm(|a| {
        a.push(0x4_0000)?;
        a.popfq()?;
        a.mov(eax, dword_ptr(rbx + 1))
    });
    let out = run(&case(code, &[(gpr::RBX, DATA_ADDR + 0x100)], 0));
    let e = out.exception.expect("#AC");
    assert_eq!((e.vector, e.error_code_known, e.error_code), (17, true, 0));
    assert_ne!(out.regs.rflags & rflags::AC, 0);
}

#[test]
fn push_pop_write_the_data_area() {
    let code = asm(|a| {
        a.push(rax)?;
        a.push(-2i32)?;
        a.pop(rcx)
    });
    let c = case(code, &[(gpr::RAX, 0x1122_3344_5566_7788)], 0);
    let out = run(&c);
    assert_eq!(out.exception, None);
    assert_eq!(out.regs.gpr[gpr::RSP], RSP0 - 8);
    assert_eq!(out.regs.gpr[gpr::RCX], u64::MAX - 1);
    let off = (RSP0 - DATA_ADDR) as usize;
    assert_eq!(
        out.data[off - 8..off],
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(out.data[off - 16..off - 8], (-2i64).to_le_bytes());
    // Everything else is untouched.
    assert_eq!(out.data[..off - 16], c.data[..off - 16]);
    assert_eq!(out.data[off..], c.data[off..]);
}

#[test]
fn rep_movsb_copies() {
    let code = asm(|a| a.rep().movsb());
    let src = DATA_ADDR + 0x100;
    let dst = DATA_ADDR + 0x800;
    let c = case(code, &[(gpr::RSI, src), (gpr::RDI, dst), (gpr::RCX, 40)], 0);
    let out = run(&c);
    assert_eq!(out.regs.gpr[gpr::RCX], 0);
    assert_eq!(out.regs.gpr[gpr::RSI], src + 40);
    assert_eq!(out.data[0x800..0x828], c.data[0x100..0x128]);
}

#[test]
fn self_modifying_code_executes_the_new_bytes() {
    // Overwrite a UD2 ahead of RIP with two NOPs; the CPU must execute the new bytes.
    let code = asm(|a| {
        let mut patch = a.create_label();
        a.mov(word_ptr(patch), 0x9090)?;
        a.set_label(&mut patch)?;
        a.ud2()
    });
    let out = run(&case(code, &[], 0));
    assert_eq!(out.exception, None);
}

#[test]
fn timeout_then_reuse() {
    let mut o = NativeOracle::new().expect("oracle");
    o.set_budget_ms(30);
    let spin = asm(|a| {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.jmp(l)
    });
    let pid = o.child_pid();
    match o.run(&case(spin, &[], 0)) {
        Err(OracleError::Timeout(ms)) => assert!(ms >= 30),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(o.child_pid(), pid, "a timeout keeps the child");
    let out = o
        .run(&case(asm(|a| a.inc(rax)), &[(gpr::RAX, 41)], 0))
        .expect("runs");
    assert_eq!(out.regs.gpr[gpr::RAX], 42);
}

#[test]
fn syscall_is_refused_and_the_child_replaced() {
    let mut o = NativeOracle::new().expect("oracle");
    let pid = o.child_pid();
    // write(1, ..., 0) and exit_group: neither may run.
    for nr in [1u64, 231] {
        let c = case(asm(|a| a.syscall()), &[(gpr::RAX, nr), (gpr::RDI, 1)], 0);
        match o.run(&c) {
            Err(OracleError::SyscallAttempted { rip }) => assert_eq!(rip, CODE_ADDR + 2),
            other => panic!("expected a refused syscall, got {other:?}"),
        }
    }
    let out = o
        .run(&case(asm(|a| a.inc(rax)), &[(gpr::RAX, 1)], 0))
        .expect("runs");
    assert_eq!(out.regs.gpr[gpr::RAX], 2);
    assert_ne!(
        o.child_pid(),
        pid,
        "a fresh child after the refused syscall"
    );
}

#[test]
fn bad_cases_are_rejected() {
    let mut o = NativeOracle::new().expect("oracle");
    let long = case(vec![0x90; 4096], &[], 0);
    assert!(matches!(o.run(&long), Err(OracleError::BadCase(_))));
    let mut big = case(vec![0x90], &[], 0);
    big.data = vec![0; DATA_SIZE + 1];
    assert!(matches!(o.run(&big), Err(OracleError::BadCase(_))));
    let tf = case(vec![0x90], &[], rflags::TF);
    assert!(matches!(o.run(&tf), Err(OracleError::BadCase(_))));
}

#[test]
fn run_native_reuses_a_thread_local_child() {
    let c = case(asm(|a| a.add(rax, rax)), &[(gpr::RAX, 21)], 0);
    let a = hyperplug_oracle::run_native(&c).expect("runs");
    let b = hyperplug_oracle::run_native(&c).expect("runs again");
    assert_eq!(a, b);
    assert_eq!(a.regs.gpr[gpr::RAX], 42);
}
