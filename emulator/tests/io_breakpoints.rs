//! I/O breakpoints (SDM vol. 3, 17.2.4 "Debug Control Register (DR7)",
//! 17.2.5 "Breakpoint Field Recognition", 17.3.1.2 "Data Memory and I/O
//! Breakpoint Exception Conditions"): R/W = 10b with CR4.DE = 1 makes
//! IN/OUT/INS/OUTS whose ports overlap the breakpoint trap with #DB after
//! the instruction (or the REP iteration), DR6.Bn set; with CR4.DE = 0 the
//! encoding is undefined and the emulator never triggers it.

mod common;

use common::*;
use hyperplug_emulator::bus::{Bus, BusStop, FlatBus};
use hyperplug_emulator::policy::InterceptKind;
use hyperplug_emulator::{Event, EventKind};
use hyperplug_mmu::{PhysError, PhysMemory};
use iced_x86::code_asm::*;

/// CR4.DE.
const DE: u64 = 1 << 3;

/// The test RAM plus every port answering 0x5a (writes accepted).
struct Ports<'a>(&'a mut FlatBus);

impl PhysMemory for Ports<'_> {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        self.0.read_u32(gpa)
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        self.0.read_u64(gpa)
    }
    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        self.0.cmpxchg_u32(gpa, old, new)
    }
    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        self.0.cmpxchg_u64(gpa, old, new)
    }
}

impl Bus for Ports<'_> {
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BusStop> {
        self.0.read_phys(gpa, buf)
    }
    fn check_write(&mut self, gpa: u64, len: usize) -> Result<(), BusStop> {
        self.0.check_write(gpa, len)
    }
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), BusStop> {
        self.0.write_phys(gpa, data)
    }
    fn io_in(&mut self, _port: u16, _size: u8) -> Result<u32, BusStop> {
        Ok(0x5a)
    }
    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> Result<(), BusStop> {
        Ok(())
    }
}

/// Runs `m` with every port answered.
fn run(m: &mut Machine, budget: u64) -> Event {
    let mut bus = Ports(&mut m.bus);
    m.eng.execute(&mut m.cpu, &mut bus, &m.policy, budget)
}

/// The I/O instruction of a case.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// IN AL, imm8.
    InImm(u8),
    /// OUT DX, AX.
    OutDxAx(u16),
    /// IN EAX, DX.
    InDxEax(u16),
    /// REP INSB (3 iterations).
    RepInsb(u16),
    /// REP OUTSW (3 iterations).
    RepOutsw(u16),
}

/// Loads `mov rdi/rsi, DATA; mov ecx, 3; mov dx, port; <op>; hlt`; returns
/// the address of the I/O instruction and of the HLT.
fn load(m: &mut Machine, op: Op) -> (u64, u64) {
    let port = match op {
        Op::InImm(p) => u16::from(p),
        Op::OutDxAx(p) | Op::InDxEax(p) | Op::RepInsb(p) | Op::RepOutsw(p) => p,
    };
    let bytes = m.load(|a| {
        a.mov(rdi, DATA).unwrap(); // 10 bytes
        a.mov(rsi, DATA).unwrap(); // 10
        a.mov(ecx, 3u32).unwrap(); // 5
        a.mov(dx, u32::from(port)).unwrap(); // 4
        match op {
            Op::InImm(p) => a.in_(al, u32::from(p)).unwrap(),
            Op::OutDxAx(_) => a.out(dx, ax).unwrap(),
            Op::InDxEax(_) => a.in_(eax, dx).unwrap(),
            Op::RepInsb(_) => a.rep().insb().unwrap(),
            Op::RepOutsw(_) => a.rep().outsw().unwrap(),
        }
        a.hlt().unwrap();
    });
    (CODE + 29, CODE + bytes.len() as u64 - 1)
}

#[test]
fn io_breakpoint_table() {
    // (CR4.DE, R/W0, LEN0 code, DR0, instruction, #DB expected)
    let rows: [(bool, u64, u64, u64, Op, bool); 12] = [
        (true, 2, 0, 0x60, Op::InImm(0x60), true),
        (false, 2, 0, 0x60, Op::InImm(0x60), false),
        (true, 2, 0, 0x60, Op::InImm(0x61), false),
        (true, 3, 0, 0x60, Op::InImm(0x60), false),
        (true, 1, 0, 0x60, Op::OutDxAx(0x60), false),
        (true, 2, 0, 0x71, Op::OutDxAx(0x70), true),
        (true, 2, 0, 0x72, Op::OutDxAx(0x70), false),
        (true, 2, 3, 0x3fb, Op::InDxEax(0x3f8), true),
        (true, 2, 1, 0x3fc, Op::InDxEax(0x3f8), false),
        (true, 2, 1, 0x3f6, Op::InDxEax(0x3f7), true),
        (true, 2, 0, 0x80, Op::RepInsb(0x80), true),
        (true, 2, 0, 0x81, Op::RepOutsw(0x80), true),
    ];
    for (i, &(de, kind, len, addr, op, hit)) in rows.iter().enumerate() {
        let mut m = Machine::new(M::Long64);
        m.policy.exceptions = 1 << 1;
        let (insn, hlt) = load(&mut m, op);
        if de {
            m.cpu.cr4 |= DE;
        }
        m.cpu.dr[0] = addr;
        m.cpu.dr[7] = 1 | kind << 16 | len << 18;
        let e = run(&mut m, 100);
        let db = matches!(
            e.kind,
            EventKind::Intercept(ref i) if matches!(i.kind, InterceptKind::Exception { vector: 1, .. })
        );
        assert_eq!(db, hit, "row {i} {op:?}: {e:?}");
        if !hit {
            assert_eq!(m.cpu.rip, hlt + 1, "row {i}: ran to the HLT");
            assert_eq!(m.cpu.dr[6] & 0xf, 0, "row {i}");
            continue;
        }
        assert_eq!(m.cpu.dr[6] & 0xf, 1, "row {i}: DR6.B0");
        match op {
            Op::RepInsb(_) | Op::RepOutsw(_) => {
                // A trap after the first iteration: RIP stays on the REP.
                assert_eq!((m.cpu.rip, m.gpr(1)), (insn, 2), "row {i}");
            }
            _ => assert_eq!(m.cpu.rip, hlt, "row {i}: trap after the instruction"),
        }
    }
}

#[test]
fn delivered_io_breakpoint_saves_next_rip_and_in_result() {
    let mut m = Machine::new(M::Long64);
    let handler = CODE + 0x800;
    assert!(m.bus.load(handler, &[0xf4]));
    m.gate(1, handler);
    let (_, hlt) = load(&mut m, Op::InImm(0x60));
    m.cpu.cr4 |= DE;
    m.cpu.dr[1] = 0x60;
    m.cpu.dr[7] = 1 << 2 | 0b10 << 20;
    let e = run(&mut m, 100);
    assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
    assert_eq!(m.cpu.rip, handler + 1);
    assert_eq!(m.bus.peek_u64(m.gpr(4)), hlt, "saved RIP after the IN");
    assert_eq!(m.gpr(0) & 0xff, 0x5a, "the IN completed");
    assert_eq!(m.cpu.dr[6] & 0xf, 2, "DR6.B1");
}

#[test]
fn stopped_io_reports_no_breakpoint_until_completed() {
    // A port the caller must complete: the instruction has not executed,
    // so no #DB yet (it comes when the access completes).
    let mut m = Machine::new(M::Long64);
    m.policy.exceptions = 1 << 1;
    load(&mut m, Op::InImm(0x60));
    m.cpu.cr4 |= DE;
    m.cpu.dr[0] = 0x60;
    m.cpu.dr[7] = 1 | 0b10 << 16;
    let e = m.run(100);
    assert!(matches!(e.kind, EventKind::Io { port: 0x60, .. }), "{e:?}");
    assert_eq!(m.cpu.dr[6] & 0xf, 0);
    let e = run(&mut m, 100);
    assert!(matches!(e.kind, EventKind::Intercept(_)), "{e:?}");
    assert_eq!(m.cpu.dr[6] & 0xf, 1);
}
