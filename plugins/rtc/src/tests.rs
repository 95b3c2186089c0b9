//! Register-level tests of the RTC with a recording host.

use crate::regs::*;
use crate::state::{STATE_LEN, STATE_VERSION};
use crate::RtcDevice;
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, MachineInfo};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

/// 2026-11-25 13:45:07 UTC, a Wednesday.
const BASE: u64 = 1_795_614_307;
const SEC: u64 = 1_000_000_000;

fn device_at(base: u64) -> (RtcDevice, RecordingHost) {
    let host = RecordingHost::new();
    let cfg = DeviceConfig::parse(&format!("base={base}"));
    let dev = RtcDevice::create(&cfg, host.services()).unwrap();
    (dev, host)
}

fn rd(d: &mut RtcDevice, i: u8) -> u8 {
    d.write(AddressSpace::Pio, 0x70, &[i]);
    let mut b = [0u8];
    d.read(AddressSpace::Pio, 0x71, &mut b);
    b[0]
}

fn wr(d: &mut RtcDevice, i: u8, v: u8) {
    d.write(AddressSpace::Pio, 0x70, &[i]);
    d.write(AddressSpace::Pio, 0x71, &[v]);
}

/// The eight time registers: seconds, minutes, hours, weekday, day, month, year, century.
fn time(d: &mut RtcDevice) -> [u8; 8] {
    TIME_REGS.map(|i| rd(d, i))
}

/// Moves the clock to absolute `target`, firing timers on the way; after
/// each firing that leaves the IRQ line high, `on_irq` runs (it may read C).
fn run_to(
    d: &mut RtcDevice,
    h: &RecordingHost,
    target: u64,
    mut on_irq: impl FnMut(&mut RtcDevice),
) {
    loop {
        let next = h.record().timers.values().copied().min();
        match next {
            Some(t) if t <= target => {
                let now = h.now_ns();
                if t > now {
                    h.advance_ns(t - now);
                }
                for id in h.take_due_timers() {
                    d.timer_fired(id);
                }
                if h.irq_level(8) == Some(true) {
                    on_irq(d);
                }
            }
            _ => break,
        }
    }
    let now = h.now_ns();
    if target > now {
        h.advance_ns(target - now);
    }
}

#[test]
fn time_in_every_format() {
    // (register B, expected time registers)
    let cases: &[(u8, [u8; 8])] = &[
        (0x02, [0x07, 0x45, 0x13, 4, 0x25, 0x11, 0x26, 0x20]),
        (0x06, [7, 45, 13, 4, 25, 11, 26, 20]),
        (0x00, [0x07, 0x45, 0x81, 4, 0x25, 0x11, 0x26, 0x20]),
        (0x04, [7, 45, 0x81, 4, 25, 11, 26, 20]),
    ];
    for &(b, want) in cases {
        let (mut d, _h) = device_at(BASE);
        wr(&mut d, REG_B, b);
        assert_eq!(rd(&mut d, REG_B), b);
        assert_eq!(time(&mut d), want, "B={b:#x}");
    }
}

#[test]
fn power_on_registers() {
    let (mut d, _h) = device_at(BASE);
    assert_eq!(rd(&mut d, REG_A), 0x26);
    assert_eq!(rd(&mut d, REG_B), 0x02);
    assert_eq!(rd(&mut d, REG_C), 0x00);
    assert_eq!(rd(&mut d, REG_D), 0x80);
    // D and C are read-only.
    wr(&mut d, REG_D, 0);
    wr(&mut d, REG_C, 0xff);
    assert_eq!(rd(&mut d, REG_D), 0x80);
    assert_eq!(rd(&mut d, REG_C), 0x00);
}

#[test]
fn counting_across_boundaries() {
    // (base, seconds advanced, register B, expected registers)
    let cases: &[(u64, u64, u8, [u8; 8])] = &[
        (BASE, 0, 0x02, [0x07, 0x45, 0x13, 4, 0x25, 0x11, 0x26, 0x20]),
        (
            BASE,
            52,
            0x02,
            [0x59, 0x45, 0x13, 4, 0x25, 0x11, 0x26, 0x20],
        ),
        (
            BASE,
            53,
            0x02,
            [0x00, 0x46, 0x13, 4, 0x25, 0x11, 0x26, 0x20],
        ),
        (
            1_795_611_599,
            1,
            0x02,
            [0, 0, 0x13, 4, 0x25, 0x11, 0x26, 0x20],
        ),
        (
            1_795_607_999,
            1,
            0x00,
            [0, 0, 0x92, 4, 0x25, 0x11, 0x26, 0x20],
        ),
        (
            1_795_607_999,
            0,
            0x00,
            [0x59, 0x59, 0x11, 4, 0x25, 0x11, 0x26, 0x20],
        ),
        (
            1_795_651_199,
            1,
            0x00,
            [0, 0, 0x12, 5, 0x26, 0x11, 0x26, 0x20],
        ),
        (1_795_651_199, 1, 0x06, [0, 0, 0, 5, 26, 11, 26, 20]),
        (1_796_083_199, 1, 0x02, [0, 0, 0, 3, 0x01, 0x12, 0x26, 0x20]),
        (1_798_761_599, 1, 0x02, [0, 0, 0, 6, 0x01, 0x01, 0x27, 0x20]),
        (1_835_395_199, 1, 0x02, [0, 0, 0, 3, 0x29, 0x02, 0x28, 0x20]),
        (
            1_835_395_199,
            86_401,
            0x02,
            [0, 0, 0, 4, 0x01, 0x03, 0x28, 0x20],
        ),
        (4_102_444_799, 1, 0x06, [0, 0, 0, 6, 1, 1, 0, 21]),
        (4_107_542_399, 1, 0x02, [0, 0, 0, 2, 0x01, 0x03, 0x00, 0x21]),
        (
            BASE,
            365 * 86_400,
            0x02,
            [0x07, 0x45, 0x13, 5, 0x25, 0x11, 0x27, 0x20],
        ),
    ];
    for &(base, secs, b, want) in cases {
        let (mut d, h) = device_at(base);
        wr(&mut d, REG_B, b);
        h.advance_ns(secs * SEC);
        assert_eq!(time(&mut d), want, "base {base} + {secs} s, B={b:#x}");
        // Just before the next update nothing has changed.
        h.advance_ns(SEC - 1);
        assert_eq!(time(&mut d), want, "base {base} + {secs} s + 0.999999999");
    }
}

#[test]
fn guest_sets_the_time_with_set() {
    let (mut d, h) = device_at(BASE);
    h.advance_ns(SEC / 4);
    wr(&mut d, REG_B, B_SET | B_24H);
    // 2030-06-15 08:30:00, a Saturday (7), BCD.
    let new = [0x00, 0x30, 0x08, 7, 0x15, 0x06, 0x30, 0x20];
    for (i, v) in TIME_REGS.iter().zip(new) {
        wr(&mut d, *i, v);
    }
    h.advance_ns(5 * SEC);
    assert_eq!(time(&mut d), new, "no updates while SET");
    assert_eq!(rd(&mut d, REG_A) & A_UIP, 0);
    wr(&mut d, REG_B, B_24H);
    assert_eq!(time(&mut d), new);
    // The divider phase is kept: updates still come on whole virtual seconds.
    run_to(&mut d, &h, 6 * SEC - 1, |_| {});
    assert_eq!(time(&mut d), new);
    run_to(&mut d, &h, 6 * SEC, |_| {});
    assert_eq!(time(&mut d)[0], 0x01);
    run_to(&mut d, &h, 65 * SEC, |_| {});
    assert_eq!(time(&mut d), [0x00, 0x31, 0x08, 7, 0x15, 0x06, 0x30, 0x20]);
}

#[test]
fn weekday_is_its_own_counter() {
    // 2026-11-25 23:59:59 (Wednesday = 4); the guest says Monday (2).
    let (mut d, h) = device_at(1_795_651_199);
    wr(&mut d, DAY_OF_WEEK, 2);
    assert_eq!(rd(&mut d, DAY_OF_WEEK), 2);
    h.advance_ns(SEC);
    assert_eq!(rd(&mut d, DAY_OF_WEEK), 3);
    assert_eq!(rd(&mut d, DAY_OF_MONTH), 0x26);
}

#[test]
fn single_register_write_while_running() {
    let (mut d, h) = device_at(BASE);
    wr(&mut d, MINUTES, 0x59);
    assert_eq!(time(&mut d), [0x07, 0x59, 0x13, 4, 0x25, 0x11, 0x26, 0x20]);
    h.advance_ns(53 * SEC);
    assert_eq!(time(&mut d), [0x00, 0x00, 0x14, 4, 0x25, 0x11, 0x26, 0x20]);
}

#[test]
fn set_clears_uie() {
    let (mut d, _h) = device_at(BASE);
    wr(&mut d, REG_B, B_UIE | B_24H);
    assert_eq!(rd(&mut d, REG_B), B_UIE | B_24H);
    wr(&mut d, REG_B, B_SET | B_UIE | B_24H);
    assert_eq!(rd(&mut d, REG_B), B_SET | B_24H);
}

#[test]
fn uip_window() {
    // Created at virtual 0 with a whole-second base: updates at k seconds.
    let (mut d, h) = device_at(BASE);
    // (virtual time, UIP)
    let cases: &[(u64, bool)] = &[
        (SEC / 2, false),
        (SEC - 244_001, false),
        (SEC - 244_000, true),
        (SEC - 1, true),
        (SEC, false),
        (2 * SEC - 100_000, true),
        (2 * SEC + 1, false),
    ];
    for &(t, uip) in cases {
        h.advance_ns(t - h.now_ns());
        assert_eq!(rd(&mut d, REG_A) & A_UIP != 0, uip, "t={t}");
        assert_eq!(rd(&mut d, REG_A) & 0x7f, 0x26);
    }
    // Writing UIP does nothing.
    wr(&mut d, REG_A, 0xa6);
    assert_eq!(rd(&mut d, REG_A), 0x26);
}

#[test]
fn periodic_interrupt_cadence() {
    // (rate select, interrupts in one virtual second)
    let cases: &[(u8, usize)] = &[
        (3, 8192),
        (6, 1024),
        (1, 256),
        (2, 128),
        (8, 256),
        (13, 8),
        (15, 2),
    ];
    for &(rs, want) in cases {
        let (mut d, h) = device_at(BASE);
        wr(&mut d, REG_A, 0x20 | rs);
        wr(&mut d, REG_B, B_PIE | B_24H);
        let mut seen = 0;
        run_to(&mut d, &h, SEC, |d| {
            let c = rd(d, REG_C);
            assert_eq!(c & (C_IRQF | C_PF), C_IRQF | C_PF);
            seen += 1;
        });
        assert_eq!(seen, want, "RS={rs}");
        assert_eq!(h.rising_edges(8), want, "RS={rs}");
        assert_eq!(h.irq_level(8), Some(false));
    }
}

#[test]
fn periodic_flag_without_enable() {
    let (mut d, h) = device_at(BASE);
    h.advance_ns(SEC / 100);
    // PF is set at the rate even with PIE = 0, but IRQF stays 0.
    assert_eq!(rd(&mut d, REG_C), C_PF);
    assert_eq!(rd(&mut d, REG_C), 0);
    h.advance_ns(SEC / 100);
    // Enabling PIE with PF pending raises IRQF at once.
    wr(&mut d, REG_B, B_PIE | B_24H);
    assert_eq!(h.irq_level(8), Some(true));
    assert_eq!(rd(&mut d, REG_C), C_IRQF | C_PF);
    assert_eq!(h.irq_level(8), Some(false));
    // RS = 0 stops the periodic flag.
    wr(&mut d, REG_A, 0x20);
    h.advance_ns(SEC / 10);
    assert_eq!(rd(&mut d, REG_C) & C_PF, 0);
}

#[test]
fn register_c_read_clears_and_lowers_irq() {
    let (mut d, h) = device_at(BASE);
    wr(&mut d, REG_A, 0x20); // no periodic flag
    wr(&mut d, REG_B, B_UIE | B_24H);
    run_to(&mut d, &h, SEC, |_| {});
    assert_eq!(h.irq_level(8), Some(true));
    assert_eq!(rd(&mut d, REG_C), C_IRQF | C_UF);
    assert_eq!(h.irq_level(8), Some(false));
    assert_eq!(rd(&mut d, REG_C), 0);
    // Without a read the line stays high and no timer is armed.
    run_to(&mut d, &h, 2 * SEC, |_| {});
    assert_eq!(h.irq_level(8), Some(true));
    assert!(h.record().timers.is_empty());
    run_to(&mut d, &h, 5 * SEC, |_| {});
    assert_eq!(h.rising_edges(8), 2);
    assert_eq!(rd(&mut d, REG_C), C_IRQF | C_UF);
}

#[test]
fn update_interrupt_once_a_second() {
    let (mut d, h) = device_at(BASE);
    wr(&mut d, REG_B, B_UIE | B_24H);
    let mut seconds = Vec::new();
    run_to(&mut d, &h, 10 * SEC + SEC / 2, |d| {
        let c = rd(d, REG_C);
        assert_eq!(c & (C_IRQF | C_UF), C_IRQF | C_UF);
        seconds.push(rd(d, SECONDS));
    });
    assert_eq!(
        seconds,
        [0x08, 0x09, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]
    );
}

#[test]
fn alarm_interrupts() {
    // (alarm hours, minutes, seconds, register B mode, seconds of run, alarm times seen)
    type Case = (u8, u8, u8, u8, u64, &'static [u8]);
    let cases: &[Case] = &[
        // 13:45:10 exactly, BCD 24 h.
        (0x13, 0x45, 0x10, 0x02, 60, &[0x10]),
        // Every second of every minute of every hour.
        (0xc0, 0xff, 0xc5, 0x02, 4, &[0x08, 0x09, 0x10, 0x11]),
        // Second 0 of minute 46 of any hour.
        (0xff, 0x46, 0x00, 0x02, 120, &[0x00]),
        // 1:45:12 PM in 12-hour binary mode.
        (0x81, 45, 12, 0x04, 10, &[12]),
        // A 12-hour alarm does not match in the AM.
        (0x01, 45, 12, 0x04, 10, &[]),
    ];
    for &(ah, am, asec, b, run, want) in cases {
        let (mut d, h) = device_at(BASE);
        wr(&mut d, REG_A, 0x20);
        wr(&mut d, REG_B, b);
        wr(&mut d, HOURS_ALARM, ah);
        wr(&mut d, MINUTES_ALARM, am);
        wr(&mut d, SECONDS_ALARM, asec);
        wr(&mut d, REG_B, b | B_AIE);
        let mut seen = Vec::new();
        run_to(&mut d, &h, run * SEC, |d| {
            let c = rd(d, REG_C);
            assert_eq!(c, C_IRQF | C_AF | C_UF);
            seen.push(rd(d, SECONDS));
        });
        assert_eq!(seen, want, "alarm {ah:#x}:{am:#x}:{asec:#x} B={b:#x}");
    }
}

#[test]
fn alarm_flag_found_after_a_long_gap() {
    let (mut d, h) = device_at(BASE);
    wr(&mut d, HOURS_ALARM, 0x02);
    wr(&mut d, MINUTES_ALARM, 0x00);
    wr(&mut d, SECONDS_ALARM, 0x00);
    h.advance_ns(3 * 3600 * SEC);
    assert_eq!(rd(&mut d, REG_C) & C_AF, 0, "02:00:00 not reached yet");
    h.advance_ns(12 * 3600 * SEC);
    assert_eq!(rd(&mut d, REG_C) & C_AF, C_AF, "02:00:00 passed");
    h.advance_ns(400 * 86_400 * SEC);
    assert_eq!(rd(&mut d, REG_C) & C_AF, C_AF);
}

#[test]
fn divider_reset_stops_and_restarts_half_a_second_later() {
    let (mut d, h) = device_at(BASE);
    h.advance_ns(SEC / 4);
    wr(&mut d, REG_A, 0x70 | 0x06);
    assert_eq!(rd(&mut d, REG_C), C_PF, "flags from before the reset");
    h.advance_ns(10 * SEC);
    assert_eq!(rd(&mut d, SECONDS), 0x07);
    assert_eq!(
        rd(&mut d, REG_C) & C_PF,
        0,
        "no periodic flag while in reset"
    );
    wr(&mut d, REG_A, 0x26);
    h.advance_ns(SEC / 2 - 1);
    assert_eq!(rd(&mut d, SECONDS), 0x07);
    h.advance_ns(1);
    assert_eq!(rd(&mut d, SECONDS), 0x08);
    h.advance_ns(SEC);
    assert_eq!(rd(&mut d, SECONDS), 0x09);
}

#[test]
fn reset_pin_clears_enables_and_flags() {
    let (mut d, h) = device_at(BASE);
    wr(&mut d, REG_B, B_PIE | B_AIE | B_UIE | B_SQWE | B_24H);
    wr(&mut d, 0x40, 0x5a);
    run_to(&mut d, &h, SEC, |_| {});
    assert_eq!(h.irq_level(8), Some(true));
    d.reset();
    assert_eq!(h.irq_level(8), Some(false));
    assert_eq!(rd(&mut d, REG_B), B_24H);
    assert_eq!(rd(&mut d, REG_C), 0);
    assert_eq!(rd(&mut d, 0x40), 0x5a, "CMOS RAM survives reset");
    assert_eq!(rd(&mut d, SECONDS), 0x08, "the clock keeps running");
}

#[test]
fn memory_size_fields() {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    // (ram, low ram, cpus, [(index, value)])
    type Case = (u64, u64, u32, &'static [(u8, u8)]);
    let cases: &[Case] = &[
        (
            128 * MIB,
            128 * MIB,
            1,
            &[
                (0x14, 0x02),
                (0x15, 0x80),
                (0x16, 0x02),
                (0x17, 0xff),
                (0x18, 0xff),
                (0x30, 0xff),
                (0x31, 0xff),
                (0x34, 0x00),
                (0x35, 0x07),
                (0x5b, 0),
                (0x5c, 0),
                (0x5d, 0),
                (0x5f, 0),
            ],
        ),
        (
            6 * GIB,
            3 * GIB,
            4,
            &[
                (0x15, 0x80),
                (0x16, 0x02),
                (0x17, 0xff),
                (0x18, 0xff),
                (0x34, 0x00),
                (0x35, 0xbf),
                (0x5b, 0x00),
                (0x5c, 0xc0),
                (0x5d, 0x00),
                (0x5f, 3),
            ],
        ),
        (
            32 * MIB,
            32 * MIB,
            2,
            &[
                (0x17, 0x00),
                (0x18, 0x7c),
                (0x34, 0x00),
                (0x35, 0x01),
                (0x5f, 1),
            ],
        ),
        (
            512 * 1024,
            512 * 1024,
            1,
            &[
                (0x15, 0x00),
                (0x16, 0x02),
                (0x17, 0),
                (0x18, 0),
                (0x34, 0),
                (0x35, 0),
            ],
        ),
    ];
    for &(ram, low, cpus, want) in cases {
        let host = RecordingHost::new();
        host.record().info = MachineInfo {
            ram_bytes: ram,
            low_ram_bytes: low,
            cpus,
        };
        let mut d = RtcDevice::create(&DeviceConfig::parse("base=0"), host.services()).unwrap();
        for &(i, v) in want {
            assert_eq!(rd(&mut d, i), v, "ram {ram:#x} byte {i:#x}");
        }
        let sum: u16 = (0x10..=0x2d).map(|i| u16::from(rd(&mut d, i))).sum();
        let stored = u16::from_be_bytes([rd(&mut d, 0x2e), rd(&mut d, 0x2f)]);
        assert_eq!(stored, sum, "checksum for ram {ram:#x}");
        assert_ne!(sum, 0);
    }
}

#[test]
fn nmi_bit_on_index_port() {
    let (mut d, _h) = device_at(BASE);
    assert!(!d.nmi_disabled());
    d.write(AddressSpace::Pio, 0x70, &[0x80 | REG_D]);
    assert!(d.nmi_disabled());
    assert_eq!(d.rtc().index(), REG_D);
    let mut b = [0u8];
    d.read(AddressSpace::Pio, 0x71, &mut b);
    assert_eq!(b[0], D_VRT, "the index ignores bit 7");
    d.read(AddressSpace::Pio, 0x70, &mut b);
    assert_eq!(b[0], 0xff, "port 0x70 is write-only");
    d.write(AddressSpace::Pio, 0x70, &[REG_D]);
    assert!(!d.nmi_disabled());
    // A 16-bit write sets the index then writes the data.
    d.write(AddressSpace::Pio, 0x70, &[0x40, 0x33]);
    assert_eq!(rd(&mut d, 0x40), 0x33);
}

#[test]
fn save_restore_round_trip() {
    let (mut d, h) = device_at(BASE);
    wr(&mut d, REG_B, B_SET | B_24H);
    wr(&mut d, MINUTES, 0x21);
    wr(&mut d, REG_B, B_PIE | B_24H);
    wr(&mut d, 0x50, 0xaa);
    wr(&mut d, DAY_OF_WEEK, 1);
    d.write(AddressSpace::Pio, 0x70, &[0x80 | 0x50]);
    run_to(&mut d, &h, SEC / 3, |_| {});
    let saved = d.save().unwrap();
    assert_eq!(saved.version, STATE_VERSION);
    assert_eq!(saved.data.len(), STATE_LEN);
    let h2 = RecordingHost::new();
    h2.advance_ns(h.now_ns());
    let mut e = RtcDevice::create(&DeviceConfig::parse("base=0"), h2.services()).unwrap();
    e.restore(&saved).unwrap();
    assert_eq!(e.save().unwrap(), saved);
    assert!(e.nmi_disabled());
    assert_eq!(h2.irq_level(8), Some(true));
    for dev in [&mut d, &mut e] {
        assert_eq!(time(dev), [0x07, 0x21, 0x13, 1, 0x25, 0x11, 0x26, 0x20]);
        assert_eq!(rd(dev, 0x50), 0xaa);
        assert_eq!(rd(dev, REG_C) & C_IRQF, C_IRQF);
    }
}

#[test]
fn malformed_state_refused() {
    let (mut d, _h) = device_at(BASE);
    let good = d.save().unwrap();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.data.to_vec();
        f(&mut v);
        DeviceState {
            version: STATE_VERSION,
            data: v.into(),
        }
    };
    let cases: Vec<(DeviceState, &str)> = vec![
        (
            DeviceState {
                version: 9,
                data: good.data.clone(),
            },
            "version 9",
        ),
        (with(&|v| v.truncate(10)), "must be"),
        (with(&|v| v.push(0)), "must be"),
        (with(&|v| v[0] = 0x80), "index"),
        (with(&|v| v[1] = 2), "NMI"),
        (with(&|v| v[146] = 7), "weekday"),
        (with(&|v| v[155] = 0x81), "flags"),
        (with(&|v| v[156] = 5), "IRQ line"),
    ];
    for (s, msg) in cases {
        let e = d.restore(&s).unwrap_err();
        assert!(e.message.contains(msg), "{msg}: {}", e.message);
    }
    assert_eq!(d.save().unwrap(), good, "refused states change nothing");
}
