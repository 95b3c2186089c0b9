//! Register-level tests of the PIT with a recording host and a driven virtual clock.

mod counting;
mod gate;
mod irq;
mod snapshot;

use crate::{Pit, EDGE_TIMER};
use hyperplug_plugin_api::device::{AddressSpace, Device};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

/// The first nanosecond of CLK pulse `t` (1.193182 MHz from virtual time 0).
pub fn tick_ns(t: u64) -> u64 {
    (u128::from(t) * 1_000_000_000).div_ceil(1_193_182) as u64
}

/// A PIT on a recording host.
pub struct Rig {
    pub dev: Pit,
    pub host: RecordingHost,
}

impl Rig {
    pub fn new() -> Self {
        Self::with_options("")
    }

    pub fn with_options(opts: &str) -> Self {
        let host = RecordingHost::new();
        let dev = Pit::create(&DeviceConfig::parse(opts), host.services()).unwrap();
        Self { dev, host }
    }

    /// Moves the virtual clock to `ns` (never backwards).
    pub fn at(&mut self, ns: u64) -> &mut Self {
        let now = self.host.now_ns();
        assert!(ns >= now, "clock cannot go back from {now} to {ns}");
        self.host.advance_ns(ns - now);
        self
    }

    /// Moves the virtual clock to the first nanosecond of pulse `t`.
    pub fn at_tick(&mut self, t: u64) -> &mut Self {
        self.at(tick_ns(t))
    }

    pub fn outb(&mut self, port: u16, v: u8) -> &mut Self {
        self.dev.write(AddressSpace::Pio, u64::from(port), &[v]);
        self
    }

    pub fn inb(&mut self, port: u16) -> u8 {
        let mut b = [0u8];
        self.dev.read(AddressSpace::Pio, u64::from(port), &mut b);
        b[0]
    }

    /// Writes a 16-bit count LSB then MSB to counter `ch`.
    pub fn count16(&mut self, ch: u16, n: u16) -> &mut Self {
        let [lo, hi] = n.to_le_bytes();
        self.outb(0x40 + ch, lo).outb(0x40 + ch, hi)
    }

    /// Counter latch command, then two reads (LSB-then-MSB access).
    pub fn latched(&mut self, ch: u16) -> u16 {
        self.outb(0x43, (ch as u8) << 6);
        let lo = self.inb(0x40 + ch);
        let hi = self.inb(0x40 + ch);
        u16::from_le_bytes([lo, hi])
    }

    /// Read-back of counter `ch`'s status.
    pub fn status(&mut self, ch: u16) -> u8 {
        self.outb(0x43, 0xe0 | (2 << ch));
        self.inb(0x40 + ch)
    }

    /// Counter 2's OUT as port 0x61 bit 5 shows it.
    pub fn out2(&mut self) -> bool {
        self.inb(0x61) & 0x20 != 0
    }

    /// The armed edge-timer deadline, if any.
    pub fn armed(&self) -> Option<u64> {
        self.host.record().timers.get(&EDGE_TIMER).copied()
    }

    /// Fires the edge timer at each of its deadlines up to `end_ns`, then
    /// moves the clock to `end_ns`; returns the deadlines it fired at.
    pub fn run_until(&mut self, end_ns: u64) -> Vec<u64> {
        let mut fired = vec![];
        while let Some(d) = self.armed().filter(|d| *d <= end_ns) {
            self.at(d.max(self.host.now_ns()));
            for id in self.host.take_due_timers() {
                self.dev.timer_fired(id);
            }
            fired.push(d);
            assert!(fired.len() < 100_000, "timer storm");
        }
        self.at(end_ns);
        fired
    }

    /// Rising edges seen on line 0 so far.
    pub fn edges(&self) -> usize {
        self.host.rising_edges(0)
    }
}
