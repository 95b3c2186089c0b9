//! The VM and its vCPU run loop: creates the backend VM, memory slots and
//! devices, then runs the vCPU and dispatches every exit.

use crate::bus::{Access, Bus, BusDevice, SharedDevice};
use crate::dump::format_registers;
use crate::error::{Error, Result};
use crate::image::BootSetup;
use crate::memory::{GuestMemory, GuestRam};
use crate::plugin::{Inventory, LoadedBackend};
use crate::power::{Pm1aControl, PM1A_CNT_LEN, PM1A_CNT_PORT};
use crate::services::{BackendServices, DeviceServices, IrqLines};
use hyperplug_plugin_api::abi_stable::std_types::{RResult, RSlice, RSliceMut};
use hyperplug_plugin_api::backend::{MemorySlot, VcpuBox, VmBox, VmConfig};
use hyperplug_plugin_api::device::{AddressSpace, DeviceBox, IoRange};
use hyperplug_plugin_api::state::{rflags, Regs, Sregs};
use hyperplug_plugin_api::{DeviceConfig, ExitReason, PluginError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// ACPI S5 (or the backend's power-off event): exit status 0.
    PowerOff,
    /// A device (debug-exit) ended the VM with `status`.
    DeviceExit {
        /// Process exit status requested.
        status: i32,
        /// Who and why.
        reason: String,
    },
    /// The guest triple-faulted (shutdown).
    TripleFault {
        /// Register dump at the shutdown.
        dump: String,
    },
    /// The guest stopped in a way it cannot recover from (HLT with
    /// interrupts off, entry failure, backend internal error).
    GuestStopped {
        /// What happened.
        what: String,
        /// Register dump.
        dump: String,
    },
}

/// Process exit status for a triple fault (even, so it never collides with debug-exit's odd statuses).
pub const EXIT_TRIPLE_FAULT: i32 = 2;
/// Process exit status for other guest stops and host errors during the run.
pub const EXIT_GUEST_STOPPED: i32 = 4;

impl Outcome {
    /// The status the `hyperplug` process exits with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::PowerOff => 0,
            Outcome::DeviceExit { status, .. } => *status & 0xff,
            Outcome::TripleFault { .. } => EXIT_TRIPLE_FAULT,
            Outcome::GuestStopped { .. } => EXIT_GUEST_STOPPED,
        }
    }
}

#[derive(Default)]
struct StopState {
    flag: AtomicBool,
    reason: Mutex<Option<Outcome>>,
}

/// Shared "stop the VM" request; the first request wins.
#[derive(Clone, Default)]
pub struct StopHandle(Arc<StopState>);

impl StopHandle {
    fn set(&self, o: Outcome) {
        let mut r = match self.0.reason.lock() {
            Ok(r) => r,
            Err(e) => e.into_inner(),
        };
        if r.is_none() {
            *r = Some(o);
        }
        self.0.flag.store(true, Ordering::SeqCst);
    }

    /// ACPI S5.
    pub fn power_off(&self) {
        self.set(Outcome::PowerOff);
    }

    /// A device-requested exit.
    pub fn request_exit(&self, status: i32, reason: String) {
        self.set(Outcome::DeviceExit { status, reason });
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    fn take(&self) -> Option<Outcome> {
        match self.0.reason.lock() {
            Ok(mut r) => r.take(),
            Err(e) => e.into_inner().take(),
        }
    }
}

/// A device instance to create: a plugin name or `.so` path, and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Name (`serial`) or path to a `.so`.
    pub plugin: String,
    /// `key=value` options.
    pub config: DeviceConfig,
}

impl DeviceSpec {
    /// Parses `name[,key=value...]`.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, rest) = s.split_once(',').unwrap_or((s, ""));
        if name.trim().is_empty() {
            return Err(Error::Config(format!(
                "--device '{s}': missing device name"
            )));
        }
        Ok(Self {
            plugin: name.trim().to_string(),
            config: DeviceConfig::parse(rest),
        })
    }
}

/// Which exits and accesses to trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trace {
    /// Every VM exit, in the backend's vocabulary.
    pub exits: bool,
}

/// What the VM is made of.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Devices, in creation order.
    pub devices: Vec<DeviceSpec>,
    /// Tracing.
    pub trace: Trace,
}

/// The host-owned, backend-independent part of a VM: RAM, the device bus
/// with its devices, IRQ lines and the stop request. It is assembled (and
/// images loaded into it) before a backend is involved, so bad input is
/// reported the same on every machine.
pub struct Platform {
    ram: GuestRam,
    bus: Bus,
    irqs: Arc<IrqLines>,
    stop: StopHandle,
}

impl Platform {
    /// Allocates RAM and creates the host-internal and plugin devices.
    pub fn new(inventory: &Inventory, cfg: &MachineConfig) -> Result<Self> {
        let ram = GuestRam::new(cfg.memory)?;
        let stop = StopHandle::default();
        let irqs = Arc::new(IrqLines::default());
        let mut bus = Bus::new();
        let pm: SharedDevice = Arc::new(Mutex::new(Pm1aControl::new(stop.clone())));
        bus.add(
            "acpi-pm1a",
            &[IoRange::pio(PM1A_CNT_PORT, PM1A_CNT_LEN)],
            pm,
        )?;
        let mut p = Platform {
            ram,
            bus,
            irqs,
            stop,
        };
        for spec in &cfg.devices {
            p.add_device(inventory, spec)?;
        }
        Ok(p)
    }

    /// Creates a device from its plugin and puts it on the bus.
    fn add_device(&mut self, inventory: &Inventory, spec: &DeviceSpec) -> Result<()> {
        let loaded = inventory.device(&spec.plugin)?;
        let base = loaded.name();
        let mut name = base.clone();
        let mut n = 1;
        while self.bus.device_names().contains(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        let services =
            DeviceServices::new(&name, Arc::clone(&self.irqs), self.stop.clone()).into_ffi();
        let dev = (loaded.module.create())(spec.config.clone(), services)
            .into_result()
            .map_err(|e| Error::Device {
                device: name.clone(),
                message: e.message.to_string(),
            })?;
        let ranges: Vec<IoRange> = dev.io_ranges().into_iter().collect();
        let shared: SharedDevice = Arc::new(Mutex::new(PluginDevice { dev }));
        self.bus.add(&name, &ranges, shared)?;
        tracing::debug!(target: "devices", "device {name} from {} at {ranges:x?}", loaded.path.display());
        Ok(())
    }

    /// Guest memory, for loaders.
    pub fn memory(&self) -> &GuestMemory {
        self.ram.memory()
    }

    /// RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram.ram_size()
    }

    /// Names of the devices on the bus.
    pub fn device_names(&self) -> Vec<String> {
        self.bus.device_names()
    }
}

/// A plugin device on the bus.
struct PluginDevice {
    dev: DeviceBox,
}

fn plugin_result(r: RResult<(), PluginError>) -> std::result::Result<(), String> {
    r.into_result().map_err(|e| e.message.to_string())
}

impl BusDevice for PluginDevice {
    fn read(
        &mut self,
        space: AddressSpace,
        addr: u64,
        data: &mut [u8],
    ) -> std::result::Result<(), String> {
        plugin_result(self.dev.read(space, addr, RSliceMut::from_mut_slice(data)))
    }
    fn write(
        &mut self,
        space: AddressSpace,
        addr: u64,
        data: &[u8],
    ) -> std::result::Result<(), String> {
        plugin_result(self.dev.write(space, addr, RSlice::from_slice(data)))
    }
}

/// One VM: backend VM, RAM, bus, one vCPU (SMP comes with the platform work).
pub struct Machine {
    backend: String,
    vm: VmBox,
    ram: GuestRam,
    bus: Bus,
    irqs: Arc<IrqLines>,
    stop: StopHandle,
    vcpu: VcpuBox,
    trace: Trace,
    exits: u64,
}

fn backend_err(backend: &str, op: &str, e: PluginError) -> Error {
    Error::Backend {
        backend: backend.to_string(),
        op: op.to_string(),
        message: e.message.to_string(),
    }
}

impl Machine {
    /// Creates the platform from `cfg`, then the VM on `backend` around it.
    pub fn create(
        backend: &LoadedBackend,
        inventory: &Inventory,
        cfg: &MachineConfig,
    ) -> Result<Self> {
        let platform = Platform::new(inventory, cfg)?;
        Self::new(backend, platform, cfg.trace)
    }

    /// Creates the VM on `backend` around an assembled platform (RAM already
    /// loaded, devices on the bus); the vCPU is at its reset state.
    pub fn new(backend: &LoadedBackend, platform: Platform, trace: Trace) -> Result<Self> {
        let name = backend.name();
        let detection = (backend.module.detect())();
        if !detection.usable {
            return Err(Error::NoBackend(format!(
                "backend {name} is not usable here: {}",
                detection.reason
            )));
        }
        let Platform {
            ram,
            bus,
            irqs,
            stop,
        } = platform;
        let host = BackendServices::new_ffi(&name);
        let vm = (backend.module.create_vm())(
            host,
            VmConfig {
                vcpus: 1,
                memory_bytes: ram.ram_size(),
            },
        )
        .into_result()
        .map_err(|e| backend_err(&name, "create VM", e))?;
        for slot in ram.slots() {
            vm.add_memory_slot(slot)
                .into_result()
                .map_err(|e| backend_err(&name, "add memory slot", e))?;
        }
        let vcpu = vm
            .create_vcpu(0)
            .into_result()
            .map_err(|e| backend_err(&name, "create vCPU 0", e))?;
        Ok(Machine {
            backend: name,
            vm,
            ram,
            bus,
            irqs,
            stop,
            vcpu,
            trace,
            exits: 0,
        })
    }

    /// Names of the devices on the bus, including host-internal ones.
    pub fn device_names(&self) -> Vec<String> {
        self.bus.device_names()
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &str {
        &self.backend
    }

    /// Guest memory, for loaders.
    pub fn memory(&self) -> &GuestMemory {
        self.ram.memory()
    }

    /// RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram.ram_size()
    }

    /// The device bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The IRQ lines devices drive.
    pub fn irq_lines(&self) -> &Arc<IrqLines> {
        &self.irqs
    }

    /// Number of exits handled so far.
    pub fn exit_count(&self) -> u64 {
        self.exits
    }

    /// Adds a memory slot of `size` bytes at `gpa` (the VM is paused between runs).
    pub fn add_memory_slot(&mut self, gpa: u64, size: u64, read_only: bool) -> Result<MemorySlot> {
        let id = self.ram.free_slot_id();
        let flags = if read_only { MemorySlot::READONLY } else { 0 };
        let slot = self.ram.insert(id, gpa, size, flags)?;
        if let Err(e) = self.vm.add_memory_slot(slot).into_result() {
            // Leave the host view as it was.
            let _ = self.ram.remove(id);
            return Err(backend_err(&self.backend, "add memory slot", e));
        }
        Ok(slot)
    }

    /// Removes memory slot `id`.
    pub fn remove_memory_slot(&mut self, id: u32) -> Result<()> {
        if !self.ram.slots().iter().any(|s| s.id == id) {
            return Err(Error::Memory(format!("no slot {id}")));
        }
        self.vm
            .remove_memory_slot(id)
            .into_result()
            .map_err(|e| backend_err(&self.backend, "remove memory slot", e))?;
        self.ram.remove(id)
    }

    /// Current registers.
    pub fn registers(&mut self) -> Result<(Regs, Sregs)> {
        let b = self.backend.clone();
        let r = self
            .vcpu
            .get_regs()
            .into_result()
            .map_err(|e| backend_err(&b, "get registers", e))?;
        let s = self
            .vcpu
            .get_sregs()
            .into_result()
            .map_err(|e| backend_err(&b, "get special registers", e))?;
        Ok((r, s))
    }

    /// Puts the vCPU in the state an image loader prepared.
    pub fn set_boot_state(&mut self, setup: &BootSetup) -> Result<()> {
        let b = self.backend.clone();
        let current = self
            .vcpu
            .get_sregs()
            .into_result()
            .map_err(|e| backend_err(&b, "get special registers", e))?;
        let mut s = setup.sregs;
        if s.apic_base == 0 {
            s.apic_base = current.apic_base;
        }
        s.interrupt_bitmap = [0; 4];
        self.vcpu
            .set_sregs(s)
            .into_result()
            .map_err(|e| backend_err(&b, "set special registers", e))?;
        let mut r = setup.regs;
        r.rflags |= rflags::FIXED;
        self.vcpu
            .set_regs(r)
            .into_result()
            .map_err(|e| backend_err(&b, "set registers", e))?;
        Ok(())
    }

    fn dump(&mut self) -> String {
        match self.registers() {
            Ok((r, s)) => format_registers(&r, &s),
            Err(e) => format!("(registers unavailable: {e})\n"),
        }
    }

    fn stopped(&mut self, what: impl Into<String>) -> Outcome {
        let dump = self.dump();
        Outcome::GuestStopped {
            what: what.into(),
            dump,
        }
    }

    /// Runs the guest until it powers off, a device ends it, or it stops.
    ///
    /// Host-side failures (a device plugin erroring, a backend call failing)
    /// are returned as errors; the guest state is left as it was.
    pub fn run(&mut self) -> Result<Outcome> {
        let b = self.backend.clone();
        loop {
            if let Some(o) = self.stop.take() {
                return Ok(o);
            }
            let exit = self
                .vcpu
                .run()
                .into_result()
                .map_err(|e| backend_err(&b, "run vCPU 0", e))?;
            self.exits += 1;
            if self.trace.exits {
                tracing::info!(target: "exits", "vcpu0 {} {}", exit.native_name, exit.native_detail);
            }
            match exit.reason {
                ExitReason::IoIn { port, size, count } => {
                    let data = self.io_in(port, size, count)?;
                    self.vcpu
                        .complete_io(RSlice::from_slice(&data))
                        .into_result()
                        .map_err(|e| backend_err(&b, "complete I/O", e))?;
                }
                ExitReason::IoOut {
                    port,
                    size,
                    count,
                    data,
                } => {
                    self.io_out(port, size, count, &data)?;
                }
                ExitReason::MmioRead { addr, size } => {
                    let mut data = vec![0u8; usize::from(size.clamp(1, 8))];
                    self.bus_access(AddressSpace::Mmio, addr, Some(&mut data), None)?;
                    self.vcpu
                        .complete_io(RSlice::from_slice(&data))
                        .into_result()
                        .map_err(|e| backend_err(&b, "complete MMIO", e))?;
                }
                ExitReason::MmioWrite { addr, data } => {
                    self.bus_access(AddressSpace::Mmio, addr, None, Some(&data))?;
                }
                ExitReason::Hlt => {
                    if let Some(o) = self.halt()? {
                        return Ok(o);
                    }
                }
                ExitReason::Shutdown => {
                    let dump = self.dump();
                    return Ok(Outcome::TripleFault { dump });
                }
                ExitReason::InterruptWindow => {
                    // No interrupt controller is attached yet, so nothing is pending.
                    self.vcpu
                        .request_interrupt_window(false)
                        .into_result()
                        .map_err(|e| backend_err(&b, "interrupt window", e))?;
                }
                ExitReason::Debug { rip, vector } => {
                    tracing::debug!(target: "exits", "debug exception {vector} at {rip:#x} ignored");
                }
                ExitReason::Interrupted => {}
                ExitReason::SystemEvent { kind } => {
                    return Ok(self.stopped(format!(
                        "backend system event {kind} ({} {})",
                        exit.native_name, exit.native_detail
                    )));
                }
                ExitReason::EntryFailure { reason } => {
                    return Ok(self.stopped(format!(
                        "VM entry failed: {} reason {reason:#x} {}",
                        exit.native_name, exit.native_detail
                    )));
                }
                ExitReason::InternalError { description } => {
                    return Ok(self.stopped(format!(
                        "backend internal error: {description} ({})",
                        exit.native_detail
                    )));
                }
            }
        }
    }

    /// HLT: with interrupts off nothing can wake the vCPU; otherwise wait for
    /// an IRQ edge (a device raising its line) or a stop request.
    fn halt(&mut self) -> Result<Option<Outcome>> {
        let (r, _) = self.registers()?;
        if r.rflags & rflags::IF == 0 {
            return Ok(Some(self.stopped(
                "guest halted with interrupts disabled (cli; hlt): nothing can wake it",
            )));
        }
        let seen = self.irqs.edges();
        loop {
            if self.stop.requested() {
                return Ok(None);
            }
            if self.irqs.wait_edge(seen, Duration::from_millis(100)) != seen {
                return Ok(None);
            }
        }
    }

    fn bus_access(
        &mut self,
        space: AddressSpace,
        addr: u64,
        read: Option<&mut [u8]>,
        write: Option<&[u8]>,
    ) -> Result<()> {
        let r = match (read, write) {
            (Some(buf), _) => self.bus.read(space, addr, buf),
            (None, Some(data)) => self.bus.write(space, addr, data),
            (None, None) => return Ok(()),
        };
        match r {
            Ok(Access::Claimed(_)) | Ok(Access::Unclaimed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn io_in(&mut self, port: u16, size: u8, count: u32) -> Result<Vec<u8>> {
        let size = usize::from(size.clamp(1, 4));
        let count = count.max(1) as usize;
        let mut data = vec![0u8; size * count];
        for chunk in data.chunks_mut(size) {
            self.bus_access(AddressSpace::Pio, u64::from(port), Some(chunk), None)?;
        }
        Ok(data)
    }

    fn io_out(&mut self, port: u16, size: u8, count: u32, data: &[u8]) -> Result<()> {
        let size = usize::from(size.clamp(1, 4));
        for chunk in data.chunks(size).take(count.max(1) as usize) {
            self.bus_access(AddressSpace::Pio, u64::from(port), None, Some(chunk))?;
            if self.stop.requested() {
                break;
            }
        }
        Ok(())
    }
}
