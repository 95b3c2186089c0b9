//! Protection checks: the TSS I/O permission bitmap (SDM vol. 1, 19.5.2).

mod common;

use common::*;
use hyperplug_emulator::cpu::Seg;
use hyperplug_emulator::{EventKind, InterceptKind, SegReg};
use iced_x86::code_asm::*;

/// EFLAGS.VM (SDM vol. 3, 2.3).
const VM: u64 = 1 << 17;

/// Whether an intercept is the exception #GP(0).
fn is_gp0(k: &InterceptKind) -> bool {
    matches!(
        k,
        InterceptKind::Exception {
            vector: 13,
            error_code: Some(0),
            ..
        }
    )
}

/// A flat 32-bit code or data segment with the given DPL.
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

/// One I/O-bitmap case: CPL, IOPL, TSS type, TSS limit, I/O map base,
/// bitmap bytes set to 0xff (offsets from the map base), port, size,
/// and whether the access is allowed.
struct Case {
    cpl: u8,
    iopl: u8,
    typ: u8,
    limit: u32,
    map: u16,
    set: &'static [(u16, u8)],
    port: u16,
    size: u8,
    ok: bool,
}

/// Runs `out dx, al/ax/eax` under the case's state; returns whether it
/// reached the bus (allowed) or raised #GP(0) (denied).
fn run_case(c: &Case) -> bool {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = u32::MAX;
    let port = c.port;
    let size = c.size;
    m.load(|a| {
        a.mov(edx, u32::from(port)).unwrap();
        match size {
            1 => a.out(dx, al).unwrap(),
            2 => a.out(dx, ax).unwrap(),
            _ => a.out(dx, eax).unwrap(),
        }
        a.hlt().unwrap();
    });
    m.cpu.seg[SegReg::Cs as usize] = flat(0x08, true, c.cpl);
    m.cpu.seg[SegReg::Ss as usize] = flat(0x10, false, c.cpl);
    m.cpu.rflags = 2 | (u64::from(c.iopl) << 12);
    m.cpu.tr.typ = c.typ;
    m.cpu.tr.limit = c.limit;
    m.bus.load(TSS + 0x66, &c.map.to_le_bytes());
    for &(off, v) in c.set {
        m.bus.load(TSS + u64::from(c.map) + u64::from(off), &[v]);
    }
    match m.run(10).kind {
        EventKind::Io {
            port: p, size: s, ..
        } => {
            assert_eq!((p, s), (port, size));
            assert_eq!(m.cpu.rip, CODE + 5, "an allowed OUT has not executed yet");
            true
        }
        EventKind::Intercept(i) if is_gp0(&i.kind) => {
            assert_eq!(m.cpu.rip, CODE + 5, "#GP is a fault on the OUT");
            false
        }
        k => panic!("unexpected {k:?}"),
    }
}

#[test]
fn io_permission_bitmap_table() {
    const BIG: u32 = 0x68 + 0x2000 + 1;
    let t = [
        // CPL <= IOPL: no bitmap needed even without one.
        Case {
            cpl: 0,
            iopl: 0,
            typ: 0xb,
            limit: 0x67,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: true,
        },
        Case {
            cpl: 3,
            iopl: 3,
            typ: 0xb,
            limit: 0x67,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: true,
        },
        Case {
            cpl: 1,
            iopl: 2,
            typ: 0xb,
            limit: 0x67,
            map: 0x68,
            set: &[(0x10, 0xff)],
            port: 0x80,
            size: 1,
            ok: true,
        },
        // CPL > IOPL with no bitmap inside the limit.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: 0x67,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: false,
        },
        Case {
            cpl: 3,
            iopl: 2,
            typ: 0xb,
            limit: 0x67,
            map: 0x68,
            set: &[],
            port: 0,
            size: 1,
            ok: false,
        },
        // A clear bitmap allows every port.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: true,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[],
            port: 0xffff,
            size: 1,
            ok: true,
        },
        // The port's own bit.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x10, 0x01)],
            port: 0x80,
            size: 1,
            ok: false,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x10, 0xfe)],
            port: 0x80,
            size: 1,
            ok: true,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x10, 0x80)],
            port: 0x87,
            size: 1,
            ok: false,
        },
        // Multi-byte accesses check every port, across a byte boundary.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x11, 0x01)],
            port: 0x87,
            size: 2,
            ok: false,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x10, 0x40)],
            port: 0x87,
            size: 2,
            ok: true,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x11, 0x02)],
            port: 0x86,
            size: 4,
            ok: false,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: BIG,
            map: 0x68,
            set: &[(0x11, 0x08)],
            port: 0x86,
            size: 4,
            ok: true,
        },
        // Two bytes are read: the second must be inside the limit too.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: 0x68 + 0x10 + 1,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: true,
        },
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: 0x68 + 0x10,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: false,
        },
        // A map base beyond the limit: no bitmap.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0xb,
            limit: 0xff,
            map: 0x100,
            set: &[],
            port: 0,
            size: 1,
            ok: false,
        },
        // An available (not busy) 32-bit TSS type works the same.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0x9,
            limit: BIG,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: true,
        },
        // A 16-bit TSS has no bitmap.
        Case {
            cpl: 3,
            iopl: 0,
            typ: 0x3,
            limit: BIG,
            map: 0x68,
            set: &[],
            port: 0x80,
            size: 1,
            ok: false,
        },
    ];
    for (i, c) in t.iter().enumerate() {
        assert_eq!(
            run_case(c),
            c.ok,
            "case {i}: port {:#x} size {}",
            c.port,
            c.size
        );
    }
}

#[test]
fn io_bitmap_applies_to_string_io() {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = u32::MAX;
    m.load(|a| {
        a.mov(edx, 0x3f8u32).unwrap();
        a.mov(esi, DATA as u32).unwrap();
        a.outsb().unwrap();
        a.hlt().unwrap();
    });
    m.cpu.seg[SegReg::Cs as usize] = flat(0x08, true, 3);
    m.cpu.seg[SegReg::Ss as usize] = flat(0x10, false, 3);
    m.cpu.rflags = 2;
    m.cpu.tr.limit = 0x68 + 0x2000;
    m.bus.load(TSS + 0x66, &0x68u16.to_le_bytes());
    m.bus.load(TSS + 0x68 + (0x3f8 >> 3), &[0x01]);
    let e = m.run(10);
    assert!(
        matches!(
            e.kind,
            EventKind::Intercept(i) if is_gp0(&i.kind)
        ),
        "{e:?}"
    );
    m.bus.load(TSS + 0x68 + (0x3f8 >> 3), &[0xfe]);
    let e = m.run(10);
    assert!(
        matches!(
            e.kind,
            EventKind::Io {
                port: 0x3f8,
                size: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn v86_io_always_consults_the_bitmap() {
    for (iopl, bit, ok) in [
        (3u64, 0u8, true),
        (3, 1, false),
        (0, 0, true),
        (0, 1, false),
    ] {
        let mut m = Machine::new(M::Real);
        m.policy.exceptions = u32::MAX;
        m.load(|a| {
            a.mov(dx, 0x60u32).unwrap();
            a.in_(al, dx).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.cr0 = 0x11;
        m.cpu.gdtr = hyperplug_emulator::cpu::DtReg {
            base: GDT,
            limit: 0x3f,
        };
        m.cpu.rflags = 2 | VM | (iopl << 12);
        for s in [
            SegReg::Cs,
            SegReg::Ss,
            SegReg::Ds,
            SegReg::Es,
            SegReg::Fs,
            SegReg::Gs,
        ] {
            let sel = m.cpu.seg[s as usize].selector;
            m.cpu.seg[s as usize] = Seg {
                dpl: 3,
                ..Seg::real(sel, s == SegReg::Cs)
            };
        }
        m.cpu.tr = Seg {
            selector: 0x30,
            base: TSS,
            limit: 0x68 + 0x2000,
            typ: 0xb,
            present: true,
            ..Seg::default()
        };
        m.bus.load(TSS + 0x66, &0x68u16.to_le_bytes());
        m.bus.load(TSS + 0x68 + (0x60 >> 3), &[bit]);
        let e = m.run(10);
        let got = match e.kind {
            EventKind::Io {
                port: 0x60,
                size: 1,
                write: None,
            } => true,
            EventKind::Intercept(i) if is_gp0(&i.kind) => false,
            k => panic!("iopl {iopl}: {k:?}"),
        };
        assert_eq!(got, ok, "iopl {iopl} bit {bit}");
    }
}

// ---- Call gates (SDM vol. 3, 5.8.3-5.8.6) ----

/// Extra GDT entries for the call-gate tests (the common GDT ends at 0x3f).
const UCODE: u16 = 0x40;
const UDATA: u16 = 0x48;
const CONF0: u16 = 0x50;
const NP0: u16 = 0x58;
const SMALL0: u16 = 0x60;
const GATE: u16 = 0x68;
/// Ring-0 stack pointer in the TSS.
const ESP0: u32 = 0x7000;
/// Gate target offset.
const TARGET: u64 = CODE + 0x100;

/// A 32-bit call gate descriptor (SDM vol. 3, Figure 5-8).
fn call_gate(sel: u16, off: u64, dpl: u8, present: bool, params: u8) -> u64 {
    (off & 0xffff)
        | (u64::from(sel) << 16)
        | (u64::from(params & 0x1f) << 32)
        | (0xcu64 << 40)
        | (u64::from(dpl) << 45)
        | (u64::from(present) << 47)
        | ((off >> 16 & 0xffff) << 48)
}

/// A protected-mode machine at `cpl` (0 or 3) with the extra descriptors,
/// ring-0 SS:ESP = `ss0`:ESP0 in the TSS, and `gate` at GATE.
fn gate_machine(cpl: u8, gate: u64, ss0: u16) -> Machine {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = u32::MAX;
    let descs: [(u16, u64); 6] = [
        (UCODE, 0x00cf_fa00_0000_ffff),
        (UDATA, 0x00cf_f200_0000_ffff),
        (CONF0, 0x00cf_9e00_0000_ffff),
        (NP0, 0x00cf_1a00_0000_ffff),
        (SMALL0, 0x0040_9a00_0000_00ff),
        (GATE, gate),
    ];
    for (sel, d) in descs {
        m.bus.load(GDT + u64::from(sel), &d.to_le_bytes());
    }
    m.cpu.gdtr.limit = 0x7f;
    m.bus.load(TSS + 4, &ESP0.to_le_bytes());
    m.bus.load(TSS + 8, &u32::from(ss0).to_le_bytes());
    if cpl == 3 {
        m.cpu.seg[SegReg::Cs as usize] = flat(UCODE, true, 3);
        m.cpu.seg[SegReg::Ss as usize] = flat(UDATA, false, 3);
    }
    // The target: INT3 (intercepted, marks arrival).
    assert!(m.bus.load(TARGET, &[0xcc]));
    m
}

/// How a gate transfer ended: the new CS selector, or (vector, error code).
fn gate_outcome(m: &mut Machine) -> Result<u16, (u8, Option<u32>)> {
    match m.run(10).kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception { vector: 3, .. } => {
                Ok(m.cpu.seg[SegReg::Cs as usize].selector)
            }
            InterceptKind::Exception {
                vector, error_code, ..
            } => Err((vector, error_code)),
            k => panic!("unexpected {k:?}"),
        },
        k => panic!("unexpected {k:?}"),
    }
}

#[test]
fn call_gate_privilege_table() {
    const GP: u8 = 13;
    const NP: u8 = 11;
    const TS: u8 = 10;
    // (cpl, call?, gate selector RPL, gate (target, dpl, present), ss0, outcome)
    type Row = (
        u8,
        bool,
        u16,
        (u16, u8, bool),
        u16,
        Result<u16, (u8, Option<u32>)>,
    );
    let g = u32::from(GATE);
    let t: [Row; 16] = [
        // CALL to an inner nonconforming segment: CPL 0, RPL 0.
        (3, true, 3, (0x08, 3, true), 0x10, Ok(0x08)),
        (0, true, 0, (0x08, 0, true), 0x10, Ok(0x08)),
        // Gate DPL < CPL, or RPL > gate DPL.
        (3, true, 3, (0x08, 0, true), 0x10, Err((GP, Some(g)))),
        (0, true, 3, (0x08, 0, true), 0x10, Err((GP, Some(g)))),
        // Gate not present.
        (3, true, 3, (0x08, 3, false), 0x10, Err((NP, Some(g)))),
        // JMP through a gate cannot change privilege with a nonconforming target.
        (3, false, 3, (0x08, 3, true), 0x10, Err((GP, Some(0x08)))),
        (0, false, 0, (0x08, 0, true), 0x10, Ok(0x08)),
        // A conforming target keeps the CPL (JMP and CALL).
        (3, false, 3, (CONF0, 3, true), 0x10, Ok(CONF0 | 3)),
        (3, true, 3, (CONF0, 3, true), 0x10, Ok(CONF0 | 3)),
        // Target checks: null, data, DPL > CPL, not present, offset beyond the limit.
        (3, true, 3, (0, 3, true), 0x10, Err((GP, Some(0)))),
        (3, true, 3, (0x10, 3, true), 0x10, Err((GP, Some(0x10)))),
        (
            0,
            true,
            0,
            (UCODE, 0, true),
            0x10,
            Err((GP, Some(u32::from(UCODE)))),
        ),
        (
            3,
            true,
            3,
            (NP0, 3, true),
            0x10,
            Err((NP, Some(u32::from(NP0)))),
        ),
        (3, true, 3, (SMALL0, 3, true), 0x10, Err((GP, Some(0)))),
        // The inner stack from the TSS: null SS0, or SS0 with the wrong DPL.
        (3, true, 3, (0x08, 3, true), 0, Err((TS, Some(0)))),
        (
            3,
            true,
            3,
            (0x08, 3, true),
            UDATA,
            Err((TS, Some(u32::from(UDATA)))),
        ),
    ];
    for (i, (cpl, call, rpl, (target, dpl, present), ss0, want)) in t.into_iter().enumerate() {
        let gate = call_gate(target, TARGET, dpl, present, 0);
        let mut m = gate_machine(cpl, gate, ss0);
        let sel = GATE | rpl;
        m.load(|a| {
            let far = [0u8, 0, 0, 0, sel as u8, (sel >> 8) as u8];
            if call {
                a.db(&[0x9a]).unwrap();
            } else {
                a.db(&[0xea]).unwrap();
            }
            a.db(&far).unwrap();
        });
        let before = (m.cpu.seg, m.gpr(4));
        let got = gate_outcome(&mut m);
        assert_eq!(got, want, "case {i}");
        if got.is_err() {
            assert_eq!((m.cpu.seg, m.gpr(4)), before, "case {i}: state unchanged");
            assert_eq!(m.cpu.rip, CODE, "case {i}: fault on the CALL/JMP");
        }
    }
}

#[test]
fn call_gate_stack_switch_copies_parameters_and_retf_returns() {
    let gate = call_gate(0x08, TARGET, 3, true, 2);
    let mut m = gate_machine(3, gate, 0x10);
    let sel = GATE | 3;
    let bytes = m.load(|a| {
        a.push(0x1111_1111u32).unwrap();
        a.push(0x2222_2222u32).unwrap();
        a.db(&[0x9a, 0, 0, 0, 0, sel as u8, (sel >> 8) as u8])
            .unwrap();
        a.mov(eax, 0x5a5au32).unwrap();
        a.int3().unwrap();
    });
    let ret = CODE + 10 + 7;
    assert_eq!(bytes[10], 0x9a);
    // The target: INT3 (intercepted, so we can look), then RETF 8.
    assert!(m.bus.load(TARGET, &[0xcc, 0xca, 0x08, 0x00]));
    assert!(matches!(gate_outcome(&mut m), Ok(0x08)));
    assert_eq!(m.cpu.cpl(), 0);
    assert_eq!(m.cpu.seg[SegReg::Ss as usize].selector, 0x10);
    let top = m.gpr(4);
    assert_eq!(top, u64::from(ESP0) - 24);
    let frame = m.bus.peek(top, 24).expect("stack in RAM");
    let w = |i: usize| u32::from_le_bytes(frame[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(
        [w(0), w(1), w(2), w(3), w(4), w(5)],
        [
            ret as u32,
            u32::from(UCODE | 3),
            0x2222_2222,
            0x1111_1111,
            (STACK - 8) as u32,
            u32::from(UDATA | 3)
        ]
    );
    // Resume after the INT3: RETF 8 returns to ring 3 and releases the parameters.
    m.cpu.rip = TARGET + 1;
    match gate_outcome(&mut m) {
        Ok(sel) => assert_eq!(sel, UCODE | 3),
        e => panic!("{e:?}"),
    }
    assert_eq!(m.cpu.cpl(), 3);
    assert_eq!(m.cpu.seg[SegReg::Ss as usize].selector, UDATA | 3);
    assert_eq!(m.gpr(4), STACK);
    assert_eq!(m.gpr(0) & 0xffff, 0x5a5a);
}

#[test]
fn call_gate_64_bit_switches_to_rsp0_and_retfq_returns() {
    const RSP0: u64 = 0x6000;
    let mut m = Machine::new(M::Long64);
    m.policy.exceptions = u32::MAX;
    // A 16-byte 64-bit call gate at 0x40, DPL 3, to 0x18:TARGET (SDM vol. 3, Figure 5-9).
    let lo = call_gate(0x18, TARGET, 3, true, 0);
    m.bus.load(GDT + 0x40, &lo.to_le_bytes());
    m.bus.load(GDT + 0x48, &(TARGET >> 32).to_le_bytes());
    m.cpu.gdtr.limit = 0x4f;
    m.bus.load(TSS + 4, &RSP0.to_le_bytes());
    let mut ucs = flat(0x20, true, 3);
    ucs.l = true;
    ucs.db = false;
    m.cpu.seg[SegReg::Cs as usize] = ucs;
    m.cpu.seg[SegReg::Ss as usize] = flat(0x28, false, 3);
    // The far pointer (offset ignored, selector 0x43) at DATA.
    m.bus.load(DATA, &0u64.to_le_bytes());
    m.bus.load(DATA + 8, &0x43u16.to_le_bytes());
    // call far qword [DATA]; mov eax, 0x77; int3
    let mut code = vec![0x48, 0xff, 0x1c, 0x25];
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    code.extend_from_slice(&[0xb8, 0x77, 0, 0, 0, 0xcc]);
    m.bus.load(CODE, &code);
    // Target: INT3, then RETFQ.
    m.bus.load(TARGET, &[0xcc, 0x48, 0xcb]);
    assert_eq!(gate_outcome(&mut m), Ok(0x18));
    assert_eq!(m.cpu.cpl(), 0);
    assert_eq!(m.cpu.seg[SegReg::Ss as usize].selector, 0, "null SS, RPL 0");
    assert_eq!(m.gpr(4), RSP0 - 32);
    let f = m.bus.peek(RSP0 - 32, 32).expect("stack in RAM");
    let q = |i: usize| u64::from_le_bytes(f[8 * i..8 * i + 8].try_into().unwrap());
    assert_eq!(
        [q(0), q(1), q(2), q(3)],
        [CODE + 8, 0x23, STACK, 0x2b],
        "RIP, CS, RSP, SS"
    );
    m.cpu.rip = TARGET + 1;
    assert_eq!(gate_outcome(&mut m), Ok(0x23));
    assert_eq!((m.cpu.cpl(), m.gpr(4), m.gpr(0)), (3, STACK, 0x77));
    // A 32-bit gate type in IA-32e mode names a 64-bit gate; a 16-bit gate is #GP(sel).
    let mut m2 = Machine::new(M::Long64);
    m2.policy.exceptions = u32::MAX;
    let lo16 = (TARGET & 0xffff) | (0x18 << 16) | (0xe4u64 << 40);
    m2.bus.load(GDT + 0x40, &lo16.to_le_bytes());
    m2.cpu.gdtr.limit = 0x4f;
    m2.bus.load(DATA + 8, &0x40u16.to_le_bytes());
    m2.bus.load(CODE, &code);
    assert_eq!(gate_outcome(&mut m2), Err((13, Some(0x40))));
}

// ---- Hardware task switches (SDM vol. 3, 7.3) ----

const TSS_A: u16 = 0x40;
const TSS_B: u16 = 0x48;
const TASK_GATE: u16 = 0x50;
const TSS_B_BASE: u64 = 0x1900;
const TASK_B_EIP: u64 = CODE + 0x200;

/// A 32-bit TSS descriptor (SDM vol. 3, Figure 7-3); `typ` 9 available, 0xb busy.
fn tss_desc(base: u64, limit: u32, typ: u8, present: bool) -> u64 {
    u64::from(limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (u64::from(typ) << 40)
        | (u64::from(present) << 47)
        | (u64::from(limit >> 16 & 0xf) << 48)
        | ((base >> 24 & 0xff) << 56)
}

/// The task B image: segments (ES, CS, SS, DS, FS, GS) and the LDT selector.
struct TaskB {
    segs: [u16; 6],
    ldt: u16,
    eflags: u32,
}

impl Default for TaskB {
    fn default() -> Self {
        Self {
            segs: [0x10, 0x08, 0x10, 0x10, 0x10, 0x10],
            ldt: 0,
            eflags: 2,
        }
    }
}

/// Protected-mode machine in task A (TR = TSS_A, busy) with an available
/// task B and a task gate to it; task B starts at TASK_B_EIP with EAX =
/// 0xb0b, ESP = 0x5000.
fn task_machine(b: &TaskB, b_desc: u64) -> Machine {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = 1 << 3;
    m.bus.load(
        GDT + u64::from(TSS_A),
        &tss_desc(TSS, 0x67, 0xb, true).to_le_bytes(),
    );
    m.bus.load(GDT + u64::from(TSS_B), &b_desc.to_le_bytes());
    let gate = (u64::from(TSS_B) << 16) | (0x85u64 << 40);
    m.bus.load(GDT + u64::from(TASK_GATE), &gate.to_le_bytes());
    m.cpu.gdtr.limit = 0x7f;
    m.cpu.tr.selector = TSS_A;
    m.cpu.tr.typ = 0xb;
    let w32 = |m: &mut Machine, o: u64, v: u32| {
        m.bus.load(TSS_B_BASE + o, &v.to_le_bytes());
    };
    w32(&mut m, 0x20, TASK_B_EIP as u32);
    w32(&mut m, 0x24, b.eflags);
    w32(&mut m, 0x28, 0xb0b);
    w32(&mut m, 0x38, 0x5000);
    for (i, s) in b.segs.iter().enumerate() {
        w32(&mut m, 0x48 + 4 * i as u64, u32::from(*s));
    }
    w32(&mut m, 0x60, u32::from(b.ldt));
    m
}

fn desc_type(m: &Machine, sel: u16) -> u8 {
    m.bus.peek(GDT + u64::from(sel) + 5, 1).expect("gdt")[0] & 0xf
}

fn marker(m: &mut Machine) -> Result<(), (u8, Option<u32>)> {
    match m.run(20).kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception { vector: 3, .. } => Ok(()),
            InterceptKind::Exception {
                vector, error_code, ..
            } => Err((vector, error_code)),
            k => panic!("unexpected {k:?}"),
        },
        k => panic!("unexpected {k:?} at {:#x}", m.cpu.rip),
    }
}

#[test]
fn call_to_tss_links_and_iret_returns() {
    let mut m = task_machine(&TaskB::default(), tss_desc(TSS_B_BASE, 0x67, 0x9, true));
    m.policy.exceptions = 1 << 3 | 1 << 13 | 1 << 10 | 1 << 11;
    m.load(|a| {
        a.mov(eax, 0x5555u32).unwrap();
        a.db(&[0x9a, 0, 0, 0, 0, TSS_B as u8, 0]).unwrap();
        a.mov(ebx, 0x99u32).unwrap();
        a.int3().unwrap();
    });
    // Task B: INT3, then IRETD back.
    m.bus.load(TASK_B_EIP, &[0xcc, 0xcf]);
    assert_eq!(marker(&mut m), Ok(()));
    assert_eq!(m.cpu.tr.selector, TSS_B);
    assert_eq!((m.gpr(0), m.gpr(4)), (0xb0b, 0x5000));
    assert_ne!(m.cpu.rflags & (1 << 14), 0, "NT set by CALL");
    assert_ne!(m.cpu.cr0 & 8, 0, "CR0.TS set");
    assert_eq!(
        m.bus.peek_u64(TSS_B_BASE) & 0xffff,
        u64::from(TSS_A),
        "back link"
    );
    assert_eq!((desc_type(&m, TSS_A), desc_type(&m, TSS_B)), (0xb, 0xb));
    let saved = |m: &Machine, o: u64| m.bus.peek_u64(TSS + o) & 0xffff_ffff;
    assert_eq!(saved(&m, 0x20), CODE + 12, "old EIP after the CALL");
    assert_eq!(saved(&m, 0x28), 0x5555, "old EAX");
    assert_eq!(saved(&m, 0x4c) & 0xffff, 0x08, "old CS");
    // IRET with NT: back to task A.
    m.cpu.rip = TASK_B_EIP + 1;
    assert_eq!(marker(&mut m), Ok(()));
    assert_eq!(m.cpu.tr.selector, TSS_A);
    assert_eq!((m.gpr(0), m.gpr(3), m.gpr(4)), (0x5555, 0x99, STACK));
    assert_eq!(m.cpu.rflags & (1 << 14), 0, "NT clear in task A");
    assert_eq!((desc_type(&m, TSS_A), desc_type(&m, TSS_B)), (0xb, 0x9));
    let b_saved_fl = m.bus.peek_u64(TSS_B_BASE + 0x24) & 0xffff_ffff;
    assert_eq!(b_saved_fl & (1 << 14), 0, "IRET saves NT clear");
}

#[test]
fn jmp_through_task_gate_and_int_through_task_gate() {
    let mut m = task_machine(&TaskB::default(), tss_desc(TSS_B_BASE, 0x67, 0x9, true));
    m.load(|a| {
        a.db(&[0xea, 0, 0, 0, 0, TASK_GATE as u8, 0]).unwrap();
    });
    m.bus.load(TASK_B_EIP, &[0xcc]);
    assert_eq!(marker(&mut m), Ok(()));
    assert_eq!(m.cpu.tr.selector, TSS_B);
    assert_eq!(m.cpu.rflags & (1 << 14), 0, "JMP does not nest");
    assert_eq!((desc_type(&m, TSS_A), desc_type(&m, TSS_B)), (0x9, 0xb));
    assert_eq!(m.bus.peek_u64(TSS_B_BASE) & 0xffff, 0, "no back link");

    // An exception through an IDT task gate: the error code goes on the new task's stack.
    let mut m = task_machine(&TaskB::default(), tss_desc(TSS_B_BASE, 0x67, 0x9, true));
    let gate = (u64::from(TSS_B) << 16) | (0x85u64 << 40);
    m.bus.load(IDT + 8 * 13, &gate.to_le_bytes());
    m.load(|a| {
        a.mov(eax, 0x78u32).unwrap();
        a.mov(ds, ax).unwrap();
    });
    m.bus.load(TASK_B_EIP, &[0xcc]);
    assert_eq!(marker(&mut m), Ok(()));
    assert_eq!(m.cpu.tr.selector, TSS_B);
    assert_eq!(m.gpr(4), 0x5000 - 4);
    assert_eq!(m.bus.peek_u64(0x5000 - 4) & 0xffff_ffff, 0x78, "#GP(0x78)");
    assert_ne!(m.cpu.rflags & (1 << 14), 0, "NT set");
    assert_eq!(
        m.bus.peek_u64(TSS + 0x20) & 0xffff_ffff,
        CODE + 5,
        "faulting EIP saved"
    );
}

#[test]
fn task_switch_faults_leave_the_old_task() {
    const GP: u8 = 13;
    const NP: u8 = 11;
    const TS: u8 = 10;
    let t: Vec<(TaskB, u64, (u8, Option<u32>))> = vec![
        (
            TaskB::default(),
            tss_desc(TSS_B_BASE, 0x67, 0xb, true),
            (GP, Some(0x48)),
        ),
        (
            TaskB::default(),
            tss_desc(TSS_B_BASE, 0x67, 0x9, false),
            (NP, Some(0x48)),
        ),
        (
            TaskB::default(),
            tss_desc(TSS_B_BASE, 0x66, 0x9, true),
            (TS, Some(0x48)),
        ),
        // A 16-bit TSS needs a limit of at least 2CH (SDM vol. 3, Table 6-6).
        (
            TaskB::default(),
            tss_desc(TSS_B_BASE, 0x2b, 0x1, true),
            (TS, Some(0x48)),
        ),
        (
            TaskB::default(),
            tss_desc(TSS_B_BASE, 0x67, 0x3, true),
            (GP, Some(0x48)),
        ),
    ];
    for (i, (b, d, want)) in t.into_iter().enumerate() {
        let mut m = task_machine(&b, d);
        m.policy.exceptions = u32::MAX;
        m.load(|a| {
            a.db(&[0xea, 0, 0, 0, 0, TSS_B as u8, 0]).unwrap();
        });
        let gdt = m.bus.peek(GDT, 0x80).expect("gdt");
        let tss = m.bus.peek(TSS, 0x68).expect("tss");
        let before = (m.cpu.seg, m.cpu.tr, m.cpu.cr0, m.gpr(4));
        assert_eq!(marker(&mut m), Err(want), "case {i}");
        assert_eq!(
            (m.cpu.seg, m.cpu.tr, m.cpu.cr0, m.gpr(4)),
            before,
            "case {i}"
        );
        assert_eq!(m.cpu.rip, CODE, "case {i}");
        assert_eq!(
            m.bus.peek(GDT, 0x80).expect("gdt"),
            gdt,
            "case {i}: GDT untouched"
        );
        assert_eq!(
            m.bus.peek(TSS, 0x68).expect("tss"),
            tss,
            "case {i}: TSS untouched"
        );
    }
    // IRET with NT to a link that is not a busy TSS: #TS(link).
    let base = tss_desc(TSS_B_BASE, 0x67, 0x9, true);
    let mut m = task_machine(&TaskB::default(), base);
    m.policy.exceptions = u32::MAX;
    m.bus.load(TSS, &u32::from(TSS_B).to_le_bytes());
    m.cpu.rflags |= 1 << 14;
    m.load(|a| a.iretd().unwrap());
    assert_eq!(marker(&mut m), Err((TS, Some(0x48))));
    assert_eq!(m.cpu.tr.selector, TSS_A);
}

#[test]
fn task_switch_segment_faults_hit_the_new_task() {
    // After the commit point the LDT and segment checks fault in the new
    // task, before its first instruction (SDM vol. 3, 7.3 step 13, Table 7-1).
    const NP: u8 = 11;
    const SS: u8 = 12;
    const TS: u8 = 10;
    let base = tss_desc(TSS_B_BASE, 0x67, 0x9, true);
    let seg = |i: usize, s: u16| {
        let mut t = TaskB::default();
        t.segs[i] = s;
        t
    };
    let t: Vec<(TaskB, (u8, Option<u32>))> = vec![
        (seg(1, 0), (TS, Some(0))),
        (seg(1, 0x10), (TS, Some(0x10))),
        (seg(2, 0x13), (TS, Some(0x10))),
        (seg(2, 0x08), (TS, Some(0x08))),
        (seg(3, 0x78), (TS, Some(0x78))),
        (seg(1, 0x58), (NP, Some(0x58))),
        (seg(2, 0x60), (SS, Some(0x60))),
        (seg(5, 0x60), (NP, Some(0x60))),
        (
            TaskB {
                ldt: 0x10,
                ..TaskB::default()
            },
            (TS, Some(0x10)),
        ),
    ];
    for (i, (b, want)) in t.into_iter().enumerate() {
        let mut m = task_machine(&b, base);
        // 0x58: code segment not present; 0x60: writable data not present.
        m.bus
            .load(GDT + 0x58, &0x004f_1a00_0000_ffffu64.to_le_bytes());
        m.bus
            .load(GDT + 0x60, &0x004f_1200_0000_ffffu64.to_le_bytes());
        m.policy.exceptions = u32::MAX;
        m.load(|a| {
            a.db(&[0xea, 0, 0, 0, 0, TSS_B as u8, 0]).unwrap();
        });
        assert_eq!(marker(&mut m), Err(want), "case {i}");
        assert_eq!(m.cpu.tr.selector, TSS_B, "case {i}: in task B");
        assert_eq!(m.cpu.rip, TASK_B_EIP, "case {i}: before B's first insn");
        assert_eq!((m.gpr(0), m.gpr(4)), (0xb0b, 0x5000), "case {i}");
        assert_ne!(m.cpu.cr0 & 8, 0, "case {i}: CR0.TS");
        assert_eq!((desc_type(&m, TSS_A), desc_type(&m, TSS_B)), (0x9, 0xb));
        let saved_eip = m.bus.peek_u64(TSS + 0x20) & 0xffff_ffff;
        assert_eq!(saved_eip, CODE + 7, "case {i}: task A saved");
    }
}

// ---- Virtual-8086 mode (SDM vol. 3, 20.2-20.3) ----

const V86_CS: u16 = 0x3000;
const HANDLER: u64 = CODE + 0x100;

/// A protected-mode machine running 16-bit `code` at V86_CS:0 in
/// virtual-8086 mode with `iopl`; ring-0 stack 0x10:ESP0; the handler at
/// HANDLER is INT3 (intercepted marker) then IRETD; IDT vectors `vecs` are
/// 32-bit interrupt gates (DPL 3) to it.
fn v86_machine(iopl: u64, vecs: &[u8], code: impl FnOnce(&mut CodeAssembler)) -> Machine {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = 1 << 3;
    m.bus.load(TSS + 4, &ESP0.to_le_bytes());
    m.bus.load(TSS + 8, &0x10u32.to_le_bytes());
    m.bus.load(HANDLER, &[0xcc, 0xcf]);
    for &v in vecs {
        let lo = (HANDLER & 0xffff) | (0x08 << 16) | (0xeeu64 << 40) | ((HANDLER >> 16) << 48);
        m.bus.load(IDT + 8 * u64::from(v), &lo.to_le_bytes());
    }
    let mut a = CodeAssembler::new(16).unwrap();
    code(&mut a);
    let bytes = a.assemble(0).unwrap();
    m.bus.load(u64::from(V86_CS) << 4, &bytes);
    m.cpu.rflags = 2 | VM | (iopl << 12);
    for (sr, sel) in [
        (SegReg::Cs, V86_CS),
        (SegReg::Ss, 0x0700),
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
    m.cpu.gpr[4] = 0x100;
    m.cpu.rip = 0;
    m
}

fn ring0_frame(m: &Machine, n: usize) -> Vec<u32> {
    let top = m.gpr(4);
    let f = m.bus.peek(top, 4 * n).expect("stack");
    f.chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn v86_int_goes_to_ring0_and_iret_returns_to_v86() {
    let mut m = v86_machine(3, &[0x21], |a| {
        a.mov(ax, 0x1234u32).unwrap();
        a.int(0x21).unwrap();
        a.mov(bx, 0x77u32).unwrap();
        a.int3().unwrap();
    });
    assert_eq!(marker(&mut m), Ok(()));
    // In the handler: ring 0, VM clear, data segments null, the V86 state on the stack.
    assert_eq!(m.cpu.seg[SegReg::Cs as usize].selector, 0x08);
    assert_eq!(m.cpu.cpl(), 0);
    assert_eq!(m.cpu.rflags & VM, 0);
    for sr in [SegReg::Ds, SegReg::Es, SegReg::Fs, SegReg::Gs] {
        assert_eq!(m.cpu.seg[sr as usize].selector, 0, "{sr:?} null");
    }
    assert_eq!(m.gpr(4), u64::from(ESP0) - 36);
    let f = ring0_frame(&m, 9);
    assert_eq!(
        [f[0], f[1], f[3], f[4], f[5], f[6], f[7], f[8]],
        [
            5,
            u32::from(V86_CS),
            0x100,
            0x0700,
            0x2222,
            0x1111,
            0x3333,
            0x4444
        ],
        "EIP, CS, _, ESP, SS, ES, DS, FS, GS"
    );
    assert_ne!(u64::from(f[2]) & VM, 0, "saved EFLAGS has VM");
    // IRETD at CPL 0 with VM in the popped EFLAGS: back to V86.
    m.cpu.rip = HANDLER + 1;
    assert_eq!(marker(&mut m), Ok(()));
    assert_ne!(m.cpu.rflags & VM, 0);
    assert_eq!(m.cpu.cpl(), 3);
    assert_eq!(m.cpu.seg[SegReg::Cs as usize].selector, V86_CS);
    assert_eq!(m.cpu.seg[SegReg::Ds as usize].base, 0x11110);
    assert_eq!(m.cpu.seg[SegReg::Gs as usize].selector, 0x4444);
    assert_eq!(
        (m.gpr(0) & 0xffff, m.gpr(3) & 0xffff, m.gpr(4)),
        (0x1234, 0x77, 0x100)
    );
}

#[test]
fn v86_iopl_sensitive_instructions_fault_to_ring0() {
    // IOPL-sensitive in V86 (SDM vol. 3, 20.2.7): CLI, STI, PUSHF, POPF, INT n, IRET;
    // each runs at IOPL 3 and raises #GP(0) at IOPL 0.
    let t: [&[u8]; 6] = [&[0xfa], &[0xfb], &[0x9c], &[0x9d], &[0xcd, 0x22], &[0xcf]];
    for bytes in t {
        for iopl in [0u64, 3] {
            let mut m = v86_machine(iopl, &[13, 0x22], |a| {
                a.db(bytes).unwrap();
                a.int3().unwrap();
            });
            // A valid IRET frame for the IRET case: IP 1 (the INT3), CS, FLAGS.
            m.bus.load(0x7100, &[1, 0, 0x00, 0x30, 0x02, 0x00]);
            let r = marker(&mut m);
            assert_eq!(r, Ok(()), "{bytes:x?} iopl {iopl}");
            if iopl == 0 {
                // #GP(0) delivered to ring 0: error code, then EIP of the instruction.
                let f = ring0_frame(&m, 3);
                assert_eq!((f[0], f[1], f[2]), (0, 0, u32::from(V86_CS)), "{bytes:x?}");
                assert_eq!(m.cpu.cpl(), 0);
            } else if bytes[0] == 0xcd {
                assert_eq!(m.cpu.cpl(), 0, "INT 0x22 reached its ring-0 handler");
            } else {
                assert_ne!(m.cpu.rflags & VM, 0, "{bytes:x?} ran in V86");
            }
        }
    }
}
