//! NMI delivery: an NMI ignores RFLAGS.IF, is held back by NMI blocking
//! from its own delivery until the next IRET, and wakes a halted CPU (SDM
//! vol. 3, 6.7.1 "Handling Multiple NMIs").

use hyperplug_emulator::policy::InterceptPolicy;
use hyperplug_emulator::{Cpu, Engine, EventKind, FlatBus, Seg, SegReg};

const COUNTER: u64 = 0x500;

fn setup() -> (Cpu, FlatBus, Engine) {
    let mut bus = FlatBus::new(1 << 20);
    // IVT[2] -> 0000:9000: inc byte [0x500]; iret
    bus.load(2 * 4, &[0x00, 0x90, 0x00, 0x00]);
    bus.load(0x9000, &[0xfe, 0x06, 0x00, 0x05, 0xcf]);
    // Main code at 0x1000: cli; hlt
    bus.load(0x1000, &[0xfa, 0xf4]);
    let mut c = Cpu::default();
    c.seg[SegReg::Cs as usize] = Seg::real(0, true);
    for s in [SegReg::Ds, SegReg::Es, SegReg::Ss] {
        c.seg[s as usize] = Seg::real(0, false);
    }
    c.idtr.limit = 0x3ff;
    c.rip = 0x1000;
    c.gpr[4] = 0x7000;
    (c, bus, Engine::standalone())
}

#[test]
fn nmi_ignores_if_and_is_blocked_until_iret() {
    let (mut c, mut bus, mut e) = setup();
    let p = InterceptPolicy::default();
    // cli; hlt: the CPU halts with interrupts off.
    let ev = e.execute(&mut c, &mut bus, &p, 10);
    assert_eq!(ev.kind, EventKind::Hlt);
    // An NMI wakes it regardless of IF; one handler instruction runs.
    c.nmi_pending = true;
    let ev = e.execute(&mut c, &mut bus, &p, 1);
    assert_eq!(ev.kind, EventKind::Budget);
    assert_eq!(bus.peek(COUNTER, 1), Some(vec![1]));
    assert!(c.nmi_blocked, "blocked while in the handler");
    // A second NMI waits for the handler's IRET, then comes at the very
    // next instruction boundary.
    c.nmi_pending = true;
    let ev = e.execute(&mut c, &mut bus, &p, 1);
    assert_eq!(
        (ev.kind, ev.retired),
        (EventKind::Budget, 1),
        "the IRET ran"
    );
    assert_eq!(
        bus.peek(COUNTER, 1),
        Some(vec![1]),
        "not delivered before IRET"
    );
    assert_eq!(c.rip, 0x9000, "delivered right after the IRET");
    assert!(!c.nmi_pending && c.nmi_blocked);
    let ev = e.execute(&mut c, &mut bus, &p, 1);
    assert_eq!(ev.kind, EventKind::Budget);
    assert_eq!(bus.peek(COUNTER, 1), Some(vec![2]));
    // And the ABI state carries the blocking (kvm_vcpu_events.nmi.masked).
    let st = c.to_state();
    assert_eq!(st.events.nmi.masked, 1);
    assert!(Cpu::from_state(&st).nmi_blocked);
}
