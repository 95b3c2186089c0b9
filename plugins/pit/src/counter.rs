//! One 8254 counter: control word, count register (CR), output latch, status
//! latch, the byte-order flip-flops, GATE, and the counting element (CE)
//! as a [`Segment`] timeline.
//!
//! Rules from the Intel 82C54 CHMOS Programmable Interval Timer datasheet:
//! "Control Word Format", "Write Operations", "Read Operations" (counter
//! latch command, read-back command, status byte), "Mode Definitions" and
//! "Gate Pin Operations Summary".

use crate::bcd;
use crate::segment::{Mode, Segment};

/// A count written in mode 2 or 3 while counting, waiting for the end of
/// the current period (mode 2) or half-cycle (mode 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The new count in pulses.
    pub n: u32,
    /// The pulse at which it is loaded.
    pub at: u64,
    /// Mode 3: the reload starts a low half-cycle.
    pub starts_low: bool,
}

/// One counter of the 8254.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Bits 5-0 of the last control word: RW1 RW0 M2 M1 M0 BCD (what the
    /// status byte reports).
    pub control: u8,
    /// The count register as written.
    pub cr: u16,
    /// A complete count has been written since the last control word.
    pub cr_valid: bool,
    /// LSB-then-MSB access: the next write is the MSB.
    pub write_msb_next: bool,
    /// LSB-then-MSB access: the next read is the MSB.
    pub read_msb_next: bool,
    /// The output latch, holding a latched count until it is read.
    pub count_latch: Option<u16>,
    /// A latched status byte, until it is read.
    pub status_latch: Option<u8>,
    /// The GATE input level.
    pub gate: bool,
    /// CE contents (as read) while no count is loaded.
    pub held_ce: u16,
    /// OUT while no count is loaded.
    pub held_out: bool,
    /// The count being counted, if any.
    pub seg: Option<Segment>,
    /// A count waiting for a mode 2/3 reload point.
    pub pending: Option<Pending>,
    /// The pulse at which the count in CR reaches CE; `None` while it waits
    /// (null count).
    pub transfer_tick: Option<u64>,
}

/// Control bits (5-0) of the power-on state: LSB-then-MSB, mode 0, binary.
/// The 8254's power-on state is undefined; this is a control word with
/// no count written.
pub const POWER_ON_CONTROL: u8 = 0x30;

impl Counter {
    /// The power-on state with GATE at `gate`.
    pub fn new(gate: bool) -> Self {
        Self {
            control: POWER_ON_CONTROL,
            cr: 0,
            cr_valid: false,
            write_msb_next: false,
            read_msb_next: false,
            count_latch: None,
            status_latch: None,
            gate,
            held_ce: 0,
            held_out: Mode::from_bits(POWER_ON_CONTROL >> 1).initial_out(),
            seg: None,
            pending: None,
            transfer_tick: None,
        }
    }

    /// The programmed mode.
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.control >> 1)
    }

    /// Read/write access: 1 LSB only, 2 MSB only, 3 LSB then MSB.
    pub fn rw(&self) -> u8 {
        (self.control >> 4) & 3
    }

    /// Whether the counter counts in BCD.
    pub fn bcd(&self) -> bool {
        self.control & 1 != 0
    }

    /// Counting modulus: 65536 binary, 10000 BCD.
    fn modulus(&self) -> u32 {
        if self.bcd() {
            10_000
        } else {
            65_536
        }
    }

    /// The count in pulses that CR holds: a count of 0 is the maximum,
    /// 2^16 binary or 10^4 BCD (datasheet, "Write Operations").
    pub fn count_of(&self, cr: u16) -> u32 {
        let v = if self.bcd() {
            bcd::decode(cr)
        } else {
            u32::from(cr)
        };
        if v == 0 {
            self.modulus()
        } else {
            v
        }
    }

    /// The segment that takes over at the pending reload point, if any.
    fn pending_segment(&self) -> Option<(u64, Segment)> {
        let p = self.pending?;
        let old = self.seg?;
        let before = p.at.checked_sub(1)?;
        let prev_out = if before >= old.load_tick {
            old.out(self.mode(), before)
        } else {
            self.held_out
        };
        Some((
            p.at,
            Segment::reloaded(self.mode(), p.n, p.at, p.starts_low, prev_out),
        ))
    }

    /// The segment in effect at `tick`, and whether CE is loaded then.
    fn segment_at(&self, tick: u64) -> Option<Segment> {
        let seg = match self.pending_segment() {
            Some((at, s)) if at <= tick => Some(s),
            _ => self.seg,
        };
        seg.filter(|s| tick >= s.load_tick)
    }

    /// Applies a pending reload whose pulse has come.
    pub fn settle(&mut self, now: u64) {
        if let Some((at, s)) = self.pending_segment() {
            if at <= now {
                self.seg = Some(s);
                self.pending = None;
            }
        }
    }

    /// OUT at pulse `now`.
    pub fn out(&self, now: u64) -> bool {
        match self.segment_at(now) {
            Some(s) => s.out(self.mode(), now),
            None => self.held_out,
        }
    }

    /// CE contents at pulse `now`, encoded as a read returns them.
    pub fn ce(&self, now: u64) -> u16 {
        match self.segment_at(now) {
            Some(s) => {
                let v = s.ce(self.mode(), self.modulus(), now);
                if self.bcd() {
                    bcd::encode(v)
                } else {
                    // v < 65536 (reduced modulo 2^16).
                    v as u16
                }
            }
            None => self.held_ce,
        }
    }

    /// Null count at `now`: a count written to CR has not reached CE yet.
    pub fn null_count(&self, now: u64) -> bool {
        self.transfer_tick.is_none_or(|t| now < t)
    }

    /// The status byte (datasheet, "Read-Back Command", status format):
    /// OUT, NULL COUNT, RW1, RW0, M2, M1, M0, BCD.
    pub fn status(&self, now: u64) -> u8 {
        (u8::from(self.out(now)) << 7) | (u8::from(self.null_count(now)) << 6) | self.control
    }

    /// The first pulse after `after` at which OUT rises.
    pub fn next_rise(&self, after: u64) -> Option<u64> {
        let mode = self.mode();
        let old = self.seg?;
        let r = old.next_rise(mode, after);
        if let Some((at, new)) = self.pending_segment() {
            if r.is_none_or(|r| r > at) {
                return new.next_rise(mode, after.max(at - 1));
            }
        }
        r
    }

    /// A control word with RW != 00 for this counter: new mode, counting
    /// stops until a count is written, OUT goes to its initial state.
    pub fn program(&mut self, now: u64, control: u8) {
        self.settle(now);
        self.held_ce = self.ce(now);
        self.control = control & 0x3f;
        self.held_out = self.mode().initial_out();
        self.cr_valid = false;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.count_latch = None;
        self.status_latch = None;
        self.seg = None;
        self.pending = None;
        self.transfer_tick = None;
    }

    /// Loads count `n` on the next pulse; OUT until then is `prev_out`.
    fn load_next(&mut self, now: u64, n: u32, prev_out: bool) {
        let mode = self.mode();
        self.held_ce = self.ce(now);
        self.held_out = prev_out;
        let load = now.saturating_add(1);
        let suspended = mode.gate_enables_counting() && !self.gate;
        let mut s = Segment::new(n, load, suspended);
        s.rise_at_load = !prev_out && s.out(mode, load);
        self.seg = Some(s);
        self.pending = None;
        self.transfer_tick = Some(load);
    }

    /// A byte written to the counter's port.
    pub fn write(&mut self, now: u64, byte: u8) {
        self.settle(now);
        let b = u16::from(byte);
        match self.rw() {
            1 => self.cr = b,
            2 => self.cr = b << 8,
            _ if !self.write_msb_next => {
                self.cr = (self.cr & 0xff00) | b;
                self.write_msb_next = true;
                if self.mode() == Mode::InterruptOnTerminalCount {
                    // Mode 0: writing the first byte stops counting and sets
                    // OUT low at once.
                    self.held_ce = self.ce(now);
                    self.held_out = false;
                    self.seg = None;
                    self.pending = None;
                }
                return;
            }
            _ => {
                self.cr = (self.cr & 0x00ff) | (b << 8);
                self.write_msb_next = false;
            }
        }
        self.count_written(now);
    }

    /// A complete count is in CR.
    fn count_written(&mut self, now: u64) {
        self.cr_valid = true;
        let n = self.count_of(self.cr);
        match self.mode() {
            // Loaded on the next pulse; in mode 0 OUT is low until terminal count.
            Mode::InterruptOnTerminalCount => self.load_next(now, n, false),
            // Loaded on the next pulse; counting continues from the new count.
            Mode::SoftwareStrobe => self.load_next(now, n, self.out(now)),
            // Waits for a trigger on GATE; the current one-shot is unaffected.
            Mode::OneShot | Mode::HardwareStrobe => self.transfer_tick = None,
            Mode::RateGenerator | Mode::SquareWave => match self.seg {
                Some(s) if now >= s.load_tick => {
                    if s.suspended {
                        // Loaded by the next rising edge of GATE.
                        self.pending = None;
                        self.transfer_tick = None;
                    } else if let Some((at, starts_low)) = s.next_reload(self.mode(), now) {
                        self.pending = Some(Pending { n, at, starts_low });
                        self.transfer_tick = Some(at);
                    }
                }
                _ => self.load_next(now, n, self.out(now)),
            },
        }
    }

    /// A byte read from the counter's port: a latched status first, then a
    /// latched count, else the live CE, in the programmed byte order.
    pub fn read(&mut self, now: u64) -> u8 {
        self.settle(now);
        if let Some(s) = self.status_latch.take() {
            return s;
        }
        let (value, latched) = match self.count_latch {
            Some(v) => (v, true),
            None => (self.ce(now), false),
        };
        let [lo, hi] = value.to_le_bytes();
        let (byte, done) = match self.rw() {
            1 => (lo, true),
            2 => (hi, true),
            _ if self.read_msb_next => {
                self.read_msb_next = false;
                (hi, true)
            }
            _ => {
                self.read_msb_next = true;
                (lo, false)
            }
        };
        if latched && done {
            self.count_latch = None;
        }
        byte
    }

    /// Counter latch command: latches CE unless a latched count is unread.
    pub fn latch_count(&mut self, now: u64) {
        self.settle(now);
        if self.count_latch.is_none() {
            self.count_latch = Some(self.ce(now));
        }
    }

    /// Read-back status latch: latches the status unless one is unread.
    pub fn latch_status(&mut self, now: u64) {
        self.settle(now);
        if self.status_latch.is_none() {
            self.status_latch = Some(self.status(now));
        }
    }

    /// GATE changes level at pulse `now`.
    pub fn set_gate(&mut self, now: u64, level: bool) {
        self.settle(now);
        if level == self.gate {
            return;
        }
        self.gate = level;
        let mode = self.mode();
        if !level {
            if mode.gate_enables_counting() {
                if let Some(s) = self.seg.as_mut() {
                    s.suspend(now);
                }
                if self.pending.take().is_some() {
                    // The waiting count is now loaded by the next trigger.
                    self.transfer_tick = None;
                }
            }
            return;
        }
        if mode.gate_triggers() {
            // Rising edge: (re)load CR into CE on the next pulse.
            if self.cr_valid {
                let n = self.count_of(self.cr);
                self.load_next(now, n, self.out(now));
            }
        } else if let Some(s) = self.seg.as_mut() {
            s.resume(now);
        }
    }
}
