//! Hyperplug device plugin: the Intel 8254 programmable interval timer at
//! ports 0x40-0x43, with system control port B (0x61) for counter 2's gate,
//! the speaker enable and the OUT2 / refresh-detect read-back.
//!
//! The three counters count a 1.193182 MHz clock derived from the host's
//! virtual clock (`HostServices::now_ns`): every count is computed from
//! elapsed virtual time, never from host wall time. Counter 0's OUT drives
//! the `irq` line (default 0): each rising edge of OUT is one pulse
//! (`set_irq(irq, true)` then `set_irq(irq, false)`), delivered by a host
//! timer armed for the exact pulse of the next edge and re-armed after each
//! one. Counters 0 and 1 have GATE tied high; counter 2's GATE is bit 0 of
//! port 0x61.
//!
//! Choices, documented:
//! - If the host fires the timer late, edges that happened since the last
//!   one delivered are coalesced into one pulse (an edge-triggered PIC would
//!   latch them as one request anyway).
//! - Rising edges of counter 0's OUT caused by anything but counting (a
//!   control word, a count write) are not delivered: only counting edges are.
//! - Reads of port 0x43 return 0xff (the 8254 does not drive the bus there).
//! - A wider access is split into byte accesses at consecutive ports, as an
//!   ISA bus does for an 8-bit device; ports not ours read 0xff.

pub mod bcd;
pub mod clock;
pub mod counter;
pub mod options;
pub mod segment;
pub mod state;
pub mod system_port;

#[cfg(test)]
mod tests;

use clock::TimeBase;
use counter::Counter;
use hyperplug_plugin_api::device::{
    AddressSpace, Device, DeviceState, HostServices, IoRange, TIMER_OFF,
};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use options::PitOptions;
use system_port::SystemPort;

/// First port of the 8254 (counter 0).
pub const PIT_BASE: u16 = 0x40;
/// The control word register (A1 A0 = 11).
pub const CONTROL_PORT: u16 = 0x43;
/// The timer id used for counter 0's next OUT edge.
pub const EDGE_TIMER: u32 = 0;
/// What an undriven byte reads as.
const OPEN_BUS: u8 = 0xff;

/// The 8254 and port 0x61.
pub struct Pit {
    host: HostServices,
    options: PitOptions,
    clock: TimeBase,
    counters: [Counter; 3],
    port_b: SystemPort,
    /// Rising edges of counter 0's OUT up to this pulse have been delivered.
    irq_seen_tick: u64,
    /// The deadline the edge timer is armed for, as far as this device knows.
    armed: Option<u64>,
}

/// The power-on counters: GATE high on 0 and 1, from port B on 2.
fn power_on_counters(port_b: &SystemPort) -> [Counter; 3] {
    [
        Counter::new(true),
        Counter::new(true),
        Counter::new(port_b.gate2()),
    ]
}

impl Pit {
    /// The current CLK pulse.
    fn now_tick(&self) -> u64 {
        self.clock.ticks(self.host.now_ns())
    }

    /// A control word (datasheet, "Control Word Format": SC1 SC0 RW1 RW0 M2
    /// M1 M0 BCD; SC = 11 is the read-back command, RW = 00 the counter
    /// latch command).
    fn control_word(&mut self, now: u64, v: u8) {
        let sc = usize::from(v >> 6);
        if sc == 3 {
            // Read-back: bit 5 low latches counts, bit 4 low latches status,
            // bits 3-1 select counters 2, 1, 0.
            for (i, c) in self.counters.iter_mut().enumerate() {
                if v & (2 << i) == 0 {
                    continue;
                }
                if v & 0x10 == 0 {
                    c.latch_status(now);
                }
                if v & 0x20 == 0 {
                    c.latch_count(now);
                }
            }
        } else if (v >> 4) & 3 == 0 {
            self.counters[sc].latch_count(now);
        } else {
            self.counters[sc].program(now, v & 0x3f);
        }
    }

    /// One byte read at `port`.
    fn read_port(&mut self, port: u64) -> u8 {
        let now = self.now_tick();
        match port {
            0x40..=0x42 => self.counters[(port - 0x40) as usize].read(now),
            p if p == u64::from(system_port::PORT) => {
                let out2 = self.counters[2].out(now);
                self.port_b.read(out2)
            }
            _ => OPEN_BUS,
        }
    }

    /// One byte written at `port`.
    fn write_port(&mut self, port: u64, v: u8) {
        let now = self.now_tick();
        match port {
            0x40..=0x42 => self.counters[(port - 0x40) as usize].write(now, v),
            p if p == u64::from(CONTROL_PORT) => self.control_word(now, v),
            p if p == u64::from(system_port::PORT) => {
                self.port_b.write(v);
                self.counters[2].set_gate(now, self.port_b.gate2());
            }
            _ => return,
        }
        self.rearm();
    }

    /// Arms the edge timer for counter 0's next rising OUT edge, or disarms it.
    fn rearm(&mut self) {
        let deadline = self.counters[0]
            .next_rise(self.irq_seen_tick)
            .map(|t| self.clock.deadline_ns(t));
        if deadline != self.armed {
            self.host
                .set_timer(EDGE_TIMER, deadline.unwrap_or(TIMER_OFF));
            self.armed = deadline;
        }
    }

    /// Whether `port` is one of ours.
    fn claims(space: AddressSpace, port: u64) -> bool {
        space == AddressSpace::Pio
            && ((u64::from(PIT_BASE)..=u64::from(CONTROL_PORT)).contains(&port)
                || port == u64::from(system_port::PORT))
    }

    /// The saved-state view of this device at virtual time `now_ns`.
    fn snapshot(&self, now_ns: u64) -> state::Snapshot {
        state::Snapshot {
            age_ns: self.clock.age_ns(now_ns),
            port_b: self.port_b,
            irq_seen_tick: self.irq_seen_tick,
            counters: self.counters.clone(),
        }
    }
}

impl Device for Pit {
    const NAME: &'static str = "pit";
    const DESCRIPTION: &'static str =
        "Intel 8254 PIT at 0x40-0x43 (counter 0 -> IRQ 0) and port B 0x61 (counter 2 gate, speaker)";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        let options = PitOptions::parse(config)?;
        let clock = TimeBase::new();
        let port_b = SystemPort::default();
        let irq_seen_tick = clock.ticks(host.now_ns());
        Ok(Self {
            host,
            options,
            clock,
            counters: power_on_counters(&port_b),
            port_b,
            irq_seen_tick,
            armed: None,
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![
            IoRange::pio(PIT_BASE, 4),
            IoRange::pio(system_port::PORT, 1),
        ]
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let port = addr.wrapping_add(i as u64);
            *b = if Self::claims(space, port) {
                self.read_port(port)
            } else {
                OPEN_BUS
            };
        }
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let port = addr.wrapping_add(i as u64);
            if Self::claims(space, port) {
                self.write_port(port, b);
            }
        }
    }

    fn reset(&mut self) {
        self.port_b = SystemPort::default();
        self.counters = power_on_counters(&self.port_b);
        self.irq_seen_tick = self.now_tick();
        self.host.set_timer(EDGE_TIMER, TIMER_OFF);
        self.armed = None;
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        let snap = self.snapshot(self.host.now_ns());
        Ok(DeviceState {
            version: state::STATE_VERSION,
            data: state::encode(&snap).into(),
        })
    }

    fn restore(&mut self, saved: &DeviceState) -> Result<(), PluginError> {
        let snap = state::decode(saved.version, &saved.data)?;
        let now_ns = self.host.now_ns();
        self.clock = TimeBase::from_age(now_ns, snap.age_ns);
        self.port_b = snap.port_b;
        self.irq_seen_tick = snap.irq_seen_tick;
        self.counters = snap.counters;
        self.host.set_timer(EDGE_TIMER, TIMER_OFF);
        self.armed = None;
        self.rearm();
        Ok(())
    }

    fn timer_fired(&mut self, timer: u32) {
        if timer != EDGE_TIMER {
            return;
        }
        self.armed = None;
        let now = self.now_tick();
        if self.counters[0]
            .next_rise(self.irq_seen_tick)
            .is_some_and(|t| t <= now)
        {
            self.host.set_irq(self.options.irq, true);
            self.host.set_irq(self.options.irq, false);
        }
        self.irq_seen_tick = self.irq_seen_tick.max(now);
        self.counters[0].settle(now);
        self.rearm();
    }
}

hyperplug_plugin_api::export_device!(Pit);
