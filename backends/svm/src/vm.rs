//! An svm VM: memory slots (kept for the record; guest memory is the
//! host's, reached through the engine) and vCPU creation.

use crate::vcpu::SvmVcpu;
use hyperplug_plugin_api::backend::{BackendHost, MemorySlot, Vm, VmConfig};
use hyperplug_plugin_api::PluginError;
use std::sync::Mutex;

/// One VM.
pub struct SvmVm {
    host: BackendHost,
    config: VmConfig,
    slots: Mutex<Vec<MemorySlot>>,
}

impl SvmVm {
    /// A VM with no slots yet.
    pub fn new(host: BackendHost, config: &VmConfig) -> Self {
        Self {
            host,
            config: config.clone(),
            slots: Mutex::new(Vec::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<MemorySlot>> {
        match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl Vm for SvmVm {
    type Vcpu = SvmVcpu;

    fn add_memory_slot(&self, slot: MemorySlot) -> Result<(), PluginError> {
        let mut s = self.slots();
        if let Some(o) = s.iter().find(|o| o.id == slot.id || o.overlaps(&slot)) {
            return Err(PluginError::invalid(format!(
                "memory slot {} overlaps or reuses slot {}",
                slot.id, o.id
            )));
        }
        s.push(slot);
        Ok(())
    }

    fn remove_memory_slot(&self, id: u32) -> Result<(), PluginError> {
        let mut s = self.slots();
        let n = s.len();
        s.retain(|o| o.id != id);
        if s.len() == n {
            return Err(PluginError::invalid(format!("no memory slot {id}")));
        }
        Ok(())
    }

    fn create_vcpu(&self, id: u32) -> Result<SvmVcpu, PluginError> {
        let engine = self.host.create_engine(id).into_result()?;
        SvmVcpu::new(id, &self.config, self.host.clone(), engine)
    }
}
