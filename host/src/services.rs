//! Host services handed to plugins across the ABI: IRQ lines, logging and
//! VM stop requests for devices; logging for backends.

use crate::run::StopHandle;
use hyperplug_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use hyperplug_plugin_api::abi_stable::std_types::{RArc, RStr};
use hyperplug_plugin_api::backend::{BackendHost, FfiBackendHost, FfiBackendHost_TO, LogLevel};
use hyperplug_plugin_api::device::{FfiHostServices, FfiHostServices_TO, HostServices};
use std::sync::{Arc, Condvar, Mutex};

/// Interrupt-line levels as devices drive them. Routing to an interrupt
/// controller (PIC/IOAPIC) comes with the platform-devices work; for now the
/// lines are recorded and a rising edge wakes a halted vCPU.
#[derive(Default)]
pub struct IrqLines {
    state: Mutex<IrqState>,
    changed: Condvar,
}

#[derive(Default)]
struct IrqState {
    levels: u64,
    edges: u64,
}

impl IrqLines {
    /// Sets line `line` (0..63) to `level`.
    pub fn set(&self, line: u32, level: bool) {
        if line >= 64 {
            tracing::warn!(target: "irq", "IRQ line {line} does not exist; ignored");
            return;
        }
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        let bit = 1u64 << line;
        if level && s.levels & bit == 0 {
            s.edges = s.edges.wrapping_add(1);
            tracing::trace!(target: "irq", "IRQ {line} raised");
            self.changed.notify_all();
        }
        if level {
            s.levels |= bit;
        } else {
            s.levels &= !bit;
        }
    }

    /// Current level of `line`.
    pub fn level(&self, line: u32) -> bool {
        let s = match self.state.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        line < 64 && s.levels & (1 << line) != 0
    }

    /// Number of rising edges seen so far.
    pub fn edges(&self) -> u64 {
        match self.state.lock() {
            Ok(s) => s.edges,
            Err(e) => e.into_inner().edges,
        }
    }

    /// Blocks until a rising edge after `seen` edges, or `timeout`; returns the new count.
    pub fn wait_edge(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let s = match self.state.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        let r = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.edges == seen);
        match r {
            Ok((s, _)) => s.edges,
            Err(e) => e.into_inner().0.edges,
        }
    }

    /// Wakes every waiter (used when the VM is being stopped).
    pub fn wake_all(&self) {
        self.changed.notify_all();
    }
}

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
    name: Arc<str>,
    irqs: Arc<IrqLines>,
    stop: StopHandle,
}

impl DeviceServices {
    /// Services for device instance `name`.
    pub fn new(name: &str, irqs: Arc<IrqLines>, stop: StopHandle) -> Self {
        Self {
            name: name.into(),
            irqs,
            stop,
        }
    }

    /// The ABI object.
    pub fn into_ffi(self) -> HostServices {
        FfiHostServices_TO::from_ptr(RArc::new(self), TD_Opaque)
    }
}

impl FfiHostServices for DeviceServices {
    fn set_irq(&self, line: u32, level: bool) {
        self.irqs.set(line, level);
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        log(&self.name, level, message);
    }
    fn request_exit(&self, status: i32, reason: RStr<'_>) {
        self.stop
            .request_exit(status, format!("{}: {}", self.name, reason.as_str()));
    }
}

/// What a backend may ask of the host.
#[derive(Clone)]
pub struct BackendServices {
    name: Arc<str>,
}

impl BackendServices {
    /// Services for backend `name`, as an ABI object.
    pub fn new_ffi(name: &str) -> BackendHost {
        FfiBackendHost_TO::from_ptr(RArc::new(Self { name: name.into() }), TD_Opaque)
    }
}

impl FfiBackendHost for BackendServices {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        log(&self.name, level, message);
    }
}
