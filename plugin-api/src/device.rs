//! The device side of the ABI: the `DeviceModule` root module, the device
//! trait object, and the services the host hands a device.

use crate::backend::LogLevel;
use crate::config::DeviceConfig;
use crate::error::{PluginError, PluginResult};
use crate::guard::Poison;
use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RSlice, RSliceMut, RStr, RVec};
use abi_stable::StableAbi;

/// Which address space an access or range is in.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSpace {
    /// x86 port I/O (`IN`/`OUT`), 64 KiB.
    Pio,
    /// Memory-mapped I/O, guest-physical.
    Mmio,
}

/// A range of ports or guest-physical addresses a device claims.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoRange {
    /// Port or MMIO space.
    pub space: AddressSpace,
    /// First port/address.
    pub base: u64,
    /// Number of ports/bytes (at least 1).
    pub len: u64,
}

impl IoRange {
    /// A port-I/O range.
    pub fn pio(base: u16, len: u16) -> Self {
        Self {
            space: AddressSpace::Pio,
            base: base as u64,
            len: len as u64,
        }
    }
    /// An MMIO range.
    pub fn mmio(base: u64, len: u64) -> Self {
        Self {
            space: AddressSpace::Mmio,
            base,
            len,
        }
    }
    /// One past the last address (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }
    /// Whether `addr` falls in the range.
    pub fn contains(&self, space: AddressSpace, addr: u64) -> bool {
        self.space == space && addr >= self.base && addr < self.end()
    }
    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &IoRange) -> bool {
        self.space == other.space && self.base < other.end() && other.base < self.end()
    }
}

/// A device's saved state: versioned bytes the device alone interprets.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// Format version of `data`, chosen by the device.
    pub version: u32,
    /// Serialized state.
    pub data: RVec<u8>,
}

/// Services the host hands a device. Thread-safe: a device may call them from
/// its own threads (the serial console's stdin reader does).
#[sabi_trait]
pub trait FfiHostServices: Send + Sync + Clone {
    /// Sets the level of interrupt line `line` (edge devices pulse it).
    fn set_irq(&self, line: u32, level: bool);
    /// Logs a message under the device's name.
    fn log(&self, level: LogLevel, message: RStr<'_>);
    /// Ends the VM: the host stops all vCPUs and exits with `status`.
    #[sabi(last_prefix_field)]
    fn request_exit(&self, status: i32, reason: RStr<'_>);
    /// Nanoseconds on the VM's virtual clock (monotonic; 0 when the VM was created).
    fn now_ns(&self) -> u64;
    /// Arms the device's one-shot timer `timer` (an id the device chooses) to
    /// fire at `deadline_ns` on the virtual clock, replacing any earlier
    /// deadline of that id; [`TIMER_OFF`] disarms it. When it fires the host
    /// calls [`FfiDevice::timer_fired`] with the id.
    fn set_timer(&self, timer: u32, deadline_ns: u64);
    /// Reads guest-physical memory (DMA); fails on addresses no slot backs.
    fn read_guest(&self, gpa: u64, buf: RSliceMut<'_, u8>) -> PluginResult<()>;
    /// Writes guest-physical memory (DMA); fails on addresses no slot backs.
    fn write_guest(&self, gpa: u64, data: RSlice<'_, u8>) -> PluginResult<()>;
    /// Interrupt controllers only: the level of the INTR output to the CPU.
    fn set_cpu_intr(&self, level: bool);
    /// Resets the machine (e.g. the i8042 pulse-reset command): the host ends
    /// the VM with "guest reset".
    fn request_reset(&self, reason: RStr<'_>);
    /// Static facts about the machine (RAM size, CPU count).
    fn machine_info(&self) -> MachineInfo;
    /// Drives the PC's A20 gate (the i8042 output port bit 1, port 0x92
    /// bit 1): `false` asserts A20M#, so physical-address bit 20 reads as 0
    /// on every vCPU (SDM vol. 3, 8.7.13.4).
    fn set_a20(&self, enabled: bool);
}

/// The deadline that disarms a timer in [`FfiHostServices::set_timer`].
pub const TIMER_OFF: u64 = u64::MAX;

/// Static facts about the machine a device may need (fw_cfg, CMOS).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// Guest RAM in bytes (all slots of ordinary RAM, below and above 4 GiB).
    pub ram_bytes: u64,
    /// RAM below 4 GiB in bytes.
    pub low_ram_bytes: u64,
    /// Number of vCPUs.
    pub cpus: u32,
}

/// Device capability: an interrupt controller. The host routes every device
/// IRQ line to it ([`FfiDevice::irq_input`]) and asks it for the vector when
/// the CPU takes the interrupt ([`FfiDevice::interrupt_ack`]).
pub const CAP_INTERRUPT_CONTROLLER: u32 = 1 << 0;

/// The host services object a device receives.
pub type HostServices = FfiHostServices_TO<'static, RArc<()>>;

/// A device as the host sees it across the ABI.
#[sabi_trait]
pub trait FfiDevice: Send {
    /// The port/MMIO ranges this instance claims (fixed after creation).
    fn io_ranges(&self) -> RVec<IoRange>;
    /// A read of `data.len()` bytes at `addr`.
    fn read(&mut self, space: AddressSpace, addr: u64, data: RSliceMut<'_, u8>)
        -> PluginResult<()>;
    /// A write of `data` at `addr`.
    fn write(&mut self, space: AddressSpace, addr: u64, data: RSlice<'_, u8>) -> PluginResult<()>;
    /// Puts the device in its power-on state.
    fn reset(&mut self) -> PluginResult<()>;
    /// Saves the device state.
    fn save(&self) -> PluginResult<DeviceState>;
    /// Restores a state produced by `save` (of a compatible version).
    #[sabi(last_prefix_field)]
    fn restore(&mut self, state: DeviceState) -> PluginResult<()>;
    /// A timer armed with [`FfiHostServices::set_timer`] fired.
    fn timer_fired(&mut self, timer: u32) -> PluginResult<()>;
    /// Capability bits (`CAP_*`).
    fn capabilities(&self) -> u32;
    /// Interrupt controllers: input line `line` now has `level`.
    fn irq_input(&mut self, line: u32, level: bool) -> PluginResult<()>;
    /// Interrupt controllers: the CPU's interrupt-acknowledge cycle; returns
    /// the vector to deliver, or `None` if nothing is pending any more.
    fn interrupt_ack(&mut self) -> PluginResult<ROption<u8>>;
}

/// An owned device.
pub type DeviceBox = FfiDevice_TO<'static, RBox<()>>;

/// The root module every device library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = DeviceModuleRef)))]
#[sabi(missing_field(panic))]
pub struct DeviceModule {
    /// Name used with `--device` (`serial`).
    pub name: extern "C" fn() -> RStr<'static>,
    /// One-line description.
    pub description: extern "C" fn() -> RStr<'static>,
    /// Help for the `key=value` options, one option per line.
    pub options_help: extern "C" fn() -> RStr<'static>,
    /// Creates an instance.
    #[sabi(last_prefix_field)]
    pub create:
        extern "C" fn(config: DeviceConfig, host: HostServices) -> RResult<DeviceBox, PluginError>,
}

impl RootModule for DeviceModuleRef {
    abi_stable::declare_root_module_statics! {DeviceModuleRef}
    const BASE_NAME: &'static str = crate::DEVICE_MODULE_NAME;
    const NAME: &'static str = crate::DEVICE_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = crate::ABI_VERSION;
}

// ---------------------------------------------------------------------------
// The plain-Rust side that device authors implement.

/// A device model, in plain Rust. Exported with [`export_device!`](crate::export_device).
///
/// Reads and writes cannot fail from the guest's point of view (hardware
/// does not refuse a bus cycle): a device ignores what it does not decode.
pub trait Device: Send + 'static {
    /// Name used with `--device`.
    const NAME: &'static str;
    /// One-line description.
    const DESCRIPTION: &'static str;
    /// Help for the `key=value` options.
    const OPTIONS_HELP: &'static str;
    /// Creates an instance from its options.
    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError>
    where
        Self: Sized;
    /// Claimed ranges.
    fn io_ranges(&self) -> Vec<IoRange>;
    /// A read at `addr` (absolute port or guest-physical address).
    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]);
    /// A write at `addr`.
    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]);
    /// Power-on state.
    fn reset(&mut self);
    /// Saves state.
    fn save(&self) -> Result<DeviceState, PluginError>;
    /// Restores state.
    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError>;
    /// Capability bits (`CAP_*`); plain devices have none.
    const CAPABILITIES: u32 = 0;
    /// A timer armed through [`FfiHostServices::set_timer`] fired.
    fn timer_fired(&mut self, _timer: u32) {}
    /// Interrupt controllers: input line `line` now has `level`.
    fn irq_input(&mut self, _line: u32, _level: bool) {}
    /// Interrupt controllers: the CPU acknowledges; the vector, if any.
    fn interrupt_ack(&mut self) -> Option<u8> {
        None
    }
}

/// Wraps a plain-Rust device so that it can cross the ABI; panics become errors.
pub struct DeviceAdapter<D: Device> {
    inner: D,
    poison: Poison,
    ranges: Vec<IoRange>,
}

impl<D: Device> DeviceAdapter<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> Self {
        let ranges = inner.io_ranges();
        Self {
            inner,
            poison: Poison::default(),
            ranges,
        }
    }
}

/// Boxes a plain-Rust device as an ABI object.
pub fn device_into_ffi<D: Device>(dev: D) -> DeviceBox {
    FfiDevice_TO::from_value(DeviceAdapter::new(dev), abi_stable::sabi_trait::TD_Opaque)
}

impl<D: Device> FfiDevice for DeviceAdapter<D> {
    fn io_ranges(&self) -> RVec<IoRange> {
        RVec::from(self.ranges.clone())
    }
    fn read(
        &mut self,
        space: AddressSpace,
        addr: u64,
        mut data: RSliceMut<'_, u8>,
    ) -> PluginResult<()> {
        let d = &mut self.inner;
        let buf = data.as_mut_slice();
        self.poison.call("read", move || {
            d.read(space, addr, buf);
            Ok(())
        })
    }
    fn write(&mut self, space: AddressSpace, addr: u64, data: RSlice<'_, u8>) -> PluginResult<()> {
        let d = &mut self.inner;
        self.poison.call("write", move || {
            d.write(space, addr, data.as_slice());
            Ok(())
        })
    }
    fn reset(&mut self) -> PluginResult<()> {
        let d = &mut self.inner;
        self.poison.call("reset", move || {
            d.reset();
            Ok(())
        })
    }
    fn save(&self) -> PluginResult<DeviceState> {
        if let Some(msg) = self.poison.reason() {
            return PluginResult::RErr(PluginError::new(
                crate::ErrorKind::Panic,
                format!("plugin is unusable after an earlier panic ({msg})"),
            ));
        }
        crate::guard("save", || self.inner.save())
    }
    fn restore(&mut self, state: DeviceState) -> PluginResult<()> {
        let d = &mut self.inner;
        self.poison.call("restore", move || d.restore(&state))
    }
    fn timer_fired(&mut self, timer: u32) -> PluginResult<()> {
        let d = &mut self.inner;
        self.poison.call("timer_fired", move || {
            d.timer_fired(timer);
            Ok(())
        })
    }
    fn capabilities(&self) -> u32 {
        D::CAPABILITIES
    }
    fn irq_input(&mut self, line: u32, level: bool) -> PluginResult<()> {
        let d = &mut self.inner;
        self.poison.call("irq_input", move || {
            d.irq_input(line, level);
            Ok(())
        })
    }
    fn interrupt_ack(&mut self) -> PluginResult<ROption<u8>> {
        let d = &mut self.inner;
        self.poison
            .call("interrupt_ack", move || Ok(d.interrupt_ack().into()))
    }
}

/// Entry points behind [`export_device!`](crate::export_device); not for direct use.
#[doc(hidden)]
pub mod export_support {
    use super::*;

    /// Guarded `create`.
    pub fn create<D: Device>(
        config: DeviceConfig,
        host: HostServices,
    ) -> RResult<DeviceBox, PluginError> {
        crate::guard("create", || D::create(&config, host).map(device_into_ffi))
    }
}

/// Exports a [`Device`] implementation as this library's root module.
///
/// ```ignore
/// hyperplug_plugin_api::export_device!(Uart);
/// ```
#[macro_export]
macro_rules! export_device {
    ($device:ty) => {
        mod __hyperplug_device_export {
            use super::*;
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            use $crate::abi_stable::std_types::{RResult, RStr};
            use $crate::device::{
                export_support, Device, DeviceBox, DeviceModule, DeviceModuleRef, HostServices,
            };
            use $crate::{DeviceConfig, PluginError};

            extern "C" fn name() -> RStr<'static> {
                RStr::from_str(<$device as Device>::NAME)
            }
            extern "C" fn description() -> RStr<'static> {
                RStr::from_str(<$device as Device>::DESCRIPTION)
            }
            extern "C" fn options_help() -> RStr<'static> {
                RStr::from_str(<$device as Device>::OPTIONS_HELP)
            }
            extern "C" fn create(
                config: DeviceConfig,
                host: HostServices,
            ) -> RResult<DeviceBox, PluginError> {
                export_support::create::<$device>(config, host)
            }

            /// The root module of this device library.
            #[$crate::abi_stable::export_root_module]
            pub fn get_library() -> DeviceModuleRef {
                $crate::install_plugin_panic_hook();
                DeviceModule {
                    name,
                    description,
                    options_help,
                    create,
                }
                .leak_into_prefix()
            }
        }
    };
}
