//! Register-level behaviour of the PIC pair through the device interface,
//! with the plugin API's recording host.

use crate::pair::{MASTER_CMD, MASTER_DATA, SLAVE_CMD, SLAVE_DATA};
use crate::state::{STATE_BYTES, STATE_VERSION};
use crate::Pic;
use hyperplug_plugin_api::backend::LogLevel;
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, IoRange};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

/// A PIC on a recording host, with guest-style helpers.
struct Rig {
    dev: Pic,
    host: RecordingHost,
}

const BIOS: ([u8; 4], [u8; 4]) = ([0x11, 0x08, 0x04, 0x01], [0x11, 0x70, 0x02, 0x01]);
const LINUX: ([u8; 4], [u8; 4]) = ([0x11, 0x20, 0x04, 0x01], [0x11, 0x28, 0x02, 0x01]);

impl Rig {
    fn new() -> Self {
        let host = RecordingHost::new();
        let dev = Pic::create(&DeviceConfig::parse(""), host.services()).unwrap();
        Self { dev, host }
    }

    /// A pair initialized with `icws` (master, slave) and all lines unmasked.
    fn with(icws: ([u8; 4], [u8; 4])) -> Self {
        let mut r = Self::new();
        r.program(MASTER_CMD, &icws.0);
        r.program(SLAVE_CMD, &icws.1);
        r
    }

    /// Writes ICW1 to `cmd` and the rest to `cmd + 1`.
    fn program(&mut self, cmd: u16, icws: &[u8]) {
        self.out(cmd, icws[0]);
        for &v in &icws[1..] {
            self.out(cmd + 1, v);
        }
    }

    fn out(&mut self, port: u16, v: u8) {
        self.dev.write(AddressSpace::Pio, u64::from(port), &[v]);
    }

    fn inb(&mut self, port: u16) -> u8 {
        let mut b = [0u8];
        self.dev.read(AddressSpace::Pio, u64::from(port), &mut b);
        b[0]
    }

    fn set(&mut self, line: u32, level: bool) {
        self.dev.irq_input(line, level);
    }

    /// An edge device's pulse.
    fn pulse(&mut self, line: u32) {
        self.set(line, true);
        self.set(line, false);
    }

    fn ack(&mut self) -> Option<u8> {
        self.dev.interrupt_ack()
    }

    /// The INTR level the host last saw (false if never set).
    fn intr(&self) -> bool {
        let seen = self.host.record().cpu_intr.last().copied().unwrap_or(false);
        assert_eq!(seen, self.dev.intr(), "device and host disagree on INTR");
        assert_eq!(
            seen,
            self.dev.pair().intr(),
            "INTR not reported after a change"
        );
        seen
    }

    /// ISR of the chip at `cmd`, read through OCW3 (then back to IRR reads).
    fn isr(&mut self, cmd: u16) -> u8 {
        self.out(cmd, 0x0b);
        let v = self.inb(cmd);
        self.out(cmd, 0x0a);
        v
    }

    fn irr(&mut self, cmd: u16) -> u8 {
        self.out(cmd, 0x0a);
        self.inb(cmd)
    }

    fn eoi(&mut self, cmd: u16) {
        self.out(cmd, 0x20);
    }

    /// EOIs the way a handler for `line` does: slave first for lines 8-15.
    fn eoi_line(&mut self, line: u32) {
        if line >= 8 {
            self.eoi(SLAVE_CMD);
        }
        self.eoi(MASTER_CMD);
    }
}

#[test]
fn claims_the_three_port_pairs_and_is_an_interrupt_controller() {
    let r = Rig::new();
    assert_eq!(
        r.dev.io_ranges(),
        vec![
            IoRange::pio(0x20, 2),
            IoRange::pio(0xa0, 2),
            IoRange::pio(0x4d0, 2)
        ]
    );
    assert_eq!(
        Pic::CAPABILITIES,
        hyperplug_plugin_api::device::CAP_INTERRUPT_CONTROLLER
    );
    assert_eq!(Pic::NAME, "pic");
}

#[test]
fn options_are_refused() {
    let host = RecordingHost::new();
    let e = Pic::create(&DeviceConfig::parse("irq=2"), host.services())
        .err()
        .unwrap();
    assert!(e.message.contains("unknown option 'irq'"), "{}", e.message);
}

#[test]
fn init_sequences_program_the_vector_bases() {
    // (name, ICWs, master base, slave base)
    type Case = (&'static str, ([u8; 4], [u8; 4]), u8, u8);
    let cases: &[Case] = &[
        ("BIOS", BIOS, 0x08, 0x70),
        ("Linux", LINUX, 0x20, 0x28),
        (
            "ICW2 low bits ignored",
            ([0x11, 0x27, 0x04, 0x01], [0x11, 0x2f, 0x02, 0x01]),
            0x20,
            0x28,
        ),
        (
            "auto-EOI master",
            ([0x11, 0x30, 0x04, 0x03], [0x11, 0x38, 0x02, 0x01]),
            0x30,
            0x38,
        ),
        (
            "level-triggered (LTIM) pair",
            ([0x19, 0x40, 0x04, 0x01], [0x19, 0x48, 0x02, 0x01]),
            0x40,
            0x48,
        ),
    ];
    for &(name, icws, mbase, sbase) in cases {
        let level = icws.0[0] & 0x08 != 0;
        let mut r = Rig::with(icws);
        assert!(!r.intr(), "{name}: nothing pending after init");
        for line in (0..16u32).filter(|&l| l != 2) {
            let want = if line < 8 {
                mbase + line as u8
            } else {
                sbase + (line as u8 - 8)
            };
            r.set(line, true);
            assert!(r.intr(), "{name}: IRQ {line} asserts INTR");
            assert_eq!(r.ack(), Some(want), "{name}: IRQ {line}");
            r.set(line, false);
            r.eoi_line(line);
            assert!(!r.intr(), "{name}: IRQ {line} done, level mode {level}");
            assert_eq!(r.isr(MASTER_CMD), 0, "{name}: IRQ {line}");
            assert_eq!(r.isr(SLAVE_CMD), 0, "{name}: IRQ {line}");
        }
    }
}

#[test]
fn single_mode_without_icw3() {
    let mut r = Rig::new();
    r.program(MASTER_CMD, &[0x13, 0x50, 0x01]); // SNGL, IC4: ICW2 then ICW4
    r.out(MASTER_DATA, 0x01); // OCW1 now
    assert_eq!(r.inb(MASTER_DATA), 0x01);
    r.pulse(0);
    assert!(!r.intr(), "IR0 masked");
    r.out(MASTER_DATA, 0x00);
    assert!(r.intr());
    assert_eq!(r.ack(), Some(0x50));
}

#[test]
fn irq0_sets_isr_and_eoi_clears_it() {
    let mut r = Rig::with(BIOS);
    r.pulse(0);
    assert!(r.intr());
    assert_eq!(r.irr(MASTER_CMD), 0x01);
    assert_eq!(r.ack(), Some(0x08));
    assert!(!r.intr());
    assert_eq!(r.irr(MASTER_CMD), 0x00, "edge IRR reset by the acknowledge");
    assert_eq!(r.isr(MASTER_CMD), 0x01);
    r.eoi(MASTER_CMD);
    assert_eq!(r.isr(MASTER_CMD), 0x00);
    assert!(!r.intr());
    assert_eq!(r.ack(), None, "no INTR, no vector");
    assert_eq!(r.host.record().cpu_intr, vec![true, false]);
}

#[test]
fn fully_nested_priority() {
    // (in service, raised, INTR while in service, vector after EOI or nesting)
    let cases: &[(u32, u32, bool, u8)] = &[
        (0, 1, false, 0x09), // lower priority waits for the EOI
        (1, 0, true, 0x08),  // higher priority nests
        (3, 3, false, 0x0b), // same level waits
        (8, 9, false, 0x71), // within the slave
        (9, 8, false, 0x70), // slave nests only in SFNM (see below): master IR2 in service
        (8, 1, true, 0x09),  // IR1 outranks IR2 on the master
        (3, 10, true, 0x72), // the slave's IR2 outranks IR3 on the master
        (3, 1, true, 0x09),
    ];
    for &(first, second, nests, vector) in cases {
        let mut r = Rig::with(BIOS);
        r.pulse(first);
        assert!(r.ack().is_some());
        r.pulse(second);
        assert_eq!(r.intr(), nests, "{first} in service, {second} raised");
        if !nests {
            r.eoi_line(first);
            assert!(r.intr(), "{first} ended, {second} pending");
        }
        assert_eq!(r.ack(), Some(vector), "{first} then {second}");
    }
}

#[test]
fn special_fully_nested_mode_lets_the_slave_nest() {
    for (master_icw4, nests) in [(0x01u8, false), (0x11, true)] {
        let mut r = Rig::with(([0x11, 0x08, 0x04, master_icw4], BIOS.1));
        r.pulse(9);
        assert_eq!(r.ack(), Some(0x71));
        r.pulse(8);
        assert_eq!(r.intr(), nests, "ICW4 {master_icw4:#x}");
        // A lower slave level never nests, SFNM or not.
        let mut r = Rig::with(([0x11, 0x08, 0x04, master_icw4], BIOS.1));
        r.pulse(8);
        assert_eq!(r.ack(), Some(0x70));
        r.pulse(9);
        assert!(!r.intr(), "ICW4 {master_icw4:#x}: IR9 below in-service IR8");
        // A master level below IR2 does not get through because of SFNM.
        r.pulse(4);
        assert!(!r.intr(), "ICW4 {master_icw4:#x}: IR4 below in-service IR2");
    }
}

#[test]
fn masked_lines_do_not_assert() {
    // (IMR master, IMR slave, line, asserts)
    let cases: &[(u8, u8, u32, bool)] = &[
        (0x01, 0x00, 0, false),
        (0x01, 0x00, 1, true),
        (0x80, 0x00, 7, false),
        (0x00, 0x01, 8, false),
        (0x00, 0x01, 9, true),
        (0x04, 0x00, 9, false), // masking IR2 masks the whole slave
        (0x00, 0x80, 15, false),
        (0xfb, 0x00, 12, true),
        (0xff, 0xff, 5, false),
    ];
    for &(mm, sm, line, asserts) in cases {
        let mut r = Rig::with(BIOS);
        r.out(MASTER_DATA, mm);
        r.out(SLAVE_DATA, sm);
        assert_eq!((r.inb(MASTER_DATA), r.inb(SLAVE_DATA)), (mm, sm));
        r.pulse(line);
        assert_eq!(r.intr(), asserts, "IMR {mm:#x}/{sm:#x} line {line}");
        // The request stays in the IRR and is delivered once unmasked.
        r.out(MASTER_DATA, 0);
        r.out(SLAVE_DATA, 0);
        assert!(r.intr(), "line {line} delivered after unmasking");
    }
}

#[test]
fn slave_irq8_goes_through_master_ir2() {
    let mut r = Rig::with(BIOS);
    r.pulse(8);
    assert!(r.intr());
    assert_eq!(r.irr(MASTER_CMD), 0x04, "slave INT latched on IR2");
    assert_eq!(r.irr(SLAVE_CMD), 0x01);
    assert_eq!(r.ack(), Some(0x70));
    assert_eq!(r.isr(MASTER_CMD), 0x04);
    assert_eq!(r.isr(SLAVE_CMD), 0x01);
    r.eoi(SLAVE_CMD);
    assert_eq!(r.isr(MASTER_CMD), 0x04, "master EOI still needed");
    r.eoi(MASTER_CMD);
    assert_eq!((r.isr(MASTER_CMD), r.isr(SLAVE_CMD)), (0, 0));
    assert!(!r.intr());
}

#[test]
fn slave_request_pending_across_eois() {
    let mut r = Rig::with(BIOS);
    r.pulse(8);
    r.pulse(9);
    assert_eq!(r.ack(), Some(0x70));
    assert!(!r.intr());
    // Slave EOI: IR9 now wins on the slave, its INT rises, master latches IR2
    // but IR2 is still in service.
    r.eoi(SLAVE_CMD);
    assert_eq!(r.irr(MASTER_CMD), 0x04);
    assert!(!r.intr());
    r.eoi(MASTER_CMD);
    assert!(r.intr());
    assert_eq!(r.ack(), Some(0x71));
}

#[test]
fn level_triggered_line_reinterrupts_after_eoi() {
    let mut r = Rig::with(BIOS);
    r.out(0x4d1, 0x04); // IRQ 10 level
    assert_eq!(r.inb(0x4d1), 0x04);
    r.set(10, true);
    for round in 0..3 {
        assert!(r.intr(), "round {round}");
        assert_eq!(r.ack(), Some(0x72), "round {round}");
        assert!(!r.intr(), "round {round}: in service");
        if round == 2 {
            // The handler quiets the device before its EOIs.
            r.set(10, false);
        }
        r.eoi_line(10);
    }
    assert!(!r.intr());
    assert_eq!(r.irr(SLAVE_CMD), 0);
}

#[test]
fn level_request_removed_before_ack() {
    // Master IR5 level-triggered through ELCR1: the request disappears with
    // the input, INTR drops, and an acknowledge then yields nothing.
    let mut r = Rig::with(BIOS);
    r.out(0x4d0, 0x20);
    r.set(5, true);
    assert!(r.intr());
    r.set(5, false);
    assert!(!r.intr());
    assert_eq!(r.irr(MASTER_CMD), 0);
    assert_eq!(r.ack(), None);
    assert_eq!(r.isr(MASTER_CMD), 0);
}

#[test]
fn ltim_makes_every_input_level_triggered() {
    let mut r = Rig::with(([0x19, 0x08, 0x04, 0x01], BIOS.1));
    r.set(0, true);
    assert_eq!(r.ack(), Some(0x08));
    r.eoi(MASTER_CMD);
    assert!(r.intr(), "IR0 level-triggered under LTIM");
    r.set(0, false);
    assert!(!r.intr());
}

#[test]
fn elcr_writable_bits() {
    // (port, written, read back)
    let cases: &[(u16, u8, u8)] = &[
        (0x4d0, 0xff, 0xf8),
        (0x4d0, 0x07, 0x00),
        (0x4d0, 0x28, 0x28),
        (0x4d1, 0xff, 0xde),
        (0x4d1, 0x21, 0x00),
        (0x4d1, 0x0e, 0x0e),
    ];
    for &(port, w, want) in cases {
        let mut r = Rig::with(BIOS);
        r.out(port, w);
        assert_eq!(r.inb(port), want, "{port:#x} <- {w:#x}");
    }
    // A 16-bit access covers both registers.
    let mut r = Rig::with(BIOS);
    r.dev.write(AddressSpace::Pio, 0x4d0, &[0x20, 0x0c]);
    let mut b = [0u8; 2];
    r.dev.read(AddressSpace::Pio, 0x4d0, &mut b);
    assert_eq!(b, [0x20, 0x0c]);
}

#[test]
fn edge_held_high_latches_once() {
    let mut r = Rig::with(BIOS);
    r.set(4, true);
    r.set(4, true);
    assert_eq!(r.ack(), Some(0x0c));
    r.eoi(MASTER_CMD);
    assert!(!r.intr(), "no second edge, no second interrupt");
    r.set(4, true);
    assert!(!r.intr(), "still no edge");
    r.set(4, false);
    r.set(4, true);
    assert!(r.intr(), "a new rising edge");
}

#[test]
fn pulse_latches_until_acknowledged() {
    let mut r = Rig::with(BIOS);
    r.out(MASTER_DATA, 0x10);
    r.pulse(4);
    r.pulse(4);
    assert_eq!(r.irr(MASTER_CMD), 0x10);
    r.out(MASTER_DATA, 0x00);
    assert_eq!(r.ack(), Some(0x0c));
    r.eoi(MASTER_CMD);
    assert!(!r.intr(), "two pulses before the ack make one request");
}

#[test]
fn rotation_commands() {
    // Rotate on non-specific EOI: equal-priority round robin.
    let mut r = Rig::with(BIOS);
    for l in [0, 1, 3] {
        r.pulse(l);
    }
    assert_eq!(r.ack(), Some(0x08));
    r.out(MASTER_CMD, 0xa0); // rotate on non-specific EOI: IR0 lowest
    r.pulse(0);
    assert_eq!(r.ack(), Some(0x09), "IR1 now highest");
    r.out(MASTER_CMD, 0xa0); // IR1 lowest
    assert_eq!(r.ack(), Some(0x0b));
    r.out(MASTER_CMD, 0xa0); // IR3 lowest
    assert_eq!(r.ack(), Some(0x08), "IR0 after IR3 in the rotated order");
    r.out(MASTER_CMD, 0xa0);

    // Set priority: IR4 lowest, so IR5 highest.
    let mut r = Rig::with(BIOS);
    r.out(MASTER_CMD, 0xc4);
    for l in [3, 6, 1] {
        r.pulse(l);
    }
    assert_eq!(r.ack(), Some(0x0e));
    r.pulse(0);
    assert!(!r.intr(), "IR0 ranks below in-service IR6 after rotation");
    r.eoi(MASTER_CMD);
    assert_eq!(r.ack(), Some(0x08));

    // Rotate on specific EOI.
    let mut r = Rig::with(BIOS);
    r.pulse(5);
    assert_eq!(r.ack(), Some(0x0d));
    r.out(MASTER_CMD, 0xe5);
    assert_eq!(r.isr(MASTER_CMD), 0);
    r.pulse(5);
    r.pulse(7);
    assert_eq!(r.ack(), Some(0x0f), "IR5 lowest, IR6 highest, IR7 next");
}

#[test]
fn rotate_in_auto_eoi_mode() {
    let mut r = Rig::with(([0x11, 0x08, 0x04, 0x03], BIOS.1));
    r.out(MASTER_CMD, 0x80); // set rotate in AEOI
    for l in [1, 3] {
        r.pulse(l);
    }
    assert_eq!(r.ack(), Some(0x09));
    assert_eq!(r.isr(MASTER_CMD), 0, "AEOI");
    r.pulse(1);
    assert_eq!(r.ack(), Some(0x0b), "IR1 rotated to lowest");
    assert_eq!(r.ack(), Some(0x09));
    r.out(MASTER_CMD, 0x00); // clear rotate in AEOI
    r.pulse(1);
    r.pulse(0);
    // Lowest is IR1 (last rotation), so IR2..IR0 outrank it.
    assert_eq!(r.ack(), Some(0x08));
    assert_eq!(r.ack(), Some(0x09));
    r.pulse(1);
    r.pulse(0);
    assert_eq!(r.ack(), Some(0x08), "no more rotation");
}

#[test]
fn special_mask_mode() {
    let mut r = Rig::with(BIOS);
    r.pulse(3);
    assert_eq!(r.ack(), Some(0x0b));
    r.pulse(5);
    assert!(!r.intr(), "IR5 below in-service IR3");
    // The IR3 handler masks itself and enables special mask mode.
    r.out(MASTER_DATA, 0x08);
    r.out(MASTER_CMD, 0x68);
    assert!(r.intr(), "special mask mode: lower levels enabled");
    assert_eq!(r.ack(), Some(0x0d));
    assert_eq!(r.isr(MASTER_CMD), 0x28);
    r.out(MASTER_CMD, 0x65); // specific EOI 5
    r.pulse(3);
    assert!(!r.intr(), "IR3 itself stays masked");
    r.out(MASTER_CMD, 0x48); // reset special mask mode
    r.out(MASTER_DATA, 0x00);
    assert!(!r.intr(), "IR3 in service again blocks itself");
    r.out(MASTER_CMD, 0x63);
    assert_eq!(r.ack(), Some(0x0b));
}

#[test]
fn poll_command() {
    let mut r = Rig::with(BIOS);
    r.out(MASTER_CMD, 0x0c);
    assert_eq!(r.inb(MASTER_CMD), 0x00, "poll with nothing pending");
    r.pulse(6);
    r.pulse(4);
    r.out(MASTER_CMD, 0x0c);
    assert_eq!(r.inb(MASTER_CMD), 0x84, "I bit and level 4");
    assert_eq!(r.isr(MASTER_CMD), 0x10, "poll sets the ISR bit");
    assert_eq!(r.irr(MASTER_CMD), 0x40, "next read is a status read again");
    r.eoi(MASTER_CMD);
    // A poll read through the data port works too (next RD pulse).
    r.out(MASTER_CMD, 0x0c);
    assert_eq!(r.inb(MASTER_DATA), 0x86);
    assert_eq!(r.inb(MASTER_DATA), 0x00, "IMR read afterwards");
    r.eoi(MASTER_CMD);
    // Cascade: polling the master reports IR2, then the slave its level.
    r.pulse(13);
    r.out(MASTER_CMD, 0x0c);
    assert_eq!(r.inb(MASTER_CMD), 0x82);
    r.out(SLAVE_CMD, 0x0c);
    assert_eq!(r.inb(SLAVE_CMD), 0x85);
    assert_eq!((r.isr(MASTER_CMD), r.isr(SLAVE_CMD)), (0x04, 0x20));
    assert!(!r.intr());
}

#[test]
fn spurious_slave_interrupt() {
    // IRQ 11 level-triggered: the slave's INT latches the master's IR2 edge,
    // then the request goes away. The master still interrupts; the slave has
    // nothing and answers with its IR7 vector, setting no ISR bit, while the
    // master's IR2 is in service (the handler must EOI the master only).
    let mut r = Rig::with(BIOS);
    r.out(0x4d1, 0x08);
    r.set(11, true);
    r.set(11, false);
    assert!(r.intr());
    assert_eq!(r.ack(), Some(0x77));
    assert_eq!(r.isr(MASTER_CMD), 0x04);
    assert_eq!(r.isr(SLAVE_CMD), 0x00);
    r.eoi(MASTER_CMD);
    assert!(!r.intr());
}

#[test]
fn spurious_master_interrupt() {
    // INTR can only be asserted with a request present, so the default IR7
    // of the master shows at the pair level: an INTA with nothing pending.
    let mut r = Rig::with(BIOS);
    let mut pair = r.dev.pair().clone();
    assert_eq!(pair.inta(), 0x0f);
    assert_eq!(pair.master().isr(), 0);
    // A master IR7 that is a real request does set its ISR bit.
    r.pulse(7);
    assert_eq!(r.ack(), Some(0x0f));
    assert_eq!(r.isr(MASTER_CMD), 0x80);
}

#[test]
fn auto_eoi() {
    let mut r = Rig::with(([0x11, 0x08, 0x04, 0x03], [0x11, 0x70, 0x02, 0x03]));
    r.pulse(1);
    r.pulse(5);
    assert_eq!(r.ack(), Some(0x09));
    assert_eq!(r.isr(MASTER_CMD), 0);
    assert!(r.intr(), "IR5 follows without an EOI");
    assert_eq!(r.ack(), Some(0x0d));
    // Two slave requests with both chips in AEOI: the slave's INT falls and
    // rises again within the INTA cycle, so the master latches IR2 again.
    r.pulse(12);
    r.pulse(14);
    assert_eq!(r.ack(), Some(0x74));
    assert!(r.intr());
    assert_eq!(r.ack(), Some(0x76));
    assert!(!r.intr());
    assert_eq!((r.isr(MASTER_CMD), r.isr(SLAVE_CMD)), (0, 0));
}

#[test]
fn status_reads_follow_ocw3() {
    let mut r = Rig::with(BIOS);
    r.pulse(3);
    r.pulse(6);
    assert_eq!(r.ack(), Some(0x0b));
    assert_eq!(r.inb(MASTER_CMD), 0x40, "IRR after init");
    r.out(MASTER_CMD, 0x0b);
    assert_eq!(r.inb(MASTER_CMD), 0x08);
    assert_eq!(r.inb(MASTER_CMD), 0x08, "selection persists");
    r.out(MASTER_CMD, 0x08); // OCW3 with RR = 0: no change
    assert_eq!(r.inb(MASTER_CMD), 0x08);
    r.out(MASTER_CMD, 0x0a);
    assert_eq!(r.inb(MASTER_CMD), 0x40);
    r.out(MASTER_DATA, 0xa5);
    assert_eq!(r.inb(MASTER_DATA), 0xa5);
    // A word read at 0x20 gives the status register and the IMR.
    let mut b = [0u8; 2];
    r.dev.read(AddressSpace::Pio, 0x20, &mut b);
    assert_eq!(b, [0x40, 0xa5]);
    // Bytes at undecoded ports read as open bus.
    r.dev.read(AddressSpace::Pio, 0x21, &mut b);
    assert_eq!(b, [0xa5, 0xff]);
    r.dev.read(AddressSpace::Mmio, 0x20, &mut b);
    assert_eq!(b, [0xff, 0xff]);
}

#[test]
fn lines_without_an_input_are_ignored() {
    let mut r = Rig::with(BIOS);
    for line in [2u32, 16, 23, 63] {
        r.set(line, true);
        r.set(line, false);
    }
    assert!(!r.intr());
    assert_eq!(r.irr(MASTER_CMD), 0);
    let logs = r.host.record().logs.clone();
    assert_eq!(logs.len(), 1, "one warning for line 2: {logs:?}");
    assert!(logs[0].1.contains("cascade"));
}

#[test]
fn mcs80_mode_is_warned_about() {
    let mut r = Rig::new();
    r.program(MASTER_CMD, &[0x10, 0x20, 0x04]); // no ICW4
    let logs = r.host.record().logs.clone();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, LogLevel::Warn);
    assert!(logs[0].1.contains("MCS-80"), "{}", logs[0].1);
    r.pulse(1);
    assert_eq!(r.ack(), Some(0x21), "8086-style vector anyway");
}

#[test]
fn reinit_clears_pending_and_in_service() {
    let mut r = Rig::with(BIOS);
    r.pulse(0);
    r.pulse(1);
    assert_eq!(r.ack(), Some(0x08));
    r.out(MASTER_DATA, 0xf0);
    r.program(MASTER_CMD, &LINUX.0);
    assert_eq!(r.inb(MASTER_DATA), 0, "IMR cleared");
    assert_eq!((r.irr(MASTER_CMD), r.isr(MASTER_CMD)), (0, 0));
    assert!(!r.intr());
    r.pulse(1);
    assert_eq!(r.ack(), Some(0x21));
}

#[test]
fn reset_returns_to_power_on() {
    let mut r = Rig::with(BIOS);
    r.out(0x4d0, 0x08);
    r.pulse(1);
    assert!(r.intr());
    r.dev.reset();
    assert!(!r.intr());
    assert_eq!(r.inb(0x4d0), 0, "ELCR reset");
    assert_eq!(r.host.record().cpu_intr.last(), Some(&false));
    let fresh = Rig::new();
    assert_eq!(r.dev.save().unwrap(), fresh.dev.save().unwrap());
}

#[test]
fn save_restore_round_trip_mid_sequence() {
    let mut a = Rig::with(BIOS);
    a.out(0x4d1, 0x08);
    a.set(11, true);
    a.pulse(1);
    a.pulse(4);
    assert_eq!(a.ack(), Some(0x09));
    a.out(MASTER_CMD, 0xc5); // set priority
    a.out(MASTER_CMD, 0x0b); // read ISR
    a.out(MASTER_DATA, 0x40);
    // The slave is re-initialized and waits for ICW3.
    a.out(SLAVE_CMD, 0x19);
    a.out(SLAVE_DATA, 0x78);
    let saved = a.dev.save().unwrap();
    assert_eq!(saved.version, STATE_VERSION);
    assert_eq!(saved.data.len(), STATE_BYTES);

    let mut b = Rig::new();
    b.dev.restore(&saved).unwrap();
    assert_eq!(b.dev.pair(), a.dev.pair());
    assert_eq!(b.intr(), a.intr());
    assert_eq!(b.host.record().cpu_intr.last(), Some(&a.intr()));

    // Both continue identically.
    for r in [&mut a, &mut b] {
        r.out(SLAVE_DATA, 0x02);
        r.out(SLAVE_DATA, 0x01);
        assert_eq!(r.inb(MASTER_CMD), 0x02, "ISR read selected");
        r.eoi(MASTER_CMD);
        r.set(11, false);
        r.set(11, true);
    }
    let mut vectors = [Vec::new(), Vec::new()];
    for (r, v) in [&mut a, &mut b].into_iter().zip(vectors.iter_mut()) {
        while let Some(x) = r.ack() {
            v.push(x);
            if x == 0x7b {
                r.set(11, false); // the handler quiets the device, then EOIs
            }
            r.eoi(SLAVE_CMD);
            r.eoi(MASTER_CMD);
        }
    }
    assert_eq!(vectors[0], vectors[1]);
    assert_eq!(
        vectors[0],
        vec![0x7b, 0x0c],
        "IR2 outranks IR4 after IR5 became lowest"
    );
    assert_eq!(a.dev.save().unwrap(), b.dev.save().unwrap());
}

#[test]
fn malformed_states_are_refused() {
    let mut r = Rig::with(BIOS);
    r.pulse(3);
    let good = r.dev.save().unwrap();
    // Master bytes are 0..11, slave bytes 11..22 (see crate::state).
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut d = good.data.to_vec();
        f(&mut d);
        DeviceState {
            version: STATE_VERSION,
            data: d.into(),
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
        (edit(&|d| d.truncate(STATE_BYTES - 1)), "must be 22 bytes"),
        (edit(&|d| d.push(0)), "must be 22 bytes"),
        (edit(&|d| d[10] |= 0x80), "undefined bits"),
        (edit(&|d| d[4] = 0x04), "master ELCR"),
        (edit(&|d| d[11 + 4] = 0x01), "slave ELCR"),
        (edit(&|d| d[7] = 0x21), "ICW4"),
        (edit(&|d| d[8] = 8), "lowest-priority"),
        (edit(&|d| d[9] = 4), "init step"),
        (
            // Waiting for ICW4 without IC4.
            edit(&|d| {
                d[11 + 9] = 3;
                d[11 + 10] &= !0x04;
            }),
            "ICW4 that its ICW1",
        ),
        (
            // Waiting for ICW3 in single mode.
            edit(&|d| {
                d[9] = 2;
                d[10] |= 0x02;
            }),
            "ICW3 that its ICW1",
        ),
        (
            // IR3 level-triggered, pin low, IRR bit 3 set.
            edit(&|d| d[4] = 0x08),
            "disagrees with level-triggered",
        ),
        (edit(&|d| d[3] |= 0x04), "IR2"), // master IR2 high, slave INT low
        (edit(&|d| d[11] = 0x01), "IR2"), // slave request, master IR2 low
    ];
    for (st, msg) in cases {
        let before = r.dev.save().unwrap();
        let e = r.dev.restore(&st).err();
        let e = e.unwrap_or_else(|| panic!("accepted: {msg}"));
        assert!(e.message.contains(msg), "{msg}: {}", e.message);
        assert_eq!(r.dev.save().unwrap(), before, "{msg}: state untouched");
    }
    r.dev.restore(&good).unwrap();
    assert!(r.intr());
    assert_eq!(r.ack(), Some(0x0b));
}

#[test]
fn cascade_addressing_follows_icw3() {
    // (master ICW1, master ICW3, slave ICW3, vector for IRQ 8)
    let cases: &[(u8, u8, u8, u8)] = &[
        (0x11, 0x04, 0x02, 0x70), // PC/AT: slave on IR2 with ID 2
        (0x11, 0x00, 0x02, 0x0a), // IR2 not a slave input: master's own vector
        (0x11, 0x04, 0x03, 0xff), // no slave answers to ID 2: open bus
        (0x13, 0x04, 0x02, 0x0a), // single mode: no cascade at all
    ];
    for &(icw1, m3, s3, want) in cases {
        let mut r = Rig::new();
        if icw1 & 0x02 != 0 {
            r.program(MASTER_CMD, &[icw1, 0x08, 0x01]);
        } else {
            r.program(MASTER_CMD, &[icw1, 0x08, m3, 0x01]);
        }
        r.program(SLAVE_CMD, &[0x11, 0x70, s3, 0x01]);
        r.pulse(8);
        assert_eq!(r.ack(), Some(want), "ICW1 {icw1:#x} ICW3 {m3:#x}/{s3:#x}");
    }
}
