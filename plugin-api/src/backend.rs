//! The backend side of the ABI: the `BackendModule` root module and the
//! `Vm` / `Vcpu` trait objects, as `kvm-intel.ko` / `kvm-amd.ko` present
//! themselves to `kvm.ko`.

use crate::error::{PluginError, PluginResult};
use crate::exit::Exit;
use crate::guard::Poison;
use crate::state::{Fpu, MsrEntry, Regs, Sregs, VcpuEvents, Xsave};
use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RArc, RBox, RResult, RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;
use std::sync::Mutex;

/// Whether a backend can run on this machine, and why (not).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The backend can create VMs here.
    pub usable: bool,
    /// The backend uses hardware virtualization extensions (VMX/SVM).
    pub hardware_assisted: bool,
    /// One line: why usable or not (e.g. "/dev/kvm: permission denied").
    pub reason: RString,
}

/// What the host asks for when it creates a VM.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Number of vCPUs the host will create.
    pub vcpus: u32,
    /// Guest RAM in bytes (informational: memory arrives as slots).
    pub memory_bytes: u64,
    /// `VmConfig::*` flags.
    pub flags: u32,
}

impl VmConfig {
    /// The host models a local APIC per vCPU (xAPIC MMIO at 0xFEE00000, and
    /// the x2APIC MSRs): the backend advertises CPUID.01H:EDX.APIC, forwards
    /// RDMSR/WRMSR of IA32_APIC_BASE (0x1B) to the host as `MsrRead` /
    /// `MsrWrite` exits, and advertises CPUID.01H:ECX.x2APIC only if it can
    /// forward 0x800-0x8FF the same way.
    pub const HOST_LAPIC: u32 = 1 << 0;
    /// Translate guest-physical addresses through second-level tables (EPT,
    /// NPT) instead of shadow page tables (software backends; `--nested-paging`).
    pub const NESTED_PAGING: u32 = 1 << 1;
    /// The host traces exits (`--trace exits`): a backend that handles exits
    /// internally logs each as a message starting with [`EXIT_TRACE_PREFIX`],
    /// which the host prints with its own exit trace.
    pub const TRACE_EXITS: u32 = 1 << 2;
    /// Reproducible runs (`--deterministic`): `run` returns
    /// [`Interrupted`](crate::ExitReason::Interrupted) after a fixed number
    /// of guest instructions, so the host can fire timers on an
    /// instruction-driven clock at the same points every time.
    pub const DETERMINISTIC: u32 = 1 << 3;
}

/// Prefix of a backend log message that is one exit trace line.
pub const EXIT_TRACE_PREFIX: &str = "exit: ";

/// A memory slot: a guest-physical range backed by host memory the host owns
/// (as `struct kvm_userspace_memory_region`). The host guarantees that
/// `host_addr..host_addr + size` stays mapped until the slot is removed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySlot {
    /// Slot number, unique per VM.
    pub id: u32,
    /// Flags: [`MemorySlot::READONLY`], [`MemorySlot::LOG_DIRTY`].
    pub flags: u32,
    /// First guest-physical address (page aligned).
    pub guest_phys_addr: u64,
    /// Size in bytes (page multiple).
    pub size: u64,
    /// Host virtual address of the backing memory.
    pub host_addr: u64,
}

impl MemorySlot {
    /// Guest writes to the slot become MMIO writes.
    pub const READONLY: u32 = 1 << 1;
    /// Track dirty pages.
    pub const LOG_DIRTY: u32 = 1 << 0;

    /// Whether `[gpa, gpa+len)` lies inside the slot.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        gpa >= self.guest_phys_addr
            && gpa
                .checked_add(len)
                .is_some_and(|end| end <= self.guest_phys_addr.saturating_add(self.size))
    }

    /// Whether two slots overlap in guest-physical space.
    pub fn overlaps(&self, other: &MemorySlot) -> bool {
        self.guest_phys_addr < other.guest_phys_addr.saturating_add(other.size)
            && other.guest_phys_addr < self.guest_phys_addr.saturating_add(self.size)
    }
}

/// Log levels for host logging services.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Services the host hands a backend: logging, and the host's execution
/// engine (x86 emulator + MMU) for the software backends. Implemented by the host.
#[sabi_trait]
pub trait FfiBackendHost: Send + Sync + Clone {
    /// Logs a message under the backend's target.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);
    /// An execution engine for vCPU `vcpu`, over the VM's guest memory.
    fn create_engine(&self, vcpu: u32) -> PluginResult<crate::engine::EngineBox>;
}

/// The host services object a backend receives.
pub type BackendHost = FfiBackendHost_TO<'static, RArc<()>>;

/// A VM as a backend exposes it. All methods take `&self`: vCPU threads run
/// while the host edits slots (with the VM paused).
#[sabi_trait]
pub trait FfiVm: Send + Sync {
    /// Maps a memory slot into the guest.
    fn add_memory_slot(&self, slot: MemorySlot) -> PluginResult<()>;
    /// Unmaps slot `id`.
    fn remove_memory_slot(&self, id: u32) -> PluginResult<()>;
    /// Creates vCPU `id` (0 is the boot processor).
    #[sabi(last_prefix_field)]
    fn create_vcpu(&self, id: u32) -> PluginResult<VcpuBox>;
}

/// An owned backend VM.
pub type VmBox = FfiVm_TO<'static, RBox<()>>;

/// A vCPU as a backend exposes it.
#[sabi_trait]
pub trait FfiVcpu: Send {
    /// General registers (`KVM_GET_REGS`).
    fn get_regs(&mut self) -> PluginResult<Regs>;
    /// Sets general registers.
    fn set_regs(&mut self, regs: Regs) -> PluginResult<()>;
    /// Special registers (`KVM_GET_SREGS`).
    fn get_sregs(&mut self) -> PluginResult<Sregs>;
    /// Sets special registers.
    fn set_sregs(&mut self, sregs: Sregs) -> PluginResult<()>;
    /// x87/SSE state (`KVM_GET_FPU`).
    fn get_fpu(&mut self) -> PluginResult<Fpu>;
    /// Sets x87/SSE state.
    fn set_fpu(&mut self, fpu: Fpu) -> PluginResult<()>;
    /// The XSAVE area (`KVM_GET_XSAVE`).
    fn get_xsave(&mut self) -> PluginResult<Xsave>;
    /// Sets the XSAVE area.
    fn set_xsave(&mut self, xsave: Xsave) -> PluginResult<()>;
    /// Reads the MSRs in `indices`; MSRs the backend does not know are left out.
    fn get_msrs(&mut self, indices: RSlice<'_, u32>) -> PluginResult<RVec<MsrEntry>>;
    /// Writes MSRs; fails on the first one the backend refuses.
    fn set_msrs(&mut self, entries: RSlice<'_, MsrEntry>) -> PluginResult<()>;
    /// Pending/injected events (`KVM_GET_VCPU_EVENTS`).
    fn get_events(&mut self) -> PluginResult<VcpuEvents>;
    /// Sets pending/injected events.
    fn set_events(&mut self, events: VcpuEvents) -> PluginResult<()>;
    /// Runs guest code until the next exit the host must see.
    fn run(&mut self) -> PluginResult<Exit>;
    /// Completes the last `IoIn`/`MmioRead` exit with `data`.
    fn complete_io(&mut self, data: RSlice<'_, u8>) -> PluginResult<()>;
    /// Injects external interrupt `vector` (only when the window is open).
    fn inject_interrupt(&mut self, vector: u8) -> PluginResult<()>;
    /// Asks for an [`InterruptWindow`](crate::ExitReason::InterruptWindow) exit
    /// as soon as the guest can take an interrupt.
    fn request_interrupt_window(&mut self, request: bool) -> PluginResult<()>;
    /// Whether an interrupt can be injected right now (RFLAGS.IF set, no
    /// interrupt shadow, no event in flight).
    #[sabi(last_prefix_field)]
    fn interrupt_window_open(&mut self) -> PluginResult<bool>;
    /// A handle other threads use to make a running (or the next) `run`
    /// return [`Interrupted`](crate::ExitReason::Interrupted) promptly.
    fn kicker(&self) -> PluginResult<VcpuKicker>;
    /// Queues a non-maskable interrupt (vector 2), delivered at the next
    /// instruction boundary unless NMIs are blocked (SDM vol. 3, 6.7.1).
    fn inject_nmi(&mut self) -> PluginResult<()>;
    /// Completes the last `MsrRead`/`MsrWrite` exit: `value` is the RDMSR
    /// result; `fault` makes the instruction raise #GP(0) instead.
    fn complete_msr(&mut self, value: u64, fault: bool) -> PluginResult<()>;
    /// The backend's native per-vCPU control structure (VMCB, VMCS, KVM
    /// state) rendered field by field with names and offsets, for debugging.
    fn debug_dump(&mut self) -> PluginResult<RString>;
    /// The platform's A20 gate: `false` asserts A20M# (physical-address
    /// bit 20 reads as 0). Backends that cannot gate it say unsupported.
    fn set_a20(&mut self, enabled: bool) -> PluginResult<()>;
}

/// Makes a vCPU leave guest mode (KVM: `immediate_exit` plus a signal).
#[sabi_trait]
pub trait FfiKick: Send + Sync {
    /// Requests an exit; safe to call from any thread, any number of times.
    #[sabi(last_prefix_field)]
    fn kick(&self);
}

/// A shareable kick handle.
pub type VcpuKicker = FfiKick_TO<'static, RArc<()>>;

/// The plain-Rust side of a kick handle.
pub trait Kick: Send + Sync + 'static {
    /// Requests an exit.
    fn kick(&self);
}

struct KickAdapter<K: Kick>(K);

impl<K: Kick> FfiKick for KickAdapter<K> {
    fn kick(&self) {
        // A kick has no result to carry an error in; a panicking kicker is ignored.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.kick()));
    }
}

/// Wraps a plain-Rust kick handle for the ABI.
pub fn kicker_into_ffi<K: Kick>(k: K) -> VcpuKicker {
    FfiKick_TO::from_ptr(RArc::new(KickAdapter(k)), abi_stable::sabi_trait::TD_Opaque)
}

/// An owned backend vCPU.
pub type VcpuBox = FfiVcpu_TO<'static, RBox<()>>;

/// The root module every backend library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = BackendModuleRef)))]
#[sabi(missing_field(panic))]
pub struct BackendModule {
    /// Short name used on the command line (`kvm`, `vmx`, `svm`).
    pub name: extern "C" fn() -> RStr<'static>,
    /// CPU vendor the backend models, or `any` for hardware backends.
    pub vendor: extern "C" fn() -> RStr<'static>,
    /// One-line description.
    pub description: extern "C" fn() -> RStr<'static>,
    /// Whether the backend works on this machine, and why.
    pub detect: extern "C" fn() -> Detection,
    /// Creates a VM.
    #[sabi(last_prefix_field)]
    pub create_vm:
        extern "C" fn(host: BackendHost, config: VmConfig) -> RResult<VmBox, PluginError>,
}

impl RootModule for BackendModuleRef {
    abi_stable::declare_root_module_statics! {BackendModuleRef}
    const BASE_NAME: &'static str = crate::BACKEND_MODULE_NAME;
    const NAME: &'static str = crate::BACKEND_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = crate::ABI_VERSION;
}

// ---------------------------------------------------------------------------
// The plain-Rust side that backend authors implement.

/// A backend, in plain Rust. Exported with [`export_backend!`](crate::export_backend).
pub trait Backend: 'static {
    /// The VM type.
    type Vm: Vm;
    /// Short name (`kvm`).
    const NAME: &'static str;
    /// Vendor (`any`, `GenuineIntel`, `AuthenticAMD`).
    const VENDOR: &'static str;
    /// One-line description.
    const DESCRIPTION: &'static str;
    /// Whether this backend works here.
    fn detect() -> Detection;
    /// Creates a VM.
    fn create_vm(host: BackendHost, config: &VmConfig) -> Result<Self::Vm, PluginError>;
}

/// A backend VM, in plain Rust.
pub trait Vm: Send + Sync + 'static {
    /// The vCPU type.
    type Vcpu: Vcpu;
    /// See [`FfiVm::add_memory_slot`].
    fn add_memory_slot(&self, slot: MemorySlot) -> Result<(), PluginError>;
    /// See [`FfiVm::remove_memory_slot`].
    fn remove_memory_slot(&self, id: u32) -> Result<(), PluginError>;
    /// See [`FfiVm::create_vcpu`].
    fn create_vcpu(&self, id: u32) -> Result<Self::Vcpu, PluginError>;
}

/// A backend vCPU, in plain Rust; see [`FfiVcpu`] for each method.
#[allow(missing_docs)]
pub trait Vcpu: Send + 'static {
    fn get_regs(&mut self) -> Result<Regs, PluginError>;
    fn set_regs(&mut self, regs: &Regs) -> Result<(), PluginError>;
    fn get_sregs(&mut self) -> Result<Sregs, PluginError>;
    fn set_sregs(&mut self, sregs: &Sregs) -> Result<(), PluginError>;
    fn get_fpu(&mut self) -> Result<Fpu, PluginError>;
    fn set_fpu(&mut self, fpu: &Fpu) -> Result<(), PluginError>;
    fn get_xsave(&mut self) -> Result<Xsave, PluginError>;
    fn set_xsave(&mut self, xsave: &Xsave) -> Result<(), PluginError>;
    fn get_msrs(&mut self, indices: &[u32]) -> Result<Vec<MsrEntry>, PluginError>;
    fn set_msrs(&mut self, entries: &[MsrEntry]) -> Result<(), PluginError>;
    fn get_events(&mut self) -> Result<VcpuEvents, PluginError>;
    fn set_events(&mut self, events: &VcpuEvents) -> Result<(), PluginError>;
    fn run(&mut self) -> Result<Exit, PluginError>;
    fn complete_io(&mut self, data: &[u8]) -> Result<(), PluginError>;
    fn inject_interrupt(&mut self, vector: u8) -> Result<(), PluginError>;
    fn request_interrupt_window(&mut self, request: bool) -> Result<(), PluginError>;
    fn interrupt_window_open(&mut self) -> Result<bool, PluginError>;
    fn kicker(&self) -> Result<VcpuKicker, PluginError>;
    fn inject_nmi(&mut self) -> Result<(), PluginError>;
    fn complete_msr(&mut self, value: u64, fault: bool) -> Result<(), PluginError>;
    /// See [`FfiVcpu::debug_dump`]; backends without a control structure
    /// to show keep this default.
    fn debug_dump(&mut self) -> Result<String, PluginError> {
        Err(PluginError::unsupported(
            "this backend has no native control structure to dump",
        ))
    }
    /// See [`FfiVcpu::set_a20`]; backends that cannot gate A20 keep this default.
    fn set_a20(&mut self, _enabled: bool) -> Result<(), PluginError> {
        Err(PluginError::unsupported("this backend cannot gate A20"))
    }
}

/// Wraps a plain-Rust VM so that it can cross the ABI; panics become errors.
pub struct VmAdapter<V: Vm> {
    inner: V,
    poison: Mutex<Poison>,
}

impl<V: Vm> VmAdapter<V> {
    /// Wraps `inner`.
    pub fn new(inner: V) -> Self {
        Self {
            inner,
            poison: Mutex::new(Poison::default()),
        }
    }

    fn call<T>(&self, what: &str, f: impl FnOnce(&V) -> Result<T, PluginError>) -> PluginResult<T> {
        let mut p = match self.poison.lock() {
            Ok(p) => p,
            Err(e) => e.into_inner(),
        };
        p.call(what, || f(&self.inner))
    }
}

/// Boxes a plain-Rust VM as an ABI object.
pub fn vm_into_ffi<V: Vm>(vm: V) -> VmBox {
    FfiVm_TO::from_value(VmAdapter::new(vm), abi_stable::sabi_trait::TD_Opaque)
}

impl<V: Vm> FfiVm for VmAdapter<V> {
    fn add_memory_slot(&self, slot: MemorySlot) -> PluginResult<()> {
        self.call("add_memory_slot", |v| v.add_memory_slot(slot))
    }
    fn remove_memory_slot(&self, id: u32) -> PluginResult<()> {
        self.call("remove_memory_slot", |v| v.remove_memory_slot(id))
    }
    fn create_vcpu(&self, id: u32) -> PluginResult<VcpuBox> {
        self.call("create_vcpu", |v| {
            let vcpu = v.create_vcpu(id)?;
            Ok(FfiVcpu_TO::from_value(
                VcpuAdapter::new(vcpu),
                abi_stable::sabi_trait::TD_Opaque,
            ))
        })
    }
}

/// Wraps a plain-Rust vCPU so that it can cross the ABI; panics become errors.
pub struct VcpuAdapter<C: Vcpu> {
    inner: C,
    poison: Poison,
}

impl<C: Vcpu> VcpuAdapter<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            poison: Poison::default(),
        }
    }
}

macro_rules! vcpu_forward {
    ($self:ident, $what:literal, |$c:ident| $body:expr) => {{
        let $c = &mut $self.inner;
        $self.poison.call($what, move || $body)
    }};
}

impl<C: Vcpu> FfiVcpu for VcpuAdapter<C> {
    fn get_regs(&mut self) -> PluginResult<Regs> {
        vcpu_forward!(self, "get_regs", |c| c.get_regs())
    }
    fn set_regs(&mut self, regs: Regs) -> PluginResult<()> {
        vcpu_forward!(self, "set_regs", |c| c.set_regs(&regs))
    }
    fn get_sregs(&mut self) -> PluginResult<Sregs> {
        vcpu_forward!(self, "get_sregs", |c| c.get_sregs())
    }
    fn set_sregs(&mut self, sregs: Sregs) -> PluginResult<()> {
        vcpu_forward!(self, "set_sregs", |c| c.set_sregs(&sregs))
    }
    fn get_fpu(&mut self) -> PluginResult<Fpu> {
        vcpu_forward!(self, "get_fpu", |c| c.get_fpu())
    }
    fn set_fpu(&mut self, fpu: Fpu) -> PluginResult<()> {
        vcpu_forward!(self, "set_fpu", |c| c.set_fpu(&fpu))
    }
    fn get_xsave(&mut self) -> PluginResult<Xsave> {
        vcpu_forward!(self, "get_xsave", |c| c.get_xsave())
    }
    fn set_xsave(&mut self, xsave: Xsave) -> PluginResult<()> {
        vcpu_forward!(self, "set_xsave", |c| c.set_xsave(&xsave))
    }
    fn get_msrs(&mut self, indices: RSlice<'_, u32>) -> PluginResult<RVec<MsrEntry>> {
        vcpu_forward!(self, "get_msrs", |c| c
            .get_msrs(indices.as_slice())
            .map(RVec::from))
    }
    fn set_msrs(&mut self, entries: RSlice<'_, MsrEntry>) -> PluginResult<()> {
        vcpu_forward!(self, "set_msrs", |c| c.set_msrs(entries.as_slice()))
    }
    fn get_events(&mut self) -> PluginResult<VcpuEvents> {
        vcpu_forward!(self, "get_events", |c| c.get_events())
    }
    fn set_events(&mut self, events: VcpuEvents) -> PluginResult<()> {
        vcpu_forward!(self, "set_events", |c| c.set_events(&events))
    }
    fn run(&mut self) -> PluginResult<Exit> {
        vcpu_forward!(self, "run", |c| c.run())
    }
    fn complete_io(&mut self, data: RSlice<'_, u8>) -> PluginResult<()> {
        vcpu_forward!(self, "complete_io", |c| c.complete_io(data.as_slice()))
    }
    fn inject_interrupt(&mut self, vector: u8) -> PluginResult<()> {
        vcpu_forward!(self, "inject_interrupt", |c| c.inject_interrupt(vector))
    }
    fn request_interrupt_window(&mut self, request: bool) -> PluginResult<()> {
        vcpu_forward!(self, "request_interrupt_window", |c| c
            .request_interrupt_window(request))
    }
    fn interrupt_window_open(&mut self) -> PluginResult<bool> {
        vcpu_forward!(self, "interrupt_window_open", |c| c.interrupt_window_open())
    }
    fn kicker(&self) -> PluginResult<VcpuKicker> {
        crate::guard("kicker", || self.inner.kicker())
    }
    fn inject_nmi(&mut self) -> PluginResult<()> {
        vcpu_forward!(self, "inject_nmi", |c| c.inject_nmi())
    }
    fn complete_msr(&mut self, value: u64, fault: bool) -> PluginResult<()> {
        vcpu_forward!(self, "complete_msr", |c| c.complete_msr(value, fault))
    }
    fn debug_dump(&mut self) -> PluginResult<RString> {
        vcpu_forward!(self, "debug_dump", |c| c.debug_dump().map(RString::from))
    }
    fn set_a20(&mut self, enabled: bool) -> PluginResult<()> {
        vcpu_forward!(self, "set_a20", |c| c.set_a20(enabled))
    }
}

/// Entry points behind [`export_backend!`](crate::export_backend); not for direct use.
#[doc(hidden)]
pub mod export_support {
    use super::*;

    /// Guarded `detect`.
    pub fn detect<B: Backend>() -> Detection {
        match crate::guard("detect", || Ok(B::detect())) {
            RResult::ROk(d) => d,
            RResult::RErr(e) => Detection {
                usable: false,
                hardware_assisted: false,
                reason: e.message,
            },
        }
    }

    /// Guarded `create_vm`.
    pub fn create_vm<B: Backend>(
        host: BackendHost,
        config: VmConfig,
    ) -> RResult<VmBox, PluginError> {
        crate::guard("create_vm", || B::create_vm(host, &config).map(vm_into_ffi))
    }
}

/// Exports a [`Backend`] implementation as this library's root module.
///
/// ```ignore
/// hyperplug_plugin_api::export_backend!(KvmBackend);
/// ```
#[macro_export]
macro_rules! export_backend {
    ($backend:ty) => {
        mod __hyperplug_backend_export {
            use super::*;
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            use $crate::abi_stable::std_types::{RResult, RStr};
            use $crate::backend::{
                export_support, Backend, BackendHost, BackendModule, BackendModuleRef, Detection,
                VmBox, VmConfig,
            };
            use $crate::PluginError;

            extern "C" fn name() -> RStr<'static> {
                RStr::from_str(<$backend as Backend>::NAME)
            }
            extern "C" fn vendor() -> RStr<'static> {
                RStr::from_str(<$backend as Backend>::VENDOR)
            }
            extern "C" fn description() -> RStr<'static> {
                RStr::from_str(<$backend as Backend>::DESCRIPTION)
            }
            extern "C" fn detect() -> Detection {
                export_support::detect::<$backend>()
            }
            extern "C" fn create_vm(
                host: BackendHost,
                config: VmConfig,
            ) -> RResult<VmBox, PluginError> {
                export_support::create_vm::<$backend>(host, config)
            }

            /// The root module of this backend library.
            #[$crate::abi_stable::export_root_module]
            pub fn get_library() -> BackendModuleRef {
                $crate::install_plugin_panic_hook();
                BackendModule {
                    name,
                    vendor,
                    description,
                    detect,
                    create_vm,
                }
                .leak_into_prefix()
            }
        }
    };
}
