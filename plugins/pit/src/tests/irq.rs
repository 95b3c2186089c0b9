//! Counter 0's OUT on the IRQ line: edge timing and cadence on the virtual clock.

use super::{tick_ns, Rig};
use hyperplug_plugin_api::device::Device;

const SECOND: u64 = 1_000_000_000;

#[test]
fn mode0_interrupts_once_at_terminal_count() {
    let mut r = Rig::new();
    r.outb(0x43, 0x30).count16(0, 100); // loaded on pulse 1, zero on pulse 101
    assert_eq!(r.armed(), Some(84_648));
    assert_eq!(tick_ns(101), 84_648);
    r.at(84_647);
    assert!(r.host.take_due_timers().is_empty());
    let fired = r.run_until(SECOND);
    assert_eq!(fired, [84_648]);
    assert_eq!(r.edges(), 1);
    assert_eq!(r.host.irq_level(0), Some(false), "pulsed, not held");
    assert_eq!(r.armed(), None, "nothing more to deliver");
    assert_eq!(r.status(0) & 0x80, 0x80);
}

#[test]
fn spurious_or_early_timer_fire_delivers_nothing() {
    let mut r = Rig::new();
    r.outb(0x43, 0x30).count16(0, 100);
    r.at(1_000);
    r.dev.timer_fired(0);
    r.dev.timer_fired(7);
    assert_eq!(r.edges(), 0);
    assert_eq!(r.armed(), Some(tick_ns(101)), "re-armed for the real edge");
}

/// Programs counter 0 with `cw` and `count` at `start_ns`, and counts the
/// edges in (from_ns, to_ns]; also checks every timer deadline is the exact
/// pulse of an edge: load pulse + m * N.
fn edges_between(cw: u8, count: u16, start_ns: u64, from_ns: u64, to_ns: u64) -> usize {
    let mut r = Rig::new();
    r.at(start_ns);
    r.outb(0x43, cw).count16(0, count);
    let load = r.dev.clock.ticks(start_ns) + 1;
    let n = if count == 0 { 65_536 } else { u64::from(count) };
    let before = r.run_until(from_ns).len();
    assert_eq!(r.edges(), before);
    let fired = r.run_until(to_ns);
    for (i, d) in fired.iter().enumerate() {
        let m = (before + i + 1) as u64;
        assert_eq!(*d, tick_ns(load + m * n), "edge {m}");
    }
    assert_eq!(r.edges(), before + fired.len(), "one pulse per edge");
    fired.len()
}

#[test]
fn cadence_18_2_hz_with_count_0() {
    // 1193182 / 65536 = 18.2065 Hz: edges at 54.925 ms intervals after the
    // load pulse. Programmed at t = 0: edge 18 at 0.98866 s, edge 19 at
    // 1.04358 s, so 18 edges in the first second; the second from 50 ms
    // (just before edge 1 at 54.926 ms) holds 19.
    for cw in [0x34u8, 0x36] {
        assert_eq!(edges_between(cw, 0, 0, 0, SECOND), 18, "cw {cw:#04x}");
        assert_eq!(
            edges_between(cw, 0, 0, 50_000_000, 50_000_000 + SECOND),
            19,
            "cw {cw:#04x}"
        );
    }
}

#[test]
fn cadence_1000_hz_with_count_1193() {
    // 1193 pulses = 0.99984 ms: edge 1000 at pulse 1193001 (0.999848 s).
    for cw in [0x34u8, 0x36] {
        assert_eq!(edges_between(cw, 1193, 0, 0, SECOND), 1000, "cw {cw:#04x}");
        // Started at an odd time, the cadence is the same over a second.
        assert_eq!(
            edges_between(cw, 1193, 123_457, 123_457, 123_457 + SECOND),
            1000,
            "cw {cw:#04x}"
        );
    }
}

#[test]
fn mode4_strobe_interrupts_once() {
    let mut r = Rig::new();
    r.outb(0x43, 0x38).count16(0, 50); // zero on pulse 51, OUT back high on 52
    assert_eq!(r.run_until(SECOND), [tick_ns(52)]);
    assert_eq!(r.edges(), 1);
}

#[test]
fn late_timer_coalesces_and_keeps_the_grid() {
    let mut r = Rig::new();
    r.outb(0x43, 0x34).count16(0, 1000);
    // The host fires 3.5 periods late: one pulse, then back on the grid.
    r.at_tick(1 + 3500);
    for id in r.host.take_due_timers() {
        r.dev.timer_fired(id);
    }
    assert_eq!(r.edges(), 1);
    assert_eq!(r.armed(), Some(tick_ns(4001)));
}

#[test]
fn reprogramming_and_other_lines() {
    let mut r = Rig::with_options("irq=2");
    r.outb(0x43, 0x34).count16(0, 1000);
    r.run_until(tick_ns(2001));
    assert_eq!(r.host.rising_edges(2), 2);
    assert_eq!(r.host.rising_edges(0), 0);
    // A control word stops counter 0: the timer is cancelled.
    r.outb(0x43, 0x34);
    assert_eq!(r.armed(), None);
    r.run_until(tick_ns(10_000));
    assert_eq!(r.host.rising_edges(2), 2);
    // Counters 1 and 2 never drive the line.
    r.outb(0x43, 0x74)
        .count16(1, 10)
        .outb(0x43, 0xb4)
        .count16(2, 10)
        .outb(0x61, 1);
    assert_eq!(r.armed(), None);
}
