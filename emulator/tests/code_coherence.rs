//! Decoded-instruction caches stay coherent across the vCPUs of a VM and
//! with host (DMA) writes: every engine tracks the frames it holds decodes
//! of in the VM's write tracker, so a write by another engine, or one the
//! host reports, drops the stale decode before the next fetch (the
//! cross-modifying-code case of SDM vol. 3, 9.1.3, and DMA into code).

use hyperplug_emulator::policy::InterceptPolicy;
use hyperplug_emulator::{Cpu, Engine, EventKind, FlatBus, Seg, SegReg};
use hyperplug_mmu::track::WriteTracker;
use std::sync::Arc;

/// A real-mode CPU at 0000:`ip`.
fn cpu_at(ip: u64) -> Cpu {
    let mut c = Cpu::default();
    c.seg[SegReg::Cs as usize] = Seg::real(0, true);
    for s in [SegReg::Ds, SegReg::Es, SegReg::Ss] {
        c.seg[s as usize] = Seg::real(0, false);
    }
    c.rip = ip;
    c.gpr[4] = 0x7000;
    c
}

/// Runs to HLT and returns AL.
fn run_al(e: &mut Engine, bus: &mut FlatBus, ip: u64) -> u8 {
    let mut c = cpu_at(ip);
    let ev = e.execute(&mut c, bus, &InterceptPolicy::default(), 100);
    assert_eq!(ev.kind, EventKind::Hlt, "{ev:?}");
    c.gpr[0] as u8
}

#[test]
fn another_vcpus_write_reaches_this_vcpus_decode_cache() {
    let tracker = Arc::new(WriteTracker::new());
    let mut a = Engine::new(Arc::clone(&tracker));
    let mut b = Engine::new(Arc::clone(&tracker));
    let mut bus = FlatBus::new(1 << 20);
    // 0x1000: mov al, 1; hlt
    bus.load(0x1000, &[0xb0, 0x01, 0xf4]);
    // 0x2000: mov byte [0x1001], 2; hlt
    bus.load(0x2000, &[0xc6, 0x06, 0x01, 0x10, 0x02, 0xf4]);
    assert_eq!(run_al(&mut a, &mut bus, 0x1000), 1);
    // vCPU b patches the immediate of the instruction vCPU a has cached.
    let mut cb = cpu_at(0x2000);
    let ev = b.execute(&mut cb, &mut bus, &InterceptPolicy::default(), 100);
    assert_eq!(ev.kind, EventKind::Hlt);
    assert_eq!(bus.peek(0x1001, 1), Some(vec![2]));
    assert_eq!(
        run_al(&mut a, &mut bus, 0x1000),
        2,
        "stale decode on vCPU a"
    );
}

#[test]
fn host_writes_reported_to_the_tracker_reach_the_decode_cache() {
    let tracker = Arc::new(WriteTracker::new());
    let mut a = Engine::new(Arc::clone(&tracker));
    let mut bus = FlatBus::new(1 << 20);
    bus.load(0x1000, &[0xb0, 0x01, 0xf4]);
    assert_eq!(run_al(&mut a, &mut bus, 0x1000), 1);
    // A device's DMA: the host writes memory, then reports the write.
    bus.load(0x1001, &[0x03]);
    tracker.on_guest_write(0x1001, 1);
    assert_eq!(
        run_al(&mut a, &mut bus, 0x1000),
        3,
        "stale decode after DMA"
    );
}
