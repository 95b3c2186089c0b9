//! Register-level tests of the i8042 with a recording host.

use crate::controller::*;
use crate::state::{FIXED_LEN, STATE_VERSION};
use crate::{I8042, PULSE_RESET_REASON};
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

fn device() -> (I8042, RecordingHost) {
    let host = RecordingHost::new();
    let d = I8042::create(&DeviceConfig::default(), host.services()).unwrap();
    (d, host)
}

fn inb(d: &mut I8042, port: u64) -> u8 {
    let mut b = [0u8];
    d.read(AddressSpace::Pio, port, &mut b);
    b[0]
}

fn outb(d: &mut I8042, port: u64, v: u8) {
    d.write(AddressSpace::Pio, port, &[v]);
}

/// Reads every byte the controller has for the guest.
fn drain(d: &mut I8042) -> Vec<u8> {
    let mut out = Vec::new();
    while inb(d, 0x64) & ST_OBF != 0 {
        out.push(inb(d, 0x60));
    }
    out
}

#[test]
fn controller_commands() {
    // (writes as (port, byte), bytes the guest then reads from 0x60)
    type Case = (&'static [(u64, u8)], &'static [u8]);
    let cases: &[Case] = &[
        (&[(0x64, 0xaa)], &[0x55]),
        (&[(0x64, 0xab)], &[0x00]),
        (&[(0x64, 0xa9)], &[0x00]),
        (&[(0x64, 0x20)], &[0x45]),
        (&[(0x64, 0x60), (0x60, 0x07), (0x64, 0x20)], &[0x07]),
        (&[(0x64, 0x65), (0x60, 0x99), (0x64, 0x25)], &[0x99]),
        (&[(0x64, 0xad), (0x64, 0x20)], &[0x55]),
        (&[(0x64, 0xad), (0x64, 0xae), (0x64, 0x20)], &[0x45]),
        (&[(0x64, 0xa7), (0x64, 0x20)], &[0x65]),
        (&[(0x64, 0xd0)], &[0x03]),
        (&[(0x64, 0xd1), (0x60, 0x01), (0x64, 0xd0)], &[0x01]),
        (&[(0x64, 0xdd), (0x64, 0xd0)], &[0x01]),
        (&[(0x64, 0xd2), (0x60, 0x1c)], &[0x1c]),
        (&[(0x64, 0xd3), (0x60, 0x5a)], &[0x5a]),
        (&[(0x64, 0xd4), (0x60, 0xf2)], &[]),
        (&[(0x64, 0xe0)], &[0x00]),
        (&[(0x64, 0xff)], &[]),
        (&[(0x60, 0xff)], &[0xfa, 0xaa]),
        (&[(0x60, 0xf2)], &[0xfa, 0xab, 0x83]),
        (&[(0x60, 0xf4)], &[0xfa]),
        (&[(0x60, 0xee)], &[0xee]),
        (&[(0x60, 0xf0), (0x60, 0x00)], &[0xfa, 0xfa, 0x02]),
        // Keyboard bytes wait while the keyboard interface is disabled.
        (&[(0x64, 0xad), (0x60, 0xf2)], &[]),
        (
            &[(0x64, 0xad), (0x60, 0xf2), (0x64, 0xae)],
            &[0xfa, 0xab, 0x83],
        ),
    ];
    for (writes, want) in cases {
        let (mut d, h) = device();
        for &(p, v) in *writes {
            outb(&mut d, p, v);
        }
        assert_eq!(drain(&mut d), want.to_vec(), "{writes:x?}");
        assert!(h.record().resets.is_empty(), "{writes:x?}");
    }
}

#[test]
fn status_register() {
    let (mut d, _h) = device();
    assert_eq!(inb(&mut d, 0x64), ST_UNLOCKED | ST_SYS);
    outb(&mut d, 0x64, 0xaa);
    assert_eq!(inb(&mut d, 0x64), ST_UNLOCKED | ST_SYS | ST_CMD | ST_OBF);
    assert_eq!(inb(&mut d, 0x60), 0x55);
    assert_eq!(inb(&mut d, 0x64), ST_UNLOCKED | ST_SYS | ST_CMD);
    // The data register keeps its last value.
    assert_eq!(inb(&mut d, 0x60), 0x55);
    outb(&mut d, 0x64, 0x60);
    outb(&mut d, 0x60, 0x00);
    assert_eq!(
        inb(&mut d, 0x64),
        ST_UNLOCKED,
        "SYS follows the command byte"
    );
    outb(&mut d, 0x64, 0xd3);
    outb(&mut d, 0x60, 0x01);
    assert_eq!(inb(&mut d, 0x64), ST_UNLOCKED | ST_OBF | ST_AUXB);
    assert_eq!(d.controller().command_byte(), 0);
}

#[test]
fn pulse_reset_goes_to_host() {
    let (mut d, h) = device();
    outb(&mut d, 0x64, 0xfe);
    assert_eq!(h.record().resets, vec![PULSE_RESET_REASON.to_string()]);
    // Other pulse commands with bit 0 clear reset too; bit 0 set does not.
    outb(&mut d, 0x64, 0xf0);
    outb(&mut d, 0x64, 0xfd);
    outb(&mut d, 0x64, 0xff);
    let resets = h.record().resets.clone();
    assert_eq!(resets.len(), 2);
    assert!(resets[1].contains("0xF0"), "{resets:?}");
    // 0xfe on the data port is a keyboard Resend, not a reset.
    outb(&mut d, 0x60, 0xfe);
    assert_eq!(h.record().resets.len(), 2);
}

#[test]
fn output_port_write_with_reset_bit_clear() {
    let (mut d, h) = device();
    outb(&mut d, 0x64, 0xd1);
    outb(&mut d, 0x60, 0x03);
    assert!(h.record().resets.is_empty());
    assert!(d.a20_enabled());
    outb(&mut d, 0x64, 0xd1);
    outb(&mut d, 0x60, 0x00);
    let resets = h.record().resets.clone();
    assert_eq!(resets.len(), 1);
    assert!(resets[0].contains("output port"), "{resets:?}");
    assert!(!d.a20_enabled());
    outb(&mut d, 0x64, 0xdf);
    assert!(d.a20_enabled());
    // Each change of the gate reached the host's A20 line, once.
    assert_eq!(h.record().a20, vec![false, true]);
    outb(&mut d, 0x64, 0xdd);
    outb(&mut d, 0x64, 0xdd);
    assert_eq!(h.record().a20, vec![false, true, false]);
}

#[test]
fn keyboard_reset_sequence_with_irqs() {
    let (mut d, h) = device();
    outb(&mut d, 0x60, 0xff);
    // One rising edge per byte as the guest reads them.
    assert_eq!(h.rising_edges(1), 1);
    assert_eq!(inb(&mut d, 0x60), 0xfa);
    assert_eq!(h.rising_edges(1), 2);
    assert_eq!(h.irq_level(1), Some(true));
    assert_eq!(inb(&mut d, 0x60), 0xaa);
    assert_eq!(h.irq_level(1), Some(false));
    assert_eq!(h.rising_edges(1), 2);
    assert_eq!(h.rising_edges(12), 0);
}

#[test]
fn irq_follows_command_byte() {
    let (mut d, h) = device();
    // Interrupts off: no IRQ 1 for the reply.
    outb(&mut d, 0x64, 0x60);
    outb(&mut d, 0x60, 0x44);
    outb(&mut d, 0x64, 0xaa);
    assert_eq!(h.rising_edges(1), 0);
    // Enabling INT with OBF set raises it.
    outb(&mut d, 0x64, 0x60);
    // The byte is still waiting: the 0x60 command did not consume it.
    outb(&mut d, 0x60, 0x45);
    assert_eq!(h.irq_level(1), Some(true));
    assert_eq!(inb(&mut d, 0x60), 0x55);
    assert_eq!(h.irq_level(1), Some(false));
    // Aux data raises IRQ 12 only when INT2 is set.
    outb(&mut d, 0x64, 0xd3);
    outb(&mut d, 0x60, 0x11);
    assert_eq!(h.rising_edges(12), 0);
    inb(&mut d, 0x60);
    outb(&mut d, 0x64, 0x60);
    outb(&mut d, 0x60, 0x47);
    outb(&mut d, 0x64, 0xd3);
    outb(&mut d, 0x60, 0x22);
    assert_eq!(h.irq_level(12), Some(true));
    assert_eq!(h.rising_edges(1), 1);
    assert_eq!(inb(&mut d, 0x60), 0x22);
    assert_eq!(h.irq_level(12), Some(false));
}

#[test]
fn reset_restores_power_on_state() {
    let (mut d, h) = device();
    outb(&mut d, 0x64, 0x60);
    outb(&mut d, 0x60, 0x00);
    outb(&mut d, 0x60, 0xf2);
    d.reset();
    assert_eq!(d.controller(), &Controller::default());
    assert!(h.irq_level(1) != Some(true));
}

#[test]
fn save_restore_round_trip() {
    let (mut d, _h) = device();
    outb(&mut d, 0x64, 0x66);
    outb(&mut d, 0x60, 0x77);
    outb(&mut d, 0x60, 0xf2);
    outb(&mut d, 0x60, 0xed);
    outb(&mut d, 0x64, 0xd1);
    let s = d.save().unwrap();
    assert_eq!(s.version, STATE_VERSION);
    let h2 = RecordingHost::new();
    let mut e = I8042::create(&DeviceConfig::default(), h2.services()).unwrap();
    e.restore(&s).unwrap();
    assert_eq!(e.save().unwrap(), s);
    assert_eq!(h2.irq_level(1), Some(true));
    for dev in [&mut d, &mut e] {
        outb(dev, 0x60, 0x01);
        assert_eq!(drain(dev), vec![0xfa, 0xab, 0x83, 0xfa]);
        outb(dev, 0x64, 0x26);
        assert_eq!(drain(dev), vec![0x77]);
        outb(dev, 0x64, 0xd0);
        assert_eq!(drain(dev), vec![0x01]);
    }
}

#[test]
fn malformed_state_refused() {
    let (mut d, _h) = device();
    outb(&mut d, 0x60, 0xff);
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
                version: 2,
                data: good.data.clone(),
            },
            "version 2",
        ),
        (with(&|v| v.truncate(FIXED_LEN - 1)), "truncated"),
        (with(&|v| v.push(0)), "carries"),
        (with(&|v| v[34] = 0x80), "pending command"),
        (with(&|v| v[36] = 3), "output-buffer-full"),
        (with(&|v| v[38] = 7), "output source"),
        (with(&|v| v[40] = 4), "scan-code set"),
        (with(&|v| v[43] = 0x12), "awaiting"),
        (with(&|v| v[45] = 9), "IRQ 1"),
        (with(&|v| v[47] = 65), "above 64"),
        (with(&|v| v[FIXED_LEN + 1] = 5), "output source"),
    ];
    for (s, msg) in cases {
        let e = d.restore(&s).unwrap_err();
        assert!(e.message.contains(msg), "{msg}: {}", e.message);
    }
    assert_eq!(d.save().unwrap(), good);
}
