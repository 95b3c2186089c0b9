//! Hyperplug backend: AMD-V (Secure Virtual Machine) modelled in software.
//!
//! This crate plays both kvm-amd.ko and the AMD-V silicon: it owns a VMCB
//! per vCPU (a 4-KiB page image laid out as APM vol. 2, appendix B), turns
//! its intercepts into the host engine's intercept policy, runs the guest on
//! the host's emulator and MMU (reached through the plugin ABI only), encodes
//! every stop as a #VMEXIT with the APM's exit codes and EXITINFO, and
//! handles the exits the way kvm-amd does.

pub mod checks;
pub mod cpuid;
pub mod detect;
pub mod exitcode;
pub mod exitinfo;
pub mod handlers;
pub mod intercept;
pub mod kick;
pub mod permmap;
pub mod run;
pub mod setup;
pub mod vcpu;
mod vcpu_api;
pub mod vm;
pub mod vmcb;
pub mod vmexit;

use hyperplug_plugin_api::backend::{Backend, BackendHost, Detection, VmConfig};
use hyperplug_plugin_api::PluginError;

pub use vcpu::SvmVcpu;
pub use vm::SvmVm;

/// The svm backend.
pub struct SvmBackend;

impl Backend for SvmBackend {
    type Vm = SvmVm;
    const NAME: &'static str = "svm";
    const VENDOR: &'static str = "AuthenticAMD";
    const DESCRIPTION: &'static str =
        "AMD-V (SVM) modelled in software: VMCB, intercepts, #VMEXIT, shadow paging or NPT";

    fn detect() -> Detection {
        detect::detect()
    }

    fn create_vm(host: BackendHost, config: &VmConfig) -> Result<SvmVm, PluginError> {
        Ok(SvmVm::new(host, config))
    }
}

hyperplug_plugin_api::export_backend!(SvmBackend);
