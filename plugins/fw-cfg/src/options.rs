//! The fw-cfg device's `key=value` options.
//!
//! `file=` and `string=` may be repeated; every occurrence adds a file
//! (`DeviceConfig::get` would only see the last, so the list is walked here).

use crate::items::{check_name, MAX_FILES};
use hyperplug_plugin_api::{DeviceConfig, PluginError};

/// Option names accepted.
pub const KNOWN_KEYS: &[&str] = &["file", "string", "dma"];

/// Help text, one option per line.
pub const HELP: &str =
    "file=NAME:PATH  add fw_cfg file NAME with the contents of host file PATH (repeatable)\n\
string=NAME:TEXT  add fw_cfg file NAME holding TEXT (repeatable)\n\
dma=on|off  offer the DMA interface at port 0x514 (default on)";

/// The largest user file (the directory's size field is 32 bits).
pub const MAX_FILE_BYTES: u64 = u32::MAX as u64;

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgOptions {
    /// User files (name, contents), in command-line order.
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether the DMA interface is offered.
    pub dma: bool,
}

impl FwCfgOptions {
    /// Parses `config`, reading the host files it names.
    pub fn parse(config: &DeviceConfig) -> Result<Self, PluginError> {
        config.check_keys(KNOWN_KEYS)?;
        let dma = config.get_bool("dma", true)?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for opt in config.options.iter() {
            let (key, value) = (opt.0.as_str(), opt.1.as_str());
            if key != "file" && key != "string" {
                continue;
            }
            let Some((name, rest)) = value.split_once(':') else {
                return Err(PluginError::invalid(format!(
                    "bad value '{value}' for option '{key}': expected NAME:{}",
                    if key == "file" { "PATH" } else { "TEXT" }
                )));
            };
            check_name(name).map_err(|e| PluginError::invalid(format!("option '{key}': {e}")))?;
            if files.iter().any(|(n, _)| n == name) || name == crate::E820_FILE {
                return Err(PluginError::invalid(format!(
                    "option '{key}': fw_cfg file '{name}' is given twice"
                )));
            }
            let data = if key == "file" {
                read_host_file(rest)?
            } else {
                rest.as_bytes().to_vec()
            };
            files.push((name.to_string(), data));
        }
        if files.len() + 1 > MAX_FILES {
            return Err(PluginError::invalid(format!(
                "{} fw_cfg files given; at most {} fit",
                files.len(),
                MAX_FILES - 1
            )));
        }
        Ok(Self { files, dma })
    }
}

fn read_host_file(path: &str) -> Result<Vec<u8>, PluginError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| PluginError::invalid(format!("option 'file': cannot read '{path}': {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(PluginError::invalid(format!(
            "option 'file': '{path}' is {} bytes, more than fw_cfg's 4 GiB limit",
            meta.len()
        )));
    }
    std::fs::read(path)
        .map_err(|e| PluginError::invalid(format!("option 'file': cannot read '{path}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        let dir = std::env::temp_dir().join(format!("fwcfg-opt-{}", std::process::id()));
        std::fs::write(&dir, b"hello").unwrap();
        let p = dir.display().to_string();
        let long = "n".repeat(56);
        type Expect = Result<(Vec<(&'static str, &'static [u8])>, bool), &'static str>;
        let cases: Vec<(String, Expect)> = vec![
            (String::new(), Ok((vec![], true))),
            ("dma=off".into(), Ok((vec![], false))),
            (
                format!("string=opt/a:xyz,file=opt/b:{p},string=opt/c:"),
                Ok((
                    vec![("opt/a", b"xyz"), ("opt/b", b"hello"), ("opt/c", b"")],
                    true,
                )),
            ),
            ("string=opt/a".into(), Err("expected NAME:TEXT")),
            ("file=opt/a".into(), Err("expected NAME:PATH")),
            ("string=:x".into(), Err("empty")),
            (format!("string={long}:x"), Err("at most 55 fit")),
            ("string=a:1,string=a:2".into(), Err("given twice")),
            ("string=etc/e820:1".into(), Err("given twice")),
            (
                "file=x:/nonexistent/zzz".into(),
                Err("cannot read '/nonexistent/zzz'"),
            ),
            ("dma=maybe".into(), Err("option 'dma'")),
            ("rom=x".into(), Err("unknown option 'rom'")),
        ];
        for (text, want) in cases {
            let got = FwCfgOptions::parse(&DeviceConfig::parse(&text));
            match (want, got) {
                (Ok((files, dma)), Ok(o)) => {
                    let got: Vec<(&str, &[u8])> = o
                        .files
                        .iter()
                        .map(|(n, d)| (n.as_str(), d.as_slice()))
                        .collect();
                    assert_eq!(got, files, "{text}");
                    assert_eq!(o.dma, dma, "{text}");
                }
                (Err(msg), Err(e)) => assert!(e.message.contains(msg), "{text}: {}", e.message),
                (w, g) => panic!("{text}: wanted {w:?}, got {g:?}"),
            }
        }
        let _ = std::fs::remove_file(dir);
    }
}
