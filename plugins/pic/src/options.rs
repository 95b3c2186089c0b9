//! The PIC's `key=value` options: there are none; the PC/AT ports and wiring are fixed.

use hyperplug_plugin_api::{ConfigError, DeviceConfig, PluginError};

/// Option names accepted (none).
pub const KNOWN_KEYS: &[&str] = &[];

/// Help text.
pub const HELP: &str =
    "(no options: master at 0x20/0x21, slave at 0xa0/0xa1 on IRQ 2, ELCR at 0x4d0/0x4d1)";

/// Refuses any option.
pub fn parse(config: &DeviceConfig) -> Result<(), PluginError> {
    config.check_keys(KNOWN_KEYS).map_err(|e| match e {
        ConfigError::UnknownKey { key, .. } => PluginError::invalid(format!(
            "unknown option '{key}': the pic device takes no options"
        )),
        other => other.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("base=0x20", Some("unknown option 'base'")),
            ("elcr", Some("unknown option 'elcr'")),
        ];
        for (text, want) in cases {
            match (parse(&DeviceConfig::parse(text)), want) {
                (Ok(()), None) => {}
                (Err(e), Some(msg)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (got, _) => panic!("{text}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
