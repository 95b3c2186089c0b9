//! Step 1 of a device: turn `--device ...,key=value` options into a checked
//! configuration, with a one-line error for anything the user got wrong.
//!
//! The host passes the options as a [`DeviceConfig`]; its helpers parse
//! integers (decimal or `0x` hex) and reject unknown keys. Range checks that
//! only this device knows about (the ports must fit, the IRQ must exist) are
//! ours to do. Never `unwrap()` here: the values come from a user.

use crate::registers::PORT_COUNT;
use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Every option this device accepts.
pub const KEYS: &[&str] = &["port", "irq"];
/// Default base port.
pub const DEFAULT_PORT: u16 = 0x530;
/// Default IRQ line.
pub const DEFAULT_IRQ: u32 = 5;
/// Highest IRQ line accepted: ISA lines 0-15 (PIC) and IOAPIC pins up to 23.
pub const MAX_IRQ: u32 = 23;

/// What `hyperplug plugins` prints under the device, one option per line.
pub const HELP: &str = "port=N  base of the 4 registers (default 0x530)\n\
irq=N   IRQ line, 0-23 (default 5)";

/// The validated options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// First of the four ports.
    pub port: u16,
    /// The IRQ line the device drives.
    pub irq: u32,
}

impl Options {
    /// Parses and checks the options.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KEYS)?;
        let port = config.get_u64("port", u64::from(DEFAULT_PORT))?;
        let last_base = u64::from(u16::MAX - (PORT_COUNT - 1));
        let port = match u16::try_from(port) {
            Ok(p) if u64::from(p) <= last_base => p,
            _ => {
                return Err(PluginError::invalid(format!(
                    "port {port:#x} out of range: the {PORT_COUNT} registers must fit below 0x10000 (port <= {last_base:#x})"
                )))
            }
        };
        let irq = config.get_u64("irq", u64::from(DEFAULT_IRQ))?;
        let irq = match u32::try_from(irq) {
            Ok(i) if i <= MAX_IRQ => i,
            _ => {
                return Err(PluginError::invalid(format!(
                    "irq {irq} out of range (0-{MAX_IRQ})"
                )))
            }
        };
        Ok(Self { port, irq })
    }
}
