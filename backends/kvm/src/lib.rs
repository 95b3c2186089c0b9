//! Hyperplug backend: hardware virtualization through Linux `/dev/kvm`.
//!
//! The VM uses no in-kernel irqchip: the host owns every interrupt controller
//! and injects external interrupts with `KVM_INTERRUPT` when the interrupt
//! window is open, exactly as with the software backends.

pub mod convert;
pub mod cpuid;
pub mod detect;
pub mod exit;
mod ioctl;
pub mod kick;
pub mod msr;
pub mod vcpu;
pub mod vm;

use hyperplug_plugin_api::abi_stable::std_types::RStr;
use hyperplug_plugin_api::backend::{Backend, BackendHost, Detection, LogLevel, VmConfig};
use hyperplug_plugin_api::PluginError;

pub use vcpu::KvmVcpu;
pub use vm::KvmVm;

/// The kvm backend.
pub struct KvmBackend;

impl Backend for KvmBackend {
    type Vm = KvmVm;
    const NAME: &'static str = "kvm";
    const VENDOR: &'static str = "any";
    const DESCRIPTION: &'static str =
        "hardware virtualization through Linux /dev/kvm (user-space interrupt controllers)";

    fn detect() -> Detection {
        detect::detect()
    }

    fn create_vm(host: BackendHost, config: &VmConfig) -> Result<KvmVm, PluginError> {
        KvmVm::new(Some(host), config)
    }
}

/// Logs through the host services, if there are any.
pub(crate) fn log(host: &Option<BackendHost>, level: LogLevel, message: &str) {
    if let Some(h) = host {
        h.log(level, RStr::from_str(message));
    }
}

/// An `Os` error naming the failed ioctl.
pub(crate) fn os_err(what: &str, e: kvm_ioctls::Error) -> PluginError {
    PluginError::os(format!("{what}: {e}"))
}

hyperplug_plugin_api::export_backend!(KvmBackend);
