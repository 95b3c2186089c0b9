//! Host services handed to plugins across the ABI: IRQ lines, the virtual
//! clock and timers, DMA, logging and VM stop requests for devices; logging
//! for backends.

use crate::clock::{Timers, VirtualClock};
use crate::intr::Interrupts;
use crate::memory::GuestMemory;
use crate::stop::StopHandle;
use hyperplug_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use hyperplug_plugin_api::abi_stable::std_types::{RArc, RResult, RSlice, RSliceMut, RStr};
use hyperplug_plugin_api::backend::{BackendHost, FfiBackendHost, FfiBackendHost_TO, LogLevel};
use hyperplug_plugin_api::device::{
    FfiHostServices, FfiHostServices_TO, HostServices, MachineInfo,
};
use hyperplug_plugin_api::engine::{EngineBox, FfiEngine_TO};
use hyperplug_plugin_api::{PluginError, PluginResult};
use std::sync::{Arc, RwLock};
use vm_memory::{Bytes, GuestAddress};

fn log(target_name: &str, level: LogLevel, message: RStr<'_>) {
    let m = message.as_str();
    match level {
        LogLevel::Error => tracing::error!(target: "plugin", "{target_name}: {m}"),
        LogLevel::Warn => tracing::warn!(target: "plugin", "{target_name}: {m}"),
        LogLevel::Info => tracing::info!(target: "plugin", "{target_name}: {m}"),
        LogLevel::Debug => tracing::debug!(target: "plugin", "{target_name}: {m}"),
        LogLevel::Trace => tracing::trace!(target: "plugin", "{target_name}: {m}"),
    }
}

/// What a device may ask of the host.
#[derive(Clone)]
pub struct DeviceServices {
    pub(crate) name: Arc<str>,
    pub(crate) intr: Arc<Interrupts>,
    pub(crate) stop: StopHandle,
    pub(crate) clock: Arc<VirtualClock>,
    pub(crate) timers: Arc<Timers>,
    pub(crate) timer_index: usize,
    pub(crate) memory: Arc<RwLock<GuestMemory>>,
    /// The VM's write tracker: DMA writes reach the engines' caches.
    pub(crate) tracker: Arc<hyperplug_mmu::track::WriteTracker>,
    /// The platform's A20 gate.
    pub(crate) a20: Arc<crate::a20::A20Line>,
    pub(crate) info: MachineInfo,
}

impl DeviceServices {
    /// The ABI object.
    pub fn into_ffi(self) -> HostServices {
        FfiHostServices_TO::from_ptr(RArc::new(self), TD_Opaque)
    }

    fn memory(&self) -> std::sync::RwLockReadGuard<'_, GuestMemory> {
        match self.memory.read() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }
}

impl FfiHostServices for DeviceServices {
    fn set_irq(&self, line: u32, level: bool) {
        if let Err(e) = self.intr.set_line(line, level) {
            tracing::warn!(target: "irq", "{}: {e}", self.name);
        }
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        log(&self.name, level, message);
    }
    fn request_exit(&self, status: i32, reason: RStr<'_>) {
        self.stop
            .request_exit(status, format!("{}: {}", self.name, reason.as_str()));
    }
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }
    fn set_timer(&self, timer: u32, deadline_ns: u64) {
        self.timers.set(self.timer_index, timer, deadline_ns);
    }
    fn read_guest(&self, gpa: u64, mut buf: RSliceMut<'_, u8>) -> PluginResult<()> {
        let r = self
            .memory()
            .read_slice(buf.as_mut_slice(), GuestAddress(gpa))
            .map_err(|e| PluginError::invalid(format!("DMA read at {gpa:#x}: {e}")));
        RResult::from(r)
    }
    fn write_guest(&self, gpa: u64, data: RSlice<'_, u8>) -> PluginResult<()> {
        let r = self
            .memory()
            .write_slice(data.as_slice(), GuestAddress(gpa))
            .map_err(|e| PluginError::invalid(format!("DMA write at {gpa:#x}: {e}")));
        if r.is_ok() {
            // After the write is visible, as the tracker's protocol asks.
            self.tracker.on_guest_write(gpa, data.len() as u64);
        }
        RResult::from(r)
    }
    fn set_cpu_intr(&self, level: bool) {
        self.intr.set_cpu_intr(level);
    }
    fn request_reset(&self, reason: RStr<'_>) {
        self.stop
            .request_reset(format!("{}: {}", self.name, reason.as_str()));
    }
    fn machine_info(&self) -> MachineInfo {
        self.info
    }
    fn set_a20(&self, enabled: bool) {
        self.a20.set(crate::a20::A20Source::Kbc, enabled);
    }
}

/// What a backend may ask of the host.
#[derive(Clone)]
pub struct BackendServices {
    name: Arc<str>,
    memory: Arc<RwLock<GuestMemory>>,
    slots: Arc<crate::memory::SlotInfo>,
    /// The instruction-driven clock's counter, when there is one.
    retired: Option<Arc<std::sync::atomic::AtomicU64>>,
    tracker: Arc<hyperplug_mmu::track::WriteTracker>,
}

/// Prefix of a backend log message that is an exit trace line.
pub use hyperplug_plugin_api::backend::EXIT_TRACE_PREFIX;

impl BackendServices {
    /// Services for backend `name` over the VM's guest `memory`, as an ABI object.
    pub fn new_ffi(
        name: &str,
        memory: Arc<RwLock<GuestMemory>>,
        slots: Arc<crate::memory::SlotInfo>,
        retired: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> BackendHost {
        let tracker = slots.tracker();
        let s = Self {
            name: name.into(),
            memory,
            slots,
            retired,
            tracker,
        };
        FfiBackendHost_TO::from_ptr(RArc::new(s), TD_Opaque)
    }
}

impl FfiBackendHost for BackendServices {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        // Exits a backend handles without returning to the host (see
        // `VmConfig::TRACE_EXITS`) join the host's own exit trace.
        if let Some(exit) = message.as_str().strip_prefix(EXIT_TRACE_PREFIX) {
            tracing::info!(target: "exits", "{exit}");
            return;
        }
        log(&self.name, level, message);
    }
    fn create_engine(&self, _vcpu: u32) -> PluginResult<EngineBox> {
        let e = crate::engine_service::HostEngine::new(
            Arc::clone(&self.memory),
            Arc::clone(&self.tracker),
        )
        .with_slots(Arc::clone(&self.slots))
        .with_retired_counter(self.retired.clone());
        RResult::ROk(FfiEngine_TO::from_value(e, TD_Opaque))
    }
}
