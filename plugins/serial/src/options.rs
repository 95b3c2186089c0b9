//! The serial device's `key=value` options.

use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Option names the serial device accepts.
pub const KNOWN_KEYS: &[&str] = &["port", "irq", "path", "input"];

/// Help text for `--device serial,...`, one option per line.
pub const HELP: &str = "port=N    first I/O port of the 8-port register block (default 0x3f8)\n\
irq=N     interrupt line raised by the UART, 0..=23 (default 4)\n\
path=FILE write guest output to FILE (created/truncated) instead of stdout\n\
input=stdin|none  feed host stdin to the guest's receiver (default stdin)";

/// Number of consecutive ports a 16550A decodes (PC16550D datasheet, table "Register Addresses": A0-A2).
pub const PORT_COUNT: u16 = 8;
/// Highest interrupt line accepted (an IOAPIC has 24 pins; ISA lines are 0..=15).
pub const MAX_IRQ: u64 = 23;

/// Where received data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// The host process's standard input.
    Stdin,
    /// Nothing: the receiver only gets bytes queued by the host program itself.
    None,
}

/// Parsed serial options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialOptions {
    /// First port of the register block.
    pub port: u16,
    /// Interrupt line.
    pub irq: u32,
    /// Output file; `None` means stdout.
    pub path: Option<String>,
    /// Receiver input source.
    pub input: InputSource,
}

impl SerialOptions {
    /// Parses and validates `config`.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let port = config.get_u64("port", 0x3f8)?;
        let last_start = u64::from(u16::MAX) + 1 - u64::from(PORT_COUNT);
        if port > last_start {
            return Err(PluginError::invalid(format!(
                "bad value '{port:#x}' for option 'port': the 8 ports must fit below 0x10000 (max {last_start:#x})"
            )));
        }
        let irq = config.get_u64("irq", 4)?;
        if irq > MAX_IRQ {
            return Err(PluginError::invalid(format!(
                "bad value '{irq}' for option 'irq': expected 0..={MAX_IRQ}"
            )));
        }
        let path = match config.get("path") {
            None => None,
            Some("") => {
                return Err(PluginError::invalid(
                    "bad value '' for option 'path': expected a file name",
                ))
            }
            Some(p) => Some(p.to_string()),
        };
        let input = match config.get("input") {
            None | Some("stdin") => InputSource::Stdin,
            Some("none") => InputSource::None,
            Some(v) => {
                return Err(PluginError::invalid(format!(
                    "bad value '{v}' for option 'input': expected stdin or none"
                )))
            }
        };
        // Both checks above bound the values, so the narrowing casts are exact.
        Ok(Self {
            port: port as u16,
            irq: irq as u32,
            path,
            input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = SerialOptions::parse(&DeviceConfig::default()).unwrap();
        assert_eq!(
            o,
            SerialOptions {
                port: 0x3f8,
                irq: 4,
                path: None,
                input: InputSource::Stdin
            }
        );
    }

    #[test]
    fn table_of_accepted_and_rejected_options() {
        // (options, Ok(port, irq, input) or Err(substring of the message))
        type Expect = Result<(u16, u32, InputSource), &'static str>;
        let cases: &[(&str, Expect)] = &[
            ("port=0x2f8,irq=3", Ok((0x2f8, 3, InputSource::Stdin))),
            ("port=760,input=none", Ok((760, 4, InputSource::None))),
            ("port=0xfff8", Ok((0xfff8, 4, InputSource::Stdin))),
            ("port=0xfff9", Err("must fit below 0x10000")),
            ("port=0x10000", Err("must fit below 0x10000")),
            ("port=banana", Err("bad value 'banana' for option 'port'")),
            ("irq=24", Err("option 'irq'")),
            ("irq=-1", Err("option 'irq'")),
            ("input=tty", Err("expected stdin or none")),
            ("path=", Err("expected a file name")),
            ("baud=9600", Err("unknown option 'baud'")),
        ];
        for (text, want) in cases {
            let got = SerialOptions::parse(&DeviceConfig::parse(text));
            match (want, got) {
                (Ok((port, irq, input)), Ok(o)) => {
                    assert_eq!((o.port, o.irq, o.input), (*port, *irq, *input), "{text}")
                }
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
