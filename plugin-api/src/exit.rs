//! What a vCPU run returns to the host.

use abi_stable::std_types::{RString, RVec};
use abi_stable::StableAbi;

/// Why a vCPU stopped running guest code.
///
/// For `IoIn` and `MmioRead` the host answers with
/// [`FfiVcpu::complete_io`](crate::backend::FfiVcpu::complete_io) before the
/// next run; string I/O (`count > 1`) carries `size * count` bytes.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// `IN`/`INS`: the host must supply `size * count` bytes.
    IoIn {
        /// I/O port.
        port: u16,
        /// Access size in bytes: 1, 2 or 4.
        size: u8,
        /// Repetitions (string I/O), at least 1.
        count: u32,
    },
    /// `OUT`/`OUTS`: `data` holds `size * count` bytes.
    IoOut {
        /// I/O port.
        port: u16,
        /// Access size in bytes: 1, 2 or 4.
        size: u8,
        /// Repetitions (string I/O), at least 1.
        count: u32,
        /// The bytes written, little-endian per access.
        data: RVec<u8>,
    },
    /// A load from guest-physical memory not backed by a slot.
    MmioRead {
        /// Guest-physical address.
        addr: u64,
        /// Bytes to read, 1 to 8.
        size: u8,
    },
    /// A store to guest-physical memory not backed by a slot (or read-only).
    MmioWrite {
        /// Guest-physical address.
        addr: u64,
        /// The bytes written.
        data: RVec<u8>,
    },
    /// The guest executed HLT with nothing to wake it.
    Hlt,
    /// The guest shut down: a triple fault (SDM vol. 3, 6.15, "Double Fault Exception").
    Shutdown,
    /// The interrupt window the host asked for is open: it may inject now.
    InterruptWindow,
    /// A debug event (breakpoint, single-step) the host asked for.
    Debug {
        /// Guest RIP at the event.
        rip: u64,
        /// Exception vector (1 or 3).
        vector: u8,
    },
    /// VM entry failed; the backend's own reason is in the native exit.
    EntryFailure {
        /// The hardware/backend reason code.
        reason: u64,
    },
    /// The backend could not continue (emulation failure and the like).
    InternalError {
        /// What happened.
        description: RString,
    },
    /// The run was cut short by the host (a kick); nothing to do.
    Interrupted,
    /// RDMSR of an MSR the backend forwards to the host (IA32_APIC_BASE with
    /// [`VmConfig::HOST_LAPIC`](crate::backend::VmConfig::HOST_LAPIC); the
    /// x2APIC range too where the backend can);
    /// answer with [`FfiVcpu::complete_msr`](crate::backend::FfiVcpu::complete_msr).
    MsrRead {
        /// The MSR index (ECX).
        index: u32,
    },
    /// WRMSR of a forwarded MSR; answer with `complete_msr` (value ignored).
    MsrWrite {
        /// The MSR index (ECX).
        index: u32,
        /// EDX:EAX.
        data: u64,
    },
    /// The guest asked the host to stop (ACPI S5 and the like, backend-detected).
    SystemEvent {
        /// Backend-specific event type.
        kind: u32,
    },
}

/// An exit, with the backend's native description for tracing
/// (e.g. `KVM_EXIT_IO`, `VMX exit reason 30`, `VMEXIT_IOIO`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The neutral reason the host dispatches on.
    pub reason: ExitReason,
    /// The backend's exit code (KVM exit reason, VMX basic exit reason, SVM EXITCODE).
    pub native_code: u64,
    /// The backend's name for it, as its manual spells it.
    pub native_name: RString,
    /// Qualification / EXITINFO / extra detail, preformatted.
    pub native_detail: RString,
}

impl Exit {
    /// Builds an exit.
    pub fn new(
        reason: ExitReason,
        native_code: u64,
        native_name: &str,
        native_detail: String,
    ) -> Self {
        Self {
            reason,
            native_code,
            native_name: native_name.into(),
            native_detail: native_detail.into(),
        }
    }
}
