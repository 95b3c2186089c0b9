//! Kicking a vCPU out of guest mode: a flag the run loop checks between
//! engine slices (a physical interrupt that the VMCB's INTR intercept turns
//! into VMEXIT_INTR, APM vol. 2, 15.21.1).

use hyperplug_plugin_api::backend::Kick;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The shared kick flag of one vCPU.
#[derive(Debug, Clone, Default)]
pub struct KickFlag(Arc<AtomicBool>);

impl KickFlag {
    /// Takes a pending kick.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    /// Whether a kick is pending.
    pub fn pending(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Kick for KickFlag {
    fn kick(&self) {
        self.0.store(true, Ordering::Release);
    }
}
