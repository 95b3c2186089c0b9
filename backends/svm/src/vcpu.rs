//! One svm vCPU: its VMCB, permission maps, engine, and the architectural
//! state between runs, as kvm-amd keeps `struct vcpu_svm`.

use crate::kick::KickFlag;
use crate::permmap::{Iopm, Msrpm};
use crate::vmcb::Vmcb;
use hyperplug_plugin_api::backend::{BackendHost, VmConfig};
use hyperplug_plugin_api::engine::{EngineBox, EnginePaging, EnginePolicy};
use hyperplug_plugin_api::state::CpuState;
use hyperplug_plugin_api::PluginError;

/// EFER.SVME (APM vol. 2, 3.1.7): VMRUN requires it in the guest's EFER;
/// the backend keeps it set in the VMCB and hides it from the guest.
pub const EFER_SVME: u64 = 1 << 12;

/// One vCPU.
pub struct SvmVcpu {
    /// vCPU number (APIC ID).
    pub(crate) id: u32,
    /// `VmConfig::*` flags of the VM.
    pub(crate) flags: u32,
    /// The VMCB page.
    pub(crate) vmcb: Vmcb,
    /// The I/O permission map.
    pub(crate) iopm: Iopm,
    /// The MSR permission map.
    pub(crate) msrpm: Msrpm,
    /// The host engine running this vCPU.
    pub(crate) engine: EngineBox,
    /// Host services (logging).
    pub(crate) host: BackendHost,
    /// The architectural state as of the last #VMEXIT plus changes since.
    pub(crate) state: CpuState,
    /// `state.regs` changed since the engine last saw it.
    pub(crate) regs_dirty: bool,
    /// Anything else in `state` changed since the engine last saw it.
    pub(crate) full_dirty: bool,
    /// The intercept policy of the current VMCB (`None` = rebuild).
    pub(crate) policy: Option<EnginePolicy>,
    /// The policy for emulating one intercepted instruction: exceptions only.
    pub(crate) lifted: Option<EnginePolicy>,
    /// Last policy generation handed out.
    pub(crate) generation: u64,
    /// An intercepted instruction is being emulated (or an I/O or MMIO
    /// access of one completes): run it alone with intercepts lifted.
    pub(crate) lift: bool,
    /// A forwarded RDMSR/WRMSR waiting for `complete_msr`: (MSR, write).
    pub(crate) pending_msr: Option<(u32, bool)>,
    /// Kick requests.
    pub(crate) kick: KickFlag,
    /// The last exit was a port or MMIO write the host performs without
    /// calling `complete_io` (as with KVM): complete it at the next run.
    pub(crate) write_pending: bool,
    /// The address of the last resolved #PF/NPF and how many times in a row
    /// it was resolved: a fault that keeps coming back after "fixed" is a
    /// host bug, reported instead of looping forever.
    pub(crate) repeat_fault: (u64, u32),
}

impl SvmVcpu {
    /// A vCPU with kvm-amd's intercepts, its engine set to the paging mode
    /// the VM asked for.
    pub fn new(
        id: u32,
        config: &VmConfig,
        host: BackendHost,
        mut engine: EngineBox,
    ) -> Result<Self, PluginError> {
        let nested = config.flags & VmConfig::NESTED_PAGING != 0;
        let paging = if nested {
            EnginePaging::NestedNpt
        } else {
            EnginePaging::Shadow
        };
        engine.set_paging(paging).into_result()?;
        let mut vmcb = Vmcb::new();
        crate::setup::init_control(&mut vmcb, id, nested);
        let state = engine.get_state();
        let mut v = Self {
            id,
            flags: config.flags,
            vmcb,
            iopm: crate::setup::iopm(),
            msrpm: crate::setup::msrpm(),
            engine,
            host,
            state,
            regs_dirty: false,
            full_dirty: true,
            policy: None,
            lifted: None,
            generation: 0,
            lift: false,
            pending_msr: None,
            kick: KickFlag::default(),
            write_pending: false,
            repeat_fault: (u64::MAX, 0),
        };
        v.store_state();
        Ok(v)
    }

    /// Nested paging is on.
    pub(crate) fn nested(&self) -> bool {
        self.flags & VmConfig::NESTED_PAGING != 0
    }

    /// Writes `state` into the VMCB's state-save area (EFER.SVME set, as
    /// VMRUN requires).
    pub(crate) fn store_state(&mut self) {
        self.vmcb.save_state(&self.state);
        let efer = self.vmcb.get(crate::vmcb::field::EFER);
        self.vmcb.set(crate::vmcb::field::EFER, efer | EFER_SVME);
    }

    /// Takes the engine's state after a stop into `state` and the VMCB.
    pub(crate) fn pull_state(&mut self) {
        self.state = self.engine.get_state();
        self.store_state();
    }

    /// Hands changed state to the engine.
    pub(crate) fn push_state(&mut self) -> Result<(), PluginError> {
        if self.full_dirty {
            self.engine.set_state(self.state.clone()).into_result()?;
        } else if self.regs_dirty {
            self.engine.set_regs(self.state.regs).into_result()?;
        }
        self.full_dirty = false;
        self.regs_dirty = false;
        Ok(())
    }

    /// Marks the intercepts changed.
    pub(crate) fn intercepts_changed(&mut self) {
        self.policy = None;
    }

    /// The current policy (rebuilt from the VMCB when intercepts changed).
    pub(crate) fn ensure_policy(&mut self) {
        if self.policy.is_none() {
            self.generation += 2;
            let p = crate::intercept::policy(&self.vmcb, &self.iopm, &self.msrpm, self.generation);
            self.lifted = Some(EnginePolicy {
                exceptions: p.exceptions,
                generation: self.generation + 1,
                ..EnginePolicy::default()
            });
            self.policy = Some(p);
        }
    }

    /// Logs one exit trace line when the host traces exits.
    pub(crate) fn trace(&self, line: &str) {
        if self.flags & VmConfig::TRACE_EXITS != 0 {
            let msg = format!(
                "{}vcpu{} {line}",
                hyperplug_plugin_api::backend::EXIT_TRACE_PREFIX,
                self.id
            );
            self.host.log(
                hyperplug_plugin_api::backend::LogLevel::Info,
                msg.as_str().into(),
            );
        }
    }
}
