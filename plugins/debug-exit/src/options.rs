//! The debug-exit device's `key=value` options (QEMU's isa-debug-exit names).

use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Option names accepted; `port` is an alias of `iobase`.
pub const KNOWN_KEYS: &[&str] = &["iobase", "port", "iosize"];

/// Help text, one option per line.
pub const HELP: &str = "iobase=N  first port (alias: port; default 0xf4)\n\
iosize=N  number of ports claimed: 1, 2 or 4 (default 4)";

/// Parsed options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugExitOptions {
    /// First claimed port.
    pub iobase: u16,
    /// Number of claimed ports.
    pub iosize: u16,
}

impl DebugExitOptions {
    /// Parses and validates `config`.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let key = match (config.get("iobase"), config.get("port")) {
            (Some(_), Some(_)) => {
                return Err(PluginError::invalid(
                    "options 'iobase' and 'port' are the same setting: give only one",
                ))
            }
            (None, Some(_)) => "port",
            _ => "iobase",
        };
        let iobase = config.get_u64(key, 0xf4)?;
        let iosize = config.get_u64("iosize", 4)?;
        if !matches!(iosize, 1 | 2 | 4) {
            return Err(PluginError::invalid(format!(
                "bad value '{iosize}' for option 'iosize': expected 1, 2 or 4"
            )));
        }
        if iobase.checked_add(iosize).is_none_or(|end| end > 0x1_0000) {
            return Err(PluginError::invalid(format!(
                "bad value '{iobase:#x}' for option '{key}': {iosize} ports from there pass 0xffff"
            )));
        }
        // Both values were bounded above, so the casts are exact.
        Ok(Self {
            iobase: iobase as u16,
            iosize: iosize as u16,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        type Expect = Result<(u16, u16), &'static str>;
        let cases: &[(&str, Expect)] = &[
            ("", Ok((0xf4, 4))),
            ("iobase=0x501,iosize=2", Ok((0x501, 2))),
            ("port=0x501", Ok((0x501, 4))),
            ("iosize=1", Ok((0xf4, 1))),
            ("iobase=0xfffc", Ok((0xfffc, 4))),
            ("iobase=0xfffd", Err("pass 0xffff")),
            ("port=0x10000,iosize=1", Err("option 'port'")),
            ("iosize=3", Err("expected 1, 2 or 4")),
            ("iosize=0", Err("expected 1, 2 or 4")),
            ("iobase=zz", Err("bad value 'zz' for option 'iobase'")),
            ("iobase=1,port=1", Err("give only one")),
            ("status=3", Err("unknown option 'status'")),
        ];
        for (text, want) in cases {
            let got = DebugExitOptions::parse(&DeviceConfig::parse(text));
            match (want, got) {
                (Ok((b, s)), Ok(o)) => assert_eq!((o.iobase, o.iosize), (*b, *s), "{text}"),
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
