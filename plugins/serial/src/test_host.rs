//! The shared recording host (plugin-api's `RecordingHost`) with the
//! IRQ-pulse view these tests read.

use hyperplug_plugin_api::device::HostServices;
use hyperplug_plugin_api::testing::RecordingHost;

/// The recording host; clones share one record.
#[derive(Clone)]
pub struct FakeHost(pub RecordingHost);

impl FakeHost {
    /// A fresh host plus the ABI object wrapping it.
    pub fn new() -> (Self, HostServices) {
        let host = RecordingHost::new();
        let services = host.services();
        (Self(host), services)
    }

    /// Number of pulses (a raise immediately followed by a lower) on `line`.
    pub fn pulses(&self, line: u32) -> usize {
        self.irqs()
            .windows(2)
            .filter(|w| w[0] == (line, true) && w[1] == (line, false))
            .count()
    }

    /// Every `set_irq` call so far.
    pub fn irqs(&self) -> Vec<(u32, bool)> {
        self.0.record().irqs.clone()
    }
}
