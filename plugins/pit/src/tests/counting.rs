//! Counting, latching, read-back, byte order and BCD.

use super::{tick_ns, Rig};

#[test]
fn mode2_counts_down_on_the_virtual_clock() {
    let mut r = Rig::new();
    // Counter 0, LSB then MSB, mode 2, binary; count 1000 at t = 0 (pulse 0),
    // loaded on pulse 1: CE = 1000 - ((pulse - 1) mod 1000).
    r.outb(0x43, 0x34).count16(0, 1000);
    let cases: &[(u64, u16)] = &[
        (839, 1000),
        (500_000, 405),
        (837_000, 3),
        (838_096, 1),
        (838_934, 1000),
        (1_000_000, 808),
        (10_000_000, 70),
        (1_000_000_000, 819),
    ];
    for &(ns, want) in cases {
        r.at(ns);
        assert_eq!(r.latched(0), want, "latched at {ns} ns");
        // An unlatched read sees the same CE at the same instant.
        let lo = r.inb(0x40);
        let hi = r.inb(0x40);
        assert_eq!(u16::from_le_bytes([lo, hi]), want, "live at {ns} ns");
    }
}

#[test]
fn latch_holds_until_read_and_a_second_latch_is_ignored() {
    let mut r = Rig::new();
    r.outb(0x43, 0x74).count16(1, 5000); // counter 1, mode 2
    r.at_tick(101);
    r.outb(0x43, 0x40); // latch: CE = 5000 - 100
    r.at_tick(201);
    r.outb(0x43, 0x40); // ignored: the first latch is unread
    assert_eq!(r.inb(0x41), (4900u16 & 0xff) as u8);
    r.at_tick(301);
    assert_eq!(r.inb(0x41), (4900u16 >> 8) as u8);
    // Released: reads follow CE again.
    let lo = r.inb(0x41);
    let hi = r.inb(0x41);
    assert_eq!(u16::from_le_bytes([lo, hi]), 4700);
}

#[test]
fn access_modes_lsb_msb_and_both() {
    // (control word for counter 1 in mode 0, bytes written, CE read at
    // pulse 11 (10 pulses after load), bytes a read returns in order)
    type Case = (u8, &'static [u8], &'static [u8]);
    let cases: &[Case] = &[
        // LSB only: count 0x20; reads return only the LSB.
        (0x50, &[0x20], &[0x16, 0x16]),
        // MSB only: count 0x0200; reads return only the MSB.
        (0x60, &[0x02], &[0x01, 0x01]),
        // LSB then MSB: count 0x0120; reads alternate LSB, MSB.
        (0x70, &[0x20, 0x01], &[0x16, 0x01, 0x16, 0x01]),
    ];
    for &(cw, writes, reads) in cases {
        let mut r = Rig::new();
        r.outb(0x43, cw);
        for &b in writes {
            r.outb(0x41, b);
        }
        r.at_tick(11);
        let got: Vec<u8> = reads.iter().map(|_| r.inb(0x41)).collect();
        assert_eq!(got, reads, "control word {cw:#04x}");
    }
}

#[test]
fn reads_and_writes_have_separate_byte_flip_flops() {
    // 82C54 datasheet, "Read Operations": read LSB, write LSB, read MSB,
    // write MSB is a valid sequence.
    let mut r = Rig::new();
    r.outb(0x43, 0x70).count16(1, 0x1234);
    r.at_tick(1); // loaded, not yet counted
    assert_eq!(r.inb(0x41), 0x34);
    r.outb(0x41, 0x78);
    assert_eq!(
        r.inb(0x41),
        0x12,
        "the read flip-flop was not moved by the write"
    );
    r.outb(0x41, 0x56);
    r.at_tick(2); // the new count 0x5678 was loaded on pulse 2
    assert_eq!(r.latched(1), 0x5678);
}

#[test]
fn read_back_status_and_count() {
    let mut r = Rig::new();
    r.at_tick(10);
    r.outb(0x43, 0x36); // counter 0, LSB/MSB, mode 3, binary
                        // OUT high (mode 3), null count (no count written yet).
    assert_eq!(r.status(0), 0x80 | 0x40 | 0x36);
    r.count16(0, 100);
    assert_eq!(
        r.status(0),
        0x80 | 0x40 | 0x36,
        "not loaded before the next pulse"
    );
    r.at_tick(11);
    assert_eq!(r.status(0), 0x80 | 0x36, "loaded: null count clear");
    r.at_tick(11 + 50);
    assert_eq!(r.status(0), 0x36, "second half of the square wave: OUT low");

    // Count and status together: status first, then the count.
    r.at_tick(11 + 60); // CE = 100 - 2 * (60 - 50)
    r.outb(0x43, 0xc2);
    assert_eq!(r.inb(0x40), 0x36);
    assert_eq!(r.inb(0x40), 80);
    assert_eq!(r.inb(0x40), 0);

    // Mode 0 right after its control word: OUT low, null count.
    r.outb(0x43, 0x70);
    assert_eq!(r.status(1), 0x70 | 0x40);
    // Mode 6 and 7 are reported as written (x10 / x11).
    r.outb(0x43, 0xbc);
    assert_eq!(r.status(2), 0xc0 | 0x3c);

    // A status latched twice before being read keeps the first one.
    r.outb(0x43, 0x30).count16(0, 5);
    r.at_tick(72);
    r.outb(0x43, 0xe2); // OUT low, loaded
    r.at_tick(200);
    r.outb(0x43, 0xe2); // ignored
    assert_eq!(r.inb(0x40), 0x30);
    assert_eq!(r.status(0), 0x80 | 0x30, "terminal count reached by now");
}

#[test]
fn read_back_selects_several_counters() {
    let mut r = Rig::new();
    r.outb(0x43, 0x34).count16(0, 1000);
    r.outb(0x43, 0x74).count16(1, 2000);
    r.outb(0x43, 0xb4).count16(2, 3000);
    r.outb(0x61, 1);
    r.at_tick(11);
    r.outb(0x43, 0xc0 | 0x10 | 0x0c); // count (not status) of counters 1 and 2
    r.at_tick(500);
    let read2 = |r: &mut Rig, p: u16| u16::from_le_bytes([r.inb(p), r.inb(p)]);
    assert_eq!(read2(&mut r, 0x41), 1990);
    assert_eq!(read2(&mut r, 0x42), 2990);
    assert_eq!(read2(&mut r, 0x40), 1000 - 499, "counter 0 was not latched");
}

#[test]
fn bcd_counting() {
    let mut r = Rig::new();
    // Counter 1, LSB/MSB, mode 0, BCD: count 1000 written as 0x1000.
    r.outb(0x43, 0x71).count16(1, 0x1000);
    let cases: &[(u64, u16)] = &[
        (1, 0x1000),
        (2, 0x0999),
        (11, 0x0990),
        (1001, 0x0000),
        (1002, 0x9999),
    ];
    for &(t, want) in cases {
        r.at_tick(t);
        assert_eq!(r.latched(1), want, "pulse {t}");
    }
    assert_eq!(
        r.status(1) & 0x80,
        0x80,
        "terminal count after 1000 pulses, not 0x1000"
    );

    // Count 0 in BCD is 10000.
    let mut r = Rig::new();
    r.outb(0x43, 0x71).count16(1, 0);
    r.at_tick(1);
    assert_eq!(r.latched(1), 0);
    r.at_tick(2);
    assert_eq!(r.latched(1), 0x9999);
    r.at_tick(10_000);
    assert_eq!(r.status(1) & 0x80, 0, "one pulse before terminal count");
    r.at_tick(10_001);
    assert_eq!(r.status(1) & 0x80, 0x80);

    // Mode 2 in BCD: count 0x0010 is a period of 10 pulses.
    let mut r = Rig::new();
    r.outb(0x43, 0x75).count16(1, 0x0010);
    let got: Vec<u16> = (1..=12)
        .map(|t| {
            r.at_tick(t);
            r.latched(1)
        })
        .collect();
    assert_eq!(
        got,
        [0x10, 0x09, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x10, 0x09]
    );
}

#[test]
fn binary_count_zero_is_65536() {
    let mut r = Rig::new();
    r.outb(0x43, 0x70).count16(1, 0);
    r.at_tick(1);
    assert_eq!(r.latched(1), 0);
    r.at_tick(2);
    assert_eq!(r.latched(1), 0xffff);
    r.at_tick(65_536);
    assert_eq!(r.status(1) & 0x80, 0);
    r.at_tick(65_537);
    assert_eq!(r.status(1) & 0x80, 0x80);
}

#[test]
fn mode0_first_byte_stops_counting_second_restarts() {
    let mut r = Rig::new();
    r.outb(0x43, 0x30).count16(0, 100);
    assert_eq!(r.armed(), Some(tick_ns(101)));
    r.at_tick(51);
    r.outb(0x40, 20); // LSB only: counting stops, OUT low, no edge pending
    assert_eq!(r.armed(), None);
    r.at_tick(80);
    assert_eq!(r.latched(0), 50, "CE frozen at the first byte");
    r.outb(0x40, 0); // MSB: count 20 loaded on pulse 81
    assert_eq!(r.armed(), Some(tick_ns(101)));
    r.at_tick(82);
    assert_eq!(r.latched(0), 19);
}

#[test]
fn mode2_new_count_waits_for_the_end_of_the_period() {
    let mut r = Rig::new();
    r.outb(0x43, 0x34).count16(0, 1000);
    r.at_tick(500);
    r.count16(0, 300);
    assert_eq!(r.status(0) & 0x40, 0x40, "null count until the reload");
    assert_eq!(r.latched(0), 501, "the current period is unaffected");
    let fired = r.run_until(tick_ns(2000));
    let want: Vec<u64> = [1001, 1301, 1601, 1901]
        .iter()
        .map(|&t| tick_ns(t))
        .collect();
    assert_eq!(fired, want);
    assert_eq!(r.status(0) & 0x40, 0);
    r.at_tick(2001);
    assert_eq!(r.latched(0), 300 - 100);
}

#[test]
fn mode3_new_count_waits_for_the_end_of_the_half_cycle() {
    let mut r = Rig::new();
    r.outb(0x43, 0x36).count16(0, 100);
    r.at_tick(20); // high half: pulses 1..=50
    r.count16(0, 40);
    // The old half-cycle ends at pulse 51; the new count's low half is 20
    // pulses, so OUT rises at 71 and then every 40 pulses.
    let fired = r.run_until(tick_ns(160));
    let want: Vec<u64> = [71, 111, 151].iter().map(|&t| tick_ns(t)).collect();
    assert_eq!(fired, want);
}

#[test]
fn control_port_reads_open_bus_and_wide_accesses_split() {
    use hyperplug_plugin_api::device::{AddressSpace, Device};
    let mut r = Rig::new();
    assert_eq!(r.inb(0x43), 0xff);
    r.outb(0x43, 0xb0).count16(2, 0x1234);
    r.at_tick(1);
    let mut b = [0u8; 2];
    r.dev.read(AddressSpace::Pio, 0x42, &mut b);
    assert_eq!(b, [0x34, 0xff], "byte 1 is port 0x43");
    r.dev.read(AddressSpace::Mmio, 0x42, &mut b);
    assert_eq!(b, [0xff, 0xff]);
    // A 16-bit write to 0x40 writes counter 0 then counter 1.
    r.outb(0x43, 0x10).outb(0x43, 0x50);
    r.dev.write(AddressSpace::Pio, 0x40, &[7, 9]);
    r.at_tick(2);
    assert_eq!(r.inb(0x40), 7);
    assert_eq!(r.inb(0x41), 9);
}

#[test]
fn reset_restores_power_on_state() {
    use hyperplug_plugin_api::device::Device;
    let mut r = Rig::new();
    r.outb(0x43, 0x34).count16(0, 100).outb(0x61, 3);
    assert!(r.armed().is_some());
    r.dev.reset();
    assert_eq!(r.armed(), None);
    assert_eq!(r.status(0), 0x40 | 0x30);
    assert_eq!(r.inb(0x61) & 0x0f, 0);
}
