//! The PM timer's `key=value` options.

use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Option names accepted.
pub const KNOWN_KEYS: &[&str] = &["port", "width", "irq"];

/// Help text, one option per line.
pub const HELP: &str =
    "port=N    I/O port of the 4-byte PM_TMR register (default 0x608: PIIX4 PM base 0x600 + 8)\n\
width=N   counter width in bits, 24 or 32 (default 24; the FADT's TMR_VAL_EXT flag must match)\n\
irq=none  the timer-overflow SCI is not modelled; only 'none' is accepted";

/// Bytes of the PM_TMR register (ACPI 6.5, 5.2.9 FADT: PM_TMR_LEN is 4).
pub const REGISTER_BYTES: u16 = 4;

/// Parsed options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmTimerOptions {
    /// The register's first port.
    pub port: u16,
    /// Counter width in bits: 24 or 32.
    pub width: u8,
}

impl PmTimerOptions {
    /// Parses and validates `config`.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let port = config.get_u64("port", 0x608)?;
        let last = 0x1_0000 - u64::from(REGISTER_BYTES);
        if port > last {
            return Err(PluginError::invalid(format!(
                "bad value '{port:#x}' for option 'port': the 4-byte register must fit below 0x10000 (max {last:#x})"
            )));
        }
        let width = config.get_u64("width", 24)?;
        if width != 24 && width != 32 {
            return Err(PluginError::invalid(format!(
                "bad value '{width}' for option 'width': expected 24 or 32"
            )));
        }
        match config.get("irq") {
            None | Some("none") => {}
            Some(v) => {
                return Err(PluginError::invalid(format!(
                    "bad value '{v}' for option 'irq': expected none (the PM timer's overflow SCI is not modelled)"
                )))
            }
        }
        // Both values were bounded above, so the casts are exact.
        Ok(Self {
            port: port as u16,
            width: width as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        type Expect = Result<(u16, u8), &'static str>;
        let cases: &[(&str, Expect)] = &[
            ("", Ok((0x608, 24))),
            ("port=0xb008,width=32", Ok((0xb008, 32))),
            ("width=24,irq=none", Ok((0x608, 24))),
            ("port=0xfffc", Ok((0xfffc, 24))),
            ("port=0xfffd", Err("must fit below 0x10000")),
            ("port=pm", Err("bad value 'pm' for option 'port'")),
            ("width=16", Err("expected 24 or 32")),
            ("width=0x20", Ok((0x608, 32))),
            ("irq=9", Err("expected none")),
            ("sci=9", Err("unknown option 'sci'")),
        ];
        for (text, want) in cases {
            let got = PmTimerOptions::parse(&DeviceConfig::parse(text));
            match (want, got) {
                (Ok((p, w)), Ok(o)) => assert_eq!((o.port, o.width), (*p, *w), "{text}"),
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
