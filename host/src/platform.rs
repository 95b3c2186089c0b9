//! The host-owned, backend-independent part of a VM: RAM, the device bus
//! with its plugin devices, interrupt routing, the virtual clock and timers,
//! and the stop request. It is assembled (and images loaded into it) before
//! a backend is involved, so bad input is reported the same everywhere.

use crate::a20::{A20Line, PortA, PORT_A as A20_PORT_A};
use crate::apic_bus::{ApicBus, IoApicMmio, IOAPIC_BASE, IOAPIC_SIZE};
use crate::bus::{Bus, BusDevice, SharedDevice};
use crate::clock::{DeviceSlot, FailureHook, Timers, VirtualClock};
use crate::error::{Error, Result};
use crate::intr::Interrupts;
use crate::memory::{GuestMemory, GuestRam};
use crate::outcome::EXIT_HOST_ERROR;
use crate::plugin::Inventory;
use crate::power::{
    Pm1aControl, Pm1aEvent, PM1A_CNT_LEN, PM1A_CNT_PORT, PM1A_EVT_LEN, PM1A_EVT_PORT,
};
use crate::services::DeviceServices;
use crate::stop::{StopHandle, VcpuWaker};
use hyperplug_plugin_api::abi_stable::std_types::{RResult, RSlice, RSliceMut};
use hyperplug_plugin_api::device::{
    AddressSpace, DeviceBox, IoRange, MachineInfo, CAP_INTERRUPT_CONTROLLER,
};
use hyperplug_plugin_api::{AbiVersion, DeviceConfig, PluginError};
use std::sync::{Arc, Mutex, OnceLock};

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

/// The most vCPUs a VM may have.
pub const MAX_CPUS: u32 = 64;

/// What the VM is made of.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Number of vCPUs (1..=[`MAX_CPUS`]).
    pub cpus: u32,
    /// Devices, in creation order.
    pub devices: Vec<DeviceSpec>,
    /// Tracing.
    pub trace: Trace,
    /// Reproducible runs (`--deterministic`): the virtual clock follows
    /// retired guest instructions and the vCPU loop fires timers.
    pub deterministic: bool,
}

fn plugin_result<T>(r: RResult<T, PluginError>) -> std::result::Result<T, String> {
    r.into_result().map_err(|e| e.message.to_string())
}

/// A plugin device instance, with what its ABI version lets the host call.
pub struct PluginDevice {
    dev: DeviceBox,
    /// Instance name (`serial`, `serial#1`).
    name: String,
    /// The plugin implements the ABI 1.1 methods (timers, interrupt controller).
    v1_1: bool,
}

impl PluginDevice {
    /// Wraps a created device of ABI `abi`.
    pub fn new(dev: DeviceBox, name: String, abi: AbiVersion) -> Self {
        Self {
            dev,
            name,
            v1_1: abi.major > 1 || abi.minor >= 1,
        }
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Capability bits (none for ABI 1.0 plugins).
    pub fn capabilities(&self) -> u32 {
        if self.v1_1 {
            self.dev.capabilities()
        } else {
            0
        }
    }

    /// Delivers a timer.
    pub fn timer_fired(&mut self, id: u32) -> std::result::Result<(), String> {
        if !self.v1_1 {
            return Ok(());
        }
        plugin_result(self.dev.timer_fired(id)).map_err(|e| format!("device {}: {e}", self.name))
    }

    /// Interrupt controllers: an input line changed.
    pub fn irq_input(&mut self, line: u32, level: bool) -> std::result::Result<(), String> {
        if !self.v1_1 {
            return Ok(());
        }
        plugin_result(self.dev.irq_input(line, level))
            .map_err(|e| format!("device {}: {e}", self.name))
    }

    /// Interrupt controllers: the acknowledge cycle.
    pub fn interrupt_ack(&mut self) -> std::result::Result<Option<u8>, String> {
        if !self.v1_1 {
            return Ok(None);
        }
        plugin_result(self.dev.interrupt_ack())
            .map(Option::from)
            .map_err(|e| format!("device {}: {e}", self.name))
    }
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

/// See the module documentation.
pub struct Platform {
    pub(crate) apic: Arc<ApicBus>,
    pub(crate) timers: Arc<Timers>,
    pub(crate) devices: Vec<Arc<Mutex<PluginDevice>>>,
    pub(crate) bus: Bus,
    pub(crate) intr: Arc<Interrupts>,
    pub(crate) stop: StopHandle,
    pub(crate) clock: Arc<VirtualClock>,
    pub(crate) ram: GuestRam,
    /// The A20 gate (i8042, port 0x92).
    pub(crate) a20: Arc<A20Line>,
}

impl Platform {
    /// Allocates RAM and creates the host-internal and plugin devices.
    pub fn new(inventory: &Inventory, cfg: &MachineConfig) -> Result<Self> {
        let ram = GuestRam::new(cfg.memory)?;
        let waker = Arc::new(VcpuWaker::default());
        let stop = StopHandle::new(Arc::clone(&waker));
        let intr = Arc::new(Interrupts::new(Arc::clone(&waker)));
        let clock = Arc::new(if cfg.deterministic {
            VirtualClock::counted()
        } else {
            VirtualClock::default()
        });
        let stop_for_timers = stop.clone();
        let on_failure: FailureHook = Arc::new(move |msg: String| {
            tracing::error!(target: "devices", "{msg}");
            stop_for_timers.request_exit(EXIT_HOST_ERROR, msg);
        });
        let timers = Arc::new(Timers::new(Arc::clone(&clock), on_failure));
        if cfg.cpus == 0 || cfg.cpus > MAX_CPUS {
            return Err(Error::Config(format!(
                "{} vCPUs: the count must be 1 to {MAX_CPUS}",
                cfg.cpus
            )));
        }
        let apic = ApicBus::new(cfg.cpus, Arc::clone(&clock), Arc::clone(&timers), &waker)
            .map_err(Error::Config)?;
        intr.set_apic(&apic);
        let mut bus = Bus::new();
        let pm: SharedDevice = Arc::new(Mutex::new(Pm1aControl::new(stop.clone())));
        bus.add(
            "acpi-pm1a",
            &[IoRange::pio(PM1A_CNT_PORT, PM1A_CNT_LEN)],
            pm,
        )?;
        let ev: SharedDevice = Arc::new(Mutex::new(Pm1aEvent::default()));
        bus.add(
            "acpi-pm1a-evt",
            &[IoRange::pio(PM1A_EVT_PORT, PM1A_EVT_LEN)],
            ev,
        )?;
        let a20 = Arc::new(A20Line::default());
        let port_a: SharedDevice = Arc::new(Mutex::new(PortA::new(Arc::clone(&a20), stop.clone())));
        bus.add("port-a", &[IoRange::pio(A20_PORT_A, 1)], port_a)?;
        let io: SharedDevice = Arc::new(Mutex::new(IoApicMmio(Arc::clone(&apic))));
        bus.add("ioapic", &[IoRange::mmio(IOAPIC_BASE, IOAPIC_SIZE)], io)?;
        let mut p = Platform {
            apic,
            timers,
            devices: Vec::new(),
            bus,
            intr,
            stop,
            clock,
            ram,
            a20,
        };
        for spec in &cfg.devices {
            p.add_device(inventory, spec)?;
        }
        Ok(p)
    }

    /// Static facts devices may ask for.
    pub fn machine_info(&self) -> MachineInfo {
        MachineInfo {
            ram_bytes: self.ram.ram_size(),
            low_ram_bytes: self.ram.low_ram_end(),
            cpus: self.apic.cpus() as u32,
        }
    }

    /// Number of vCPUs.
    pub fn cpus(&self) -> u32 {
        self.apic.cpus() as u32
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
        let target: Arc<DeviceSlot> = Arc::new(OnceLock::new());
        let timer_index = self.timers.register(target.clone());
        let services = DeviceServices {
            name: name.as_str().into(),
            intr: Arc::clone(&self.intr),
            stop: self.stop.clone(),
            clock: Arc::clone(&self.clock),
            timers: Arc::clone(&self.timers),
            timer_index,
            memory: self.ram.shared(),
            tracker: self.ram.slot_info().tracker(),
            a20: Arc::clone(&self.a20),
            info: self.machine_info(),
        }
        .into_ffi();
        let dev = (loaded.module.create())(spec.config.clone(), services)
            .into_result()
            .map_err(|e| Error::Device {
                device: name.clone(),
                message: e.message.to_string(),
            })?;
        let ranges: Vec<IoRange> = dev.io_ranges().into_iter().collect();
        let dev = Arc::new(Mutex::new(PluginDevice::new(dev, name.clone(), loaded.abi)));
        let shared: SharedDevice = dev.clone();
        self.bus.add(&name, &ranges, shared)?;
        let caps = match dev.lock() {
            Ok(d) => d.capabilities(),
            Err(e) => e.into_inner().capabilities(),
        };
        if caps & CAP_INTERRUPT_CONTROLLER != 0 && !self.intr.set_controller(Arc::clone(&dev)) {
            return Err(Error::Device {
                device: name,
                message: "a second interrupt controller; only one is supported".into(),
            });
        }
        let _ = target.set(Arc::clone(&dev));
        self.devices.push(dev);
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

    /// Leaves the machine as a PC BIOS would (see [`crate::firmware`]).
    pub fn apply_firmware_state(&self) -> Result<()> {
        let names = self.bus.device_names();
        let serial_ports = names.iter().filter(|n| n.starts_with("serial")).count() as u16;
        crate::firmware::apply(
            self.ram.memory(),
            &self.bus,
            &crate::firmware::FirmwareConfig {
                cpus: self.cpus(),
                serial_ports,
                pm_timer_32bit: false,
            },
        )?;
        self.apic.virtual_wire();
        Ok(())
    }
}
