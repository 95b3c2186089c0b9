//! Exceptions delivered through the IVT/IDT (#DE, #UD, #PF with CR2 and
//! error code, #GP), triple fault, intercepts and bus stops.

mod common;

use common::*;
use hyperplug_emulator::policy::{InsnIntercepts, InterceptKind};
use hyperplug_emulator::{EventKind, SegReg};
use iced_x86::code_asm::*;

/// Handler area: each vector's handler sets r15/edi = vector and halts,
/// leaving the pushed frame on the stack.
const HANDLERS: u64 = CODE + 0x800;

fn install_handlers(m: &mut Machine, vectors: &[u8]) {
    for &v in vectors {
        let at = HANDLERS + u64::from(v) * 0x10;
        let mut a = CodeAssembler::new(m.mode.bitness()).unwrap();
        match m.mode {
            M::Long64 => a.mov(r15, u64::from(v)).unwrap(),
            M::Prot32 => a.mov(edi, u32::from(v)).unwrap(),
            M::Real => a.mov(di, u32::from(v)).unwrap(),
        }
        a.hlt().unwrap();
        let base = at - m.code_base();
        let bytes = a.assemble(base).unwrap();
        assert!(m.bus.load(at, &bytes));
        let handler = if m.mode == M::Real { at - CODE } else { at };
        m.gate(v, handler);
    }
}

#[test]
fn divide_error_long_mode() {
    let mut m = Machine::new(M::Long64);
    install_handlers(&mut m, &[0]);
    m.load(|a| {
        a.mov(eax, 5u32).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.div(ecx).unwrap();
        a.hlt().unwrap();
    });
    let e = m.run_to_hlt();
    assert_eq!(m.gpr(15), 0);
    // mov, xor, (div faults), handler mov, hlt
    assert_eq!(e.retired, 4);
    let top = m.gpr(4);
    assert_eq!(
        m.bus.peek_u64(top),
        CODE + 7,
        "saved RIP is the faulting DIV"
    );
    assert_eq!(m.bus.peek_u64(top + 8), 0x18, "saved CS");
    assert_eq!(m.bus.peek_u64(top + 32), 0x10, "saved SS");
    assert_eq!(m.bus.peek_u64(top + 24), STACK, "saved RSP");
    assert_eq!(m.gpr(0), 5, "registers as before the fault");
}

#[test]
fn idiv_overflow_is_de_protected() {
    let mut m = Machine::new(M::Prot32);
    install_handlers(&mut m, &[0]);
    m.load(|a| {
        a.mov(eax, 0x8000_0000u32).unwrap();
        a.mov(edx, 0xffff_ffffu32).unwrap();
        a.mov(ecx, 0xffff_ffffu32).unwrap();
        a.idiv(ecx).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(7), 0);
    let top = m.gpr(4);
    assert_eq!(
        m.bus.peek(top, 4),
        Some((CODE as u32 + 15).to_le_bytes().to_vec())
    );
}

#[test]
fn undefined_opcode_every_mode() {
    for mode in [M::Real, M::Prot32, M::Long64] {
        let mut m = Machine::new(mode);
        install_handlers(&mut m, &[6]);
        m.load(|a| {
            a.nop().unwrap();
            a.ud2().unwrap();
        });
        m.run_to_hlt();
        assert_eq!(
            m.gpr(if mode == M::Long64 { 15 } else { 7 }) & 0xffff,
            6,
            "{mode:?}"
        );
        let top = m.gpr(4) & 0xffff_ffff;
        let ip = m.bus.peek(top, 2).unwrap();
        assert_eq!(
            u16::from_le_bytes([ip[0], ip[1]]) as u64,
            (m.code_base() + 1) & 0xffff,
            "{mode:?}"
        );
    }
}

#[test]
fn page_fault_with_cr2_and_error_code() {
    let mut m = Machine::new(M::Long64);
    install_handlers(&mut m, &[14]);
    // Unmap the 2-MiB page at 0x4000_0000 (beyond the 1 GiB map: PDPT[1] = 0).
    m.load(|a| {
        a.mov(rbx, 0x4000_0010u64).unwrap();
        a.mov(qword_ptr(rbx), rax).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(15), 14);
    assert_eq!(m.cpu.cr2, 0x4000_0010);
    let top = m.gpr(4);
    assert_eq!(
        m.bus.peek_u64(top),
        0x2,
        "error code: write, not present, supervisor"
    );
    assert_eq!(m.bus.peek_u64(top + 8), CODE + 10);
}

#[test]
fn page_fault_intercepted_leaves_cr2() {
    let mut m = Machine::new(M::Long64);
    m.policy.exceptions = 1 << 14;
    m.load(|a| {
        a.mov(rbx, 0x4000_0000u64).unwrap();
        a.mov(eax, dword_ptr(rbx)).unwrap();
    });
    let e = m.run(100);
    match e.kind {
        EventKind::Intercept(i) => {
            assert_eq!(i.rip, CODE + 10);
            assert_eq!(i.insn_len, 2);
            match i.kind {
                InterceptKind::Exception {
                    vector,
                    error_code,
                    address,
                    ..
                } => {
                    assert_eq!(
                        (vector, error_code, address),
                        (14, Some(0), Some(0x4000_0000))
                    );
                }
                k => panic!("{k:?}"),
            }
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(m.cpu.cr2, 0);
    assert_eq!(m.cpu.rip, CODE + 10);
    assert_eq!(e.retired, 1);
}

#[test]
fn triple_fault_is_shutdown() {
    let mut m = Machine::new(M::Long64);
    m.cpu.idtr.limit = 0; // every delivery faults
    m.load(|a| {
        a.ud2().unwrap();
    });
    let e = m.run(100);
    assert_eq!(e.kind, EventKind::Shutdown);
}

#[test]
fn real_mode_segment_limit_is_gp() {
    let mut m = Machine::new(M::Real);
    install_handlers(&mut m, &[13]);
    m.load(|a| {
        a.mov(bx, 0xffffu32).unwrap();
        a.mov(ax, word_ptr(bx)).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(7) & 0xffff, 13);
}

#[test]
fn protected_mode_null_segment_is_gp_zero() {
    let mut m = Machine::new(M::Prot32);
    install_handlers(&mut m, &[13]);
    m.load(|a| {
        a.xor(eax, eax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(dword_ptr(DATA as u32).es(), eax).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(7), 13);
    assert!(m.cpu.seg[SegReg::Es as usize].unusable);
    assert_eq!(
        m.bus.peek(m.gpr(4), 4),
        Some(0u32.to_le_bytes().to_vec()),
        "#GP(0)"
    );
}

#[test]
fn int_n_and_iret_real_mode() {
    let mut m = Machine::new(M::Real);
    let handler = 0x400u64;
    let mut a = CodeAssembler::new(16).unwrap();
    a.mov(si, 0x77u32).unwrap();
    a.iret().unwrap();
    m.bus.load(CODE + handler, &a.assemble(handler).unwrap());
    m.gate(0x21, handler);
    m.load(|a| {
        a.sti().unwrap();
        a.int(0x21).unwrap();
        a.mov(di, 1u32).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(6) & 0xffff, 0x77);
    assert_eq!(m.gpr(7) & 0xffff, 1);
    assert_eq!(m.gpr(4), STACK);
    assert_ne!(
        m.cpu.rflags & hyperplug_emulator::flags::IF,
        0,
        "IRET restored IF"
    );
}

#[test]
fn user_mode_interrupt_switches_stack_long_mode() {
    let mut m = Machine::new(M::Long64);
    install_handlers(&mut m, &[0x80]);
    // Gate DPL 3 so INT 0x80 is allowed from CPL 3.
    let g = IDT + 16 * 0x80;
    let mut lo = m.bus.peek_u64(g);
    lo |= 3 << 45;
    m.bus.load(g, &lo.to_le_bytes());
    m.bus.load(TSS + 4, &0x9000u64.to_le_bytes()); // RSP0
    m.cpu.seg[SegReg::Cs as usize].selector = 0x23;
    m.cpu.seg[SegReg::Cs as usize].dpl = 3;
    m.cpu.seg[SegReg::Ss as usize].selector = 0x2b;
    m.cpu.seg[SegReg::Ss as usize].dpl = 3;
    m.load(|a| {
        a.int(0x80).unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(15), 0x80);
    assert_eq!(m.gpr(4), 0x9000 - 40);
    assert_eq!(m.bus.peek_u64(0x9000 - 8), 0x2b, "old SS");
    assert_eq!(m.bus.peek_u64(0x9000 - 16), STACK, "old RSP");
    assert_eq!(m.bus.peek_u64(0x9000 - 32), 0x23, "old CS");
    assert_eq!(m.cpu.seg[SegReg::Cs as usize].selector, 0x18);
}

#[test]
fn cpuid_and_port_io_intercepts() {
    let mut m = Machine::new(M::Prot32);
    m.policy.insns = InsnIntercepts::CPUID;
    m.policy.io.set(0x3f8, true);
    m.load(|a| {
        a.mov(eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    let e = m.run(100);
    match e.kind {
        EventKind::Intercept(i) => {
            assert_eq!(
                i.kind,
                InterceptKind::Cpuid {
                    leaf: 1,
                    subleaf: 0
                }
            );
            assert_eq!((i.insn_len, &i.insn_bytes[..2]), (2, &[0x0f, 0xa2][..]));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(m.cpu.rip, CODE + 5);
    // Now without the intercept: the model answers.
    m.policy.insns = InsnIntercepts::empty();
    m.run_to_hlt();
    assert_ne!(m.gpr(3) | m.gpr(2) | m.gpr(1) | m.gpr(0), 0);

    let mut m = Machine::new(M::Prot32);
    m.policy.io.set(0x3f8, true);
    m.load(|a| {
        a.mov(dx, 0x3f8u32).unwrap();
        a.mov(al, 0x41u32).unwrap();
        a.out(dx, al).unwrap();
        a.out(0x80, al).unwrap();
    });
    let e = m.run(100);
    match e.kind {
        EventKind::Intercept(i) => assert!(matches!(
            i.kind,
            InterceptKind::Io {
                port: 0x3f8,
                size: 1,
                input: false,
                string: false,
                value: 0x41,
                ..
            }
        )),
        k => panic!("{k:?}"),
    }
    // Skip it as a backend would, then the unintercepted port stops at the bus.
    m.cpu.rip += 1;
    let e = m.run(100);
    assert_eq!(
        e.kind,
        EventKind::Io {
            port: 0x80,
            size: 1,
            write: Some(0x41)
        }
    );
    assert_eq!(m.cpu.rip, CODE + 7, "the OUT did not execute");
}

#[test]
fn mmio_read_stops_before_executing() {
    let mut m = Machine::new(M::Prot32);
    m.load(|a| {
        a.mov(eax, 7u32).unwrap();
        a.mov(eax, dword_ptr(0xfee0_0030u32)).unwrap();
    });
    let e = m.run(100);
    assert_eq!(
        e.kind,
        EventKind::Mmio {
            gpa: 0xfee0_0030,
            size: 4,
            write: None
        }
    );
    assert_eq!(m.gpr(0), 7);
    assert_eq!(m.cpu.rip, CODE + 5);
    assert_eq!(e.retired, 1);
}

#[test]
fn single_step_traps_after_each_instruction() {
    let mut m = Machine::new(M::Long64);
    install_handlers(&mut m, &[1]);
    m.cpu.rflags |= hyperplug_emulator::flags::TF;
    m.load(|a| {
        a.mov(eax, 1u32).unwrap();
        a.mov(eax, 2u32).unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(15), 1);
    assert_eq!(m.gpr(0), 1, "trap after the first instruction");
    assert_eq!(
        m.bus.peek_u64(m.gpr(4)),
        CODE + 5,
        "saved RIP is the next instruction"
    );
    assert_ne!(m.cpu.dr[6] & (1 << 14), 0, "DR6.BS");
}
