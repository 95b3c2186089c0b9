//! A recording fake of the host services, for unit tests.

use hyperplug_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use hyperplug_plugin_api::abi_stable::std_types::{RArc, RStr};
use hyperplug_plugin_api::backend::LogLevel;
use hyperplug_plugin_api::device::{FfiHostServices, FfiHostServices_TO, HostServices};
use std::sync::{Arc, Mutex};

/// Everything the device asked of the host.
#[derive(Debug, Default)]
pub struct Record {
    /// `(line, level)` for every `set_irq`.
    pub irqs: Vec<(u32, bool)>,
    /// Log messages.
    pub logs: Vec<String>,
    /// `(status, reason)` for every `request_exit`.
    pub exits: Vec<(i32, String)>,
}

/// The fake host; clones share one record.
#[derive(Clone, Default)]
pub struct FakeHost(pub Arc<Mutex<Record>>);

impl FakeHost {
    /// A fresh fake plus the ABI object wrapping it.
    pub fn new() -> (Self, HostServices) {
        let fake = Self::default();
        let services = FfiHostServices_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque);
        (fake, services)
    }

    /// Number of rising edges seen on `line`.
    pub fn pulses(&self, line: u32) -> usize {
        let r = self.0.lock().unwrap();
        r.irqs
            .windows(2)
            .filter(|w| w[0] == (line, true) && w[1] == (line, false))
            .count()
    }

    /// Every `set_irq` call so far.
    pub fn irqs(&self) -> Vec<(u32, bool)> {
        self.0.lock().unwrap().irqs.clone()
    }
}

impl FfiHostServices for FakeHost {
    fn set_irq(&self, line: u32, level: bool) {
        self.0.lock().unwrap().irqs.push((line, level));
    }
    fn log(&self, _level: LogLevel, message: RStr<'_>) {
        self.0.lock().unwrap().logs.push(message.to_string());
    }
    fn request_exit(&self, status: i32, reason: RStr<'_>) {
        self.0
            .lock()
            .unwrap()
            .exits
            .push((status, reason.to_string()));
    }
    fn now_ns(&self) -> u64 {
        0
    }
    fn set_timer(&self, _timer: u32, _deadline_ns: u64) {}
    fn read_guest(
        &self,
        _gpa: u64,
        _buf: hyperplug_plugin_api::abi_stable::std_types::RSliceMut<'_, u8>,
    ) -> hyperplug_plugin_api::PluginResult<()> {
        hyperplug_plugin_api::abi_stable::std_types::RResult::RErr(
            hyperplug_plugin_api::PluginError::unsupported("no DMA in this test"),
        )
    }
    fn write_guest(
        &self,
        _gpa: u64,
        _data: hyperplug_plugin_api::abi_stable::std_types::RSlice<'_, u8>,
    ) -> hyperplug_plugin_api::PluginResult<()> {
        hyperplug_plugin_api::abi_stable::std_types::RResult::RErr(
            hyperplug_plugin_api::PluginError::unsupported("no DMA in this test"),
        )
    }
    fn set_cpu_intr(&self, _level: bool) {}
    fn request_reset(&self, _reason: RStr<'_>) {}
    fn machine_info(&self) -> hyperplug_plugin_api::device::MachineInfo {
        hyperplug_plugin_api::device::MachineInfo::default()
    }
}
