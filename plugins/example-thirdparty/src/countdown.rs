//! Steps 2 and 3 of a device: the register model, and time.
//!
//! # Time: the virtual clock and one host timer
//!
//! The device keeps no thread and never sleeps. While counting it remembers
//! one absolute deadline on the VM's virtual clock
//! ([`HostServices::now_ns`]) and asks the host to call it back then
//! ([`HostServices::set_timer`], timer id [`TIMER_ID`]). The host calls
//! [`Device::timer_fired`] at (or after) the deadline.
//!
//! The state is a function of virtual time, so every entry point first
//! calls `Countdown::catch_up`, which applies an expiry whose deadline has
//! passed. That makes a status read exact even if the host's timer thread
//! is a little late, and makes a stale callback (the guest stopped or
//! restarted the countdown just before the old deadline fired) harmless:
//! it finds no deadline that has passed and does nothing.
//!
//! # The IRQ line
//!
//! The line is level-triggered: high while `status.expired` and
//! `control.irq_enable` are both set, low otherwise. The device recomputes
//! the level after every change (`Countdown::drive_irq`) and tells the
//! host only when it differs from the level last driven; the guest lowers
//! it by acknowledging (control bit 7) or by clearing interrupt enable.

use crate::options::Options;
use crate::registers::{
    period_ns, CONTROL, CTRL_ACK, CTRL_IRQ_ENABLE, CTRL_PERIODIC, CTRL_START, CTRL_STORED,
    PORT_COUNT, RELOAD_HI, RELOAD_LO, STATUS, STATUS_EXPIRED,
};
use crate::snapshot::Saved;
use hyperplug_plugin_api::device::{
    AddressSpace, Device, DeviceState, HostServices, IoRange, TIMER_OFF,
};
use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// The id of the device's only host timer.
pub const TIMER_ID: u32 = 0;

/// A programmable countdown timer with an IRQ line.
pub struct Countdown {
    /// The host services: clock, timers, IRQ lines, logging.
    host: HostServices,
    /// Validated options (base port, IRQ line).
    opts: Options,
    /// Stored control bits ([`CTRL_STORED`]).
    control: u8,
    /// Status bits ([`STATUS_EXPIRED`]).
    status: u8,
    /// Reload value in milliseconds.
    reload: u16,
    /// The next expiry on the virtual clock while counting.
    deadline: Option<u64>,
    /// The level last driven on the IRQ line (`None`: not driven yet).
    irq_level: Option<bool>,
}

impl Countdown {
    /// The level the IRQ line should have now.
    fn wanted_irq(&self) -> bool {
        self.status & STATUS_EXPIRED != 0 && self.control & CTRL_IRQ_ENABLE != 0
    }

    /// Drives the IRQ line to its current level if that changed.
    fn drive_irq(&mut self) {
        let level = self.wanted_irq();
        if self.irq_level != Some(level) {
            self.host.set_irq(self.opts.irq, level);
            self.irq_level = Some(level);
        }
    }

    /// Starts counting one period from `from_ns` and arms the host timer.
    fn arm(&mut self, from_ns: u64) {
        let deadline = from_ns.saturating_add(period_ns(self.reload));
        self.deadline = Some(deadline);
        self.host.set_timer(TIMER_ID, deadline);
    }

    /// Stops counting and disarms the host timer.
    fn disarm(&mut self) {
        self.deadline = None;
        self.host.set_timer(TIMER_ID, TIMER_OFF);
    }

    /// Applies an expiry whose deadline has passed on the virtual clock.
    ///
    /// One-shot: set `expired`, clear `start`, stop. Periodic: set
    /// `expired` and re-arm on the original schedule (deadline + k·period,
    /// the first such point after now), so periods do not drift with the
    /// host's timer latency; periods the host missed entirely collapse into
    /// the one sticky `expired` bit.
    fn catch_up(&mut self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        let now = self.host.now_ns();
        if now < deadline {
            return;
        }
        self.status |= STATUS_EXPIRED;
        if self.control & CTRL_PERIODIC != 0 {
            let period = period_ns(self.reload);
            let missed = (now - deadline) / period;
            let next = deadline.saturating_add(period.saturating_mul(missed.saturating_add(1)));
            self.deadline = Some(next);
            self.host.set_timer(TIMER_ID, next);
        } else {
            self.control &= !CTRL_START;
            self.disarm();
        }
        self.drive_irq();
    }

    /// A byte read at register `offset`.
    fn read_reg(&self, offset: u64) -> u8 {
        match offset {
            CONTROL => self.control,
            STATUS => self.status,
            RELOAD_LO => self.reload.to_le_bytes()[0],
            RELOAD_HI => self.reload.to_le_bytes()[1],
            _ => 0xff,
        }
    }

    /// A byte written at register `offset`.
    fn write_reg(&mut self, offset: u64, value: u8) {
        match offset {
            CONTROL => self.write_control(value),
            RELOAD_LO => self.reload = (self.reload & 0xff00) | u16::from(value),
            RELOAD_HI => self.reload = (self.reload & 0x00ff) | (u16::from(value) << 8),
            // status is read-only; writes to it are ignored, as hardware does.
            _ => {}
        }
    }

    /// A control write: acknowledge, then start/stop on a change of bit 0.
    ///
    /// Starting loads the reload value (a later reload write takes effect at
    /// the next start or period); writing `start` while already running
    /// changes only the mode bits and does not restart the count.
    fn write_control(&mut self, value: u8) {
        if value & CTRL_ACK != 0 {
            self.status &= !STATUS_EXPIRED;
        }
        let was_running = self.control & CTRL_START != 0;
        self.control = value & CTRL_STORED;
        let running = self.control & CTRL_START != 0;
        match (was_running, running) {
            (false, true) => self.arm(self.host.now_ns()),
            (true, false) => self.disarm(),
            _ => {}
        }
        self.drive_irq();
    }

    /// The register offset of `addr`, if it is one of ours.
    fn offset(&self, space: AddressSpace, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(u64::from(self.opts.port))?;
        (space == AddressSpace::Pio && off < u64::from(PORT_COUNT)).then_some(off)
    }
}

impl Device for Countdown {
    const NAME: &'static str = "countdown";
    const DESCRIPTION: &'static str =
        "example third-party device: programmable countdown timer (ms) with an IRQ";
    const OPTIONS_HELP: &'static str = crate::options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        let opts = Options::parse(config)?;
        Ok(Self {
            host,
            opts,
            control: 0,
            status: 0,
            reload: 0,
            deadline: None,
            irq_level: None,
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![IoRange::pio(self.opts.port, PORT_COUNT)]
    }

    /// Multi-byte accesses are split into byte accesses at consecutive
    /// ports, so `in ax, dx` at +2 reads the reload value little-endian.
    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        self.catch_up();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match self.offset(space, addr.saturating_add(i as u64)) {
                Some(off) => self.read_reg(off),
                None => 0xff, // beyond our ports: an open bus reads all ones
            };
        }
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        self.catch_up();
        for (i, byte) in data.iter().enumerate() {
            if let Some(off) = self.offset(space, addr.saturating_add(i as u64)) {
                self.write_reg(off, *byte);
            }
        }
    }

    fn reset(&mut self) {
        self.control = 0;
        self.status = 0;
        self.reload = 0;
        self.disarm();
        self.drive_irq();
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        let remaining_ns = self
            .deadline
            .map_or(0, |d| d.saturating_sub(self.host.now_ns()));
        Ok(Saved {
            control: self.control,
            status: self.status,
            reload: self.reload,
            remaining_ns,
        }
        .encode())
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError> {
        // Decode fully before touching anything: a refused state leaves the
        // device as it was.
        let s = Saved::decode(state)?;
        self.control = s.control;
        self.status = s.status;
        self.reload = s.reload;
        if self.control & CTRL_START != 0 {
            let deadline = self.host.now_ns().saturating_add(s.remaining_ns);
            self.deadline = Some(deadline);
            self.host.set_timer(TIMER_ID, deadline);
        } else {
            self.disarm();
        }
        // Drive the line unconditionally: the host restoring us may have a
        // different idea of its level than the one we last drove.
        self.irq_level = None;
        self.drive_irq();
        Ok(())
    }

    fn timer_fired(&mut self, timer: u32) {
        if timer == TIMER_ID {
            self.catch_up();
        }
    }
}
