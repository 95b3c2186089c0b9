//! Virtual-8086 mode extensions and protected-mode virtual interrupts
//! (SDM vol. 3, 20.3 "Interrupt and Exception Handling in Virtual-8086
//! Mode", Table 20-2; 20.3.2 VIF/VIP; 20.3.3 the interrupt-redirection
//! bitmap; 20.4 "Protected-Mode Virtual Interrupts").

mod common;

use common::*;
use hyperplug_emulator::cpu::Seg;
use hyperplug_emulator::{EventKind, InterceptKind, SegReg};
use iced_x86::code_asm as asm;

const CF: u64 = 1;
const TF: u64 = 1 << 8;
const IF: u64 = 1 << 9;
const IOPL: u64 = 3 << 12;
const VM: u64 = 1 << 17;
const VIF: u64 = 1 << 19;
const VIP: u64 = 1 << 20;
const VME: u64 = 1;
const PVI: u64 = 2;

/// The V86 program's code segment (linear 0x30000).
const V86_CS: u16 = 0x3000;
/// The V86 stack: SS 0x0700, SP 0x100 (top at linear 0x7100).
const V86_SS: u16 = 0x0700;
const V86_TOP: u64 = 0x7100;
/// The real-mode handler the task's IVT names for every redirected vector.
const IVT_CS: u16 = 0x4000;
const IVT_IP: u16 = 0x10;
/// Protected-mode handler (an INT3 marker) reached through the IDT.
const HANDLER: u64 = CODE + 0x100;
/// Ring-0 stack for delivery out of V86.
const ESP0: u32 = 0x9000;
/// I/O permission bitmap base; the redirection bitmap is the 32 bytes below.
const IO_BASE: u16 = 0x88;
/// The vector the table cases use.
const VEC: u8 = 0x21;

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// #GP(0).
    Gp,
    /// The protected-mode (ring-0) handler through the IDT.
    Pm,
    /// The V86 task's own IVT handler.
    Ivt,
    /// The instruction completed in place (reached the following INT3).
    Ran,
}

/// Runs to the INT3 marker or an intercepted exception and classifies it;
/// `after` is the V86 offset of the INT3 following the instruction.
fn outcome(m: &mut Machine, after: u64) -> Out {
    match m.run(20).kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception {
                vector: 13,
                error_code: Some(0),
                ..
            } => Out::Gp,
            InterceptKind::Exception { vector: 3, .. } => {
                let cs = m.cpu.seg[SegReg::Cs as usize].selector;
                if m.cpu.rflags & VM == 0 && m.cpu.rip == HANDLER {
                    Out::Pm
                } else if cs == IVT_CS && m.cpu.rip == u64::from(IVT_IP) {
                    Out::Ivt
                } else if cs == V86_CS && m.cpu.rip == after {
                    Out::Ran
                } else {
                    panic!("stopped at {cs:#x}:{:#x}", m.cpu.rip)
                }
            }
            k => panic!("unexpected {k:?}"),
        },
        k => panic!("unexpected {k:?} at {:#x}", m.cpu.rip),
    }
}

/// A V86 machine running `bytes` then INT3 at V86_CS:0 with `rflags`
/// (VM added) and CR4 `cr4`; IDT gate VEC (DPL 3) to HANDLER; IVT entry
/// VEC to IVT_CS:IVT_IP (an INT3); the TSS covers the redirection bitmap
/// with bit VEC set to `redir`.
fn v86(cr4v: u64, rflags: u64, redir: bool, bytes: &[u8]) -> Machine {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = (1 << 3) | (1 << 13);
    m.cpu.cr4 = cr4v;
    m.cpu.tr.limit = u32::from(IO_BASE);
    m.bus.load(TSS + 4, &ESP0.to_le_bytes());
    m.bus.load(TSS + 8, &0x10u32.to_le_bytes());
    m.bus.load(TSS + 0x66, &IO_BASE.to_le_bytes());
    let byte = u64::from(IO_BASE) - 32 + u64::from(VEC >> 3);
    let bits = if redir { 1u8 << (VEC & 7) } else { 0 };
    // Neighbouring bits set, so only bit VEC decides.
    m.bus.load(TSS + byte, &[bits | !(1u8 << (VEC & 7))]);
    m.bus.load(HANDLER, &[0xcc]);
    let gate = (HANDLER & 0xffff) | (0x08 << 16) | (0xeeu64 << 40) | ((HANDLER >> 16) << 48);
    m.bus.load(IDT + 8 * u64::from(VEC), &gate.to_le_bytes());
    let ivt = u32::from(IVT_IP) | (u32::from(IVT_CS) << 16);
    m.bus.load(u64::from(VEC) * 4, &ivt.to_le_bytes());
    m.bus
        .load((u64::from(IVT_CS) << 4) + u64::from(IVT_IP), &[0xcc]);
    let mut code = bytes.to_vec();
    code.push(0xcc);
    m.bus.load(u64::from(V86_CS) << 4, &code);
    m.cpu.rflags = 2 | VM | rflags;
    for (sr, sel) in [
        (SegReg::Cs, V86_CS),
        (SegReg::Ss, V86_SS),
        (SegReg::Ds, 0x1111),
        (SegReg::Es, 0x2222),
        (SegReg::Fs, 0x3333),
        (SegReg::Gs, 0x4444),
    ] {
        m.cpu.seg[sr as usize] = Seg {
            dpl: 3,
            ..Seg::real(sel, sr == SegReg::Cs)
        };
    }
    m.cpu.gpr[4] = V86_TOP - (u64::from(V86_SS) << 4);
    m.cpu.rip = 0;
    m
}

fn word(m: &Machine, lin: u64) -> u64 {
    let b = m.bus.peek(lin, 2).expect("ram");
    u64::from(u16::from_le_bytes([b[0], b[1]]))
}

#[test]
fn int_n_follows_table_20_2() {
    // (CR4.VME, IOPL, redirection bit, expected method outcome).
    let t = [
        (false, 0, false, Out::Gp), // method 2
        (false, 0, true, Out::Gp),  // method 2
        (false, 3, false, Out::Pm), // method 1
        (false, 3, true, Out::Pm),  // method 1
        (true, 0, true, Out::Gp),   // method 3
        (true, 3, true, Out::Pm),   // method 4
        (true, 3, false, Out::Ivt), // method 5
        (true, 0, false, Out::Ivt), // method 6
        (true, 1, false, Out::Ivt), // method 6
        (true, 2, true, Out::Gp),   // method 3
    ];
    for (i, &(vme, iopl, redir, want)) in t.iter().enumerate() {
        let cr4v = if vme { VME } else { 0 };
        let mut m = v86(cr4v, iopl << 12, redir, &[0xcd, VEC]);
        assert_eq!(outcome(&mut m, 2), want, "case {i}");
    }
}

#[test]
fn redirected_int_pushes_the_virtual_or_real_flags() {
    // (IOPL, RFLAGS bits before, pushed FLAGS image, RFLAGS bits after).
    let t = [
        // IOPL 3 (method 5): FLAGS as they are; IF and TF cleared, VIF untouched.
        (3, IF | CF, 0x3203, VM | IOPL | CF),
        (3, IF | VIF, 0x3202, VM | IOPL | VIF),
        // IOPL < 3 (method 6): VIF pushed as IF, IOPL as 3; VIF cleared, IF untouched.
        (0, VIF | CF, 0x3203, VM | CF),
        (0, IF, 0x3002, VM | IF),
        (1, VIF | IF, 0x3202, VM | IF | (1 << 12)),
    ];
    for (i, &(iopl, before, pushed, after)) in t.iter().enumerate() {
        let mut m = v86(VME, (iopl << 12) | before, false, &[0xcd, VEC]);
        assert_eq!(outcome(&mut m, 2), Out::Ivt, "case {i}");
        assert_eq!(m.gpr(4), V86_TOP - (u64::from(V86_SS) << 4) - 6, "case {i}");
        let frame = [
            word(&m, V86_TOP - 6),
            word(&m, V86_TOP - 4),
            word(&m, V86_TOP - 2),
        ];
        assert_eq!(
            frame,
            [2, u64::from(V86_CS), pushed],
            "case {i}: IP, CS, FLAGS"
        );
        let mask = CF | TF | IF | IOPL | VM | VIF | VIP;
        assert_eq!(m.cpu.rflags & mask, after, "case {i}");
        assert_eq!(m.cpu.seg[SegReg::Cs as usize].base, u64::from(IVT_CS) << 4);
    }
}

#[test]
fn int3_is_never_redirected() {
    // SDM vol. 3, 20.3.3: the bitmap applies to INT n only.
    let mut m = v86(VME, 0, false, &[0xcc]);
    match m.run(20).kind {
        EventKind::Intercept(i) => {
            assert!(matches!(i.kind, InterceptKind::Exception { vector: 3, .. }));
        }
        k => panic!("unexpected {k:?}"),
    }
    assert_eq!(m.cpu.seg[SegReg::Cs as usize].selector, V86_CS);
    assert_eq!(
        m.gpr(4),
        V86_TOP - (u64::from(V86_SS) << 4),
        "nothing pushed"
    );
}

#[test]
fn redirection_bitmap_outside_the_tss_is_gp() {
    let mut m = v86(VME, 0, false, &[0xcd, VEC]);
    m.bus.load(TSS + 0x66, &0x10u16.to_le_bytes());
    assert_eq!(outcome(&mut m, 2), Out::Gp, "bitmap below offset 0");
    let mut m = v86(VME, 0, false, &[0xcd, VEC]);
    m.bus.load(TSS + 0x66, &0x200u16.to_le_bytes());
    assert_eq!(outcome(&mut m, 2), Out::Gp, "bitmap beyond the limit");
}

/// One IOPL-sensitive instruction case in V86 mode.
struct Case {
    vme: bool,
    iopl: u64,
    /// RFLAGS bits besides VM and IOPL before.
    before: u64,
    bytes: &'static [u8],
    /// Words at the top of the V86 stack (for POPF and IRET).
    stack: &'static [u16],
    /// None: #GP(0); Some(bits): completed with these of CF|TF|IF|VIF|VIP set.
    after: Option<u64>,
    /// The word PUSHF stores, if any.
    pushed: Option<u64>,
}

const fn c(
    vme: bool,
    iopl: u64,
    before: u64,
    bytes: &'static [u8],
    stack: &'static [u16],
    after: Option<u64>,
) -> Case {
    Case {
        vme,
        iopl,
        before,
        bytes,
        stack,
        after,
        pushed: None,
    }
}

const CLI: &[u8] = &[0xfa];
const STI: &[u8] = &[0xfb];
const PUSHF: &[u8] = &[0x9c];
const PUSHFD: &[u8] = &[0x66, 0x9c];
const POPF: &[u8] = &[0x9d];
const POPFD: &[u8] = &[0x66, 0x9d];
const IRET: &[u8] = &[0xcf];
const IRETD: &[u8] = &[0x66, 0xcf];
/// IRET frame back to the INT3 at offset 1, FLAGS = IF | CF.
const IRET_IF: &[u16] = &[1, V86_CS, 0x0203];
const IRET_TF: &[u16] = &[1, V86_CS, 0x0102];
const IRETD_IF: &[u16] = &[2, 0, V86_CS, 0, 0x0203, 0];

#[test]
fn iopl_sensitive_instructions_with_and_without_vme() {
    let t = [
        // CLI/STI (SDM vol. 2, CLI/STI "Operation").
        c(false, 0, VIF | IF, CLI, &[], None),
        c(true, 0, VIF | IF, CLI, &[], Some(IF)),
        c(true, 3, VIF | IF, CLI, &[], Some(VIF)),
        c(false, 3, IF, CLI, &[], Some(0)),
        c(false, 0, 0, STI, &[], None),
        c(true, 0, 0, STI, &[], Some(VIF)),
        c(true, 2, CF, STI, &[], Some(VIF | CF)),
        c(true, 0, VIP, STI, &[], None),
        c(true, 3, VIP, STI, &[], Some(IF | VIP)),
        // PUSHF: 16-bit only under VME.
        c(false, 0, 0, PUSHF, &[], None),
        c(true, 0, VIF, PUSHFD, &[], None),
        c(false, 0, 0, PUSHFD, &[], None),
        // POPF: VIF from the popped IF; TF, or IF with VIP, is #GP(0).
        c(false, 0, 0, POPF, &[0x0203], None),
        c(true, 0, 0, POPF, &[0x0203], Some(VIF | CF)),
        c(true, 0, VIF | IF, POPF, &[0x0002], Some(IF)),
        c(true, 0, VIP, POPF, &[0x0203], None),
        c(true, 0, VIP, POPF, &[0x0003], Some(VIP | CF)),
        c(true, 0, 0, POPF, &[0x0102], None),
        c(true, 0, 0, POPFD, &[0x0203, 0], None),
        c(true, 3, 0, POPF, &[0x0203], Some(IF | CF)),
        // IRET: 16-bit only under VME, same flag rules as POPF.
        c(false, 0, 0, IRET, IRET_IF, None),
        c(true, 0, 0, IRET, IRET_IF, Some(VIF | CF)),
        c(true, 0, VIP, IRET, IRET_IF, None),
        c(true, 0, 0, IRET, IRET_TF, None),
        c(true, 0, 0, IRETD, IRETD_IF, None),
        c(true, 3, 0, IRET, IRET_IF, Some(IF | CF)),
    ];
    for (i, k) in t.iter().enumerate() {
        run(i, k);
    }
}

#[test]
fn vme_pushf_pushes_vif_as_if_and_iopl_3() {
    let t = [
        Case {
            pushed: Some(0x3203),
            ..c(true, 0, VIF | CF, PUSHF, &[], Some(VIF | CF))
        },
        Case {
            pushed: Some(0x3002),
            ..c(true, 1, IF, PUSHF, &[], Some(IF))
        },
        Case {
            pushed: Some(0x3202),
            ..c(true, 3, IF, PUSHF, &[], Some(IF))
        },
    ];
    for (i, k) in t.iter().enumerate() {
        run(i, k);
    }
}

fn run(i: usize, k: &Case) {
    let cr4v = if k.vme { VME } else { 0 };
    let mut m = v86(cr4v, (k.iopl << 12) | k.before, false, k.bytes);
    let mut sp = V86_TOP;
    if !k.stack.is_empty() {
        // Put the words below the initial SP so the instruction pops them.
        sp -= 2 * k.stack.len() as u64;
        for (j, w) in k.stack.iter().enumerate() {
            m.bus.load(sp + 2 * j as u64, &w.to_le_bytes());
        }
        m.cpu.gpr[4] = sp - (u64::from(V86_SS) << 4);
    }
    let after_ip = if k.bytes == IRET || k.bytes == IRETD {
        u64::from(k.stack[0])
    } else {
        k.bytes.len() as u64
    };
    let r = outcome(&mut m, after_ip);
    match k.after {
        None => assert_eq!(r, Out::Gp, "case {i}: {:x?}", k.bytes),
        Some(bits) => {
            assert_eq!(r, Out::Ran, "case {i}: {:x?}", k.bytes);
            let mask = CF | TF | IF | VIF | VIP;
            assert_eq!(m.cpu.rflags & mask, bits, "case {i}: {:x?}", k.bytes);
            assert_eq!(m.cpu.rflags & IOPL, k.iopl << 12, "case {i}: IOPL kept");
            assert_ne!(m.cpu.rflags & VM, 0, "case {i}: still V86");
        }
    }
    if let Some(p) = k.pushed {
        assert_eq!(word(&m, sp - 2), p, "case {i}: pushed FLAGS");
    }
}

/// A flat 32-bit segment with DPL `dpl`.
fn flat(sel: u16, code: bool, dpl: u8) -> Seg {
    Seg {
        selector: sel | u16::from(dpl),
        base: 0,
        limit: 0xffff_ffff,
        typ: if code { 0xb } else { 0x3 },
        s: true,
        dpl,
        present: true,
        db: true,
        g: true,
        ..Seg::default()
    }
}

/// CR4, CPL, IOPL, RFLAGS before, instruction bytes, None = #GP(0) or
/// Some(IF|VIF|VIP after).
type PviCase = (u64, u8, u64, u64, &'static [u8], Option<u64>);

#[test]
fn pvi_virtualizes_cli_sti_only_at_cpl3() {
    let t: [PviCase; 14] = [
        (PVI, 3, 0, IF | VIF, CLI, Some(IF)),
        (PVI, 3, 2, IF | VIF, CLI, Some(IF)),
        (PVI, 3, 0, 0, STI, Some(VIF)),
        (PVI, 3, 0, VIP, STI, None),
        (0, 3, 0, IF | VIF, CLI, None),
        (VME, 3, 0, 0, STI, None),
        (PVI, 3, 3, IF | VIF, CLI, Some(VIF)),
        (PVI, 1, 0, IF | VIF, CLI, None),
        (PVI, 0, 0, IF | VIF, CLI, Some(VIF)),
        (PVI, 2, 2, 0, STI, Some(IF)),
        // PUSHF/POPF keep their protected-mode behaviour under PVI.
        (PVI, 3, 0, VIF, &[0x9c], Some(VIF)),
        (PVI, 3, 0, 0, &[0x9d], Some(0)),
        (PVI, 3, 0, IF, &[0x9d], Some(IF)),
        (PVI, 3, 0, VIF, &[0x66, 0x9d], Some(VIF)),
    ];
    for (i, &(cr4v, cpl, iopl, before, bytes, want)) in t.iter().enumerate() {
        let mut m = Machine::new(M::Prot32);
        m.policy.exceptions = (1 << 3) | (1 << 13);
        m.cpu.cr4 = cr4v;
        m.cpu.seg[SegReg::Cs as usize] = flat(0x08, true, cpl);
        m.cpu.seg[SegReg::Ss as usize] = flat(0x10, false, cpl);
        m.cpu.rflags = 2 | (iopl << 12) | before;
        // POPF pops IF set; PUSHF stores over it.
        m.bus.load(STACK, &(0x0202u32).to_le_bytes());
        m.load(|a| {
            a.db(bytes).unwrap();
            a.int3().unwrap();
        });
        let r = m.run(20).kind;
        let vector = match r {
            EventKind::Intercept(x) => match x.kind {
                InterceptKind::Exception { vector, .. } => vector,
                k => panic!("case {i}: {k:?}"),
            },
            k => panic!("case {i}: {k:?}"),
        };
        match want {
            None => assert_eq!(vector, 13, "case {i}"),
            Some(bits) => {
                assert_eq!(vector, 3, "case {i}");
                assert_eq!(m.cpu.rflags & (IF | VIF | VIP), bits, "case {i}");
            }
        }
        if bytes == [0x9c] {
            let pushed = m.bus.peek(STACK - 4, 4).expect("ram");
            let v = u64::from(u32::from_le_bytes(pushed.try_into().unwrap()));
            assert_eq!(
                v & (IF | VIF),
                VIF,
                "case {i}: PUSHFD stores the real IF and VIF"
            );
        }
    }
}

#[test]
fn cr4_accepts_vme_and_pvi_and_cpuid_advertises_vme() {
    let mut m = Machine::new(M::Prot32);
    m.load(|a| {
        a.mov(asm::eax, 3u32).unwrap();
        a.mov(asm::cr4, asm::eax).unwrap();
        a.mov(asm::eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.cpu.cr4, VME | PVI);
    assert_ne!(m.gpr(2) & 2, 0, "CPUID.01H:EDX.VME");
}
