//! Host-side interrupt routing: device IRQ lines go to the interrupt
//! controller device (the 8259A PIC plugin, for now); the controller drives
//! the CPU's INTR input, which the run loop turns into an injection through
//! the backend's interrupt window.

use crate::apic_bus::ApicBus;
use crate::platform::PluginDevice;
use crate::stop::VcpuWaker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

/// Number of IRQ lines the host routes (ISA 0-15 plus IOAPIC pins up to 23, with room).
pub const IRQ_LINES: u32 = 64;

/// IRQ lines, the controller, and the CPU's INTR input.
pub struct Interrupts {
    levels: Mutex<u64>,
    edges: AtomicU64,
    controller: OnceLock<Arc<Mutex<PluginDevice>>>,
    apic: OnceLock<Weak<ApicBus>>,
    cpu_intr: AtomicBool,
    waker: Arc<VcpuWaker>,
}

impl Interrupts {
    /// Routing that wakes the vCPU through `waker`.
    pub fn new(waker: Arc<VcpuWaker>) -> Self {
        Self {
            levels: Mutex::new(0),
            edges: AtomicU64::new(0),
            controller: OnceLock::new(),
            apic: OnceLock::new(),
            cpu_intr: AtomicBool::new(false),
            waker,
        }
    }

    /// Makes `dev` the interrupt controller; false if one is already set.
    pub fn set_controller(&self, dev: Arc<Mutex<PluginDevice>>) -> bool {
        self.controller.set(dev).is_ok()
    }

    /// Wires the lines to the IOAPIC too.
    pub fn set_apic(&self, apic: &Arc<ApicBus>) {
        let _ = self.apic.set(Arc::downgrade(apic));
    }

    /// Whether an interrupt controller is attached.
    pub fn has_controller(&self) -> bool {
        self.controller.get().is_some()
    }

    /// A device drives line `line` to `level`; forwarded to the controller.
    pub fn set_line(&self, line: u32, level: bool) -> Result<(), String> {
        if line >= IRQ_LINES {
            return Err(format!("IRQ line {line} does not exist (0..{IRQ_LINES})"));
        }
        let rising = {
            let mut l = lock(&self.levels);
            let bit = 1u64 << line;
            let rising = level && *l & bit == 0;
            if level {
                *l |= bit;
            } else {
                *l &= !bit;
            }
            rising
        };
        if rising {
            tracing::trace!(target: "irq", "IRQ {line} raised");
            self.edges.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(apic) = self.apic.get().and_then(Weak::upgrade) {
            if (line as usize) < crate::apic::IOAPIC_PINS {
                apic.set_isa_line(line, level)?;
            }
        }
        match self.controller.get() {
            Some(c) => lock(c).irq_input(line, level),
            None => {
                if rising {
                    // Without a controller nothing can be delivered; a rising
                    // edge still ends a host-side HLT wait (see Machine::halt).
                    self.waker.wake();
                }
                Ok(())
            }
        }
    }

    /// Current level of `line`.
    pub fn level(&self, line: u32) -> bool {
        line < IRQ_LINES && *lock(&self.levels) & (1 << line) != 0
    }

    /// Rising edges seen so far on any line.
    pub fn edges(&self) -> u64 {
        self.edges.load(Ordering::SeqCst)
    }

    /// The controller sets the CPU's INTR input; a rising level wakes the vCPU.
    pub fn set_cpu_intr(&self, level: bool) {
        let was = self.cpu_intr.swap(level, Ordering::SeqCst);
        if level && !was {
            tracing::trace!(target: "irq", "INTR asserted");
            self.waker.wake();
        }
    }

    /// Whether INTR is asserted.
    pub fn cpu_intr(&self) -> bool {
        self.cpu_intr.load(Ordering::SeqCst)
    }

    /// The CPU's interrupt acknowledge: the controller's vector, if any.
    pub fn acknowledge(&self) -> Result<Option<u8>, String> {
        match self.controller.get() {
            Some(c) => lock(c).interrupt_ack(),
            None => Ok(None),
        }
    }
}
