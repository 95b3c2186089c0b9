//! `key=value` configuration passed to plugins (`--device serial,port=0x2f8`).

use abi_stable::std_types::{RString, RVec, Tuple2};
use abi_stable::StableAbi;

/// An ordered list of `key=value` options; a bare `key` has an empty value.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The options in command-line order.
    pub options: RVec<Tuple2<RString, RString>>,
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `key` is not an option of this plugin.
    UnknownKey {
        key: String,
        known: &'static [&'static str],
    },
    /// `key`'s value did not parse.
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::UnknownKey { key, known } => {
                write!(f, "unknown option '{key}' (known: {})", known.join(", "))
            }
            ConfigError::BadValue {
                key,
                value,
                expected,
            } => {
                write!(
                    f,
                    "bad value '{value}' for option '{key}': expected {expected}"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl DeviceConfig {
    /// Parses `k=v,k2=v2` (the part after the device name).
    pub fn parse(s: &str) -> Self {
        let options = s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => Tuple2(RString::from(k.trim()), RString::from(v.trim())),
                None => Tuple2(RString::from(p.trim()), RString::new()),
            })
            .collect();
        Self { options }
    }

    /// Adds an option.
    pub fn push(&mut self, key: &str, value: &str) {
        self.options.push(Tuple2(key.into(), value.into()));
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|t| t.0 == key)
            .map(|t| t.1.as_str())
    }

    /// Fails on any key not in `known`.
    pub fn check_keys(&self, known: &'static [&'static str]) -> Result<(), ConfigError> {
        for t in self.options.iter() {
            if !known.contains(&t.0.as_str()) {
                return Err(ConfigError::UnknownKey {
                    key: t.0.to_string(),
                    known,
                });
            }
        }
        Ok(())
    }

    /// Parses `key` as an unsigned integer (decimal or `0x` hex), or `default`.
    pub fn get_u64(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_u64(v).ok_or_else(|| ConfigError::BadValue {
                key: key.to_string(),
                value: v.to_string(),
                expected: "an integer (decimal or 0x-prefixed hex)",
            }),
        }
    }

    /// Parses `key` as a boolean (`on/off`, `true/false`, `1/0`, `yes/no`), or `default`.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some("on" | "true" | "1" | "yes" | "") => Ok(true),
            Some("off" | "false" | "0" | "no") => Ok(false),
            Some(v) => Err(ConfigError::BadValue {
                key: key.to_string(),
                value: v.to_string(),
                expected: "on or off",
            }),
        }
    }
}

/// Parses a decimal or `0x`-prefixed hexadecimal integer.
pub fn parse_u64(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let c = DeviceConfig::parse("port=0x2f8,irq=3,path=/tmp/x,flag");
        assert_eq!(c.get_u64("port", 0).unwrap(), 0x2f8);
        assert_eq!(c.get_u64("irq", 4).unwrap(), 3);
        assert_eq!(c.get("path"), Some("/tmp/x"));
        assert!(c.get_bool("flag", false).unwrap());
        assert_eq!(c.get_u64("missing", 7).unwrap(), 7);
    }

    #[test]
    fn rejects_bad_values_and_keys() {
        let c = DeviceConfig::parse("port=banana");
        assert!(matches!(
            c.get_u64("port", 0),
            Err(ConfigError::BadValue { .. })
        ));
        let c = DeviceConfig::parse("colour=red");
        let e = c.check_keys(&["port"]).unwrap_err();
        assert!(e.to_string().contains("unknown option 'colour'"));
    }
}
