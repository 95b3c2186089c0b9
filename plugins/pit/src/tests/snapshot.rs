//! Save/restore of the whole device, mid-count, onto a clock that reads differently.

use super::{tick_ns, Rig};
use hyperplug_plugin_api::device::{Device, DeviceState};

#[test]
fn save_restore_mid_count_continues_counting() {
    let mut a = Rig::new();
    a.outb(0x43, 0x34).count16(0, 1000); // counter 0, mode 2
    a.outb(0x43, 0xb6).count16(2, 600).outb(0x61, 0x03); // counter 2, mode 3, speaker on
    a.outb(0x43, 0x70).outb(0x41, 0x55); // counter 1 halfway through a count write
    a.at(300_000);
    a.count16(0, 400); // pending until the end of the current period
    a.outb(0x43, 0x00); // an unread latch
    let saved = a.dev.save().unwrap();

    // Restore into a VM whose clock reads 7 s.
    let mut b = Rig::new();
    let shift = 7 * 1_000_000_000 - 300_000;
    b.at(7 * 1_000_000_000);
    b.dev.restore(&saved).unwrap();
    assert_eq!(
        b.armed().map(|d| d - shift),
        a.armed(),
        "same edge, shifted clock"
    );
    assert_eq!(b.inb(0x40), a.inb(0x40), "latched LSB");
    assert_eq!(b.inb(0x40), a.inb(0x40), "latched MSB");
    b.outb(0x41, 0x01);
    a.outb(0x41, 0x01);
    for d in [0u64, 838, 100_000, 1_000_000, 5_000_000] {
        a.at(300_000 + d);
        b.at(7 * 1_000_000_000 + d);
        for ch in 0..3 {
            assert_eq!(b.latched(ch), a.latched(ch), "counter {ch} at +{d} ns");
            assert_eq!(b.status(ch), a.status(ch), "counter {ch} status at +{d} ns");
        }
        assert_eq!(b.inb(0x61), a.inb(0x61), "port B at +{d} ns");
    }
    let fa = a.run_until(300_000 + 20_000_000);
    let fb = b.run_until(7 * 1_000_000_000 + 20_000_000);
    assert!(!fa.is_empty());
    assert_eq!(fb.iter().map(|d| d - shift).collect::<Vec<_>>(), fa);
    assert_eq!(b.edges(), fa.len());
    // Restoring the restored device's state elsewhere continues the same way.
    let tb = b.host.now_ns();
    let saved_b = b.dev.save().unwrap();
    let mut c = Rig::new();
    c.at(1);
    c.dev.restore(&saved_b).unwrap();
    for d in [0u64, tick_ns(1), 3_333_333] {
        b.at(tb + d);
        c.at(1 + d);
        assert_eq!(c.latched(0), b.latched(0), "+{d} ns");
        assert_eq!(c.latched(2), b.latched(2), "+{d} ns");
    }
}

#[test]
fn save_is_stable_and_restore_refuses_garbage() {
    let mut r = Rig::new();
    r.outb(0x43, 0x34).count16(0, 1000);
    r.at(123_456);
    let s1 = r.dev.save().unwrap();
    assert_eq!(r.dev.save().unwrap(), s1, "saving changes nothing");
    r.dev.restore(&s1).unwrap();
    assert_eq!(
        r.dev.save().unwrap(),
        s1,
        "restore of its own state is exact"
    );
    let cases = [
        DeviceState {
            version: 9,
            data: s1.data.clone(),
        },
        DeviceState {
            version: 1,
            data: Default::default(),
        },
        DeviceState {
            version: 1,
            data: s1.data[..10].to_vec().into(),
        },
    ];
    for bad in cases {
        assert!(r.dev.restore(&bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        r.dev.save().unwrap(),
        s1,
        "a refused restore changes nothing"
    );
}

#[test]
fn corrupted_states_are_refused_or_harmless() {
    // Every single-byte corruption of a busy state is either refused or, if
    // it still parses, leaves a device that runs without panicking.
    let mut r = Rig::new();
    r.outb(0x43, 0x36)
        .count16(0, 3)
        .outb(0x43, 0xb2)
        .count16(2, 7);
    r.outb(0x61, 1);
    r.at(5_000);
    r.count16(0, 9);
    let good = r.dev.save().unwrap();
    for i in 0..good.data.len() {
        for v in [0x00u8, 0x01, 0x80, 0xff] {
            let mut data = good.data.to_vec();
            data[i] = v;
            let mut t = Rig::new();
            t.at(1_000_000);
            let state = DeviceState {
                version: 1,
                data: data.into(),
            };
            if t.dev.restore(&state).is_err() {
                continue;
            }
            for ch in 0..3 {
                t.latched(ch);
                t.status(ch);
                t.outb(0x40 + ch, 0x10);
            }
            t.outb(0x61, 0);
            t.outb(0x61, 1);
            t.run_until(2_000_000);
        }
    }
}
