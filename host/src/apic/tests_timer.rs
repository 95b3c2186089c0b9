//! APIC timer: one-shot, periodic and TSC-deadline modes, divide values,
//! current-count reads, masking and mode changes (SDM 11.5.4).

use super::lapic_timer::divisor;
use super::regs::*;
use super::{Lapic, LapicConfig};

fn lapic_with(timer_hz: u64, tsc_hz: u64) -> Lapic {
    let mut c = LapicConfig::new(0, true);
    c.timer_hz = timer_hz;
    c.tsc_hz = tsc_hz;
    let mut l = Lapic::new(c).expect("config");
    l.write_register(SVR, 0x1FF, 0);
    l
}

#[test]
fn divide_configuration_values() {
    // (divide register, divisor) per SDM Figure 11-10.
    let table = [
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
    ];
    for (cfg, div) in table {
        assert_eq!(divisor(cfg), div, "{cfg:#x}");
    }
}

#[test]
fn one_shot_with_every_divider() {
    for (cfg, div) in [
        (0xBu32, 1u64),
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
    ] {
        let mut l = lapic_with(1_000_000_000, 1_000_000_000);
        let t0 = 1_000;
        l.write_register(TIMER_DIVIDE, cfg, t0);
        l.write_register(LVT_TIMER, 0x40, t0);
        l.write_register(TIMER_INITIAL, 1000, t0);
        assert_eq!(l.read_register(TIMER_DIVIDE, t0), cfg);
        // (time after start in ns, current count)
        for (dt, cur) in [
            (0, 1000),
            (div - 1, 1000),
            (div, 999),
            (10 * div, 990),
            (999 * div, 1),
            (1000 * div, 0),
            (5000 * div, 0),
        ] {
            assert_eq!(
                l.read_register(TIMER_CURRENT, t0 + dt),
                cur,
                "div {div} at +{dt}"
            );
        }
        let due = t0 + 1000 * div;
        assert_eq!(l.timer_deadline_ns(), Some(due), "div {div}");
        assert!(!l.timer_expired(due - 1));
        assert_eq!(l.pending_vector(), None);
        assert!(l.timer_expired(due));
        assert_eq!(l.pending_vector(), Some(0x40));
        assert!(!l.timer_expired(due + 10 * div), "one-shot fires once");
        assert_eq!(l.timer_deadline_ns(), None);
        assert_eq!(l.read_register(TIMER_INITIAL, due), 1000);
    }
}

#[test]
fn timer_clock_rate() {
    // 100 MHz bus: 10 ns per tick, divide by 2: 20 ns per counted tick.
    let mut l = lapic_with(100_000_000, 1_000_000_000);
    l.write_register(LVT_TIMER, 0x41, 0);
    l.write_register(TIMER_INITIAL, 50, 0);
    assert_eq!(l.read_register(TIMER_CURRENT, 19), 50);
    assert_eq!(l.read_register(TIMER_CURRENT, 20), 49);
    assert_eq!(l.read_register(TIMER_CURRENT, 500), 25);
    assert_eq!(l.timer_deadline_ns(), Some(1000));
    // 3 MHz: deadline rounds up to the first ns at which the count is 0.
    let mut l = lapic_with(3_000_000, 1_000_000_000);
    l.write_register(TIMER_DIVIDE, 0xB, 0);
    l.write_register(LVT_TIMER, 0x41, 0);
    l.write_register(TIMER_INITIAL, 1, 0);
    assert_eq!(l.timer_deadline_ns(), Some(334));
    assert!(!l.timer_expired(333));
    assert!(l.timer_expired(334));
}

#[test]
fn periodic_reloads() {
    let mut l = lapic_with(1_000_000_000, 1_000_000_000);
    l.write_register(TIMER_DIVIDE, 0xB, 0);
    l.write_register(LVT_TIMER, 0x2_0050, 0);
    l.write_register(TIMER_INITIAL, 100, 0);
    // (time, current count)
    for (t, cur) in [
        (0, 100),
        (50, 50),
        (99, 1),
        (100, 100),
        (150, 50),
        (199, 1),
        (200, 100),
        (1234, 66),
    ] {
        assert_eq!(l.read_register(TIMER_CURRENT, t), cur, "t={t}");
    }
    assert_eq!(l.timer_deadline_ns(), Some(100));
    assert!(l.timer_expired(100));
    assert_eq!(l.acknowledge(), Some(0x50));
    l.eoi();
    assert_eq!(l.timer_deadline_ns(), Some(200));
    assert!(!l.timer_expired(199));
    // Missed periods coalesce into one interrupt; the next deadline is on the grid.
    assert!(l.timer_expired(350));
    assert_eq!(l.timer_deadline_ns(), Some(400));
    assert!(!l.timer_expired(399));
    // Writing 0 stops it.
    l.write_register(TIMER_INITIAL, 0, 400);
    assert_eq!(l.timer_deadline_ns(), None);
    assert_eq!(l.read_register(TIMER_CURRENT, 450), 0);
}

#[test]
fn divide_change_mid_count() {
    let mut l = lapic_with(1_000_000_000, 1_000_000_000);
    l.write_register(TIMER_DIVIDE, 0xB, 0);
    l.write_register(LVT_TIMER, 0x40, 0);
    l.write_register(TIMER_INITIAL, 1000, 0);
    l.write_register(TIMER_DIVIDE, 0x0, 400);
    assert_eq!(l.read_register(TIMER_CURRENT, 400), 600);
    assert_eq!(l.read_register(TIMER_CURRENT, 600), 500);
    assert_eq!(l.timer_deadline_ns(), Some(400 + 600 * 2));
}

#[test]
fn masked_timer() {
    let mut l = lapic_with(1_000_000_000, 1_000_000_000);
    l.write_register(TIMER_DIVIDE, 0xB, 0);
    l.write_register(LVT_TIMER, 0x1_0040, 0);
    l.write_register(TIMER_INITIAL, 100, 0);
    assert_eq!(
        l.timer_deadline_ns(),
        Some(100),
        "a masked one-shot still counts"
    );
    assert!(!l.timer_expired(100));
    assert_eq!(l.vector_state(0x40), (false, false, false));
    assert_eq!(l.read_register(TIMER_CURRENT, 100), 0);
    // Periodic, masked: no wake-ups; unmasking does not deliver stale periods.
    l.write_register(LVT_TIMER, 0x3_0040, 100);
    l.write_register(TIMER_INITIAL, 100, 100);
    assert_eq!(l.timer_deadline_ns(), None);
    l.write_register(LVT_TIMER, 0x2_0040, 450);
    assert!(!l.timer_expired(450), "expiries while masked are lost");
    assert_eq!(l.timer_deadline_ns(), Some(500));
    assert!(l.timer_expired(500));
    assert_eq!(l.pending_vector(), Some(0x40));
}

#[test]
fn mode_change_disarms() {
    let mut l = lapic_with(1_000_000_000, 1_000_000_000);
    l.write_register(TIMER_DIVIDE, 0xB, 0);
    l.write_register(LVT_TIMER, 0x40, 0);
    l.write_register(TIMER_INITIAL, 100, 0);
    l.write_register(LVT_TIMER, 0x41, 10);
    assert_eq!(l.timer_deadline_ns(), Some(100), "same mode: still armed");
    l.write_register(LVT_TIMER, 0x2_0041, 20);
    assert_eq!(l.timer_deadline_ns(), None, "one-shot → periodic disarms");
    assert_eq!(l.read_register(TIMER_CURRENT, 30), 0);
    assert!(!l.timer_expired(1000));
}

#[test]
fn tsc_deadline_mode() {
    // 2 GHz TSC starting at 1000 when the clock reads 0.
    let mut l = lapic_with(1_000_000_000, 2_000_000_000);
    l.set_tsc_offset(1000);
    assert_eq!(l.tsc_at(500), 2000);
    // Outside TSC-deadline mode the MSR reads 0 and ignores writes.
    l.write_msr(MSR_TSC_DEADLINE, 5000, 0).expect("wrmsr");
    assert_eq!(l.read_msr(MSR_TSC_DEADLINE, 0), Ok(0));
    l.write_register(LVT_TIMER, 0x4_0060, 0);
    l.write_register(TIMER_INITIAL, 77, 0);
    assert_eq!(
        l.read_register(TIMER_INITIAL, 0),
        0,
        "initial count ignored"
    );
    assert_eq!(l.read_register(TIMER_CURRENT, 0), 0);
    assert_eq!(
        l.timer_deadline_ns(),
        None,
        "not armed until the MSR is written"
    );
    l.write_msr(MSR_TSC_DEADLINE, 2000, 0).expect("arm");
    assert_eq!(l.read_msr(MSR_TSC_DEADLINE, 0), Ok(2000));
    assert_eq!(l.timer_deadline_ns(), Some(500));
    assert!(!l.timer_expired(499));
    assert!(l.timer_expired(500));
    assert_eq!(l.pending_vector(), Some(0x60));
    assert_eq!(
        l.read_msr(MSR_TSC_DEADLINE, 500),
        Ok(0),
        "firing clears the MSR"
    );
    assert_eq!(l.timer_deadline_ns(), None);
    // A deadline in the past is due at once; 0 disarms.
    l.write_msr(MSR_TSC_DEADLINE, 10, 600).expect("arm");
    assert_eq!(l.timer_deadline_ns(), Some(0));
    l.write_msr(MSR_TSC_DEADLINE, 0, 600).expect("disarm");
    assert_eq!(l.timer_deadline_ns(), None);
    // Leaving TSC-deadline mode disarms.
    l.write_msr(MSR_TSC_DEADLINE, 1_000_000, 600).expect("arm");
    l.write_register(LVT_TIMER, 0x60, 700);
    assert_eq!(l.timer_deadline_ns(), None);
    assert_eq!(l.read_msr(MSR_TSC_DEADLINE, 700), Ok(0));
}

#[test]
fn init_stops_the_timer() {
    let mut l = lapic_with(1_000_000_000, 1_000_000_000);
    l.write_register(LVT_TIMER, 0x40, 0);
    l.write_register(TIMER_INITIAL, 100, 0);
    l.init();
    assert_eq!(l.timer_deadline_ns(), None);
    assert_eq!(l.read_register(TIMER_INITIAL, 0), 0);
    assert_eq!(l.read_register(LVT_TIMER, 0), 0x1_0000);
}
