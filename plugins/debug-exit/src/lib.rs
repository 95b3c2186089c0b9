//! Hyperplug device plugin: QEMU `isa-debug-exit` compatible exit port.
//!
//! A guest write of value `V` to any claimed port ends the VM with status
//! `(V << 1) | 1` (computed with wrapping arithmetic, passed as `i32`; the
//! host truncates it to a process exit code). Test kernels such as
//! kvm-unit-tests report pass/fail this way.
//!
//! Choices, documented:
//! - An access that *starts* inside the range uses its whole value, whatever
//!   its width (`outb`, `outw`, `outl`), as QEMU passes the full access value.
//! - Reads return 0, as QEMU's isa-debug-exit does (it has no read handler),
//!   so guests probing the port see the same value under both.
//! - The device has no state: save writes version 1 with no bytes.

pub mod options;

#[cfg(test)]
mod tests;

use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, HostServices, IoRange};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use options::DebugExitOptions;

/// Version of the (empty) saved state.
pub const STATE_VERSION: u32 = 1;

/// The exit status a guest write of `value` requests: `(value << 1) | 1`.
pub fn exit_status(value: u64) -> i32 {
    // Truncation to i32 is intended: QEMU passes the same value to exit().
    ((value << 1) | 1) as i32
}

/// The isa-debug-exit device.
pub struct DebugExit {
    options: DebugExitOptions,
    host: HostServices,
}

impl DebugExit {
    fn in_range(&self, space: AddressSpace, addr: u64) -> bool {
        IoRange::pio(self.options.iobase, self.options.iosize).contains(space, addr)
    }
}

impl Device for DebugExit {
    const NAME: &'static str = "debug-exit";
    const DESCRIPTION: &'static str =
        "QEMU isa-debug-exit: a guest write of V ends the VM with status (V << 1) | 1";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        Ok(Self {
            options: DebugExitOptions::parse(config)?,
            host,
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![IoRange::pio(self.options.iobase, self.options.iosize)]
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        let fill = if self.in_range(space, addr) { 0 } else { 0xff };
        data.fill(fill);
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        if data.is_empty() || !self.in_range(space, addr) {
            return;
        }
        let mut le = [0u8; 8];
        let n = data.len().min(8);
        le[..n].copy_from_slice(&data[..n]);
        let value = u64::from_le_bytes(le);
        let reason = format!("debug-exit: guest wrote {value:#x}");
        self.host
            .request_exit(exit_status(value), reason.as_str().into());
    }

    fn reset(&mut self) {}

    fn save(&self) -> Result<DeviceState, PluginError> {
        Ok(DeviceState {
            version: STATE_VERSION,
            data: Default::default(),
        })
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError> {
        if state.version != STATE_VERSION {
            return Err(PluginError::invalid(format!(
                "debug-exit state version {} is not supported (this plugin reads version {STATE_VERSION})",
                state.version
            )));
        }
        if !state.data.is_empty() {
            return Err(PluginError::invalid(format!(
                "debug-exit state must be empty, got {} bytes",
                state.data.len()
            )));
        }
        Ok(())
    }
}

hyperplug_plugin_api::export_device!(DebugExit);
