//! The IOAPIC: 24 interrupt pins, each routed by a 64-bit redirection-table
//! entry into an interrupt message for the local APICs.
//!
//! Reference: Intel 82093AA I/O Advanced Programmable Interrupt Controller
//! (IOAPIC) datasheet, section 3: the indirect register window (IOREGSEL at
//! +0x00, IOWIN at +0x10, 3.0), IOAPICID/IOAPICVER/IOAPICARB (3.2.1-3.2.3)
//! and the redirection table (3.2.4). The version register reports 0x20
//! (the PCI-era IOxAPIC), which adds the EOI register at +0x40 of the ICH
//! family IOxAPICs: a write of a vector there acts as an EOI for it.
//!
//! Delivery is immediate, so the delivery-status bit always reads 0.

use super::msg::{ApicMessage, DeliveryMode, BROADCAST, XAPIC_BROADCAST};
use super::ApicError;

/// Number of pins (redirection entries).
pub const IOAPIC_PINS: usize = 24;
/// IOREGSEL offset.
pub const IOREGSEL: u64 = 0x00;
/// IOWIN offset.
pub const IOWIN: u64 = 0x10;
/// EOI register offset (IOxAPIC version 0x20).
pub const IOEOI: u64 = 0x40;
/// Size of the MMIO window.
pub const IOAPIC_MMIO_SIZE: u64 = 0x100;

/// IOAPICID index.
pub const REG_ID: u8 = 0x00;
/// IOAPICVER index.
pub const REG_VERSION: u8 = 0x01;
/// IOAPICARB index.
pub const REG_ARB: u8 = 0x02;
/// First redirection-table index (pin n: 0x10 + 2n low, 0x11 + 2n high).
pub const REG_REDIR: u8 = 0x10;
/// IOAPICVER value: version 0x20, maximum redirection entry 23 (3.2.2).
pub const VERSION_VALUE: u32 = 0x0017_0020;

/// Redirection entry bit 12: delivery status (read-only).
const DELIVERY_STATUS: u64 = 1 << 12;
/// Bit 13: interrupt input pin polarity, 1 = active low.
const POLARITY_LOW: u64 = 1 << 13;
/// Bit 14: remote IRR (read-only).
const REMOTE_IRR: u64 = 1 << 14;
/// Bit 15: trigger mode, 1 = level.
const LEVEL: u64 = 1 << 15;
/// Bit 16: interrupt mask.
const MASKED: u64 = 1 << 16;
/// Writable low-dword bits: vector, delivery mode, destination mode,
/// polarity, trigger mode, mask (3.2.4).
const LOW_WRITABLE: u64 = 0x0001_AFFF;
/// Writable high-dword bits: destination field 63:56.
const HIGH_WRITABLE: u64 = 0xFF00_0000_0000_0000;

/// One redirection-table entry (82093AA 3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RedirectionEntry(pub u64);

impl RedirectionEntry {
    /// Vector, bits 7:0.
    pub fn vector(self) -> u8 {
        self.0 as u8
    }

    /// Delivery mode, bits 10:8; None for the reserved 011b and 110b.
    pub fn delivery_mode(self) -> Option<DeliveryMode> {
        DeliveryMode::from_bits((self.0 >> 8) as u32).filter(|m| *m != DeliveryMode::StartUp)
    }

    /// Destination mode bit 11: logical when true.
    pub fn dest_logical(self) -> bool {
        self.0 & (1 << 11) != 0
    }

    /// Polarity bit 13: active low when true.
    pub fn active_low(self) -> bool {
        self.0 & POLARITY_LOW != 0
    }

    /// Remote IRR bit 14.
    pub fn remote_irr(self) -> bool {
        self.0 & REMOTE_IRR != 0
    }

    /// Trigger mode bit 15: level when true.
    pub fn level_triggered(self) -> bool {
        self.0 & LEVEL != 0
    }

    /// Mask bit 16.
    pub fn masked(self) -> bool {
        self.0 & MASKED != 0
    }

    /// Destination field, bits 63:56.
    pub fn dest(self) -> u8 {
        (self.0 >> 56) as u8
    }

    /// Level semantics (remote IRR, EOI) apply: level trigger with fixed or
    /// lowest-priority delivery; SMI, NMI, INIT and ExtINT are edge-only (3.2.4).
    fn level_semantics(self) -> bool {
        self.level_triggered()
            && matches!(
                self.delivery_mode(),
                Some(DeliveryMode::Fixed | DeliveryMode::LowestPriority)
            )
    }
}

/// The IOAPIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoApic {
    id: u8,
    arb_id: u8,
    ioregsel: u8,
    redir: [u64; IOAPIC_PINS],
    levels: u32,
}

impl IoApic {
    /// An IOAPIC with the 4-bit ID `id` (3.2.1) in its reset state.
    pub fn new(id: u8) -> Result<Self, ApicError> {
        if id > 15 {
            return Err(ApicError::Config(format!(
                "IOAPIC ID {id} does not fit the 4-bit IOAPICID field"
            )));
        }
        let mut io = Self {
            id,
            arb_id: id,
            ioregsel: 0,
            redir: [MASKED; IOAPIC_PINS],
            levels: 0,
        };
        io.reset();
        Ok(io)
    }

    /// RESET: every entry masked with the other fields 0, IOREGSEL 0 (3.2.4).
    /// Input pin levels are wires and stay.
    pub fn reset(&mut self) {
        self.ioregsel = 0;
        self.redir = [MASKED; IOAPIC_PINS];
        self.arb_id = self.id;
    }

    /// IOAPICID[27:24].
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The entry of `pin`.
    pub fn entry(&self, pin: u32) -> Option<RedirectionEntry> {
        self.redir.get(pin as usize).map(|e| RedirectionEntry(*e))
    }

    /// The raw input level of `pin` (before polarity).
    pub fn pin_level(&self, pin: u32) -> bool {
        pin < IOAPIC_PINS as u32 && self.levels & (1 << pin) != 0
    }

    fn asserted(&self, pin: usize) -> bool {
        let raw = self.levels & (1 << pin) != 0;
        raw != RedirectionEntry(self.redir[pin]).active_low()
    }

    fn message(entry: RedirectionEntry) -> Option<ApicMessage> {
        let delivery_mode = entry.delivery_mode()?;
        let mut dest = u32::from(entry.dest());
        if !entry.dest_logical() && dest == XAPIC_BROADCAST {
            dest = BROADCAST;
        }
        Some(ApicMessage {
            dest,
            dest_logical: entry.dest_logical(),
            vector: entry.vector(),
            delivery_mode,
            level_triggered: entry.level_semantics(),
        })
    }

    /// Sends the pin's message if it is an unmasked, asserted level pin whose
    /// previous message was EOI'd (remote IRR clear); sets remote IRR.
    fn service_level(&mut self, pin: usize, out: &mut Vec<ApicMessage>) {
        let e = RedirectionEntry(self.redir[pin]);
        if !e.level_semantics() || e.masked() || e.remote_irr() || !self.asserted(pin) {
            return;
        }
        if let Some(m) = Self::message(e) {
            self.redir[pin] |= REMOTE_IRR;
            out.push(m);
        }
    }

    /// Drives input `pin` to `level`. Edge-triggered entries send on the
    /// inactive→active transition; level-triggered ones send while active
    /// unless remote IRR is set; active-low entries invert the input;
    /// masked entries send nothing and edges seen while masked are lost (3.2.4).
    pub fn set_pin(&mut self, pin: u32, level: bool) -> Result<Vec<ApicMessage>, ApicError> {
        let p = pin as usize;
        if p >= IOAPIC_PINS {
            return Err(ApicError::NoSuchPin(pin));
        }
        let was = self.asserted(p);
        if level {
            self.levels |= 1 << p;
        } else {
            self.levels &= !(1 << p);
        }
        let now = self.asserted(p);
        let e = RedirectionEntry(self.redir[p]);
        let mut out = Vec::new();
        if e.level_semantics() {
            self.service_level(p, &mut out);
        } else if !was && now && !e.masked() {
            out.extend(Self::message(e));
        }
        Ok(out)
    }

    /// An EOI for `vector` from a local APIC: clears remote IRR of the
    /// level-triggered entries with that vector and re-sends those whose pin
    /// is still active (3.2.4, Remote IRR).
    pub fn eoi(&mut self, vector: u8) -> Vec<ApicMessage> {
        let mut out = Vec::new();
        for pin in 0..IOAPIC_PINS {
            let e = RedirectionEntry(self.redir[pin]);
            if e.level_triggered() && e.vector() == vector && e.remote_irr() {
                self.redir[pin] &= !REMOTE_IRR;
                self.service_level(pin, &mut out);
            }
        }
        out
    }

    /// Reads the register at index `index` (through IOWIN). Unimplemented
    /// indexes read 0.
    pub fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID => u32::from(self.id) << 24,
            REG_VERSION => VERSION_VALUE,
            REG_ARB => u32::from(self.arb_id) << 24,
            _ => match self.redir_slot(index) {
                Some((pin, false)) => (self.redir[pin] & !DELIVERY_STATUS) as u32,
                Some((pin, true)) => (self.redir[pin] >> 32) as u32,
                None => 0,
            },
        }
    }

    fn redir_slot(&self, index: u8) -> Option<(usize, bool)> {
        let i = usize::from(index.checked_sub(REG_REDIR)?);
        (i < 2 * IOAPIC_PINS).then_some((i / 2, i % 2 == 1))
    }

    /// Writes the register at index `index`. IOAPICVER and IOAPICARB are
    /// read-only; writing the ID also loads the arbitration ID (3.2.3); the
    /// read-only entry bits (delivery status, remote IRR) keep their value,
    /// except that switching an entry to edge trigger clears remote IRR. A
    /// write that unmasks an active level-triggered pin sends its message.
    pub fn write_register(&mut self, index: u8, value: u32) -> Vec<ApicMessage> {
        let mut out = Vec::new();
        match index {
            REG_ID => {
                self.id = ((value >> 24) & 0xF) as u8;
                self.arb_id = self.id;
            }
            _ => match self.redir_slot(index) {
                Some((pin, false)) => {
                    let old = self.redir[pin];
                    let mut new = (old & !LOW_WRITABLE) | (u64::from(value) & LOW_WRITABLE);
                    if new & LEVEL == 0 {
                        new &= !REMOTE_IRR;
                    }
                    self.redir[pin] = new;
                    self.service_level(pin, &mut out);
                }
                Some((pin, true)) => {
                    let old = self.redir[pin];
                    self.redir[pin] =
                        (old & !HIGH_WRITABLE) | ((u64::from(value) << 32) & HIGH_WRITABLE);
                }
                None => {}
            },
        }
        out
    }

    /// An MMIO read of `data.len()` bytes at `offset` into the IOAPIC window:
    /// IOREGSEL (bits 7:0) at 0x00, IOWIN at 0x10; everything else reads 0.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let addr = offset.saturating_add(i as u64);
            let word = match addr & !3 {
                IOREGSEL => u32::from(self.ioregsel),
                IOWIN => self.read_register(self.ioregsel),
                _ => 0,
            };
            *byte = word.to_le_bytes()[(addr & 3) as usize];
        }
    }

    /// An MMIO write at `offset`: IOREGSEL takes its low byte (any width),
    /// IOWIN and the EOI register take 32-bit stores; the rest is ignored.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Vec<ApicMessage> {
        let dword = match data {
            [a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
            _ => None,
        };
        match (offset, data.first(), dword) {
            (IOREGSEL, Some(b), _) => {
                self.ioregsel = *b;
                Vec::new()
            }
            (IOWIN, _, Some(v)) => self.write_register(self.ioregsel, v),
            (IOEOI, _, Some(v)) => self.eoi(v as u8),
            _ => Vec::new(),
        }
    }
}
