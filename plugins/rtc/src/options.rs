//! The RTC's `key=value` options.

use hyperplug_plugin_api::config::parse_u64;
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Option names accepted.
pub const KNOWN_KEYS: &[&str] = &["base", "irq"];

/// Help text, one option per line.
pub const HELP: &str = "base=now|SECS  wall time at creation: host UTC (default) or Unix seconds\n\
irq=N  interrupt line (default 8)";

/// The last second the RTC can show: 9999-12-31 23:59:59 UTC.
pub const MAX_BASE_SECS: u64 = 253_402_300_799;

/// Parsed options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcOptions {
    /// Wall time at creation, whole Unix seconds.
    pub base_secs: i64,
    /// Nanoseconds into `base_secs` (0 for a fixed base).
    pub base_subsec_ns: u32,
    /// Interrupt line.
    pub irq: u32,
}

impl RtcOptions {
    /// Parses and validates `config`.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let irq = config.get_u64("irq", 8)?;
        let irq = u32::try_from(irq)
            .ok()
            .filter(|i| *i < 256)
            .ok_or_else(|| {
                PluginError::invalid(format!(
                    "bad value '{irq}' for option 'irq': expected a line number below 256"
                ))
            })?;
        let (base_secs, base_subsec_ns) = match config.get("base") {
            None | Some("now") => {
                let d = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| {
                    PluginError::other("host clock is before 1970; give base=<unix seconds>")
                })?;
                (d.as_secs(), d.subsec_nanos())
            }
            Some(v) => {
                let secs = parse_u64(v).filter(|s| *s <= MAX_BASE_SECS).ok_or_else(|| {
                    PluginError::invalid(format!(
                        "bad value '{v}' for option 'base': expected 'now' or Unix seconds up to {MAX_BASE_SECS} (9999-12-31)"
                    ))
                })?;
                (secs, 0)
            }
        };
        if base_secs > MAX_BASE_SECS {
            return Err(PluginError::invalid(
                "host clock is past 9999-12-31; give base=<unix seconds>",
            ));
        }
        Ok(Self {
            // Bounded by MAX_BASE_SECS, so it fits.
            base_secs: base_secs as i64,
            base_subsec_ns,
            irq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        type Expect = Result<(Option<i64>, u32), &'static str>;
        let cases: &[(&str, Expect)] = &[
            ("", Ok((None, 8))),
            ("base=now", Ok((None, 8))),
            ("base=1795614307,irq=5", Ok((Some(1_795_614_307), 5))),
            ("base=0x10", Ok((Some(16), 8))),
            ("base=253402300799", Ok((Some(253_402_300_799), 8))),
            ("base=253402300800", Err("option 'base'")),
            (
                "base=yesterday",
                Err("bad value 'yesterday' for option 'base'"),
            ),
            ("irq=256", Err("option 'irq'")),
            ("irq=x", Err("option 'irq'")),
            ("port=0x70", Err("unknown option 'port'")),
        ];
        for (text, want) in cases {
            let got = RtcOptions::parse(&DeviceConfig::parse(text));
            match (want, got) {
                (Ok((base, irq)), Ok(o)) => {
                    assert_eq!(o.irq, *irq, "{text}");
                    match base {
                        Some(b) => assert_eq!((o.base_secs, o.base_subsec_ns), (*b, 0), "{text}"),
                        // Host time: after 2020-01-01.
                        None => assert!(o.base_secs > 1_577_836_800, "{text}"),
                    }
                }
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
