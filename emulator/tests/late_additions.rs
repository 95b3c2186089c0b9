//! Late instruction additions: ADCX/ADOX (SDM vol. 2, ADCX, ADOX), BOUND
//! (SDM vol. 2, BOUND), RDPID (SDM vol. 2, RDPID), XGETBV/XSETBV (SDM vol. 2,
//! XGETBV, XSETBV). Expected values are computed here with Rust's integer
//! methods, independently of the engine.

mod common;

use common::*;
use hyperplug_emulator::flags::{AF, CF, OF, PF, SF, ZF};
use hyperplug_emulator::policy::InterceptKind;
use hyperplug_emulator::{Event, EventKind};
use iced_x86::code_asm::*;

const RAX: usize = 0;
const RCX: usize = 1;

/// A machine in `mode` that stops on every exception instead of delivering it.
fn machine(mode: M) -> Machine {
    let mut m = Machine::new(mode);
    m.policy.exceptions = u32::MAX;
    m
}

/// The exception an event reports (vector, error code), if any.
fn exc(e: &Event) -> Option<(u8, Option<u32>)> {
    match e.kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception {
                vector, error_code, ..
            } => Some((vector, error_code)),
            _ => None,
        },
        _ => None,
    }
}

/// Loads `f` followed by HLT and runs it; returns the stop event.
fn run(m: &mut Machine, f: impl FnOnce(&mut CodeAssembler)) -> Event {
    m.load(|a| {
        f(a);
        a.hlt().unwrap();
    });
    m.run(1000)
}

const VALUES: [u64; 6] = [
    0,
    1,
    0x8000_0000_0000_0000,
    0x0000_0000_ffff_ffff,
    0xdead_beef_1234_5678,
    u64::MAX,
];

/// ADCX/ADOX: the sum with carry-in from CF (resp. OF), the carry-out into
/// the same flag and every other status flag untouched, 32 and 64 bits.
#[test]
fn adcx_adox_table() {
    let others = SF | ZF | AF | PF;
    for ox in [false, true] {
        let flag = if ox { OF } else { CF };
        let other = if ox { CF } else { OF };
        for bits in [32u32, 64] {
            for &x in &VALUES {
                for &y in &VALUES {
                    for cin in [false, true] {
                        for junk in [0, others | other] {
                            let mut m = machine(M::Long64);
                            m.cpu.gpr[RAX] = x;
                            m.cpu.gpr[RCX] = y;
                            m.cpu.rflags = 2 | junk | if cin { flag } else { 0 };
                            let e = run(&mut m, |a| match (ox, bits) {
                                (false, 32) => a.adcx(eax, ecx).unwrap(),
                                (false, _) => a.adcx(rax, rcx).unwrap(),
                                (true, 32) => a.adox(eax, ecx).unwrap(),
                                (true, _) => a.adox(rax, rcx).unwrap(),
                            });
                            assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
                            let (want, cout) = if bits == 32 {
                                let (s1, c1) = (x as u32).overflowing_add(y as u32);
                                let (s2, c2) = s1.overflowing_add(u32::from(cin));
                                (u64::from(s2), c1 || c2)
                            } else {
                                let (s1, c1) = x.overflowing_add(y);
                                let (s2, c2) = s1.overflowing_add(u64::from(cin));
                                (s2, c1 || c2)
                            };
                            let ctx = format!("ox={ox} bits={bits} {x:#x}+{y:#x}+{cin}");
                            assert_eq!(m.gpr(RAX), want, "{ctx}");
                            assert_eq!(m.cpu.rflags & flag != 0, cout, "{ctx}");
                            assert_eq!(m.cpu.rflags & (others | other), junk, "{ctx}");
                        }
                    }
                }
            }
        }
    }
}

/// ADCX with a memory source, and a carry chain of ADCX and ADOX running
/// in parallel (the use the SDM describes for multi-precision multiply).
#[test]
fn adcx_memory_and_interleaved_chains() {
    let mut m = machine(M::Long64);
    m.bus.load(DATA, &u64::MAX.to_le_bytes());
    m.cpu.gpr[RAX] = 1;
    m.cpu.gpr[RCX] = u64::MAX;
    m.cpu.gpr[2] = 0;
    m.cpu.gpr[3] = 5;
    m.cpu.rflags = 2;
    let e = run(&mut m, |a| {
        a.mov(rsi, DATA).unwrap();
        a.adcx(rax, qword_ptr(rsi)).unwrap(); // 1 + MAX = 0, CF=1
        a.adox(rcx, rcx).unwrap(); // MAX + MAX = MAX-1, OF=1
        a.adcx(rdx, rbx).unwrap(); // 0 + 5 + CF = 6, CF=0
        a.adox(rbx, rdx).unwrap(); // 5 + 6 + OF = 12, OF=0
    });
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_eq!(m.gpr(RAX), 0);
    assert_eq!(m.gpr(RCX), u64::MAX - 1);
    assert_eq!(m.gpr(2), 6);
    assert_eq!(m.gpr(3), 12);
    assert_eq!(m.cpu.rflags & (CF | OF), 0);
}

/// CPUID.(EAX=7,ECX=0):EBX.ADX[bit 19] is advertised (SDM vol. 2, CPUID).
#[test]
fn cpuid_advertises_adx() {
    let mut m = machine(M::Long64);
    let e = run(&mut m, |a| {
        a.mov(eax, 7u32).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
    });
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_ne!(m.gpr(3) & (1 << 19), 0);
}

/// BOUND with 16- and 32-bit operands in real and protected mode: an index
/// inside [lower, upper] (signed, both ends inclusive) passes, one outside
/// raises #BR (vector 5, no error code) with RIP still at the BOUND
/// (SDM vol. 2, BOUND "Operation"; vol. 3, 6.15 "#BR" is a fault).
#[test]
fn bound_range_table() {
    // (lower, upper, index, in range)
    let cases: [(i32, i32, i32, bool); 9] = [
        (0, 10, 0, true),
        (0, 10, 10, true),
        (0, 10, 11, false),
        (0, 10, -1, false),
        (-5, 5, -5, true),
        (-5, 5, -6, false),
        (-100, -50, -75, true),
        (-100, -50, 0, false),
        (7, 7, 7, true),
    ];
    for mode in [M::Real, M::Prot32] {
        for bits in [16u32, 32] {
            for &(lo, hi, idx, ok) in &cases {
                let mut m = machine(mode);
                let data = if mode == M::Real { 0x100u64 } else { DATA };
                let (lo_b, hi_b): (Vec<u8>, Vec<u8>) = if bits == 16 {
                    (
                        (lo as i16).to_le_bytes().to_vec(),
                        (hi as i16).to_le_bytes().to_vec(),
                    )
                } else {
                    (lo.to_le_bytes().to_vec(), hi.to_le_bytes().to_vec())
                };
                // Real mode: DS = 0 after reset, so DS:0x100 is linear 0x100.
                let lin = if mode == M::Real {
                    m.cpu.seg[hyperplug_emulator::SegReg::Ds as usize].base + data
                } else {
                    data
                };
                m.bus.load(lin, &lo_b);
                m.bus.load(lin + u64::from(bits / 8), &hi_b);
                m.cpu.gpr[RAX] = idx as u32 as u64;
                m.cpu.gpr[3] = data;
                let bytes = m.load(|a| {
                    match (mode, bits) {
                        (M::Real, 16) => a.bound(ax, word_ptr(bx)).unwrap(),
                        (M::Real, _) => a.bound(eax, dword_ptr(bx)).unwrap(),
                        (_, 16) => a.bound(ax, word_ptr(ebx)).unwrap(),
                        _ => a.bound(eax, dword_ptr(ebx)).unwrap(),
                    }
                    a.hlt().unwrap();
                });
                let start = m.cpu.rip;
                let e = m.run(100);
                let ctx = format!("{mode:?} bits={bits} [{lo},{hi}] idx={idx}");
                if ok {
                    assert_eq!(e.kind, EventKind::Hlt, "{ctx}: {e:?}");
                    assert_eq!(m.cpu.rip, start + bytes.len() as u64, "{ctx}");
                } else {
                    assert_eq!(exc(&e), Some((5, None)), "{ctx}: {e:?}");
                    assert_eq!(m.cpu.rip, start, "{ctx}");
                }
            }
        }
    }
}

/// BOUND is #UD in 64-bit mode (opcode 62 is the EVEX prefix there) and
/// with a register second operand (SDM vol. 2, BOUND "Exceptions").
#[test]
fn bound_ud_cases() {
    let mut m = machine(M::Long64);
    assert!(m.bus.load(CODE, &[0x62, 0x03, 0xf4]));
    m.cpu.rip = CODE;
    let e = m.run(10);
    assert_eq!(exc(&e), Some((6, None)), "{e:?}");
    let mut m = machine(M::Prot32);
    // 62 /r with ModRM.mod = 11 (bound eax, ecx): not a valid BOUND.
    assert!(m
        .bus
        .load(CODE, &[0x62, 0xc1, 0xf4, 0xf4, 0xf4, 0xf4, 0xf4]));
    m.cpu.rip = CODE;
    let e = m.run(10);
    assert_eq!(exc(&e), Some((6, None)), "{e:?}");
}

const RDX: usize = 2;
/// CR4.OSXSAVE (SDM vol. 3, 2.5).
const OSXSAVE: u64 = 1 << 18;

/// RDPID: IA32_TSC_AUX into the register (64 bits in 64-bit mode, 32 bits
/// otherwise), at CPL 3 too and regardless of CR4.TSD; CPUID.7.0:ECX[22]
/// advertises it (SDM vol. 2, RDPID and CPUID).
#[test]
fn rdpid_reads_tsc_aux() {
    for mode in [M::Prot32, M::Long64] {
        let mut m = machine(mode);
        m.cpu.msrs.tsc_aux = 0x1234_5678;
        m.cpu.cr4 |= 1 << 2; // TSD does not affect RDPID
        m.cpu.gpr[RAX] = u64::MAX;
        let e = run(&mut m, |a| {
            if mode == M::Long64 {
                a.rdpid(rax).unwrap();
            } else {
                a.rdpid(eax).unwrap();
            }
        });
        assert_eq!(e.kind, EventKind::Hlt, "{mode:?} {e:?}");
        assert_eq!(m.gpr(RAX), 0x1234_5678, "{mode:?}");
    }
    let mut m = machine(M::Long64);
    let e = run(&mut m, |a| {
        a.mov(eax, 7u32).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
    });
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_ne!(m.gpr(RCX) & (1 << 22), 0);
}

/// XGETBV reads XCR0 (reset value 1, SDM vol. 3, Table 10-1) into EDX:EAX;
/// #UD with CR4.OSXSAVE = 0, #GP(0) with ECX ≠ 0 (SDM vol. 2, XGETBV).
#[test]
fn xgetbv_table() {
    // (cr4.osxsave, ecx, expected exception)
    type Row = (bool, u64, Option<(u8, Option<u32>)>);
    let t: [Row; 4] = [
        (true, 0, None),
        (false, 0, Some((6, None))),
        (true, 1, Some((13, Some(0)))),
        (true, 0xffff_ffff_0000_0000, None), // only ECX counts
    ];
    for (os, xc, want) in t {
        let mut m = machine(M::Long64);
        assert_eq!(m.cpu.xcr0, 1);
        if os {
            m.cpu.cr4 |= OSXSAVE;
        }
        m.cpu.gpr[RCX] = xc;
        m.cpu.gpr[RAX] = u64::MAX;
        m.cpu.gpr[RDX] = u64::MAX;
        let e = run(&mut m, |a| a.xgetbv().unwrap());
        match want {
            None => {
                assert_eq!(e.kind, EventKind::Hlt, "{os} {xc:#x}: {e:?}");
                assert_eq!((m.gpr(RAX), m.gpr(RDX)), (1, 0));
            }
            Some(x) => assert_eq!(exc(&e), Some(x), "{os} {xc:#x}: {e:?}"),
        }
    }
}

/// XSETBV: only XCR0 = 1 (x87) is legal for this model; #GP(0) for a
/// cleared x87 bit, unsupported components, reserved bits, ECX ≠ 0 or
/// CPL > 0; #UD with CR4.OSXSAVE = 0 (SDM vol. 2, XSETBV).
#[test]
fn xsetbv_table() {
    // (osxsave, cpl3, ecx, edx:eax, expected exception)
    type Row = (bool, bool, u32, u64, Option<(u8, Option<u32>)>);
    let t: [Row; 8] = [
        (true, false, 0, 1, None),
        (true, false, 0, 0, Some((13, Some(0)))),
        (true, false, 0, 3, Some((13, Some(0)))),
        (true, false, 0, 7, Some((13, Some(0)))),
        (true, false, 0, 1 << 32 | 1, Some((13, Some(0)))),
        (true, false, 1, 1, Some((13, Some(0)))),
        (false, false, 0, 1, Some((6, None))),
        (true, true, 0, 1, Some((13, Some(0)))),
    ];
    for (os, cpl3, xc, v, want) in t {
        let mut m = machine(M::Long64);
        if os {
            m.cpu.cr4 |= OSXSAVE;
        }
        m.cpu.gpr[RCX] = u64::from(xc);
        m.cpu.gpr[RAX] = v & 0xffff_ffff;
        m.cpu.gpr[RDX] = v >> 32;
        if cpl3 {
            let code = &mut m.cpu.seg[hyperplug_emulator::SegReg::Cs as usize];
            code.selector = 0x23;
            code.dpl = 3;
            let stack = &mut m.cpu.seg[hyperplug_emulator::SegReg::Ss as usize];
            stack.selector = 0x2b;
            stack.dpl = 3;
        }
        let e = run(&mut m, |a| a.xsetbv().unwrap());
        let ctx = format!("os={os} cpl3={cpl3} ecx={xc} v={v:#x}");
        match want {
            // HLT at CPL 3 would #GP; the CPL-0 rows reach it.
            None => assert_eq!(e.kind, EventKind::Hlt, "{ctx}: {e:?}"),
            Some(x) => assert_eq!(exc(&e), Some(x), "{ctx}: {e:?}"),
        }
        assert_eq!(m.cpu.xcr0, 1, "{ctx}");
    }
}

/// The policy's XSETBV bit turns XSETBV into an intercept with no effect,
/// after the #UD and CPL checks (SDM vol. 3, 26.1.1).
#[test]
fn xsetbv_intercept() {
    use hyperplug_emulator::policy::InsnIntercepts;
    let mut m = machine(M::Long64);
    m.policy.insns |= InsnIntercepts::XSETBV;
    m.cpu.cr4 |= OSXSAVE;
    m.cpu.gpr[RCX] = 5;
    let e = run(&mut m, |a| a.xsetbv().unwrap());
    match e.kind {
        EventKind::Intercept(i) => assert_eq!(i.kind, InterceptKind::Xsetbv),
        k => panic!("{k:?}"),
    }
    assert_eq!(m.cpu.rip, CODE);
    let mut m = machine(M::Long64);
    m.policy.insns |= InsnIntercepts::XSETBV;
    let e = run(&mut m, |a| a.xsetbv().unwrap());
    assert_eq!(exc(&e), Some((6, None)), "{e:?}");
}

/// Linear address of the 2-MiB page the INVPCID tests remap.
const REMAP: u64 = 0x40_0000;
/// Its page-directory entry in the test machine's identity map.
const REMAP_PDE: u64 = PML4 + 0x2000 + 8 * 2;
/// PDE bits: present, writable, user, 2-MiB page.
const PDE_BITS: u64 = 0x87;
/// PDE global bit (SDM vol. 3, Table 4-17).
const PDE_G: u64 = 1 << 8;

/// An instruction's outcome: a register value or an exception (vector, error code).
type Outcome = Result<u64, (u8, Option<u32>)>;

/// Reads REMAP (filling the TLB), rewrites its PDE behind the engine's back
/// to point at 0x600000, then runs INVPCID with type `typ` and descriptor
/// (`lo`, `linear`) and reads REMAP again. Returns the second value read
/// (0xaaaa = the stale translation, 0xbbbb = the new one) or the exception.
fn invpcid_case(typ: u64, lo: u64, linear: u64, global: bool) -> Outcome {
    let mut m = machine(M::Long64);
    let g = if global { PDE_G } else { 0 };
    if global {
        m.cpu.cr4 |= 1 << 7; // CR4.PGE
    }
    m.bus.load(REMAP, &0xaaaau64.to_le_bytes());
    m.bus.load(0x60_0000, &0xbbbbu64.to_le_bytes());
    m.bus.load(REMAP_PDE, &(REMAP | PDE_BITS | g).to_le_bytes());
    m.bus.load(DATA, &lo.to_le_bytes());
    m.bus.load(DATA + 8, &linear.to_le_bytes());
    m.cpu.gpr[3] = REMAP;
    m.cpu.gpr[2] = DATA;
    m.load(|a| {
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.hlt().unwrap();
        a.invpcid(rcx, xmmword_ptr(rdx)).unwrap();
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.run(100).kind, EventKind::Hlt);
    assert_eq!(m.gpr(RAX), 0xaaaa);
    m.bus
        .load(REMAP_PDE, &(0x60_0000 | PDE_BITS | g).to_le_bytes());
    m.cpu.halted = false;
    m.cpu.gpr[RCX] = typ;
    let e = m.run(100);
    match exc(&e) {
        Some(x) => Err(x),
        None => {
            assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
            Ok(m.gpr(RAX))
        }
    }
}

/// INVPCID types 0-3 on the TLB, with and without a global translation
/// (SDM vol. 2, INVPCID; vol. 3, 4.10.4.1): type 0 drops one address's
/// non-global entry, type 1 the whole PCID's non-global entries, type 2
/// everything, type 3 everything but global entries.
#[test]
fn invpcid_invalidates_by_type() {
    const STALE: u64 = 0xaaaa;
    const NEW: u64 = 0xbbbb;
    // (type, descriptor low, linear, global page, value read afterwards)
    let t: [(u64, u64, u64, bool, u64); 10] = [
        (0, 0, REMAP + 0x123, false, NEW),
        (0, 0, 0x1000, false, STALE), // another page: untouched
        (0, 0, REMAP, true, STALE),   // global entries survive type 0
        (1, 0, 0, false, NEW),
        (1, 0, 0, true, STALE),
        (2, 0, 0, false, NEW),
        (2, 0, 0, true, NEW),
        (2, 0x7, 0, false, NEW), // PCID ignored by type 2
        (3, 0, 0, false, NEW),
        (3, 0, 0, true, STALE),
    ];
    for (typ, lo, lin, global, want) in t {
        let got = invpcid_case(typ, lo, lin, global);
        assert_eq!(
            got,
            Ok(want),
            "type {typ} lo {lo:#x} lin {lin:#x} global {global}"
        );
    }
}

/// INVPCID #GP(0) conditions (SDM vol. 2, INVPCID "64-Bit Mode
/// Exceptions"): type > 3 (all 64 bits count), descriptor bits 63:12 set,
/// PCID ≠ 0 for type 0/1 with CR4.PCIDE = 0, non-canonical type-0 address.
#[test]
fn invpcid_gp_table() {
    let gp = Err((13, Some(0)));
    // (type, descriptor low, linear, result)
    let t: [(u64, u64, u64, Outcome); 8] = [
        (4, 0, 0, gp),
        (1 << 32, 0, 0, gp),
        (2, 1 << 12, 0, gp),
        (2, 1 << 63, 0, gp),
        (0, 1, REMAP, gp),
        (1, 0xfff, 0, gp),
        (0, 0, 0x8000_0000_0000, gp),
        (1, 0, 0x8000_0000_0000, Ok(0xbbbb)), // address only checked for type 0
    ];
    for (typ, lo, lin, want) in t {
        assert_eq!(
            invpcid_case(typ, lo, lin, false),
            want,
            "type {typ:#x} lo {lo:#x} lin {lin:#x}"
        );
    }
}

/// INVPCID is privileged (#GP(0) at CPL 3), works in protected and real
/// mode with a 32-bit type register, and is advertised by
/// CPUID.(EAX=7,ECX=0):EBX.INVPCID[bit 10] (SDM vol. 2, INVPCID and CPUID).
#[test]
fn invpcid_cpl_modes_and_cpuid() {
    let mut m = machine(M::Long64);
    let code = &mut m.cpu.seg[hyperplug_emulator::SegReg::Cs as usize];
    code.selector = 0x23;
    code.dpl = 3;
    let stack = &mut m.cpu.seg[hyperplug_emulator::SegReg::Ss as usize];
    stack.selector = 0x2b;
    stack.dpl = 3;
    m.cpu.gpr[2] = DATA;
    let e = run(&mut m, |a| a.invpcid(rcx, xmmword_ptr(rdx)).unwrap());
    assert_eq!(exc(&e), Some((13, Some(0))), "{e:?}");
    for mode in [M::Prot32, M::Real] {
        for (typ, want) in [(2u64, None), (5, Some((13, Some(0))))] {
            let mut m = machine(mode);
            m.cpu.gpr[RCX] = typ;
            m.cpu.gpr[2] = 0x200;
            let e = run(&mut m, |a| a.invpcid(ecx, xmmword_ptr(edx)).unwrap());
            match want {
                None => assert_eq!(e.kind, EventKind::Hlt, "{mode:?} {e:?}"),
                Some(x) => assert_eq!(exc(&e), Some(x), "{mode:?} {e:?}"),
            }
        }
    }
    let mut m = machine(M::Long64);
    let e = run(&mut m, |a| {
        a.mov(eax, 7u32).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
    });
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_ne!(m.gpr(3) & (1 << 10), 0);
}

/// MOV to CR3 in 64-bit mode: bit 63 is the no-flush hint only with
/// CR4.PCIDE = 1 (and is never stored); otherwise it and every bit at or
/// above MAXPHYADDR are reserved and fault #GP(0) (SDM vol. 3, 4.5, 4.10.4.1).
#[test]
fn mov_cr3_reserved_bits_table() {
    let gp = Some((13, Some(0)));
    // (CR4.PCIDE, high bits ORed into the current root, fault)
    type Fault = Option<(u8, Option<u32>)>;
    let t: [(bool, u64, Fault); 5] = [
        (false, 0, None),
        (false, 1 << 63, gp),
        (true, 1 << 63, None),
        (true, (1 << 62) | (1 << 63), gp),
        (false, 1 << 52, gp),
    ];
    for (pcide, high, fault) in t {
        let mut m = machine(M::Long64);
        let before = m.cpu.cr3;
        if pcide {
            m.cpu.cr4 |= 1 << 17;
        }
        m.cpu.gpr[RAX] = before | high;
        let e = run(&mut m, |a| {
            a.mov(cr3, rax).unwrap();
        });
        assert_eq!(exc(&e), fault, "PCIDE={pcide} high={high:#x}");
        // Either way CR3 holds the old root: bit 63 is never stored and a
        // faulting write changes nothing.
        assert_eq!(m.cpu.cr3, before, "PCIDE={pcide} high={high:#x}");
    }
}

/// The time-stamp counter advances one tick per retired instruction, within
/// a run and across runs, and WRMSR to IA32_TSC (0x10) sets it (SDM vol. 3,
/// 18.17 "Time-Stamp Counter": a monotonic count that WRMSR can write).
#[test]
fn tsc_counts_retired_instructions() {
    let mut m = machine(M::Long64);
    m.cpu.msrs.tsc = 1_000;
    let e = run(&mut m, |a| {
        a.rdtsc().unwrap();
        a.mov(ebx, eax).unwrap();
        for _ in 0..10 {
            a.nop().unwrap();
        }
        a.rdtsc().unwrap();
        a.sub(eax, ebx).unwrap();
    });
    assert_eq!(exc(&e), None);
    assert_eq!(
        m.cpu.gpr[RAX] as u32, 12,
        "RDTSC, MOV and 10 NOPs in between"
    );
    assert_eq!(
        m.cpu.gpr[3] as u32, 1_000,
        "the first read: nothing retired before it"
    );
    // After the run the stored count includes every retired instruction.
    assert_eq!(m.cpu.msrs.tsc, 1_000 + e.retired);
    // WRMSR IA32_TSC, then RDTSC two instructions later.
    let mut m = machine(M::Long64);
    m.cpu.gpr[RCX] = 0x10;
    m.cpu.gpr[RAX] = 0x5000;
    m.cpu.gpr[2] = 0;
    let e = run(&mut m, |a| {
        a.nop().unwrap();
        a.wrmsr().unwrap();
        a.nop().unwrap();
        a.rdtsc().unwrap();
    });
    assert_eq!(exc(&e), None);
    let t = (m.cpu.gpr[2] << 32) | (m.cpu.gpr[RAX] & 0xffff_ffff);
    assert!((0x5000..0x5004).contains(&t), "{t:#x}");
}

/// A20M#: with the gate closed, real-mode FFFF:0010 (linear 0x10_0000)
/// wraps to physical 0 as on an 8086; with it open it reaches 1 MiB (SDM
/// vol. 3, 21.1.1 and 8.7.13.4).
#[test]
fn a20_gate_wraps_real_mode_addresses_at_one_mib() {
    for (masked, at) in [(true, 0x0u64), (false, 0x10_0000)] {
        let mut m = machine(M::Real);
        m.cpu.a20_masked = masked;
        let e = run(&mut m, |a| {
            a.mov(ax, 0xffffu32).unwrap();
            a.mov(ds, ax).unwrap();
            a.mov(byte_ptr(0x10u32), 0x5au32).unwrap();
        });
        assert_eq!(exc(&e), None);
        assert_eq!(m.bus.peek(at, 1), Some(vec![0x5a]), "A20 masked={masked}");
        let other = if masked { 0x10_0000 } else { 0x0 };
        assert_ne!(
            m.bus.peek(other, 1),
            Some(vec![0x5a]),
            "A20 masked={masked}"
        );
    }
}

/// A fault while reading the handler's code-segment descriptor during event
/// delivery is that fault (here a #PF: the GDT is not mapped), not
/// #GP(selector) — the difference a shadow-paging hypervisor depends on,
/// since its misses are such faults (SDM vol. 3, 6.12.1.1 and 6.15).
#[test]
fn descriptor_read_faults_during_delivery_are_not_turned_into_gp() {
    let mut m = Machine::new(M::Long64);
    m.policy.exceptions = 1 << 14;
    // IDT[6] (#UD): a 64-bit interrupt gate to 0x10_0000 through selector 0x18.
    let target = 0x10_0000u64;
    let lo = (target & 0xffff) | (0x18 << 16) | (0x8e << 40) | ((target >> 16 & 0xffff) << 48);
    m.bus.load(IDT + 6 * 16, &lo.to_le_bytes());
    m.bus.load(IDT + 6 * 16 + 8, &(target >> 32).to_le_bytes());
    // The GDT moves to an unmapped linear address (beyond the 1-GiB map).
    m.cpu.gdtr.base = 0x8000_0000;
    let e = run(&mut m, |a| {
        a.ud2().unwrap();
    });
    match e.kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception {
                vector, address, ..
            } => {
                assert_eq!(vector, 14, "{e:?}");
                assert_eq!(address, Some(0x8000_0018), "the descriptor's address");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}
