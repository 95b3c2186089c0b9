//! The PC's A20 gate: one platform-wide line that the i8042 output port
//! (bit 1) and System Control Port A at 0x92 (bit 1, "fast A20") drive
//! (open while either is).
//! Closing it asserts A20M#: physical-address bit 20 reads as 0 on every
//! vCPU (SDM vol. 3, 8.7.13.4), so real-mode addresses wrap at 1 MiB. Each
//! vCPU loop hands a change to its backend before its next run.

use crate::bus::BusDevice;
use crate::stop::StopHandle;
use hyperplug_plugin_api::device::AddressSpace;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A driver of the A20 gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum A20Source {
    /// The keyboard controller's output port, bit 1 (open after reset).
    Kbc,
    /// System Control Port A bit 1 (closed after reset).
    PortA,
}

/// The A20 line: open while either source drives it open, as the PC ORs
/// the keyboard controller's gate with port 0x92's "fast A20".
#[derive(Debug)]
pub struct A20Line {
    kbc: AtomicBool,
    port_a: AtomicBool,
    generation: AtomicU64,
}

impl Default for A20Line {
    /// The keyboard controller's gate open, port A's closed: A20 open, as a
    /// BIOS leaves it.
    fn default() -> Self {
        Self {
            kbc: AtomicBool::new(true),
            port_a: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }
}

impl A20Line {
    /// Sets one source; a change of the line bumps the generation.
    pub fn set(&self, source: A20Source, enabled: bool) {
        let before = self.enabled();
        match source {
            A20Source::Kbc => self.kbc.store(enabled, Ordering::Release),
            A20Source::PortA => self.port_a.store(enabled, Ordering::Release),
        }
        if self.enabled() != before {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the gate is open.
    pub fn enabled(&self) -> bool {
        self.kbc.load(Ordering::Acquire) || self.port_a.load(Ordering::Acquire)
    }

    /// Port A's own bit.
    fn port_a(&self) -> bool {
        self.port_a.load(Ordering::Acquire)
    }

    /// Bumped on every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Port 0x92.
pub const PORT_A: u16 = 0x92;
/// Port A bit 1: A20 gate open.
const PORT_A_A20: u8 = 1 << 1;
/// Port A bit 0: writing 1 resets the processors ("fast reset").
const PORT_A_RESET: u8 = 1 << 0;

/// System Control Port A (the IBM PS/2 "fast A20 and reset" port at 0x92).
pub struct PortA {
    line: Arc<A20Line>,
    stop: StopHandle,
}

impl PortA {
    /// Port A driving `line`; a fast reset ends the VM through `stop`.
    pub fn new(line: Arc<A20Line>, stop: StopHandle) -> Self {
        Self { line, stop }
    }
}

impl BusDevice for PortA {
    fn read(&mut self, _space: AddressSpace, _addr: u64, data: &mut [u8]) -> Result<(), String> {
        let v = if self.line.port_a() { PORT_A_A20 } else { 0 };
        for (i, b) in data.iter_mut().enumerate() {
            *b = if i == 0 { v } else { 0xff };
        }
        Ok(())
    }

    fn write(&mut self, _space: AddressSpace, _addr: u64, data: &[u8]) -> Result<(), String> {
        let Some(&v) = data.first() else {
            return Ok(());
        };
        self.line.set(A20Source::PortA, v & PORT_A_A20 != 0);
        if v & PORT_A_RESET != 0 {
            self.stop.request_reset("port 0x92 fast reset".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::VcpuWaker;

    #[test]
    fn the_line_is_the_or_of_its_sources_and_port_a_resets() {
        let line = Arc::new(A20Line::default());
        let stop = StopHandle::new(Arc::new(VcpuWaker::default()));
        let mut p = PortA::new(Arc::clone(&line), stop.clone());
        let mut b = [0u8];
        p.read(AddressSpace::Pio, 0x92, &mut b).unwrap();
        assert_eq!(b[0], 0, "port A's gate closed after reset");
        assert!(line.enabled(), "the keyboard controller's is open");
        let g = line.generation();
        line.set(A20Source::Kbc, false);
        assert!(!line.enabled());
        assert_eq!(line.generation(), g + 1);
        p.write(AddressSpace::Pio, 0x92, &[PORT_A_A20]).unwrap();
        assert!(line.enabled(), "port A alone opens it");
        assert_eq!(line.generation(), g + 2);
        line.set(A20Source::Kbc, true);
        assert_eq!(line.generation(), g + 2, "still open: no change");
        p.read(AddressSpace::Pio, 0x92, &mut b).unwrap();
        assert_eq!(b[0], PORT_A_A20);
        assert!(!stop.requested());
        p.write(AddressSpace::Pio, 0x92, &[PORT_A_A20 | PORT_A_RESET])
            .unwrap();
        assert!(stop.requested(), "fast reset");
    }
}
