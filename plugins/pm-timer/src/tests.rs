//! Guest-visible behaviour of the PM timer with a recording host.

use crate::{timer_value, PmTimer};
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, IoRange};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

fn device(opts: &str) -> (PmTimer, RecordingHost) {
    let host = RecordingHost::new();
    let dev = PmTimer::create(&DeviceConfig::parse(opts), host.services()).unwrap();
    (dev, host)
}

fn set_clock(host: &RecordingHost, ns: u64) {
    host.record().now_ns = ns;
}

fn read(dev: &mut PmTimer, port: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    dev.read(AddressSpace::Pio, port, &mut b);
    b
}

fn read32(dev: &mut PmTimer, port: u64) -> u32 {
    let b = read(dev, port, 4);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn value_follows_the_virtual_clock() {
    // (ns, 24-bit value, 32-bit value): floor(ns * 3579545 / 1e9) mod 2^width.
    let cases: &[(u64, u32, u32)] = &[
        (0, 0, 0),
        (279, 0, 0),
        (280, 1, 1),
        (1_000_000, 0xdfb, 0xdfb),
        (1_000_000_000, 0x36_9e99, 0x36_9e99),
        (4_686_968_874, 0xff_ffff, 0xff_ffff),
        (4_686_968_875, 0, 0x100_0000),
        (4_687_000_000, 0x6f, 0x100_006f),
        (1_000_000_000_000, 0x5b_85a8, 0xd55b_85a8),
        (1_199_864_000_000, 0xff_ff8d, 0xffff_ff8d),
        (1_199_864_031_882, 0, 0),
        (1_199_865_000_000, 0xd89, 0xd89),
        (
            u64::MAX,
            timer_value(u64::MAX, 24),
            timer_value(u64::MAX, 32),
        ),
    ];
    let (mut d24, h24) = device("");
    let (mut d32, h32) = device("width=32");
    for &(ns, v24, v32) in cases {
        set_clock(&h24, ns);
        set_clock(&h32, ns);
        assert_eq!(read32(&mut d24, 0x608), v24, "24-bit at {ns} ns");
        assert_eq!(read32(&mut d32, 0x608), v32, "32-bit at {ns} ns");
    }
    // u64::MAX ns: floor(18446744073709551615 * 3579545 / 1e9) = 66030950515326656,
    // which needs more than 64 bits in the product: 3047538368 mod 2^32, 10862272 mod 2^24.
    assert_eq!(timer_value(u64::MAX, 32), 3_047_538_368);
    assert_eq!(timer_value(u64::MAX, 24), 10_862_272);
}

#[test]
fn reads_of_every_width_and_offset() {
    let (mut dev, host) = device("port=0xb008,width=32");
    set_clock(&host, 1_000_000_000_000); // 0xd55b85a8
                                         // (port, length, bytes)
    let cases: &[(u64, usize, &[u8])] = &[
        (0xb008, 4, &[0xa8, 0x85, 0x5b, 0xd5]),
        (0xb008, 2, &[0xa8, 0x85]),
        (0xb00a, 2, &[0x5b, 0xd5]),
        (0xb009, 2, &[0x85, 0x5b]),
        (0xb00b, 1, &[0xd5]),
        (0xb00a, 4, &[0x5b, 0xd5, 0xff, 0xff]),
        (0xb006, 4, &[0xff, 0xff, 0xa8, 0x85]),
        (0xb00c, 1, &[0xff]),
    ];
    for &(port, len, want) in cases {
        assert_eq!(read(&mut dev, port, len), want, "{len} bytes at {port:#x}");
    }
    let mut b = [0u8; 4];
    dev.read(AddressSpace::Mmio, 0xb008, &mut b);
    assert_eq!(b, [0xff; 4], "MMIO at the same address is not the timer");
}

#[test]
fn extended_bits_read_zero_in_24_bit_mode() {
    let (mut dev, host) = device("");
    for ns in [1_000_000_000_000u64, 3_000_000_000, 77] {
        set_clock(&host, ns);
        assert_eq!(read(&mut dev, 0x60b, 1), [0], "E_TMR_VAL at {ns} ns");
    }
}

#[test]
fn counts_up_monotonically_between_wraps() {
    let (mut dev, host) = device("");
    let mut last = 0;
    for step in 1..2000u64 {
        set_clock(&host, step * 1_234_567);
        let v = read32(&mut dev, 0x608);
        assert!(v > last, "{v} after {last}");
        last = v;
    }
}

#[test]
fn writes_are_ignored() {
    let (mut dev, host) = device("");
    set_clock(&host, 1_000_000);
    dev.write(AddressSpace::Pio, 0x608, &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(read32(&mut dev, 0x608), 0xdfb);
    assert!(host.record().irqs.is_empty());
    assert!(host.record().timers.is_empty());
}

#[test]
fn claims_four_ports() {
    let (dev, _) = device("port=0x408");
    assert_eq!(dev.io_ranges(), vec![IoRange::pio(0x408, 4)]);
}

#[test]
fn bad_options_fail_create() {
    for opts in ["width=31", "port=0xffff", "irq=9", "mode=acpi"] {
        let host = RecordingHost::new();
        assert!(
            PmTimer::create(&DeviceConfig::parse(opts), host.services()).is_err(),
            "{opts}"
        );
    }
}

#[test]
fn save_restore() {
    let (mut dev, host) = device("width=32");
    let s = dev.save().unwrap();
    assert_eq!(s.version, 1);
    assert_eq!(s.data.as_slice(), &[0x08, 0x06, 32]);
    // The value follows the clock, not the state.
    set_clock(&host, 1_000_000);
    dev.restore(&s).unwrap();
    assert_eq!(read32(&mut dev, 0x608), 0xdfb);
    let cases: &[(u32, &[u8], &str)] = &[
        (2, &[0x08, 0x06, 32], "version 2 is not supported"),
        (1, &[0x08, 0x06], "has 2 bytes"),
        (1, &[0x08, 0x06, 32, 0], "has 4 bytes"),
        (1, &[0x08, 0x06, 24], "port=0x608,width=24"),
        (1, &[0x08, 0xb0, 32], "port=0xb008,width=32"),
    ];
    for &(version, data, msg) in cases {
        let bad = DeviceState {
            version,
            data: data.to_vec().into(),
        };
        let e = dev.restore(&bad).unwrap_err();
        assert!(e.message.contains(msg), "{msg}: {}", e.message);
    }
    dev.reset();
    assert_eq!(
        read32(&mut dev, 0x608),
        0xdfb,
        "reset does not stop the clock"
    );
}
