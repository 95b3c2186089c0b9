//! vm-superio's interrupt `Trigger`, wired to the host's IRQ lines.

use hyperplug_plugin_api::device::HostServices;
use std::convert::Infallible;
use vm_superio::Trigger;

/// Pulses interrupt line `line` through the host services each time the UART
/// signals an interrupt (vm-superio calls `trigger` on an edge: when an enabled
/// interrupt condition becomes pending).
#[derive(Clone)]
pub struct IrqTrigger {
    host: HostServices,
    line: u32,
}

impl IrqTrigger {
    /// A trigger for `line`.
    pub fn new(host: HostServices, line: u32) -> Self {
        Self { host, line }
    }
}

impl Trigger for IrqTrigger {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.host.set_irq(self.line, true);
        self.host.set_irq(self.line, false);
        Ok(())
    }
}
