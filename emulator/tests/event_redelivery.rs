//! An event whose delivery is stopped (here: the stack push reaches MMIO,
//! which the caller must complete) stays pending and is delivered when the
//! engine runs again, as a hypervisor re-injects what EXITINTINFO reports
//! (APM vol. 2, 15.7.2).

use hyperplug_emulator::policy::InterceptPolicy;
use hyperplug_emulator::{Cpu, Engine, EventKind, FlatBus, Seg, SegReg};

#[test]
fn an_interrupt_whose_delivery_stops_is_delivered_later() {
    let mut bus = FlatBus::new(1 << 20);
    // IVT[8] -> 0000:9000: hlt
    bus.load(8 * 4, &[0x00, 0x90, 0x00, 0x00]);
    bus.load(0x9000, &[0xf4]);
    bus.load(0x1000, &[0x90, 0xf4]); // nop; hlt
    let mut c = Cpu::default();
    c.seg[SegReg::Cs as usize] = Seg::real(0, true);
    c.seg[SegReg::Ds as usize] = Seg::real(0, false);
    // The stack lies above the 1-MiB bus: the pushes are MMIO.
    c.seg[SegReg::Ss as usize] = Seg::real(0xffff, false);
    c.gpr[4] = 0x0100;
    c.idtr.limit = 0x3ff;
    c.rip = 0x1000;
    c.rflags |= 1 << 9;
    c.pending_interrupt = Some(8);
    let mut e = Engine::standalone();
    let p = InterceptPolicy::default();
    let ev = e.execute(&mut c, &mut bus, &p, 10);
    assert!(matches!(ev.kind, EventKind::Mmio { .. }), "{ev:?}");
    assert_eq!(c.pending_interrupt, Some(8), "still to be delivered");
    assert_eq!(c.rip, 0x1000, "nothing ran");
    // With the stack in RAM the same interrupt is delivered.
    c.seg[SegReg::Ss as usize] = Seg::real(0, false);
    c.gpr[4] = 0x7000;
    let ev = e.execute(&mut c, &mut bus, &p, 10);
    assert_eq!(ev.kind, EventKind::Hlt);
    assert_eq!(c.rip, 0x9001, "the handler ran");
    assert_eq!(c.pending_interrupt, None);
}
