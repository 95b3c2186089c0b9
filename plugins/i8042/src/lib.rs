//! Hyperplug device plugin: the i8042 (8042) PS/2 keyboard controller at
//! ports 0x60 (data) and 0x64 (status/command), with an AT keyboard that
//! answers the command protocol, raising IRQ 1 (keyboard) and IRQ 12 (aux).
//!
//! vm-superio 0.8's `I8042Device` models only the 0xfe pulse-reset command
//! (its reads return 0 and every other write is ignored), so it cannot be
//! the controller: guests probe the status register, the self-test and the
//! command byte. It is used for what it does model: a guest 0xfe command is
//! passed to it, and its reset trigger calls the host's `request_reset`.
//! Everything else is in [`controller`] and [`keyboard`].
//!
//! The IRQ lines are levels that follow "output buffer full and the command
//! byte enables it"; reading a byte and loading the next one drops and raises
//! the line, so an edge-triggered PIC sees one edge per byte.

pub mod controller;
pub mod keyboard;
pub mod options;
pub mod state;

#[cfg(test)]
mod tests;

use controller::Controller;
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, HostServices, IoRange};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use options::I8042Options;
use std::convert::Infallible;
use vm_superio::{I8042Device, Trigger};

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status (read) / command (write) port.
pub const COMMAND_PORT: u16 = 0x64;
/// The reason given to the host for the 0xfe command.
pub const PULSE_RESET_REASON: &str = "i8042: pulse reset (0xFE)";
/// vm-superio's register offset of the command port.
const SUPERIO_COMMAND_OFFSET: u8 = 4;

/// What the controller does with its reset output.
pub trait ResetLine {
    /// A 0xf0-0xff command with bit 0 clear pulsed the reset line.
    fn pulse(&mut self, command: u8);
    /// A 0xd1 output-port write of `value` had bit 0 (reset) clear.
    fn output_port_reset(&mut self, value: u8);
}

/// vm-superio's reset trigger: asks the host for a machine reset.
pub struct HostResetTrigger(HostServices);

impl Trigger for HostResetTrigger {
    type E = Infallible;
    fn trigger(&self) -> Result<(), Infallible> {
        self.0.request_reset(PULSE_RESET_REASON.into());
        Ok(())
    }
}

/// Routes reset requests: 0xfe through vm-superio, the rest to the host directly.
struct Resetter<'a> {
    superio: &'a mut I8042Device<HostResetTrigger>,
    host: &'a HostServices,
}

impl ResetLine for Resetter<'_> {
    fn pulse(&mut self, command: u8) {
        if command == 0xfe {
            // The trigger is infallible.
            let _ = self.superio.write(SUPERIO_COMMAND_OFFSET, command);
        } else {
            let reason = format!("i8042: pulse reset ({command:#04X})");
            self.host.request_reset(reason.as_str().into());
        }
    }
    fn output_port_reset(&mut self, value: u8) {
        let reason = format!("i8042: output port write {value:#04x} with reset bit 0 clear");
        self.host.request_reset(reason.as_str().into());
    }
}

/// The i8042 device plugin.
pub struct I8042 {
    ctl: Controller,
    superio: I8042Device<HostResetTrigger>,
    host: HostServices,
    options: I8042Options,
    /// Levels last driven on (IRQ 1, IRQ 12).
    lines: (bool, bool),
}

impl I8042 {
    /// The controller state.
    pub fn controller(&self) -> &Controller {
        &self.ctl
    }

    /// Whether output-port bit 1 (gate A20) is set.
    pub fn a20_enabled(&self) -> bool {
        self.ctl.a20_enabled()
    }

    /// Drives the IRQ lines to what the output buffer asks for; with
    /// `drop_first`, lowers a high line first (a byte was just read).
    fn drive(&mut self, drop_first: bool) {
        let want = self.ctl.irq_levels();
        if drop_first {
            self.set_lines((false, false));
        }
        self.set_lines(want);
    }

    fn set_lines(&mut self, (kbd, aux): (bool, bool)) {
        if kbd != self.lines.0 {
            self.host.set_irq(self.options.irq, kbd);
        }
        if aux != self.lines.1 {
            self.host.set_irq(self.options.aux_irq, aux);
        }
        self.lines = (kbd, aux);
    }

    fn read_port(&mut self, port: u64) -> u8 {
        if port == u64::from(DATA_PORT) {
            let v = self.ctl.read_data();
            self.ctl.refill();
            self.drive(true);
            v
        } else if port == u64::from(COMMAND_PORT) {
            self.ctl.status()
        } else {
            0xff
        }
    }

    fn write_port(&mut self, port: u64, v: u8) {
        let a20 = self.ctl.a20_enabled();
        let mut r = Resetter {
            superio: &mut self.superio,
            host: &self.host,
        };
        if port == u64::from(DATA_PORT) {
            self.ctl.write_data(v, &mut r);
        } else if port == u64::from(COMMAND_PORT) {
            self.ctl.write_command(v, &mut r);
        } else {
            return;
        }
        if self.ctl.a20_enabled() != a20 {
            // Output-port bit 1 is the A20 gate of the PC.
            self.host.set_a20(self.ctl.a20_enabled());
        }
        self.drive(false);
    }
}

impl Device for I8042 {
    const NAME: &'static str = "i8042";
    const DESCRIPTION: &'static str =
        "i8042 PS/2 keyboard controller at 0x60/0x64 with CPU reset (0xfe), IRQ 1/12";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        let options = I8042Options::parse(config)?;
        Ok(Self {
            ctl: Controller::default(),
            superio: I8042Device::new(HostResetTrigger(host.clone())),
            host,
            options,
            lines: (false, false),
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![IoRange::pio(DATA_PORT, 1), IoRange::pio(COMMAND_PORT, 1)]
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = if space == AddressSpace::Pio {
            self.read_port(addr)
        } else {
            0xff
        };
        // The device decodes single bytes; the rest of a wider access floats.
        data[1..].fill(0xff);
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        if let (AddressSpace::Pio, Some(b)) = (space, data.first()) {
            self.write_port(addr, *b);
        }
    }

    fn reset(&mut self) {
        self.ctl = Controller::default();
        self.drive(false);
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        Ok(state::save(&self.ctl, self.lines))
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError> {
        let (ctl, lines) = state::restore(state)?;
        self.ctl = ctl;
        // Drive the restored levels so the host's view matches.
        self.lines = (!lines.0, !lines.1);
        self.set_lines(lines);
        Ok(())
    }
}

hyperplug_plugin_api::export_device!(I8042);
