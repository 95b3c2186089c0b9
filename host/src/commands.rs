//! The subcommands behind the CLI: `backends`, `plugins`, `run`.

use crate::cli::{Cli, Command, RunArgs, TraceWhat};
use crate::cpu::{DevKvm, HostCpu};
use crate::error::{Error, Result};
use crate::image::{self, ModuleSpec};
use crate::plugin::{Inventory, LoadedBackend, PluginPath};
use crate::run::{DeviceSpec, Machine, MachineConfig, Outcome, Platform, Trace, VmOptions};
use crate::select::{choose, Candidate};
use crate::size::format_size;
use std::io::Write;

pub use crate::outcome::EXIT_HOST_ERROR;

/// Runs the parsed command line; returns the process exit status.
pub fn execute(cli: Cli) -> i32 {
    let path = PluginPath::new(&cli.plugin_dir);
    let r = match cli.command {
        Command::Backends => backends(&path).map(|()| 0),
        Command::Plugins => plugins(&path).map(|()| 0),
        Command::Run(args) => run(&path, &args),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hyperplug: error: {e}");
            EXIT_HOST_ERROR
        }
    }
}

fn candidates(inv: &Inventory) -> Vec<Candidate> {
    inv.backends
        .iter()
        .map(|b| Candidate {
            name: b.name(),
            detection: (b.module.detect())(),
        })
        .collect()
}

/// `hyperplug backends`.
pub fn backends(path: &PluginPath) -> Result<()> {
    let cpu = HostCpu::detect();
    let inv = Inventory::scan(path);
    let mut out = std::io::stdout().lock();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(out, "Host CPU");
    let _ = writeln!(out, "  vendor:      {}", cpu.vendor);
    if !cpu.brand.is_empty() {
        let _ = writeln!(out, "  model name:  {}", cpu.brand);
    }
    let _ = writeln!(
        out,
        "  family/model/stepping: {:#x}/{:#x}/{:#x}",
        cpu.family, cpu.model, cpu.stepping
    );
    let _ = writeln!(out, "  VMX (CPUID.1:ECX[5]):          {}", yes(cpu.vmx));
    let _ = writeln!(out, "  SVM (CPUID.80000001h:ECX[2]):  {}", yes(cpu.svm));
    match &cpu.hypervisor_vendor {
        Some(v) => {
            let _ = writeln!(out, "  running under a hypervisor:    yes ({v})");
        }
        None => {
            let _ = writeln!(out, "  running under a hypervisor:    no");
        }
    }
    let kvm = DevKvm::probe();
    let _ = writeln!(out, "\n/dev/kvm");
    let _ = match &kvm {
        DevKvm::Missing => writeln!(out, "  not present"),
        DevKvm::NoAccess(e) => writeln!(out, "  present but not usable: {e}"),
        DevKvm::Usable if cpu.hardware_virtualization() => {
            writeln!(
                out,
                "  usable, hardware-assisted (the host CPU has VMX/SVM)"
            )
        }
        DevKvm::Usable => writeln!(
            out,
            "  usable, NOT hardware-assisted: the host CPU reports no VMX/SVM, so this is a\n  \
             paravirtual KVM that emulates guest kernel-mode code in software (~1 MIPS);\n  \
             64-bit user-mode guest code runs natively"
        ),
    };
    let _ = writeln!(out, "\nBackends (plugin path: {})", display_dirs(path));
    let cands = candidates(&inv);
    if cands.is_empty() {
        let _ = writeln!(out, "  none found");
    }
    for (b, c) in inv.backends.iter().zip(&cands) {
        let status = if c.detection.usable {
            "usable"
        } else {
            "not usable"
        };
        let _ = writeln!(out, "  {:<6} {status}: {}", c.name, c.detection.reason);
        let _ = writeln!(
            out,
            "         vendor {}, ABI {}, {}",
            (b.module.vendor())(),
            b.abi,
            b.path.display()
        );
    }
    for e in &inv.refused {
        let _ = writeln!(out, "  refused: {e}");
    }
    let choice = choose(&cpu, &cands);
    let _ = writeln!(out, "\nauto picks: {}", choice.why);
    if choice.index.is_none() {
        return Err(Error::NoBackend(choice.why));
    }
    Ok(())
}

fn display_dirs(path: &PluginPath) -> String {
    let v: Vec<String> = path.dirs.iter().map(|d| d.display().to_string()).collect();
    v.join(":")
}

/// `hyperplug plugins`.
pub fn plugins(path: &PluginPath) -> Result<()> {
    let inv = Inventory::scan(path);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Device plugins (plugin path: {})", display_dirs(path));
    if inv.devices.is_empty() {
        let _ = writeln!(out, "  none found");
    }
    for d in &inv.devices {
        let _ = writeln!(
            out,
            "  {:<12} ABI {}  {}",
            d.name(),
            d.abi,
            (d.module.description())()
        );
        let _ = writeln!(out, "               {}", d.path.display());
        for line in (d.module.options_help())().as_str().lines() {
            let _ = writeln!(out, "               {line}");
        }
    }
    let _ = writeln!(out, "Backend plugins");
    for b in &inv.backends {
        let _ = writeln!(
            out,
            "  {:<12} ABI {}  {}",
            b.name(),
            b.abi,
            (b.module.description())()
        );
    }
    for e in &inv.refused {
        let _ = writeln!(out, "  refused: {e}");
    }
    Ok(())
}

/// Picks the backend `--backend` names (or ranks them for `auto`).
pub fn select_backend(inv: &Inventory, spec: &str) -> Result<LoadedBackend> {
    if spec != "auto" {
        return inv.backend(spec);
    }
    let cands = candidates(inv);
    let choice = choose(&HostCpu::detect(), &cands);
    match choice.index {
        Some(i) => {
            tracing::info!(target: "devices", "auto picks {}", choice.why);
            Ok(inv.backends[i].clone())
        }
        None => Err(Error::NoBackend(choice.why)),
    }
}

/// The PC devices every VM gets unless turned off (`--no-device NAME`,
/// `--no-default-devices`) or replaced by an explicit `--device` of the same
/// plugin.
pub const DEFAULT_DEVICES: &[&str] = &[
    "serial",
    "debug-exit",
    "pic",
    "pit",
    "rtc",
    "i8042",
    "fw-cfg",
    "pm-timer",
];

/// Builds the device list: defaults first unless turned off or replaced (by
/// name or by a path to the same plugin).
pub fn device_specs(inv: &Inventory, args: &RunArgs) -> Result<Vec<DeviceSpec>> {
    let explicit: Vec<DeviceSpec> = args
        .devices
        .iter()
        .map(|d| DeviceSpec::parse(d))
        .collect::<Result<_>>()?;
    let mut names = Vec::new();
    for d in &explicit {
        names.push(inv.device(&d.plugin)?.name());
    }
    for n in &args.no_device {
        if !DEFAULT_DEVICES.contains(&n.as_str()) {
            return Err(Error::Config(format!(
                "--no-device {n}: not a default device (defaults: {})",
                DEFAULT_DEVICES.join(", ")
            )));
        }
    }
    let off = |n: &str| {
        args.no_default_devices
            || args.no_device.iter().any(|d| d == n)
            || (n == "serial" && args.no_serial)
            || (n == "debug-exit" && args.no_debug_exit)
            || names.iter().any(|d| d == n)
    };
    let mut v = Vec::new();
    for d in DEFAULT_DEVICES {
        if !off(d) {
            v.push(DeviceSpec::parse(d)?);
        }
    }
    v.extend(explicit);
    Ok(v)
}

/// `hyperplug run`.
pub fn run(path: &PluginPath, args: &RunArgs) -> Result<i32> {
    let inv = Inventory::scan(path);
    for e in &inv.refused {
        tracing::warn!(target: "devices", "skipping plugin: {e}");
    }
    let cfg = MachineConfig {
        memory: args.memory,
        cpus: args.cpus,
        devices: device_specs(&inv, args)?,
        trace: Trace {
            exits: args.trace.contains(&TraceWhat::Exits),
        },
        deterministic: args.deterministic,
    };
    // Everything that depends on the user's input (devices, images) is
    // checked before a backend is involved.
    let platform = Platform::new(&inv, &cfg)?;
    if !args.no_firmware_state {
        // Before the image, so an image that overlaps low memory wins.
        platform.apply_firmware_state()?;
    }
    let image_setup = if let Some(k) = &args.kernel {
        let modules: Vec<ModuleSpec> = args.modules.iter().map(|s| ModuleSpec::parse(s)).collect();
        Some(image::load_kernel(
            platform.memory(),
            platform.ram_size(),
            k,
            &args.cmdline,
            &modules,
        )?)
    } else if let Some(img) = &args.image {
        let (Some(load), Some(entry)) = (args.load_addr, args.entry) else {
            return Err(Error::Config(
                "--image needs --load-addr and --entry".into(),
            ));
        };
        Some(image::load_raw(
            platform.memory(),
            platform.ram_size(),
            img,
            load,
            entry,
            args.mode.into(),
        )?)
    } else {
        None
    };
    let backend = select_backend(&inv, &args.backend)?;
    // The software backends (which bring the instruction-driven clock and the
    // single-threaded round-robin scheduler) accept it; nothing else can.
    if args.deterministic && !matches!(backend.name().as_str(), "vmx" | "svm") {
        return Err(Error::Config(format!(
            "--deterministic needs a software backend (vmx or svm): {} runs each vCPU on its own \
             hardware thread and cannot replay instruction counts",
            backend.name()
        )));
    }

    if args.nested_paging && !matches!(backend.name().as_str(), "vmx" | "svm") {
        return Err(Error::Config(format!(
            "--nested-paging selects the paging strategy of a software backend (vmx or svm); \
             {} uses the hardware's",
            backend.name()
        )));
    }
    let opts = VmOptions {
        nested_paging: args.nested_paging,
    };
    let mut m = Machine::new_with(&backend, platform, cfg.trace, opts)?;
    let setup = match image_setup {
        Some(s) => s,
        None => crate::boot::load_embedded(m.memory(), m.ram_size(), m.backend_name())?,
    };
    tracing::info!(target: "devices", "{} on {} with {}", setup.description, m.backend_name(), format_size(args.memory));
    m.set_boot_state(&setup)?;
    let outcome = m.run()?;
    let _ = std::io::stdout().flush();
    if args.dump_control_block {
        eprint!("{}", m.dump_control_blocks());
    }
    report_outcome(&outcome);
    Ok(outcome.exit_code())
}

/// Prints how the guest ended (stderr), except for a clean power-off.
pub fn report_outcome(o: &Outcome) {
    match o {
        Outcome::PowerOff => tracing::info!(target: "devices", "guest powered off (ACPI S5)"),
        Outcome::DeviceExit { status, reason } => {
            tracing::info!(target: "devices", "{reason}: exit status {}", status & 0xff)
        }
        Outcome::Reset { reason } => eprintln!("hyperplug: guest reset ({reason})"),
        Outcome::TripleFault { dump } => {
            eprintln!("hyperplug: guest shutdown (triple fault)\n{dump}");
        }
        Outcome::GuestStopped { what, dump } => {
            eprintln!("hyperplug: guest stopped: {what}\n{dump}");
        }
    }
}
