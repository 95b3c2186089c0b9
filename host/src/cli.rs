//! The `hyperplug` command line.

use crate::image::Mode;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Hyperplug: a plugin-architected x86 hypervisor.
///
/// Backends (kvm, vmx, svm) and device models are shared libraries loaded at
/// run time through a version- and layout-checked ABI. `hyperplug run` with
/// no image boots an embedded guest that walks real -> protected -> long mode.
#[derive(Debug, Parser)]
#[command(name = "hyperplug", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Directory to search for backend and device plugins (repeatable; searched
    /// before HYPERPLUG_PLUGIN_PATH and the executable's directory).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub plugin_dir: Vec<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the host CPU, /dev/kvm, every backend found, and which one `auto` picks and why.
    Backends,
    /// List the device plugins found, with their ABI versions and options.
    Plugins,
    /// Run a guest (the embedded guest when no --kernel/--image is given).
    Run(Box<RunArgs>),
}

/// What `--trace` can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceWhat {
    /// Every VM exit in the backend's own vocabulary.
    Exits,
    /// Port/MMIO accesses nobody claims (reads return all ones, writes are dropped).
    Io,
    /// IRQ line changes.
    Irq,
    /// Plugin loading and device placement.
    Devices,
}

/// `hyperplug run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Backend: `auto` (ranked by CPU detection; see `hyperplug backends`), a name, or a path to a .so.
    #[arg(long, default_value = "auto", value_name = "auto|NAME|PATH")]
    pub backend: String,

    /// Guest RAM, e.g. 256M, 1G, 65536K.
    #[arg(long, short = 'm', default_value = "256M", value_parser = parse_memory)]
    pub memory: u64,

    /// Number of vCPUs, 1 to 64. vCPU 0 starts at the image's entry; the
    /// others wait for INIT and start-up IPIs from its local APIC.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,

    /// Reproducible runs: the vCPUs take turns one at a time, round-robin,
    /// each for a fixed instruction quantum, and the virtual clock follows
    /// retired instructions (timers fire at the same instruction every run).
    /// Only the software backends (vmx, svm) can do this.
    #[arg(long)]
    pub deterministic: bool,

    /// Add a device: plugin name or path to a .so, then key=value options,
    /// e.g. `--device serial,port=0x2f8,irq=3` (repeatable). Naming a default
    /// device here replaces the default instance.
    #[arg(long = "device", value_name = "NAME[,K=V...]")]
    pub devices: Vec<String>,

    /// Leave out a default device: serial, debug-exit, pic, pit, rtc, i8042,
    /// fw-cfg, pm-timer (repeatable).
    #[arg(long = "no-device", value_name = "NAME")]
    pub no_device: Vec<String>,

    /// Start with no default devices at all (only those given with --device).
    #[arg(long)]
    pub no_default_devices: bool,

    /// Do not add the default serial port (16550A at 0x3f8, stdout/stdin).
    #[arg(long)]
    pub no_serial: bool,

    /// Do not add the default debug-exit port (0xf4).
    #[arg(long)]
    pub no_debug_exit: bool,

    /// Leave the bare reset state: no IVT, BIOS data area, ACPI tables, or
    /// PIC/PIT programming (see README, "Firmware state").
    #[arg(long)]
    pub no_firmware_state: bool,

    /// Software backends (vmx, svm): translate guest-physical memory through
    /// lazily built second-level tables (EPT / NPT) instead of the default
    /// shadow page tables.
    #[arg(long)]
    pub nested_paging: bool,

    /// When the guest ends, print each vCPU's native control structure (the
    /// VMCB under svm, the VMCS under vmx) by field name and offset to stderr.
    #[arg(long)]
    pub dump_control_block: bool,

    /// Trace to stderr: exits, io, irq, devices (comma separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "WHAT")]
    pub trace: Vec<TraceWhat>,

    /// Kernel image: multiboot v1 or ELF (32- or 64-bit), recognised by its contents.
    #[arg(long, value_name = "FILE", conflicts_with = "image")]
    pub kernel: Option<PathBuf>,

    /// Kernel command line (multiboot).
    #[arg(long, default_value = "", requires = "kernel")]
    pub cmdline: String,

    /// Multiboot module: `FILE` or `"FILE args"` (repeatable).
    #[arg(long = "module", value_name = "FILE[ ARGS]", requires = "kernel")]
    pub modules: Vec<String>,

    /// Raw flat binary image, loaded at --load-addr and entered at --entry in --mode.
    #[arg(long, value_name = "FILE", requires_all = ["load_addr", "entry"])]
    pub image: Option<PathBuf>,

    /// Guest-physical load address of --image (decimal or 0x hex).
    #[arg(long, value_parser = parse_addr, requires = "image")]
    pub load_addr: Option<u64>,

    /// Entry point of --image (guest-physical; decimal or 0x hex).
    #[arg(long, value_parser = parse_addr, requires = "image")]
    pub entry: Option<u64>,

    /// CPU mode --image starts in: the host builds a flat GDT (protected, long)
    /// and identity page tables for the first 4 GiB (long).
    #[arg(long, value_enum, default_value = "real", requires = "image")]
    pub mode: ModeArg,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// 16-bit real mode.
    Real,
    /// 32-bit protected mode, paging off.
    Protected,
    /// 64-bit long mode.
    Long,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Real => Mode::Real,
            ModeArg::Protected => Mode::Protected,
            ModeArg::Long => Mode::Long,
        }
    }
}

fn parse_memory(s: &str) -> Result<u64, String> {
    crate::size::parse_memory_size(s)
}

fn parse_addr(s: &str) -> Result<u64, String> {
    hyperplug_plugin_api::config::parse_u64(s)
        .ok_or_else(|| format!("'{s}' is not an address (decimal or 0x hex)"))
}
