//! The VM: the backend's VM and vCPUs around a [`Platform`]. One vCPU runs
//! on the calling thread; with more, each application processor gets its
//! own thread (as KVM wants one thread per vCPU) and waits for INIT/SIPI.

use crate::error::{Error, Result};
use crate::image::BootSetup;
use crate::memory::GuestMemory;
use crate::plugin::{Inventory, LoadedBackend};
use crate::services::BackendServices;
use crate::vcpu_loop::{backend_err, Shared, VcpuRunner};
use hyperplug_plugin_api::backend::{MemorySlot, VcpuBox, VmBox, VmConfig};
use hyperplug_plugin_api::state::{rflags, Regs, Sregs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub use crate::outcome::{Outcome, EXIT_GUEST_STOPPED, EXIT_HOST_ERROR, EXIT_TRIPLE_FAULT};
pub use crate::platform::{DeviceSpec, MachineConfig, Platform, Trace, MAX_CPUS};
pub use crate::stop::StopHandle;
pub use crate::vcpu_loop::system_event;

/// Options the backend receives when the VM is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmOptions {
    /// Second-level paging (`--nested-paging`) instead of shadow paging.
    pub nested_paging: bool,
}

/// One VM.
///
/// Fields drop in order: the vCPUs and VM go before the platform's memory.
pub struct Machine {
    vcpus: Vec<VcpuBox>,
    vm: VmBox,
    backend: String,
    trace: Trace,
    exits: AtomicU64,
    platform: Platform,
}

impl Machine {
    /// Creates the platform from `cfg`, then the VM on `backend` around it.
    pub fn create(
        backend: &LoadedBackend,
        inventory: &Inventory,
        cfg: &MachineConfig,
    ) -> Result<Self> {
        Self::create_with(backend, inventory, cfg, VmOptions::default())
    }

    /// [`Machine::create`] with backend options.
    pub fn create_with(
        backend: &LoadedBackend,
        inventory: &Inventory,
        cfg: &MachineConfig,
        opts: VmOptions,
    ) -> Result<Self> {
        let platform = Platform::new(inventory, cfg)?;
        Self::new_with(backend, platform, cfg.trace, opts)
    }

    /// Creates the VM on `backend` around an assembled platform (RAM already
    /// loaded, devices on the bus), with one vCPU per local APIC; the vCPUs
    /// are at their reset state.
    pub fn new(backend: &LoadedBackend, platform: Platform, trace: Trace) -> Result<Self> {
        Self::new_with(backend, platform, trace, VmOptions::default())
    }

    /// [`Machine::new`] with backend options.
    pub fn new_with(
        backend: &LoadedBackend,
        platform: Platform,
        trace: Trace,
        opts: VmOptions,
    ) -> Result<Self> {
        let name = backend.name();
        let detection = (backend.module.detect())();
        if !detection.usable {
            return Err(Error::NoBackend(format!(
                "backend {name} is not usable here: {}",
                detection.reason
            )));
        }
        let host = BackendServices::new_ffi(
            &name,
            platform.ram.shared(),
            platform.ram.slot_info(),
            platform.clock.counter(),
        );
        let cfg = VmConfig {
            vcpus: platform.cpus(),
            memory_bytes: platform.ram.ram_size(),
            flags: VmConfig::HOST_LAPIC
                | if opts.nested_paging {
                    VmConfig::NESTED_PAGING
                } else {
                    0
                }
                | if trace.exits {
                    VmConfig::TRACE_EXITS
                } else {
                    0
                }
                | if platform.clock.is_counted() {
                    VmConfig::DETERMINISTIC
                } else {
                    0
                },
        };
        let vm = (backend.module.create_vm())(host, cfg)
            .into_result()
            .map_err(|e| backend_err(&name, "create VM", e))?;
        for slot in platform.ram.slots() {
            vm.add_memory_slot(slot)
                .into_result()
                .map_err(|e| backend_err(&name, "add memory slot", e))?;
        }
        let mut vcpus = Vec::new();
        for id in 0..platform.cpus() {
            let vcpu = vm
                .create_vcpu(id)
                .into_result()
                .map_err(|e| backend_err(&name, &format!("create vCPU {id}"), e))?;
            if backend.abi.major > 1 || backend.abi.minor >= 1 {
                let k = vcpu
                    .kicker()
                    .into_result()
                    .map_err(|e| backend_err(&name, "vCPU kicker", e))?;
                if let Some(w) = platform.apic.waker(id as usize) {
                    w.set_kicker(k);
                }
            }
            vcpus.push(vcpu);
        }
        Ok(Machine {
            vcpus,
            vm,
            backend: name,
            trace,
            exits: AtomicU64::new(0),
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

    /// Number of vCPUs.
    pub fn cpus(&self) -> u32 {
        self.platform.cpus()
    }

    /// A handle that stops the VM from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.platform.stop.clone()
    }

    /// Each vCPU's native control structure (VMCB, VMCS) by field name and
    /// offset, as the backend renders it (`--dump-control-block`).
    pub fn dump_control_blocks(&mut self) -> String {
        let mut out = String::new();
        for (i, v) in self.vcpus.iter_mut().enumerate() {
            match v.debug_dump().into_result() {
                Ok(d) => out.push_str(&format!("vCPU {i} ({}):\n{d}\n", self.backend)),
                Err(e) => out.push_str(&format!("vCPU {i}: {}\n", e.message)),
            }
        }
        out
    }

    /// Number of exits handled so far (all vCPUs).
    pub fn exit_count(&self) -> u64 {
        self.exits.load(Ordering::Relaxed)
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

    fn bsp(&mut self) -> Result<&mut VcpuBox> {
        self.vcpus
            .first_mut()
            .ok_or_else(|| Error::Config("the VM has no vCPU".into()))
    }

    /// The boot processor's registers.
    pub fn registers(&mut self) -> Result<(Regs, Sregs)> {
        let b = self.backend.clone();
        let v = self.bsp()?;
        let r = v
            .get_regs()
            .into_result()
            .map_err(|e| backend_err(&b, "get registers", e))?;
        let s = v
            .get_sregs()
            .into_result()
            .map_err(|e| backend_err(&b, "get special registers", e))?;
        Ok((r, s))
    }

    /// Puts the boot processor in the state an image loader prepared.
    pub fn set_boot_state(&mut self, setup: &BootSetup) -> Result<()> {
        let b = self.backend.clone();
        let v = self.bsp()?;
        let current = v
            .get_sregs()
            .into_result()
            .map_err(|e| backend_err(&b, "get special registers", e))?;
        let mut s = setup.sregs;
        if s.apic_base == 0 {
            s.apic_base = current.apic_base;
        }
        s.interrupt_bitmap = [0; 4];
        v.set_sregs(s)
            .into_result()
            .map_err(|e| backend_err(&b, "set special registers", e))?;
        let mut r = setup.regs;
        r.rflags |= rflags::FIXED;
        v.set_regs(r)
            .into_result()
            .map_err(|e| backend_err(&b, "set registers", e))?;
        Ok(())
    }

    /// Runs the guest until it powers off, a device ends it, or it stops.
    ///
    /// Host-side failures (a device plugin erroring, a backend call failing)
    /// are returned as errors and stop every vCPU.
    pub fn run(&mut self) -> Result<Outcome> {
        let shared = Shared {
            platform: &self.platform,
            backend: &self.backend,
            trace: self.trace,
            exits: &self.exits,
            parked: AtomicUsize::new(0),
            a20_unsupported: std::sync::atomic::AtomicBool::new(false),
            turns: self
                .platform
                .clock
                .is_counted()
                .then(|| crate::turns::Turns::new(self.platform.cpus() as usize)),
        };
        let stop = &self.platform.stop;
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let finish = |id: usize, r: Result<Option<Outcome>>| match r {
            Ok(Some(o)) => stop.finish(o),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(target: "devices", "vCPU {id} failed: {e}");
                let mut g = match first_error.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if g.is_none() {
                    *g = Some(e);
                }
                stop.finish(Outcome::GuestStopped {
                    what: "host error".into(),
                    dump: String::new(),
                });
            }
        };
        let (bsp, aps) = match self.vcpus.split_first_mut() {
            Some(x) => x,
            None => return Err(Error::Config("the VM has no vCPU".into())),
        };
        std::thread::scope(|scope| {
            for (i, vcpu) in aps.iter_mut().enumerate() {
                let id = i + 1;
                let shared = &shared;
                let finish = &finish;
                let spawned = std::thread::Builder::new()
                    .name(format!("vcpu{id}"))
                    .spawn_scoped(scope, move || {
                        let r = VcpuRunner {
                            id,
                            vcpu,
                            shared,
                            a20_seen: 0,
                        }
                        .run();
                        finish(id, r);
                    });
                if let Err(e) = spawned {
                    finish(
                        id,
                        Err(Error::Config(format!(
                            "cannot start the thread of vCPU {id}: {e}"
                        ))),
                    );
                }
            }
            let r = VcpuRunner {
                id: 0,
                vcpu: bsp,
                shared: &shared,
                a20_seen: 0,
            }
            .run();
            finish(0, r);
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(stop.take().unwrap_or(Outcome::GuestStopped {
            what: "the vCPUs stopped without a reason".into(),
            dump: String::new(),
        }))
    }
}
