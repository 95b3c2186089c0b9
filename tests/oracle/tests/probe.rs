//! What the host CPU does with architecturally undefined results (informational; run with
//! `cargo test -p hyperplug-oracle --test probe -- --ignored --nocapture`).

use hyperplug_oracle::case::{gpr, rflags, CODE_ADDR, DATA_ADDR, DATA_SIZE};
use hyperplug_oracle::{undefined_flags, Case, NativeOracle, Regs};
use iced_x86::code_asm::*;
use iced_x86::Mnemonic;

fn run(o: &mut NativeOracle, code: &[u8], va: u64, vc: u64, vd: u64, fl: u64) -> (u64, u64, u64) {
    let mut regs = Regs {
        rip: CODE_ADDR,
        rflags: fl,
        ..Regs::default()
    };
    regs.gpr[gpr::RSP] = DATA_ADDR + 0xC000;
    regs.gpr[gpr::RAX] = va;
    regs.gpr[gpr::RCX] = vc;
    regs.gpr[gpr::RDX] = vd;
    let c = Case {
        code: code.to_vec(),
        regs,
        data: vec![0; DATA_SIZE],
        undefined_flags: Vec::new(),
    };
    match o.run(&c) {
        Ok(out) => (
            out.regs.gpr[gpr::RAX],
            out.regs.gpr[gpr::RDX],
            out.regs.rflags & rflags::STATUS,
        ),
        Err(e) => panic!("probe failed: {e}"),
    }
}

#[test]
#[ignore = "informational probe of host behaviour"]
fn probe_undefined_flags() {
    let mut o = NativeOracle::new().expect("oracle");
    type Emit = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let probes: &[(&str, Mnemonic, u32, Option<u64>, Emit)] = &[
        ("mul rcx", Mnemonic::Mul, 64, None, |a| a.mul(rcx)),
        ("imul rcx", Mnemonic::Imul, 64, None, |a| a.imul(rcx)),
        ("div rcx", Mnemonic::Div, 64, None, |a| a.div(rcx)),
        ("and rax,rcx", Mnemonic::And, 64, None, |a| a.and(rax, rcx)),
        ("bsf rax,rcx", Mnemonic::Bsf, 64, None, |a| a.bsf(rax, rcx)),
        ("bt rax,rcx", Mnemonic::Bt, 64, None, |a| a.bt(rax, rcx)),
        ("shl rax,5", Mnemonic::Shl, 64, Some(5), |a| a.shl(rax, 5)),
        ("rol rax,5", Mnemonic::Rol, 64, Some(5), |a| a.rol(rax, 5)),
        ("shl al,9", Mnemonic::Shl, 8, Some(9), |a| a.shl(al, 9)),
        ("shld ax,dx,20", Mnemonic::Shld, 16, Some(20), |a| {
            a.shld(ax, dx, 20)
        }),
        ("lzcnt rax,rcx", Mnemonic::Lzcnt, 64, None, |a| {
            a.lzcnt(rax, rcx)
        }),
    ];
    let inputs: [(u64, u64, u64); 4] = [
        (0x1234_5678_9ABC_DEF0, 3, 0),
        (0, 0x10, 0),
        (u64::MAX, u64::MAX, 1),
        (0x8000_0000_0000_0001, 7, 2),
    ];
    for (name, m, size, count, emit) in probes {
        let mut a = CodeAssembler::new(64).expect("asm");
        emit(&mut a).expect("emit");
        let code = a.assemble(CODE_ADDR).expect("assemble");
        let undef = undefined_flags(*m, *size, *count);
        println!(
            "{name:<16} undefined per SDM: [{}]",
            rflags::describe(undef)
        );
        for (va, vc, vd) in inputs {
            let (r0, d0, f0) = run(&mut o, &code, va, vc, vd, 0);
            let (r1, d1, f1) = run(&mut o, &code, va, vc, vd, rflags::STATUS);
            let kept = (f0 & undef == 0) && (f1 & undef == undef);
            println!(
                "  rax={va:#018x} rcx={vc:#x}: undefined bits from 0s: [{}] from 1s: [{}]{} rax {r0:#x}/{r1:#x} rdx {d0:#x}/{d1:#x}",
                rflags::describe(f0 & undef),
                rflags::describe(f1 & undef),
                if kept { " (preserved)" } else if f0 & undef == f1 & undef { " (computed)" } else { " (mixed)" },
            );
        }
    }
}
