//! A locked read-modify-write is atomic against other processors' plain
//! stores too (SDM vol. 3, 9.1.2 "Bus Locking"): if another vCPU stores to
//! the operand between the instruction's read and its write, the locked
//! operation happens entirely after that store (the engine commits with a
//! compare-and-swap and runs the instruction again on a conflict).

use hyperplug_emulator::policy::InterceptPolicy;
use hyperplug_emulator::{Bus, BusStop, Cpu, Engine, EventKind, FlatBus, Seg, SegReg};
use hyperplug_mmu::{PhysError, PhysMemory};

const LOCK: u64 = 0x2000;

/// A bus on which "another vCPU" stores `value` to `LOCK` right after this
/// vCPU's first read of it.
struct RacingBus {
    inner: FlatBus,
    store: Option<u8>,
}

impl PhysMemory for RacingBus {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        self.inner.read_u32(gpa)
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        self.inner.read_u64(gpa)
    }
    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        self.inner.cmpxchg_u32(gpa, old, new)
    }
    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        self.inner.cmpxchg_u64(gpa, old, new)
    }
}

impl Bus for RacingBus {
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BusStop> {
        self.inner.read_phys(gpa, buf)?;
        if gpa == LOCK {
            if let Some(v) = self.store.take() {
                self.inner.load(LOCK, &[v]);
            }
        }
        Ok(())
    }
    fn check_write(&mut self, gpa: u64, len: usize) -> Result<(), BusStop> {
        self.inner.check_write(gpa, len)
    }
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), BusStop> {
        self.inner.write_phys(gpa, data)
    }
    fn io_in(&mut self, port: u16, size: u8) -> Result<u32, BusStop> {
        self.inner.io_in(port, size)
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BusStop> {
        self.inner.io_out(port, size, value)
    }
}

/// Runs `code` (real mode, at 0x1000, ending in HLT) with the lock word at
/// 1 and a racing store of `release` right after the first read.
fn run(code: &[u8], eax: u64, ecx: u64, release: u8) -> (Cpu, u8) {
    let mut inner = FlatBus::new(1 << 20);
    inner.load(0x1000, code);
    inner.load(LOCK, &[1]);
    let mut bus = RacingBus {
        inner,
        store: Some(release),
    };
    let mut c = Cpu::default();
    c.seg[SegReg::Cs as usize] = Seg::real(0, true);
    for s in [SegReg::Ds, SegReg::Es, SegReg::Ss] {
        c.seg[s as usize] = Seg::real(0, false);
    }
    c.rip = 0x1000;
    c.gpr[4] = 0x7000;
    c.gpr[0] = eax;
    c.gpr[1] = ecx;
    let mut e = Engine::standalone();
    let ev = e.execute(&mut c, &mut bus, &InterceptPolicy::default(), 100);
    assert_eq!(ev.kind, EventKind::Hlt, "{ev:?}");
    let v = bus.inner.peek(LOCK, 1).expect("lock byte")[0];
    (c, v)
}

#[test]
fn a_failed_cmpxchg_does_not_undo_a_concurrent_release() {
    // lock cmpxchg [0x2000], cl ; hlt  — trying to take a held lock (1 -> 1)
    // while its owner releases it (stores 0) between the read and the write.
    let (c, v) = run(&[0xf0, 0x0f, 0xb0, 0x0e, 0x00, 0x20, 0xf4], 0, 1, 0);
    // Atomic against the store: the CMPXCHG saw 0 and took the lock.
    assert_eq!(v, 1, "the lock is taken, not left 'held' by nobody");
    assert_ne!(c.rflags & (1 << 6), 0, "ZF: the exchange succeeded");
    assert_eq!(c.gpr[0] & 0xff, 0, "AL unchanged on success");
}

#[test]
fn xchg_and_locked_add_see_the_concurrent_store() {
    // xchg [0x2000], cl ; hlt  with CL = 1: returns the released 0.
    let (c, v) = run(&[0x86, 0x0e, 0x00, 0x20, 0xf4], 0, 1, 0);
    assert_eq!((c.gpr[1] & 0xff, v), (0, 1));
    // lock add byte [0x2000], 5 ; hlt  while another vCPU stores 7.
    let (_, v) = run(&[0xf0, 0x80, 0x06, 0x00, 0x20, 0x05, 0xf4], 0, 0, 7);
    assert_eq!(v, 12, "the add applies after the store, not before it");
}
