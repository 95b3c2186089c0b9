//! The PIT's `key=value` options.

use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Option names accepted.
pub const KNOWN_KEYS: &[&str] = &["irq"];

/// Help text, one option per line.
pub const HELP: &str = "irq=N  interrupt line driven by counter 0's OUT, 0..=23 (default 0)";

/// Highest interrupt line accepted (an IOAPIC has 24 pins; ISA lines are 0..=15).
pub const MAX_IRQ: u64 = 23;

/// Parsed options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitOptions {
    /// The line counter 0's OUT drives.
    pub irq: u32,
}

impl PitOptions {
    /// Parses and validates `config`.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let irq = config.get_u64("irq", 0)?;
        if irq > MAX_IRQ {
            return Err(PluginError::invalid(format!(
                "bad value '{irq}' for option 'irq': expected 0..={MAX_IRQ}"
            )));
        }
        // Bounded above, so the cast is exact.
        Ok(Self { irq: irq as u32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        let cases: &[(&str, Result<u32, &str>)] = &[
            ("", Ok(0)),
            ("irq=2", Ok(2)),
            ("irq=0x17", Ok(23)),
            ("irq=24", Err("expected 0..=23")),
            ("irq=x", Err("bad value 'x' for option 'irq'")),
            ("port=0x40", Err("unknown option 'port'")),
        ];
        for (text, want) in cases {
            let got = PitOptions::parse(&DeviceConfig::parse(text));
            match (want, got) {
                (Ok(irq), Ok(o)) => assert_eq!(o.irq, *irq, "{text}"),
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
