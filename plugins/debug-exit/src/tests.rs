//! Guest-visible behaviour of the debug-exit port, on the shared recording host.

use crate::{exit_status, DebugExit};
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, IoRange};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

fn device(opts: &str) -> (DebugExit, RecordingHost) {
    let host = RecordingHost::new();
    let dev = DebugExit::create(&DeviceConfig::parse(opts), host.services()).unwrap();
    (dev, host)
}

#[test]
fn status_formula() {
    let cases: &[(u64, i32)] = &[
        (0, 1),
        (1, 3),
        (0x7f, 0xff),
        (0x80, 0x101),
        (0x3fff_ffff, 0x7fff_ffff),
        (0x4000_0000, i32::MIN | 1),
        (0x7fff_ffff, -1),
        (0x8000_0000, 1),
        (0xffff_ffff, -1),
    ];
    for &(v, want) in cases {
        assert_eq!(exit_status(v), want, "V = {v:#x}");
    }
}

#[test]
fn writes_of_every_width_end_the_vm() {
    // (options, port, bytes written, expected status or None)
    type Case = (&'static str, u64, &'static [u8], Option<i32>);
    let cases: &[Case] = &[
        ("", 0xf4, &[0x01], Some(3)),
        ("", 0xf4, &[0x00], Some(1)),
        ("", 0xf4, &[0x34, 0x12], Some(0x2469)),
        ("", 0xf4, &[0x10, 0, 0, 0], Some(0x21)),
        ("", 0xf7, &[0x02], Some(5)),
        ("", 0xf8, &[0x02], None),
        ("", 0xf3, &[0x02, 0x02], None),
        ("iosize=1", 0xf5, &[0x02], None),
        ("iosize=1", 0xf4, &[0x05, 0, 0, 0], Some(0xb)),
        ("iobase=0x501,iosize=2", 0x502, &[0x31], Some(0x63)),
        ("port=0x501", 0xf4, &[0x31], None),
    ];
    for &(opts, port, bytes, want) in cases {
        let (mut dev, host) = device(opts);
        dev.write(AddressSpace::Pio, port, bytes);
        let exits = host.record().exits.clone();
        match want {
            None => assert!(exits.is_empty(), "{opts} {port:#x}: {exits:?}"),
            Some(status) => {
                assert_eq!(exits.len(), 1, "{opts} {port:#x}");
                assert_eq!(exits[0].0, status, "{opts} {port:#x}");
            }
        }
    }
}

#[test]
fn reason_names_the_value() {
    let (mut dev, host) = device("");
    dev.write(AddressSpace::Pio, 0xf4, &[0x2a, 0, 0, 0]);
    assert_eq!(
        host.record().exits.as_slice(),
        &[(0x55, "debug-exit: guest wrote 0x2a".to_string())]
    );
}

#[test]
fn mmio_at_the_same_address_is_ignored() {
    let (mut dev, host) = device("");
    dev.write(AddressSpace::Mmio, 0xf4, &[1]);
    assert!(host.record().exits.is_empty());
}

#[test]
fn reads_return_zero() {
    let (mut dev, host) = device("");
    let mut b = [0xaau8; 4];
    dev.read(AddressSpace::Pio, 0xf4, &mut b);
    assert_eq!(b, [0; 4]);
    assert!(host.record().exits.is_empty(), "a read never exits");
}

#[test]
fn claims_iobase_iosize() {
    let (dev, _) = device("iobase=0x501,iosize=2");
    assert_eq!(dev.io_ranges(), vec![IoRange::pio(0x501, 2)]);
}

#[test]
fn bad_options_fail_create() {
    for opts in ["iosize=8", "iobase=0xffff", "colour=red"] {
        let services = RecordingHost::new().services();
        assert!(
            DebugExit::create(&DeviceConfig::parse(opts), services).is_err(),
            "{opts}"
        );
    }
}

#[test]
fn save_restore() {
    let (mut dev, _) = device("");
    let s = dev.save().unwrap();
    assert_eq!(
        s,
        DeviceState {
            version: 1,
            data: Default::default()
        }
    );
    dev.restore(&s).unwrap();
    let other_version = DeviceState {
        version: 2,
        data: Default::default(),
    };
    assert!(dev.restore(&other_version).is_err());
    let junk = DeviceState {
        version: 1,
        data: vec![1].into(),
    };
    assert!(dev.restore(&junk).is_err());
}
