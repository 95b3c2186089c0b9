//! The VM and its vCPU run loop: the backend's VM and vCPU around a
//! [`Platform`], with every exit dispatched to the bus, interrupts injected
//! through the backend's interrupt window, and stops honoured promptly.

use crate::bus::Access;
use crate::dump::format_registers;
use crate::error::{Error, Result};
use crate::image::BootSetup;
use crate::memory::GuestMemory;
use crate::plugin::{Inventory, LoadedBackend};
use crate::services::BackendServices;
use hyperplug_plugin_api::abi_stable::std_types::RSlice;
use hyperplug_plugin_api::backend::{MemorySlot, VcpuBox, VmBox, VmConfig};
use hyperplug_plugin_api::device::AddressSpace;
use hyperplug_plugin_api::state::{rflags, Regs, Sregs};
use hyperplug_plugin_api::{Exit, ExitReason, PluginError};
use std::time::Duration;

pub use crate::outcome::{Outcome, EXIT_GUEST_STOPPED, EXIT_HOST_ERROR, EXIT_TRIPLE_FAULT};
pub use crate::platform::{DeviceSpec, MachineConfig, Platform, Trace};
pub use crate::stop::StopHandle;

/// The largest I/O transfer one exit may carry (a page of string I/O).
const MAX_IO_BYTES: usize = 4096;

/// `ExitReason::SystemEvent` kinds (KVM's numbering, which the ABI adopts).
pub mod system_event {
    /// The guest powered the machine off.
    pub const SHUTDOWN: u32 = 1;
    /// The guest reset the machine.
    pub const RESET: u32 = 2;
}

/// One VM: the backend's VM and vCPU around a platform (SMP comes later).
///
/// Fields drop in order: the vCPU and VM go before the platform's memory.
pub struct Machine {
    vcpu: VcpuBox,
    vm: VmBox,
    backend: String,
    trace: Trace,
    exits: u64,
    platform: Platform,
}

fn backend_err(backend: &str, op: &str, e: PluginError) -> Error {
    Error::Backend {
        backend: backend.to_string(),
        op: op.to_string(),
        message: e.message.to_string(),
    }
}

impl Machine {
    /// Creates the platform from `cfg`, then the VM on `backend` around it.
    pub fn create(
        backend: &LoadedBackend,
        inventory: &Inventory,
        cfg: &MachineConfig,
    ) -> Result<Self> {
        let platform = Platform::new(inventory, cfg)?;
        Self::new(backend, platform, cfg.trace)
    }

    /// Creates the VM on `backend` around an assembled platform (RAM already
    /// loaded, devices on the bus); the vCPU is at its reset state.
    pub fn new(backend: &LoadedBackend, platform: Platform, trace: Trace) -> Result<Self> {
        let name = backend.name();
        let detection = (backend.module.detect())();
        if !detection.usable {
            return Err(Error::NoBackend(format!(
                "backend {name} is not usable here: {}",
                detection.reason
            )));
        }
        let host = BackendServices::new_ffi(&name);
        let vm = (backend.module.create_vm())(
            host,
            VmConfig {
                vcpus: 1,
                memory_bytes: platform.ram.ram_size(),
            },
        )
        .into_result()
        .map_err(|e| backend_err(&name, "create VM", e))?;
        for slot in platform.ram.slots() {
            vm.add_memory_slot(slot)
                .into_result()
                .map_err(|e| backend_err(&name, "add memory slot", e))?;
        }
        let vcpu = vm
            .create_vcpu(0)
            .into_result()
            .map_err(|e| backend_err(&name, "create vCPU 0", e))?;
        if backend.abi.major > 1 || backend.abi.minor >= 1 {
            let k = vcpu
                .kicker()
                .into_result()
                .map_err(|e| backend_err(&name, "vCPU kicker", e))?;
            platform.waker.set_kicker(k);
        }
        Ok(Machine {
            vcpu,
            vm,
            backend: name,
            trace,
            exits: 0,
            platform,
        })
    }

    /// Names of the devices on the bus, including host-internal ones.
    pub fn device_names(&self) -> Vec<String> {
        self.platform.device_names()
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &str {
        &self.backend
    }

    /// Guest memory, for loaders.
    pub fn memory(&self) -> &GuestMemory {
        self.platform.ram.memory()
    }

    /// RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.platform.ram.ram_size()
    }

    /// A handle that stops the VM from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.platform.stop.clone()
    }

    /// Number of exits handled so far.
    pub fn exit_count(&self) -> u64 {
        self.exits
    }

    /// Adds a memory slot of `size` bytes at `gpa` (the VM is paused between runs).
    pub fn add_memory_slot(&mut self, gpa: u64, size: u64, read_only: bool) -> Result<MemorySlot> {
        let ram = &mut self.platform.ram;
        let id = ram.free_slot_id();
        let flags = if read_only { MemorySlot::READONLY } else { 0 };
        let slot = ram.insert(id, gpa, size, flags)?;
        if let Err(e) = self.vm.add_memory_slot(slot).into_result() {
            // Leave the host view as it was.
            let _ = ram.remove(id);
            return Err(backend_err(&self.backend, "add memory slot", e));
        }
        Ok(slot)
    }

    /// Removes memory slot `id`.
    pub fn remove_memory_slot(&mut self, id: u32) -> Result<()> {
        if !self.platform.ram.slots().iter().any(|s| s.id == id) {
            return Err(Error::Memory(format!("no slot {id}")));
        }
        self.vm
            .remove_memory_slot(id)
            .into_result()
            .map_err(|e| backend_err(&self.backend, "remove memory slot", e))?;
        self.platform.ram.remove(id)
    }

    /// Current registers.
    pub fn registers(&mut self) -> Result<(Regs, Sregs)> {
        let b = &self.backend;
        let r = self
            .vcpu
            .get_regs()
            .into_result()
            .map_err(|e| backend_err(b, "get registers", e))?;
        let s = self
            .vcpu
            .get_sregs()
            .into_result()
            .map_err(|e| backend_err(b, "get special registers", e))?;
        Ok((r, s))
    }

    /// Puts the vCPU in the state an image loader prepared.
    pub fn set_boot_state(&mut self, setup: &BootSetup) -> Result<()> {
        let b = self.backend.clone();
        let current = self
            .vcpu
            .get_sregs()
            .into_result()
            .map_err(|e| backend_err(&b, "get special registers", e))?;
        let mut s = setup.sregs;
        if s.apic_base == 0 {
            s.apic_base = current.apic_base;
        }
        s.interrupt_bitmap = [0; 4];
        self.vcpu
            .set_sregs(s)
            .into_result()
            .map_err(|e| backend_err(&b, "set special registers", e))?;
        let mut r = setup.regs;
        r.rflags |= rflags::FIXED;
        self.vcpu
            .set_regs(r)
            .into_result()
            .map_err(|e| backend_err(&b, "set registers", e))?;
        Ok(())
    }

    fn dump(&mut self) -> String {
        match self.registers() {
            Ok((r, s)) => format_registers(&r, &s),
            Err(e) => format!("(registers unavailable: {e})\n"),
        }
    }

    fn stopped(&mut self, what: impl Into<String>) -> Outcome {
        let dump = self.dump();
        Outcome::GuestStopped {
            what: what.into(),
            dump,
        }
    }

    /// Runs the guest until it powers off, a device ends it, or it stops.
    ///
    /// Host-side failures (a device plugin erroring, a backend call failing)
    /// are returned as errors; the guest state is left as it was.
    pub fn run(&mut self) -> Result<Outcome> {
        loop {
            if let Some(o) = self.platform.stop.take() {
                return Ok(o);
            }
            self.deliver_interrupt()?;
            let exit = self
                .vcpu
                .run()
                .into_result()
                .map_err(|e| backend_err(&self.backend, "run vCPU 0", e))?;
            self.exits += 1;
            if self.trace.exits {
                tracing::info!(target: "exits", "vcpu0 {} {}", exit.native_name, exit.native_detail);
            }
            if let Some(o) = self.handle_exit(exit)? {
                return Ok(o);
            }
        }
    }

    /// If the interrupt controller asserts INTR: inject its vector when the
    /// guest can take it, else ask the backend for an interrupt-window exit.
    fn deliver_interrupt(&mut self) -> Result<()> {
        let b = self.backend.clone();
        if !self.platform.intr.cpu_intr() {
            return Ok(());
        }
        let open = self
            .vcpu
            .interrupt_window_open()
            .into_result()
            .map_err(|e| backend_err(&b, "interrupt window", e))?;
        if open {
            let vector = self
                .platform
                .intr
                .acknowledge()
                .map_err(|m| Error::Device {
                    device: "interrupt controller".into(),
                    message: m,
                })?;
            if let Some(v) = vector {
                tracing::trace!(target: "irq", "inject vector {v:#x}");
                self.vcpu
                    .inject_interrupt(v)
                    .into_result()
                    .map_err(|e| backend_err(&b, "inject interrupt", e))?;
            }
            self.vcpu
                .request_interrupt_window(false)
                .into_result()
                .map_err(|e| backend_err(&b, "interrupt window", e))?;
        } else {
            self.vcpu
                .request_interrupt_window(true)
                .into_result()
                .map_err(|e| backend_err(&b, "interrupt window", e))?;
        }
        Ok(())
    }

    fn handle_exit(&mut self, exit: Exit) -> Result<Option<Outcome>> {
        let b = self.backend.clone();
        match exit.reason {
            ExitReason::IoIn { port, size, count } => {
                let data = self.io_in(port, size, count)?;
                self.vcpu
                    .complete_io(RSlice::from_slice(&data))
                    .into_result()
                    .map_err(|e| backend_err(&b, "complete I/O", e))?;
            }
            ExitReason::IoOut {
                port,
                size,
                count,
                data,
            } => {
                self.io_out(port, size, count, &data)?;
            }
            ExitReason::MmioRead { addr, size } => {
                let mut data = vec![0u8; usize::from(size.clamp(1, 8))];
                self.bus_access(AddressSpace::Mmio, addr, Some(&mut data), None)?;
                self.vcpu
                    .complete_io(RSlice::from_slice(&data))
                    .into_result()
                    .map_err(|e| backend_err(&b, "complete MMIO", e))?;
            }
            ExitReason::MmioWrite { addr, data } => {
                self.bus_access(AddressSpace::Mmio, addr, None, Some(&data))?;
            }
            ExitReason::Hlt => return self.halt(),
            ExitReason::Shutdown => {
                let dump = self.dump();
                return Ok(Some(Outcome::TripleFault { dump }));
            }
            ExitReason::InterruptWindow => {
                // deliver_interrupt() injects before the next run, or clears the request.
                if !self.platform.intr.cpu_intr() {
                    self.vcpu
                        .request_interrupt_window(false)
                        .into_result()
                        .map_err(|e| backend_err(&b, "interrupt window", e))?;
                }
            }
            ExitReason::Debug { rip, vector } => {
                tracing::debug!(target: "exits", "debug exception {vector} at {rip:#x} ignored");
            }
            ExitReason::Interrupted => {}
            ExitReason::SystemEvent {
                kind: system_event::SHUTDOWN,
            } => return Ok(Some(Outcome::PowerOff)),
            ExitReason::SystemEvent {
                kind: system_event::RESET,
            } => {
                return Ok(Some(Outcome::Reset {
                    reason: format!("backend {b}: reset event"),
                }))
            }
            ExitReason::SystemEvent { kind } => {
                return Ok(Some(self.stopped(format!(
                    "backend system event {kind} ({} {})",
                    exit.native_name, exit.native_detail
                ))));
            }
            ExitReason::EntryFailure { reason } => {
                return Ok(Some(self.stopped(format!(
                    "VM entry failed: {} reason {reason:#x} {}",
                    exit.native_name, exit.native_detail
                ))));
            }
            ExitReason::InternalError { description } => {
                return Ok(Some(self.stopped(format!(
                    "backend internal error: {description} ({})",
                    exit.native_detail
                ))));
            }
        }
        Ok(None)
    }

    /// HLT (SDM vol. 2A, HLT: execution resumes on an interrupt, NMI, SMI or
    /// INIT). With interrupts disabled and nothing else modelled, nothing can
    /// wake the vCPU; otherwise wait for INTR (or, with no interrupt
    /// controller attached, any rising IRQ edge) or a stop request.
    fn halt(&mut self) -> Result<Option<Outcome>> {
        let (r, _) = self.registers()?;
        let intr = &self.platform.intr;
        if r.rflags & rflags::IF == 0 {
            return Ok(Some(self.stopped(
                "guest halted with interrupts disabled (cli; hlt): nothing can wake it",
            )));
        }
        let edges = intr.edges();
        loop {
            let seen = self.platform.waker.generation();
            if self.platform.stop.requested() || intr.cpu_intr() {
                return Ok(None);
            }
            if !intr.has_controller() && intr.edges() != edges {
                return Ok(None);
            }
            self.platform.waker.wait(seen, Duration::from_millis(100));
        }
    }

    fn bus_access(
        &mut self,
        space: AddressSpace,
        addr: u64,
        read: Option<&mut [u8]>,
        write: Option<&[u8]>,
    ) -> Result<()> {
        let bus = &self.platform.bus;
        let r = match (read, write) {
            (Some(buf), _) => bus.read(space, addr, buf),
            (None, Some(data)) => bus.write(space, addr, data),
            (None, None) => return Ok(()),
        };
        r.map(|_: Access| ())
    }

    fn io_in(&mut self, port: u16, size: u8, count: u32) -> Result<Vec<u8>> {
        let size = usize::from(size.clamp(1, 4));
        let count = count.max(1) as usize;
        let total = size.saturating_mul(count);
        if total > MAX_IO_BYTES {
            return Err(Error::Backend {
                backend: self.backend.clone(),
                op: "I/O exit".into(),
                message: format!(
                    "IN of {count} x {size} bytes at port {port:#x} exceeds {MAX_IO_BYTES} bytes"
                ),
            });
        }
        let mut data = vec![0u8; total];
        for chunk in data.chunks_mut(size) {
            self.bus_access(AddressSpace::Pio, u64::from(port), Some(chunk), None)?;
        }
        Ok(data)
    }

    fn io_out(&mut self, port: u16, size: u8, count: u32, data: &[u8]) -> Result<()> {
        let size = usize::from(size.clamp(1, 4));
        for chunk in data.chunks(size).take(count.max(1) as usize) {
            self.bus_access(AddressSpace::Pio, u64::from(port), None, Some(chunk))?;
            if self.platform.stop.requested() {
                break;
            }
        }
        Ok(())
    }
}
