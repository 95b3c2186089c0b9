//! Device-level tests: a guest driver's view of the UART through `Device`.

use crate::options::SerialOptions;
use crate::output::SharedOutput;
use crate::test_host::FakeHost;
use crate::SerialDevice;
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState};
use hyperplug_plugin_api::DeviceConfig;
use std::sync::{Arc, Mutex};

const BASE: u64 = 0x3f8;
// 16550 register offsets (PC16550D datasheet, register summary).
const THR: u64 = 0; // RBR on read, DLL with LCR.DLAB
const IER: u64 = 1; // DLM with LCR.DLAB
const IIR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const SCR: u64 = 7;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

struct Rig {
    dev: SerialDevice,
    host: FakeHost,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Rig {
    /// A UART with `opts` (plus `input=none`) writing into memory.
    fn new(opts: &str) -> Self {
        let mut config = DeviceConfig::parse(opts);
        config.push("input", "none");
        let options = SerialOptions::parse(&config).unwrap();
        let (host, services) = FakeHost::new();
        let out = Arc::new(Mutex::new(Vec::new()));
        let dev = SerialDevice::with_output(options, services, SharedOutput::memory(out.clone()))
            .unwrap();
        Self { dev, host, out }
    }
    fn outb(&mut self, reg: u64, v: u8) {
        self.dev.write(AddressSpace::Pio, BASE + reg, &[v]);
    }
    fn inb(&mut self, reg: u64) -> u8 {
        let mut b = [0u8];
        self.dev.read(AddressSpace::Pio, BASE + reg, &mut b);
        b[0]
    }
    fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
    /// A polled driver's putc: wait for THRE, then write THR.
    fn putc(&mut self, c: u8) {
        let mut spins = 0;
        while self.inb(LSR) & LSR_THRE == 0 {
            spins += 1;
            assert!(spins < 1000, "THRE never set");
        }
        self.outb(THR, c);
    }
    /// A polled driver's getc: `None` when LSR.DR is clear.
    fn getc(&mut self) -> Option<u8> {
        (self.inb(LSR) & LSR_DR != 0).then(|| self.inb(THR))
    }
}

#[test]
fn divisor_latch_bytes_are_not_output() {
    let mut r = Rig::new("");
    r.outb(LCR, 0x80); // DLAB = 1
    r.outb(THR, 0x01); // DLL
    r.outb(IER, 0x00); // DLM
    assert_eq!(r.inb(THR), 0x01, "DLL reads back with DLAB set");
    assert_eq!(r.inb(IER), 0x00, "DLM reads back with DLAB set");
    r.outb(LCR, 0x03); // 8N1, DLAB = 0
    for &c in b"ok\n" {
        r.putc(c);
    }
    assert_eq!(r.output(), b"ok\n");
    assert_eq!(r.inb(IER), 0, "the DLM write must not have reached IER");
    assert_eq!(r.inb(LCR), 0x03);
    let s = r.dev.save().unwrap();
    assert_eq!(&s.data[..2], &[0x01, 0x00], "divisor latched");
}

#[test]
fn divisor_latch_shadows_ier_both_ways() {
    let mut r = Rig::new("");
    r.outb(IER, 0x05);
    r.outb(LCR, 0x83);
    r.outb(IER, 0x12); // DLM
    assert_eq!(r.inb(IER), 0x12);
    r.outb(LCR, 0x03);
    assert_eq!(r.inb(IER), 0x05);
    assert!(r.output().is_empty());
}

#[test]
fn lsr_reports_transmitter_empty() {
    let mut r = Rig::new("");
    let lsr = r.inb(LSR);
    assert_eq!(lsr & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    assert_eq!(lsr & LSR_DR, 0, "nothing received yet");
    r.outb(THR, b'x');
    assert_eq!(r.inb(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    assert_eq!(r.output(), b"x");
}

#[test]
fn queued_input_reaches_a_polling_guest() {
    let mut r = Rig::new("");
    assert_eq!(r.getc(), None);
    // More than the 64-byte FIFO: the rest moves over as the guest reads.
    let text: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    r.dev.input_queue().push(&text);
    let mut got = Vec::new();
    while let Some(c) = r.getc() {
        got.push(c);
        assert!(got.len() <= text.len());
    }
    assert_eq!(got, text);
    assert!(r.dev.input_queue().is_empty());
    assert_eq!(r.inb(LSR) & LSR_DR, 0);
}

#[test]
fn loopback_mode_keeps_host_input_queued() {
    let mut r = Rig::new("");
    r.outb(MCR, 0x10); // loopback
    r.dev.input_queue().push(b"q");
    r.outb(THR, b'L');
    assert_eq!(
        r.getc(),
        Some(b'L'),
        "loopback returns the transmitted byte"
    );
    assert_eq!(r.getc(), None);
    assert!(r.output().is_empty(), "loopback does not transmit");
    r.outb(MCR, 0x08);
    assert_eq!(r.getc(), Some(b'q'), "host input kept for after loopback");
}

#[test]
fn unknown_option_is_rejected() {
    let (_h, services) = FakeHost::new();
    let e = SerialDevice::create(&DeviceConfig::parse("input=none,baud=9600"), services)
        .err()
        .unwrap();
    assert!(e.message.contains("unknown option 'baud'"), "{}", e.message);
}

#[test]
fn bad_port_values_are_rejected() {
    for opts in ["port=0xfffc", "port=nope", "port=-1", "port=0x1_0000"] {
        let (_h, services) = FakeHost::new();
        let cfg = DeviceConfig::parse(&format!("input=none,{opts}"));
        let e = SerialDevice::create(&cfg, services).err();
        let e = e.unwrap_or_else(|| panic!("{opts} accepted"));
        assert!(e.message.contains("option 'port'"), "{opts}: {}", e.message);
    }
}

#[test]
fn claims_its_ports_only() {
    let mut r = Rig::new("port=0x2f8");
    assert_eq!(
        r.dev.io_ranges(),
        vec![hyperplug_plugin_api::device::IoRange::pio(0x2f8, 8)]
    );
    let mut b = [0u8; 2];
    // 0x2ff is SCR, 0x300 is outside.
    r.dev.write(AddressSpace::Pio, 0x2ff, &[0x5a, 0x77]);
    r.dev.read(AddressSpace::Pio, 0x2ff, &mut b);
    assert_eq!(b, [0x5a, 0xff]);
}

#[test]
fn word_access_splits_into_byte_registers() {
    let mut r = Rig::new("");
    // One 16-bit OUT to the base: 'A' to THR, 0x05 to IER.
    r.dev
        .write(AddressSpace::Pio, BASE, &0x0541u16.to_le_bytes());
    assert_eq!(r.output(), b"A");
    assert_eq!(r.inb(IER), 0x05);
}

#[test]
fn thr_empty_interrupt_pulses_the_configured_line() {
    let mut r = Rig::new("irq=3");
    r.outb(THR, b'a');
    assert_eq!(r.host.pulses(3), 0, "no interrupt while IER is 0");
    // vm-superio asserts THRE as soon as it is enabled (THR is always empty).
    r.outb(IER, 0x02);
    assert_eq!(r.host.pulses(3), 1);
    assert_eq!(r.inb(IIR), 0xc2, "FIFOs enabled, THRE pending");
    assert_eq!(r.inb(IIR), 0xc1, "reading IIR acknowledged it");
    r.outb(THR, b'b');
    assert_eq!(r.host.pulses(3), 2, "a written byte raises THRE again");
    // vm-superio only signals a new edge after the guest reads IIR.
    r.outb(THR, b'c');
    assert_eq!(r.host.pulses(3), 2);
    assert_eq!(r.inb(IIR), 0xc2);
    r.outb(THR, b'd');
    assert_eq!(r.host.pulses(3), 3);
    assert_eq!(r.output(), b"abcd");
    let irqs = r.host.irqs();
    assert!(irqs.iter().all(|&(line, _)| line == 3), "{irqs:?}");
    assert_eq!(
        irqs.last(),
        Some(&(3, false)),
        "line is left low after a pulse"
    );
}

#[test]
fn received_data_interrupt_fires_when_input_arrives() {
    let mut r = Rig::new("");
    r.outb(IER, 0x01);
    assert_eq!(r.host.pulses(4), 0);
    r.dev.input_queue().push(b"z");
    assert_eq!(
        r.host.pulses(4),
        1,
        "the waker moved the byte and raised RDA"
    );
    assert_eq!(r.inb(IIR), 0xc4);
    assert_eq!(r.getc(), Some(b'z'));
}

#[test]
fn save_restore_round_trip() {
    let mut r = Rig::new("");
    r.outb(LCR, 0x80);
    r.outb(THR, 0x0c);
    r.outb(IER, 0x00);
    r.outb(LCR, 0x1b);
    r.outb(SCR, 0xa5);
    r.outb(MCR, 0x0b);
    r.dev.input_queue().push(b"hey");
    let saved = r.dev.save().unwrap();
    assert_eq!(saved.version, 1);

    let mut fresh = Rig::new("");
    fresh.dev.restore(&saved).unwrap();
    assert_eq!(fresh.dev.save().unwrap(), saved);
    assert_eq!(fresh.inb(SCR), 0xa5);
    assert_eq!(fresh.inb(LCR), 0x1b);
    assert_eq!(fresh.inb(MCR), 0x0b);
    assert_eq!(
        [fresh.getc(), fresh.getc(), fresh.getc(), fresh.getc()],
        [Some(b'h'), Some(b'e'), Some(b'y'), None]
    );
}

#[test]
fn restore_rejects_foreign_states() {
    let mut r = Rig::new("");
    let bad = [
        DeviceState {
            version: 9,
            data: vec![0; 13].into(),
        },
        DeviceState {
            version: 1,
            data: vec![0; 5].into(),
        },
    ];
    for s in bad {
        assert!(r.dev.restore(&s).is_err(), "{s:?}");
    }
}

#[test]
fn reset_returns_to_power_on_state() {
    let mut r = Rig::new("");
    let power_on = r.dev.save().unwrap();
    r.outb(LCR, 0x9f);
    r.outb(SCR, 0x42);
    r.outb(MCR, 0x0f);
    r.dev.input_queue().push(b"k"); // lands in the receive FIFO
    assert_ne!(r.dev.save().unwrap(), power_on);
    r.dev.reset();
    assert_eq!(r.dev.save().unwrap(), power_on);
    assert_eq!(r.inb(LSR), LSR_THRE | LSR_TEMT, "receive FIFO emptied");
}

#[test]
fn only_one_device_may_own_stdin() {
    let (_h1, s1) = FakeHost::new();
    let (_h2, s2) = FakeHost::new();
    let (_h3, s3) = FakeHost::new();
    let out = || SharedOutput::memory(Arc::new(Mutex::new(Vec::new())));
    let opts = SerialOptions::parse(&DeviceConfig::parse("input=stdin")).unwrap();
    let first = SerialDevice::with_output(opts.clone(), s1, out()).unwrap();
    let second = SerialDevice::with_output(opts.clone(), s2, out())
        .err()
        .unwrap();
    assert!(
        second.message.contains("already used"),
        "{}",
        second.message
    );
    drop(first);
    SerialDevice::with_output(opts, s3, out()).unwrap();
}
