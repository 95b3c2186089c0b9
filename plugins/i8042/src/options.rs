//! The i8042's `key=value` options.

use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Option names accepted.
pub const KNOWN_KEYS: &[&str] = &["irq", "aux_irq"];

/// Help text, one option per line.
pub const HELP: &str = "irq=N  keyboard interrupt line (default 1)\n\
aux_irq=N  auxiliary (mouse) interrupt line (default 12)";

/// Parsed options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I8042Options {
    /// Keyboard interrupt line.
    pub irq: u32,
    /// Auxiliary-port interrupt line.
    pub aux_irq: u32,
}

impl I8042Options {
    /// Parses and validates `config`.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let line = |key: &str, default: u64| -> Result<u32, PluginError> {
            let v = config.get_u64(key, default)?;
            u32::try_from(v).ok().filter(|l| *l < 256).ok_or_else(|| {
                PluginError::invalid(format!(
                    "bad value '{v}' for option '{key}': expected a line number below 256"
                ))
            })
        };
        let irq = line("irq", 1)?;
        let aux_irq = line("aux_irq", 12)?;
        if irq == aux_irq {
            return Err(PluginError::invalid(format!(
                "options 'irq' and 'aux_irq' are both {irq}: give different lines"
            )));
        }
        Ok(Self { irq, aux_irq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        type Case = (&'static str, Result<(u32, u32), &'static str>);
        let cases: &[Case] = &[
            ("", Ok((1, 12))),
            ("irq=9,aux_irq=10", Ok((9, 10))),
            ("irq=12", Err("both 12")),
            ("irq=300", Err("option 'irq'")),
            ("aux_irq=q", Err("bad value 'q' for option 'aux_irq'")),
            ("port=0x60", Err("unknown option 'port'")),
        ];
        for (text, want) in cases {
            let got = I8042Options::parse(&DeviceConfig::parse(text));
            match (want, got) {
                (Ok((a, b)), Ok(o)) => assert_eq!((o.irq, o.aux_irq), (*a, *b), "{text}"),
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
