//! Image loaders: multiboot v1, ELF32/ELF64, raw flat binaries, and the
//! x86 state a direct-boot VMM leaves for each.
//!
//! Images are hostile input: every header field is bounds-checked against the
//! file and every address range against guest RAM with overflow-safe
//! arithmetic, and nothing is written to guest memory until the whole image
//! has been validated. The host's own boot structures (GDT, page tables,
//! stack, multiboot information) live at fixed low addresses listed in
//! [`layout`]; an image that would overwrite the ones its boot uses is refused.

mod elf;
pub mod layout;
mod multiboot;
mod multiboot_info;
mod raw;
pub mod x86_setup;

#[cfg(test)]
mod testutil;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hyperplug_plugin_api::state::{Regs, Sregs};

use crate::memory::GuestMemory;

/// The CPU mode an image starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 16-bit real mode; entry E (below 1 MiB) becomes CS:IP = ((E >> 4) & 0xF000):(E & 0xFFFF).
    Real,
    /// 32-bit protected mode, flat segments, paging off.
    Protected,
    /// 64-bit long mode, first 4 GiB identity-mapped.
    Long,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Real => "real",
            Mode::Protected => "protected",
            Mode::Long => "long",
        })
    }
}

impl FromStr for Mode {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "real" => Ok(Mode::Real),
            "protected" => Ok(Mode::Protected),
            "long" => Ok(Mode::Long),
            _ => Err(ImageError::UnknownMode(s.to_string())),
        }
    }
}

/// The initial vCPU state an image loader produces.
#[derive(Debug, Clone)]
pub struct BootSetup {
    /// General registers (RIP = entry).
    pub regs: Regs,
    /// Segments, control registers.
    pub sregs: Sregs,
    /// One line for logs: what was loaded where.
    pub description: String,
    /// The guest-physical entry point.
    pub entry: u64,
    /// The mode the vCPU starts in.
    pub mode: Mode,
}

/// A multiboot module as given on the command line: `"file args"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// The module file.
    pub path: PathBuf,
    /// Its arguments (may be empty), passed after the file name in the module string.
    pub args: String,
}

impl ModuleSpec {
    /// Splits `"file args"`: the first whitespace-separated word is the file, the
    /// rest its arguments. An empty string gives an empty path, which [`ModuleSpec::read`] refuses.
    pub fn parse(s: &str) -> ModuleSpec {
        let s = s.trim();
        let (path, args) = match s.split_once(char::is_whitespace) {
            Some((p, a)) => (p, a.trim()),
            None => (s, ""),
        };
        ModuleSpec {
            path: PathBuf::from(path),
            args: args.to_string(),
        }
    }

    /// Reads the module file (at most `limit` bytes: it must fit in guest RAM).
    pub fn read(&self, limit: u64) -> Result<LoadedModule, ImageError> {
        if self.path.as_os_str().is_empty() {
            return Err(ImageError::BadModuleSpec("empty module file name".into()));
        }
        let name = self.path.to_string_lossy().into_owned();
        let bytes = read_bounded(&self.path, limit)?;
        Ok(LoadedModule {
            name,
            args: self.args.clone(),
            bytes,
        })
    }
}

impl FromStr for ModuleSpec {
    type Err = ImageError;

    /// Like [`ModuleSpec::parse`], but refuses an empty specification.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ImageError::BadModuleSpec(
                "empty module specification".into(),
            ));
        }
        Ok(ModuleSpec::parse(s))
    }
}

/// A multiboot module already in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModule {
    /// Its file name (first word of the module string).
    pub name: String,
    /// Its arguments (may be empty).
    pub args: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// Why an image could not be loaded; every message starts with the file name.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Neither a multiboot header nor an ELF header was found.
    #[error("{file}: not a multiboot or ELF image ({reason})")]
    NotBootable {
        /// The file.
        file: String,
        /// What was found instead.
        reason: String,
    },
    /// The ELF headers are malformed or unsupported.
    #[error("{file}: bad ELF image: {reason}")]
    BadElf {
        /// The file.
        file: String,
        /// The offending field and value.
        reason: String,
    },
    /// The multiboot header is malformed or asks for something unsupported.
    #[error("{file}: bad multiboot header: {reason}")]
    BadMultiboot {
        /// The file.
        file: String,
        /// The offending field and value.
        reason: String,
    },
    /// A raw image cannot be loaded as asked.
    #[error("{file}: bad raw image: {reason}")]
    BadRaw {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A range wraps around the address space.
    #[error("{file}: {what} at {addr:#x}+{len:#x} wraps around the {bits}-bit address space")]
    Overflow {
        /// The file.
        file: String,
        /// Which part of the image.
        what: String,
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// Width of the address space.
        bits: u32,
    },
    /// A range lies outside guest RAM.
    #[error("{file}: {what} at {addr:#x}+{len:#x} does not fit in {ram} of guest memory")]
    DoesNotFit {
        /// The file.
        file: String,
        /// Which part of the image.
        what: String,
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// Guest RAM size, human-readable.
        ram: String,
    },
    /// A range would overwrite the host's boot structures.
    #[error(
        "{file}: {what} at {addr:#x}+{len:#x} overlaps the host's {area} at {start:#x}..{end:#x}"
    )]
    OverlapsHost {
        /// The file.
        file: String,
        /// Which part of the image.
        what: String,
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// The boot structure.
        area: &'static str,
        /// Its first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
    },
    /// The entry point cannot be used.
    #[error("{file}: entry point {entry:#x} {reason}")]
    BadEntry {
        /// The file.
        file: String,
        /// The entry address.
        entry: u64,
        /// Why it is unusable.
        reason: String,
    },
    /// The multiboot information (command line, module names) does not fit its area.
    #[error("{file}: the multiboot information needs {needed} bytes, more than the {available}-byte area at {addr:#x}")]
    BootInfoTooLarge {
        /// The file.
        file: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Where the area starts.
        addr: u64,
    },
    /// A string passed to the guest contains a NUL byte.
    #[error("{file}: {what} contains a NUL byte")]
    NulInString {
        /// The file.
        file: String,
        /// Which string.
        what: String,
    },
    /// Writing guest memory failed.
    #[error("{file}: cannot write {what} at {addr:#x}: {reason}")]
    Memory {
        /// The file.
        file: String,
        /// What was being written.
        what: String,
        /// Where.
        addr: u64,
        /// vm-memory's message.
        reason: String,
    },
    /// A `--module` argument is malformed.
    #[error("bad module specification: {0}")]
    BadModuleSpec(String),
    /// A `--mode` argument is not a mode.
    #[error("unknown mode '{0}' (expected real, protected or long)")]
    UnknownMode(String),
}

/// Reads an image or module file, refusing non-regular files (a FIFO or
/// `/dev/zero` would never end) and files larger than `limit` bytes (nothing
/// bigger than guest RAM can be loaded).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ImageError> {
    let name = path.to_string_lossy().into_owned();
    let io = |source| ImageError::Io {
        file: name.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > limit {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} bytes does not fit in guest memory ({limit} bytes)",
                meta.len()
            ),
        )));
    }
    std::fs::read(path).map_err(io)
}

/// Loads a kernel file: multiboot v1 if it has a multiboot header, else ELF32/ELF64.
pub fn load_kernel(
    mem: &GuestMemory,
    ram_size: u64,
    path: &Path,
    cmdline: &str,
    modules: &[ModuleSpec],
) -> Result<BootSetup, ImageError> {
    let name = path.to_string_lossy().into_owned();
    let bytes = read_bounded(path, ram_size)?;
    load_kernel_bytes(mem, ram_size, &name, &bytes, cmdline, modules)
}

/// Loads a kernel held in memory (`name` is used in messages and as the first
/// word of the multiboot command line); modules are read from their files.
pub fn load_kernel_bytes(
    mem: &GuestMemory,
    ram_size: u64,
    name: &str,
    bytes: &[u8],
    cmdline: &str,
    modules: &[ModuleSpec],
) -> Result<BootSetup, ImageError> {
    let loaded = modules
        .iter()
        .map(|m| m.read(ram_size))
        .collect::<Result<Vec<_>, _>>()?;
    load_kernel_with_modules(mem, ram_size, name, bytes, cmdline, &loaded)
}

/// Loads a kernel held in memory with modules held in memory.
pub fn load_kernel_with_modules(
    mem: &GuestMemory,
    ram_size: u64,
    name: &str,
    bytes: &[u8],
    cmdline: &str,
    modules: &[LoadedModule],
) -> Result<BootSetup, ImageError> {
    let target = layout::Target {
        file: name,
        mem,
        ram_size,
    };
    if let Some(header) = multiboot::find_header(name, bytes)? {
        return multiboot::load(&target, bytes, &header, cmdline, modules);
    }
    if elf::has_magic(bytes) {
        if !modules.is_empty() {
            return Err(ImageError::BadElf {
                file: name.to_string(),
                reason:
                    "modules need a multiboot kernel, and this ELF image has no multiboot header"
                        .into(),
            });
        }
        return elf::load(&target, bytes);
    }
    Err(ImageError::NotBootable {
        file: name.to_string(),
        reason: describe_unknown(bytes),
    })
}

/// Loads a raw flat binary file at `load_addr` and starts it at `entry` in `mode`.
pub fn load_raw(
    mem: &GuestMemory,
    ram_size: u64,
    path: &Path,
    load_addr: u64,
    entry: u64,
    mode: Mode,
) -> Result<BootSetup, ImageError> {
    let name = path.to_string_lossy().into_owned();
    let bytes = read_bounded(path, ram_size)?;
    load_raw_bytes(mem, ram_size, &name, &bytes, load_addr, entry, mode)
}

/// Loads a raw flat binary held in memory at `load_addr` and starts it at `entry` in `mode`.
pub fn load_raw_bytes(
    mem: &GuestMemory,
    ram_size: u64,
    name: &str,
    bytes: &[u8],
    load_addr: u64,
    entry: u64,
    mode: Mode,
) -> Result<BootSetup, ImageError> {
    let target = layout::Target {
        file: name,
        mem,
        ram_size,
    };
    raw::load(&target, bytes, load_addr, entry, mode)
}

/// Says what an unrecognised image starts with.
fn describe_unknown(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    // The Linux boot protocol's "HdrS" signature at 0x202 (Documentation/x86/boot).
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        return "it is a Linux bzImage, which needs the Linux boot protocol".into();
    }
    let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!(
        "no multiboot header in the first 8 KiB and no ELF magic; it starts with {}",
        head.join(" ")
    )
}

/// Formats a byte count as "N MiB", "N KiB" or "N bytes", whichever is exact.
pub(crate) fn human_size(bytes: u64) -> String {
    if bytes != 0 && bytes.trailing_zeros() >= 20 {
        format!("{} MiB", bytes >> 20)
    } else if bytes != 0 && bytes.trailing_zeros() >= 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses() {
        assert_eq!("real".parse::<Mode>().ok(), Some(Mode::Real));
        assert_eq!("Protected".parse::<Mode>().ok(), Some(Mode::Protected));
        assert_eq!("long".parse::<Mode>().ok(), Some(Mode::Long));
        let e = "vm86".parse::<Mode>().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unknown mode 'vm86' (expected real, protected or long)")
        );
    }

    #[test]
    fn module_spec_parses() {
        let m = ModuleSpec::parse(" initrd.img  root=/dev/x quiet");
        assert_eq!(
            m,
            ModuleSpec {
                path: PathBuf::from("initrd.img"),
                args: "root=/dev/x quiet".into()
            }
        );
        let m: Option<ModuleSpec> = "mod.bin".parse().ok();
        assert_eq!(
            m,
            Some(ModuleSpec {
                path: PathBuf::from("mod.bin"),
                args: String::new()
            })
        );
        assert!("   ".parse::<ModuleSpec>().is_err());
        let e = ModuleSpec::parse("")
            .read(1 << 20)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("bad module specification: empty module file name")
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(256 << 20), "256 MiB");
        assert_eq!(human_size(640 << 10), "640 KiB");
        assert_eq!(human_size(1000), "1000 bytes");
        assert_eq!(human_size(0), "0 bytes");
    }

    #[test]
    fn missing_file_names_the_file() {
        let mem = testutil::memory(1 << 20);
        let e = load_kernel(&mem, 1 << 20, Path::new("/nonexistent/kernel.elf"), "", &[]).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.starts_with("/nonexistent/kernel.elf: cannot read:"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_images_are_refused() {
        let mem = testutil::memory(1 << 20);
        let cases: &[(&[u8], &str)] = &[
            (b"", "blob: not a multiboot or ELF image (the file is empty)"),
            (
                b"MZ\x90\x00rest",
                "blob: not a multiboot or ELF image (no multiboot header in the first 8 KiB and no ELF magic; it starts with 4d 5a 90 00)",
            ),
        ];
        for (bytes, want) in cases {
            let got = load_kernel_bytes(&mem, 1 << 20, "blob", bytes, "", &[])
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(*want));
        }
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let got = load_kernel_bytes(&mem, 1 << 20, "bzImage", &bz, "", &[])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            got.as_deref(),
            Some("bzImage: not a multiboot or ELF image (it is a Linux bzImage, which needs the Linux boot protocol)")
        );
    }
}
