//! Hyperplug device plugin: the ACPI power-management timer (ACPI 6.5,
//! 4.8.3.3 "Power Management Timer (PM_TMR)").
//!
//! A free-running count-up counter clocked at 3.579545 MHz, 24 or 32 bits
//! wide, read through a 4-byte little-endian I/O register (the FADT's
//! PM_TMR_BLK, PM_TMR_LEN = 4). The count follows the host's virtual clock:
//! `floor(now_ns * 3579545 / 1e9) mod 2^width`, so it starts at 0 with the
//! VM. In the 24-bit version, bits 31-24 (E_TMR_VAL) read as zero.
//!
//! Choices, documented:
//! - Reads of 1, 2 or 4 bytes at any offset return the register's bytes at
//!   that offset; bytes of an access beyond the register read 0xff.
//! - Writes are ignored (TMR_VAL is read-only).
//! - The overflow status (TMR_STS, in PM1_STS) and its SCI are not modelled.

pub mod options;

#[cfg(test)]
mod tests;

use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, HostServices, IoRange};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use options::{PmTimerOptions, REGISTER_BYTES};

/// The timer's clock (ACPI 6.5, 4.8.3.3: 3.579545 MHz).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Version of the saved state.
pub const STATE_VERSION: u32 = 1;
/// Bytes of a version 1 state: `port: u16`, `width: u8`.
pub const STATE_BYTES: usize = 3;
/// What an undriven byte reads as.
const OPEN_BUS: u8 = 0xff;

/// TMR_VAL at virtual time `now_ns` for a `width`-bit timer (24 or 32).
pub fn timer_value(now_ns: u64, width: u8) -> u32 {
    // now_ns < 2^64, so the product < 2^86: no overflow in u128.
    let ticks = u128::from(now_ns) * u128::from(PM_TIMER_HZ) / 1_000_000_000;
    let mask = (1u128 << width.min(32)) - 1;
    // Masked to at most 32 bits, so the cast is exact.
    (ticks & mask) as u32
}

/// The PM timer.
pub struct PmTimer {
    host: HostServices,
    options: PmTimerOptions,
}

impl Device for PmTimer {
    const NAME: &'static str = "pm-timer";
    const DESCRIPTION: &'static str =
        "ACPI PM timer (PM_TMR): 3.579545 MHz free-running 24/32-bit counter on the virtual clock";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        Ok(Self {
            host,
            options: PmTimerOptions::parse(config)?,
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![IoRange::pio(self.options.port, REGISTER_BYTES)]
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        let value = timer_value(self.host.now_ns(), self.options.width).to_le_bytes();
        let base = u64::from(self.options.port);
        for (i, b) in data.iter_mut().enumerate() {
            let offset = addr.wrapping_add(i as u64).wrapping_sub(base);
            *b = match usize::try_from(offset).ok().and_then(|o| value.get(o)) {
                Some(v) if space == AddressSpace::Pio => *v,
                _ => OPEN_BUS,
            };
        }
    }

    fn write(&mut self, _space: AddressSpace, _addr: u64, _data: &[u8]) {}

    fn reset(&mut self) {}

    fn save(&self) -> Result<DeviceState, PluginError> {
        let mut data = self.options.port.to_le_bytes().to_vec();
        data.push(self.options.width);
        Ok(DeviceState {
            version: STATE_VERSION,
            data: data.into(),
        })
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError> {
        if state.version != STATE_VERSION {
            return Err(PluginError::invalid(format!(
                "pm-timer state version {} is not supported (this plugin reads version {STATE_VERSION})",
                state.version
            )));
        }
        let d = state.data.as_slice();
        if d.len() != STATE_BYTES {
            return Err(PluginError::invalid(format!(
                "pm-timer state has {} bytes, expected {STATE_BYTES}",
                d.len()
            )));
        }
        let port = u16::from_le_bytes([d[0], d[1]]);
        let width = d[2];
        if (port, width) != (self.options.port, self.options.width) {
            return Err(PluginError::invalid(format!(
                "pm-timer state is for port={port:#x},width={width}; this instance has port={:#x},width={}",
                self.options.port, self.options.width
            )));
        }
        Ok(())
    }
}

hyperplug_plugin_api::export_device!(PmTimer);
