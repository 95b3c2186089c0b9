//! Counter 2's GATE (port 0x61 bit 0), its OUT (bit 5), the refresh toggle,
//! and every mode's OUT waveform as the guest sees it.

use super::Rig;

/// OUT of counter 2 at pulses 0..=8 after programming `cw` with count `n`
/// at pulse 0, GATE rising at pulse 0 (which triggers modes 1 and 5).
fn out2_wave(cw: u8, n: u16) -> String {
    let mut r = Rig::new();
    r.outb(0x43, cw).count16(2, n).outb(0x61, 0x01);
    (0..=8)
        .map(|t| {
            r.at_tick(t);
            if r.out2() {
                'H'
            } else {
                'L'
            }
        })
        .collect()
}

#[test]
fn every_mode_waveform_on_port_61_bit_5() {
    // (control word for counter 2, count, OUT at pulses 0..=8) — 82C54
    // datasheet "Mode Definitions": the count is loaded on the pulse after
    // the write (modes 0, 2, 3, 4) or after the gate trigger (modes 1, 5).
    let cases: &[(u8, u16, &str)] = &[
        (0xb0, 3, "LLLLHHHHH"), // mode 0: high at terminal count, stays high
        (0xb2, 3, "HLLLHHHHH"), // mode 1: low from the load for N pulses
        (0xb4, 3, "HHHLHHLHH"), // mode 2: low for one pulse every N
        (0xb6, 4, "HHHLLHHLL"), // mode 3: N/2 high, N/2 low
        (0xb6, 5, "HHHHLLHHH"), // mode 3, odd: (N+1)/2 high, (N-1)/2 low
        (0xb8, 3, "HHHHLHHHH"), // mode 4: one low pulse at terminal count
        (0xba, 3, "HHHHLHHHH"), // mode 5: the same after the trigger
        (0xbc, 3, "HHHLHHLHH"), // mode 6 is mode 2
        (0xbe, 4, "HHHLLHHLL"), // mode 7 is mode 3
    ];
    for &(cw, n, want) in cases {
        assert_eq!(out2_wave(cw, n), want, "control word {cw:#04x}, count {n}");
    }
}

#[test]
fn gate_low_suspends_mode0_counting() {
    let mut r = Rig::new();
    r.outb(0x43, 0xb0).count16(2, 100); // GATE low: loaded, not counting
    r.at_tick(1000);
    assert_eq!(r.latched(2), 100);
    assert!(!r.out2());
    r.outb(0x61, 0x01); // counting resumes after pulse 1000
    r.at_tick(1099);
    assert_eq!(r.latched(2), 1);
    assert!(!r.out2());
    r.at_tick(1100);
    assert!(r.out2());
    // GATE low again halfway through the wrapped count freezes it.
    r.at_tick(1110);
    r.outb(0x61, 0x00);
    r.at_tick(5000);
    assert_eq!(r.latched(2), 65_526);
}

#[test]
fn gate_in_mode2_forces_out_high_and_restarts() {
    let mut r = Rig::new();
    r.outb(0x43, 0xb4).count16(2, 10).outb(0x61, 0x01);
    r.at_tick(10); // CE = 1: OUT low
    assert!(!r.out2());
    r.outb(0x61, 0x00);
    assert!(r.out2(), "GATE low forces OUT high at once");
    r.at_tick(50);
    assert!(r.out2());
    r.outb(0x61, 0x01); // reload on the next pulse
    r.at_tick(51);
    assert_eq!(r.latched(2), 10);
    r.at_tick(59);
    assert!(r.out2());
    r.at_tick(60); // CE = 1 again
    assert!(!r.out2());
}

#[test]
fn mode1_retrigger_extends_the_pulse() {
    let mut r = Rig::new();
    r.outb(0x43, 0xb2).count16(2, 10);
    r.at_tick(5);
    assert!(r.out2(), "armed, not triggered");
    r.outb(0x61, 0x01); // trigger: loaded on pulse 6, OUT low until 16
    r.at_tick(12);
    assert!(!r.out2());
    r.outb(0x61, 0x00).outb(0x61, 0x01); // retrigger: reloaded on pulse 13
    r.at_tick(22);
    assert!(!r.out2());
    assert_eq!(r.latched(2), 1);
    r.at_tick(23);
    assert!(r.out2());
}

#[test]
fn mode5_counts_only_after_a_trigger() {
    let mut r = Rig::new();
    r.outb(0x43, 0xba).count16(2, 4);
    r.at_tick(100);
    assert_eq!(
        r.status(2) & 0xc0,
        0xc0,
        "OUT high, null count until triggered"
    );
    r.outb(0x61, 0x01);
    r.at_tick(101);
    assert_eq!(r.status(2) & 0xc0, 0x80);
    r.at_tick(105);
    assert!(!r.out2());
    r.at_tick(106);
    assert!(r.out2());
}

#[test]
fn port_61_bits_and_refresh_toggle() {
    let mut r = Rig::new();
    r.outb(0x61, 0xff);
    let a = r.inb(0x61);
    let b = r.inb(0x61);
    assert_eq!(a & 0x0f, 0x0f, "bits 0-3 read back");
    assert_eq!(a & 0xc0, 0, "no parity or channel check errors");
    assert_ne!(a & 0x10, b & 0x10, "bit 4 flips on every read");
    // A BIOS-style delay loop waiting for 100 transitions of bit 4 ends,
    // with the virtual clock standing still.
    let mut last = r.inb(0x61) & 0x10;
    let mut transitions = 0;
    let mut reads = 0;
    while transitions < 100 {
        let now = r.inb(0x61) & 0x10;
        reads += 1;
        assert!(reads <= 200, "delay loop does not end");
        if now != last {
            transitions += 1;
            last = now;
        }
    }
}
