//! Step 6 of a device: unit tests against a recording host.
//!
//! `RecordingHost` implements every host service without a hypervisor: it
//! records the IRQ levels and timers the device asks for, and the test moves
//! its virtual clock by hand and delivers due timers itself. So "the timer
//! expires after exactly 250 ms" is a test that runs in microseconds.

use crate::countdown::{Countdown, TIMER_ID};
use crate::registers::*;
use hyperplug_plugin_api::device::{AddressSpace, Device, IoRange};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

const MS: u64 = 1_000_000;
const BASE: u64 = 0x530;
const IRQ: u32 = 5;

/// A device on a recording host, with port-I/O helpers.
struct Bench {
    host: RecordingHost,
    dev: Countdown,
}

impl Bench {
    fn new() -> Self {
        Self::on(RecordingHost::new())
    }
    fn on(host: RecordingHost) -> Self {
        let dev = Countdown::create(&DeviceConfig::default(), host.services())
            .expect("default options are valid");
        Self { host, dev }
    }
    fn out8(&mut self, off: u64, v: u8) {
        self.dev.write(AddressSpace::Pio, BASE + off, &[v]);
    }
    fn out16(&mut self, off: u64, v: u16) {
        self.dev
            .write(AddressSpace::Pio, BASE + off, &v.to_le_bytes());
    }
    fn in8(&mut self, off: u64) -> u8 {
        let mut b = [0u8];
        self.dev.read(AddressSpace::Pio, BASE + off, &mut b);
        b[0]
    }
    fn in16(&mut self, off: u64) -> u16 {
        let mut b = [0u8; 2];
        self.dev.read(AddressSpace::Pio, BASE + off, &mut b);
        u16::from_le_bytes(b)
    }
    fn status(&mut self) -> u8 {
        self.in8(STATUS)
    }
    /// Delivers every due timer, as the host's timer thread would; returns how many.
    fn fire_due(&mut self) -> usize {
        let due = self.host.take_due_timers();
        for id in &due {
            self.dev.timer_fired(*id);
        }
        due.len()
    }
    fn advance(&mut self, ns: u64) {
        self.host.advance_ns(ns);
    }
    fn armed(&self) -> Option<u64> {
        self.host.record().timers.get(&TIMER_ID).copied()
    }
    fn irq(&self) -> bool {
        self.host.irq_level(IRQ).unwrap_or(false)
    }
    fn edges(&self) -> usize {
        self.host.rising_edges(IRQ)
    }
    /// Loads `ms` and starts with `mode` (CTRL_* bits besides start).
    fn start(&mut self, ms: u16, mode: u8) {
        self.out16(RELOAD_LO, ms);
        self.out8(CONTROL, CTRL_START | mode);
    }
}

#[test]
fn one_shot_expires_at_the_right_virtual_time() {
    let mut b = Bench::new();
    b.advance(5 * MS); // start at a non-zero time: the deadline is relative
    b.start(250, CTRL_IRQ_ENABLE);
    assert_eq!(b.armed(), Some(255 * MS));

    b.advance(250 * MS - 1);
    assert_eq!(b.fire_due(), 0);
    assert_eq!(b.status(), 0, "not expired 1 ns before the deadline");
    assert!(!b.irq());

    b.advance(1);
    assert_eq!(b.fire_due(), 1);
    assert_eq!(b.status(), STATUS_EXPIRED);
    assert!(b.irq(), "IRQ high on expiry with interrupts enabled");
    assert_eq!(b.edges(), 1);
    assert_eq!(b.in8(CONTROL), CTRL_IRQ_ENABLE, "one-shot clears start");
    assert_eq!(b.armed(), None, "one-shot leaves no timer armed");

    b.advance(1000 * MS);
    assert_eq!(b.fire_due(), 0);
    assert_eq!(b.edges(), 1, "a one-shot fires once");
}

#[test]
fn status_is_exact_even_before_the_host_delivers_the_timer() {
    let mut b = Bench::new();
    b.start(10, CTRL_IRQ_ENABLE);
    b.advance(10 * MS);
    // The host's timer thread has not called us yet; a status read still
    // sees the expiry, because the device catches up with the clock.
    assert_eq!(b.status(), STATUS_EXPIRED);
    assert!(b.irq());
    assert_eq!(b.armed(), None);
    // The (stale) callback that arrives afterwards changes nothing.
    b.dev.timer_fired(TIMER_ID);
    assert_eq!(b.edges(), 1);
    assert_eq!(b.status(), STATUS_EXPIRED);
}

#[test]
fn periodic_rearms_on_schedule() {
    let mut b = Bench::new();
    b.start(3, CTRL_PERIODIC | CTRL_IRQ_ENABLE);
    assert_eq!(b.armed(), Some(3 * MS));

    b.advance(3 * MS);
    assert_eq!(b.fire_due(), 1);
    assert_eq!(b.status(), STATUS_EXPIRED);
    assert_eq!(b.armed(), Some(6 * MS), "re-armed one period later");
    assert_eq!(
        b.in8(CONTROL),
        CTRL_START | CTRL_PERIODIC | CTRL_IRQ_ENABLE,
        "periodic keeps running"
    );

    // Acknowledge (keeping the mode bits): status and line drop, the count
    // is not restarted.
    b.out8(
        CONTROL,
        CTRL_ACK | CTRL_START | CTRL_PERIODIC | CTRL_IRQ_ENABLE,
    );
    assert_eq!(b.status(), 0);
    assert!(!b.irq());
    assert_eq!(b.armed(), Some(6 * MS));

    b.advance(3 * MS);
    assert_eq!(b.fire_due(), 1);
    assert_eq!(b.status(), STATUS_EXPIRED);
    assert_eq!(b.edges(), 2);
    assert_eq!(b.armed(), Some(9 * MS));

    // A late callback (at 20.5 ms) re-arms on the original grid, 21 ms, not
    // 23.5 ms: periods do not drift with host latency.
    b.advance(14 * MS + MS / 2);
    assert_eq!(b.fire_due(), 1);
    assert_eq!(b.armed(), Some(21 * MS));
}

#[test]
fn irq_line_follows_expired_and_enable() {
    let mut b = Bench::new();
    b.start(1, 0); // interrupts disabled
    b.advance(MS);
    b.fire_due();
    assert_eq!(b.status(), STATUS_EXPIRED);
    assert!(!b.irq(), "no IRQ while interrupt enable is clear");
    assert_eq!(b.edges(), 0);

    // (control written, expected line level afterwards)
    let steps = [
        (CTRL_IRQ_ENABLE, true),             // enabling while expired raises it
        (0, false),                          // disabling lowers it
        (CTRL_IRQ_ENABLE, true),             // and again
        (CTRL_IRQ_ENABLE | CTRL_ACK, false), // acknowledging lowers it
        (CTRL_IRQ_ENABLE, false),            // nothing pending any more
    ];
    for (i, (control, level)) in steps.into_iter().enumerate() {
        b.out8(CONTROL, control);
        assert_eq!(b.irq(), level, "step {i}: control {control:#04x}");
    }
    assert_eq!(b.edges(), 2);
    // Only changes reach the host: no repeated lows or highs.
    let irqs = b.host.record().irqs.clone();
    for w in irqs.windows(2) {
        assert_ne!(w[0], w[1], "repeated level in {irqs:?}");
    }
}

#[test]
fn reading_status_does_not_acknowledge() {
    let mut b = Bench::new();
    b.start(2, CTRL_IRQ_ENABLE);
    b.advance(2 * MS);
    b.fire_due();
    for _ in 0..3 {
        assert_eq!(b.status(), STATUS_EXPIRED);
    }
    assert!(b.irq());
    b.out8(STATUS, 0); // status is read-only
    assert_eq!(b.status(), STATUS_EXPIRED);
    b.out8(CONTROL, CTRL_ACK | CTRL_IRQ_ENABLE);
    assert_eq!(b.status(), 0);
    assert!(!b.irq());
    assert_eq!(b.in8(CONTROL), CTRL_IRQ_ENABLE, "ack bit reads as 0");
}

#[test]
fn registers_read_back() {
    let mut b = Bench::new();
    b.out16(RELOAD_LO, 0xbeef);
    assert_eq!(b.in16(RELOAD_LO), 0xbeef);
    assert_eq!(b.in8(RELOAD_LO), 0xef);
    assert_eq!(b.in8(RELOAD_HI), 0xbe);
    b.out8(RELOAD_HI, 0x12);
    assert_eq!(b.in16(RELOAD_LO), 0x12ef);
    // Reserved control bits are dropped.
    b.out8(CONTROL, 0x78 | CTRL_PERIODIC);
    assert_eq!(b.in8(CONTROL), CTRL_PERIODIC);
    // A 32-bit read over all four registers.
    let mut all = [0u8; 4];
    b.dev.read(AddressSpace::Pio, BASE, &mut all);
    assert_eq!(all, [CTRL_PERIODIC, 0, 0xef, 0x12]);
}

#[test]
fn stop_disarms_and_reload_applies_at_next_start() {
    let mut b = Bench::new();
    b.start(10, CTRL_IRQ_ENABLE);
    b.advance(4 * MS);
    b.out16(RELOAD_LO, 100); // does not change the running count
    assert_eq!(b.armed(), Some(10 * MS));
    b.out8(CONTROL, CTRL_IRQ_ENABLE); // stop
    assert_eq!(b.armed(), None);
    b.advance(100 * MS);
    b.dev.timer_fired(TIMER_ID); // a stale callback
    assert_eq!(b.status(), 0, "a stopped countdown never expires");
    b.out8(CONTROL, CTRL_START | CTRL_IRQ_ENABLE); // restart: loads 100 ms
    assert_eq!(b.armed(), Some(204 * MS));
}

/// The expected outcome of an options string: (port, irq) or an error needle.
type Want = Result<(u16, u32), &'static str>;

#[test]
fn options_are_validated() {
    // (options, Ok((port, irq)) or Err(needle in the message))
    let cases: [(&str, Want); 10] = [
        ("", Ok((0x530, 5))),
        ("port=0x540,irq=7", Ok((0x540, 7))),
        ("port=1344", Ok((0x540, 5))),
        ("port=0xfffc,irq=23", Ok((0xfffc, 23))),
        ("port=0xfffd", Err("port 0xfffd out of range")),
        ("port=0x10000", Err("port 0x10000 out of range")),
        ("irq=24", Err("irq 24 out of range (0-23)")),
        ("irq=99999999999", Err("irq 99999999999 out of range")),
        ("irq=banana", Err("bad value 'banana' for option 'irq'")),
        ("colour=red", Err("unknown option 'colour'")),
    ];
    for (opts, want) in cases {
        let host = RecordingHost::new();
        let got = Countdown::create(&DeviceConfig::parse(opts), host.services());
        match (got, want) {
            (Ok(dev), Ok((port, irq))) => {
                assert_eq!(dev.io_ranges(), vec![IoRange::pio(port, 4)], "{opts}");
                // The IRQ option is the line the device drives.
                let mut dev = dev;
                dev.write(AddressSpace::Pio, u64::from(port) + RELOAD_LO, &[1, 0]);
                dev.write(
                    AddressSpace::Pio,
                    u64::from(port),
                    &[CTRL_START | CTRL_IRQ_ENABLE],
                );
                host.advance_ns(MS);
                dev.timer_fired(TIMER_ID);
                assert_eq!(host.irq_level(irq), Some(true), "{opts}");
            }
            (Err(e), Err(needle)) => {
                assert!(e.message.contains(needle), "{opts}: {}", e.message);
                assert!(!e.message.contains('\n'), "one line: {}", e.message);
            }
            (Ok(_), Err(needle)) => panic!("{opts}: accepted, expected error {needle:?}"),
            (Err(e), Ok(_)) => panic!("{opts}: refused: {}", e.message),
        }
    }
}

#[test]
fn save_restore_resumes_the_remaining_time_on_another_clock() {
    let mut a = Bench::new();
    a.start(100, CTRL_IRQ_ENABLE);
    a.advance(40 * MS);
    let state = a.dev.save().expect("save");

    // Restore into a fresh device on a host whose clock reads 1 s.
    let host = RecordingHost::new();
    host.advance_ns(1000 * MS);
    let mut b = Bench::on(host);
    b.dev.restore(&state).expect("restore");
    assert_eq!(b.armed(), Some(1060 * MS), "60 ms were left");
    assert_eq!(b.in16(RELOAD_LO), 100);
    assert_eq!(b.in8(CONTROL), CTRL_START | CTRL_IRQ_ENABLE);
    assert!(!b.irq());
    b.advance(60 * MS - 1);
    assert_eq!(b.fire_due(), 0);
    b.advance(1);
    assert_eq!(b.fire_due(), 1);
    assert_eq!(b.status(), STATUS_EXPIRED);
    assert!(b.irq());

    // An expired, interrupting state drives the line on restore.
    let expired = b.dev.save().expect("save");
    let mut c = Bench::new();
    c.dev.restore(&expired).expect("restore");
    assert!(c.irq());
    assert_eq!(c.armed(), None);
    assert_eq!(c.status(), STATUS_EXPIRED);
}

#[test]
fn refused_restore_leaves_the_device_unchanged() {
    let mut b = Bench::new();
    b.start(7, 0);
    let mut bad = b.dev.save().expect("save");
    bad.version = 99;
    let e = b.dev.restore(&bad).expect_err("version 99");
    assert!(e.message.contains("version 99"), "{}", e.message);
    assert_eq!(b.in8(CONTROL), CTRL_START);
    assert_eq!(b.armed(), Some(7 * MS));
}

#[test]
fn reset_returns_to_power_on_state() {
    let mut b = Bench::new();
    b.start(1, CTRL_PERIODIC | CTRL_IRQ_ENABLE);
    b.advance(MS);
    b.fire_due();
    assert!(b.irq());
    b.dev.reset();
    assert!(!b.irq(), "reset lowers the line");
    assert_eq!(b.armed(), None);
    assert_eq!(b.in8(CONTROL), 0);
    assert_eq!(b.status(), 0);
    assert_eq!(b.in16(RELOAD_LO), 0);
    // Reload 0 counts as 65536 ms.
    b.out8(CONTROL, CTRL_START);
    assert_eq!(b.armed(), Some(MS + 65_536 * MS));
}

#[test]
fn accesses_outside_the_registers_are_ignored() {
    let mut b = Bench::new();
    b.dev.write(AddressSpace::Mmio, BASE, &[CTRL_START]);
    assert_eq!(b.in8(CONTROL), 0);
    let mut v = [0u8; 2];
    b.dev.read(AddressSpace::Pio, BASE + 3, &mut v);
    assert_eq!(v, [0, 0xff], "the byte past +3 is open bus");
}
