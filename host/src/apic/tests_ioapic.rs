//! IOAPIC: register window, edge and level delivery, remote IRR and EOI,
//! masking, polarity, and an IOAPIC → LAPIC → EOI round trip.

use super::ioapic::{IOEOI, IOREGSEL, IOWIN, REG_ARB, REG_ID, REG_REDIR, REG_VERSION};
use super::msg::{ApicEffect, ApicMessage, DeliveryMode, BROADCAST};
use super::regs::{EOI, SVR};
use super::{ApicError, IoApic, Lapic, LapicConfig, Received};

fn io() -> IoApic {
    IoApic::new(2).expect("id fits")
}

fn program(io: &mut IoApic, pin: u8, low: u32, high: u32) -> Vec<ApicMessage> {
    io.write_register(REG_REDIR + 2 * pin + 1, high);
    io.write_register(REG_REDIR + 2 * pin, low)
}

fn fixed(vector: u8, dest: u32, level: bool) -> ApicMessage {
    ApicMessage {
        dest,
        dest_logical: false,
        vector,
        delivery_mode: DeliveryMode::Fixed,
        level_triggered: level,
    }
}

#[test]
fn register_window_and_reset_values() {
    let mut io = io();
    // (index, value after reset)
    let table: &[(u8, u32)] = &[
        (REG_ID, 0x0200_0000),
        (REG_VERSION, 0x0017_0020),
        (REG_ARB, 0x0200_0000),
        (0x10, 0x0001_0000),
        (0x11, 0),
        (0x3E, 0x0001_0000),
        (0x3F, 0),
        (0x40, 0),
        (0x03, 0),
    ];
    for &(index, want) in table {
        assert_eq!(io.read_register(index), want, "index {index:#x}");
        io.mmio_write(IOREGSEL, &[index]);
        let mut b = [0u8; 4];
        io.mmio_read(IOWIN, &mut b);
        assert_eq!(u32::from_le_bytes(b), want, "IOWIN {index:#x}");
        let mut sel = [0u8; 1];
        io.mmio_read(IOREGSEL, &mut sel);
        assert_eq!(sel[0], index);
    }
    assert!(IoApic::new(16).is_err());
}

#[test]
fn register_writes_and_read_only_fields() {
    // (index, value written, value read back)
    let table: &[(u8, u32, u32)] = &[
        (REG_ID, 0xFFFF_FFFF, 0x0F00_0000),
        (REG_VERSION, 0, 0x0017_0020),
        (REG_ARB, 0, 0x0200_0000),
        // Delivery status (12) and remote IRR (14) are read-only; 31:17 reserved.
        (0x10, 0xFFFF_FFFF, 0x0001_AFFF),
        (0x12, 0x0000_5031, 0x0000_0031),
        (0x11, 0xFFFF_FFFF, 0xFF00_0000),
        (0x3F, 0x1234_5678, 0x1200_0000),
    ];
    for &(index, w, r) in table {
        let mut io = io();
        io.mmio_write(IOREGSEL, &[index]);
        io.mmio_write(IOWIN, &w.to_le_bytes());
        assert_eq!(io.read_register(index), r, "index {index:#x}");
    }
    let mut io = io();
    io.write_register(REG_ID, 0x0500_0000);
    assert_eq!(
        io.read_register(REG_ARB),
        0x0500_0000,
        "ID write loads the arbitration ID"
    );
    assert_eq!(io.id(), 5);
}

#[test]
fn edge_triggered_pin() {
    let mut io = io();
    assert!(program(&mut io, 1, 0x31, 0x0100_0000).is_empty());
    // (level, messages)
    let steps = [(true, 1), (true, 0), (false, 0), (true, 1), (false, 0)];
    for (i, (level, n)) in steps.into_iter().enumerate() {
        let out = io.set_pin(1, level).expect("pin");
        assert_eq!(out.len(), n, "step {i}");
        if n == 1 {
            assert_eq!(out[0], fixed(0x31, 1, false));
        }
    }
    assert!(!io.entry(1).expect("entry").remote_irr());
}

#[test]
fn level_triggered_remote_irr_and_eoi() {
    let mut io = io();
    program(&mut io, 9, 0x8039, 0);
    assert_eq!(
        io.set_pin(9, true).expect("pin"),
        vec![fixed(0x39, 0, true)]
    );
    assert!(io.entry(9).expect("entry").remote_irr());
    assert_eq!(io.read_register(REG_REDIR + 18) & (1 << 14), 1 << 14);
    assert!(
        io.set_pin(9, true).expect("pin").is_empty(),
        "waits for EOI"
    );
    assert!(io.eoi(0x38).is_empty(), "other vector");
    assert_eq!(
        io.eoi(0x39),
        vec![fixed(0x39, 0, true)],
        "still asserted: re-sent"
    );
    io.set_pin(9, false).expect("pin");
    assert!(io.eoi(0x39).is_empty());
    assert!(!io.entry(9).expect("entry").remote_irr());
    assert_eq!(io.set_pin(9, true).expect("pin").len(), 1);
    // The EOI register (version 0x20) does the same.
    io.set_pin(9, true).expect("pin");
    assert_eq!(io.mmio_write(IOEOI, &0x39u32.to_le_bytes()).len(), 1);
}

#[test]
fn masked_pins_and_unmask_of_asserted_level_pin() {
    let mut io = io();
    program(&mut io, 3, 0x1_8033, 0);
    assert!(io.set_pin(3, true).expect("pin").is_empty(), "masked");
    assert!(!io.entry(3).expect("entry").remote_irr());
    assert_eq!(
        program(&mut io, 3, 0x8033, 0),
        vec![fixed(0x33, 0, true)],
        "unmask delivers"
    );
    // Masked edge pin: the edge is lost.
    program(&mut io, 4, 0x1_0034, 0);
    assert!(io.set_pin(4, true).expect("pin").is_empty());
    assert!(program(&mut io, 4, 0x0034, 0).is_empty(), "no stored edge");
    io.set_pin(4, false).expect("pin");
    assert_eq!(io.set_pin(4, true).expect("pin").len(), 1);
}

#[test]
fn polarity() {
    let mut io = io();
    // Active-low edge: the falling input is the active edge.
    program(&mut io, 5, 0x2035, 0);
    assert!(io.set_pin(5, true).expect("pin").is_empty());
    assert_eq!(io.set_pin(5, false).expect("pin").len(), 1);
    // Active-low level: a low input is asserted, so unmasking delivers.
    assert_eq!(program(&mut io, 6, 0xA036, 0), vec![fixed(0x36, 0, true)]);
    io.set_pin(6, true).expect("pin");
    assert!(io.eoi(0x36).is_empty(), "high input is inactive");
    assert_eq!(io.set_pin(6, false).expect("pin").len(), 1);
    assert!(!io.pin_level(5));
    assert!(!io.pin_level(6));
}

#[test]
fn message_fields() {
    let mut io = io();
    // (low, high, message)
    let table: &[(u32, u32, ApicMessage)] = &[
        (0x0040, 0xFF00_0000, fixed(0x40, BROADCAST, false)),
        (
            0x0941,
            0x0F00_0000,
            ApicMessage {
                dest: 0x0F,
                dest_logical: true,
                vector: 0x41,
                delivery_mode: DeliveryMode::LowestPriority,
                level_triggered: false,
            },
        ),
        (
            0x8400,
            0x0100_0000,
            ApicMessage {
                dest: 1,
                dest_logical: false,
                vector: 0,
                delivery_mode: DeliveryMode::Nmi,
                level_triggered: false,
            },
        ),
        (
            0x0700,
            0,
            ApicMessage {
                dest: 0,
                dest_logical: false,
                vector: 0,
                delivery_mode: DeliveryMode::ExtInt,
                level_triggered: false,
            },
        ),
    ];
    for (pin, &(low, high, want)) in table.iter().enumerate() {
        program(&mut io, pin as u8, low, high);
        assert_eq!(
            io.set_pin(pin as u32, true).expect("pin"),
            vec![want],
            "{low:#x}"
        );
    }
    // Reserved delivery modes send nothing.
    for (pin, low) in [(10u8, 0x0330u32), (11, 0x0630)] {
        program(&mut io, pin, low, 0);
        assert!(io.set_pin(u32::from(pin), true).expect("pin").is_empty());
    }
    assert_eq!(io.set_pin(24, true), Err(ApicError::NoSuchPin(24)));
    assert_eq!(io.entry(24), None);
}

#[test]
fn switching_to_edge_clears_remote_irr() {
    let mut io = io();
    program(&mut io, 7, 0x8037, 0);
    io.set_pin(7, true).expect("pin");
    assert!(io.entry(7).expect("entry").remote_irr());
    program(&mut io, 7, 0x0037, 0);
    assert!(!io.entry(7).expect("entry").remote_irr());
}

#[test]
fn ioapic_lapic_round_trip() {
    let mut io = io();
    let mut l = Lapic::new(LapicConfig::new(0, true)).expect("config");
    l.write_register(SVR, 0x1FF, 0);
    program(&mut io, 10, 0x8051, 0);
    let msgs = io.set_pin(10, true).expect("pin");
    assert_eq!(msgs.len(), 1);
    assert!(l.destination_matches(msgs[0].dest, msgs[0].dest_logical));
    assert_eq!(l.receive(&msgs[0]), Received::Accepted(0x51));
    assert_eq!(l.acknowledge(), Some(0x51));
    let ApicEffect::Eoi(e) = l.write_register(EOI, 0, 0) else {
        panic!("EOI effect expected");
    };
    assert!(e.level_triggered);
    let again = io.eoi(e.vector);
    assert_eq!(again.len(), 1, "line still high: delivered again");
    io.set_pin(10, false).expect("pin");
    assert_eq!(l.receive(&again[0]), Received::Accepted(0x51));
    assert_eq!(l.acknowledge(), Some(0x51));
    let ApicEffect::Eoi(e) = l.write_register(EOI, 0, 0) else {
        panic!("EOI effect expected");
    };
    assert!(io.eoi(e.vector).is_empty());
}
