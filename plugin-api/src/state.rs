//! vCPU state, field for field as KVM's user-space interface lays it out
//! (`struct kvm_regs`, `kvm_sregs`, `kvm_segment`, `kvm_dtable`, `kvm_fpu`,
//! `kvm_xsave`, `kvm_msr_entry`, `kvm_vcpu_events`), so that every backend
//! converts its native state (VMCS, VMCB, KVM) to one neutral form.

use abi_stable::std_types::RVec;
use abi_stable::StableAbi;

/// General-purpose registers, RIP and RFLAGS (`struct kvm_regs`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A segment register's visible selector and hidden descriptor cache
/// (`struct kvm_segment`). `type_` is the 4-bit descriptor type (SDM vol. 3,
/// 3.4.5.1); `s` = 1 for code/data, 0 for system segments.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
    pub unusable: u8,
    pub padding: u8,
}

/// A descriptor-table register, GDTR or IDTR (`struct kvm_dtable`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DTable {
    pub base: u64,
    pub limit: u16,
    pub padding: [u16; 3],
}

/// Segment, control and system registers (`struct kvm_sregs`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Sregs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: DTable,
    pub idt: DTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
    /// Pending external interrupts, one bit per vector (KVM's layout).
    pub interrupt_bitmap: [u64; 4],
}

/// x87/SSE state in FXSAVE terms (`struct kvm_fpu`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Fpu {
    pub fpr: [[u8; 16]; 8],
    pub fcw: u16,
    pub fsw: u16,
    pub ftwx: u8,
    pub pad1: u8,
    pub last_opcode: u16,
    pub last_ip: u64,
    pub last_dp: u64,
    pub xmm: [[u8; 16]; 16],
    pub mxcsr: u32,
    pub pad2: u32,
}

impl Default for Fpu {
    /// The state after FNINIT with MXCSR at its reset value (SDM vol. 1, 8.1.1, 10.2.3.1).
    fn default() -> Self {
        Self {
            fpr: [[0; 16]; 8],
            fcw: 0x37f,
            fsw: 0,
            ftwx: 0,
            pad1: 0,
            last_opcode: 0,
            last_ip: 0,
            last_dp: 0,
            xmm: [[0; 16]; 16],
            mxcsr: 0x1f80,
            pad2: 0,
        }
    }
}

/// The XSAVE area (`struct kvm_xsave`, 4 KiB in its legacy size), as bytes.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
pub struct Xsave {
    /// The raw XSAVE image (SDM vol. 1, 13.4).
    pub region: RVec<u8>,
}

/// One model-specific register (`struct kvm_msr_entry`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MsrEntry {
    pub index: u32,
    pub reserved: u32,
    pub data: u64,
}

/// Exception part of [`VcpuEvents`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ExceptionEvent {
    pub injected: u8,
    pub nr: u8,
    pub has_error_code: u8,
    pub pending: u8,
    pub error_code: u32,
}

/// Interrupt part of [`VcpuEvents`]. `shadow` holds the STI / MOV SS
/// interrupt-shadow bits (KVM_X86_SHADOW_INT_MOV_SS = 1, _STI = 2).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct InterruptEvent {
    pub injected: u8,
    pub nr: u8,
    pub soft: u8,
    pub shadow: u8,
}

/// NMI part of [`VcpuEvents`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct NmiEvent {
    pub injected: u8,
    pub pending: u8,
    pub masked: u8,
    pub pad: u8,
}

/// SMM part of [`VcpuEvents`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SmiEvent {
    pub smm: u8,
    pub pending: u8,
    pub smm_inside_nmi: u8,
    pub latched_init: u8,
}

/// Pending and in-flight events (`struct kvm_vcpu_events`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct VcpuEvents {
    pub exception: ExceptionEvent,
    pub interrupt: InterruptEvent,
    pub nmi: NmiEvent,
    pub sipi_vector: u32,
    pub flags: u32,
    pub smi: SmiEvent,
    pub triple_fault_pending: u8,
    pub reserved: [u8; 26],
    pub exception_has_payload: u8,
    pub exception_payload: u64,
}

/// Everything that defines a vCPU, backend-neutral: what snapshots store.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CpuState {
    pub regs: Regs,
    pub sregs: Sregs,
    pub fpu: Fpu,
    pub msrs: RVec<MsrEntry>,
    pub events: VcpuEvents,
    /// The XSAVE area (AVX and later state); empty when the backend has none.
    pub xsave: Xsave,
}

/// RFLAGS bits used by the host (SDM vol. 1, 3.4.3).
pub mod rflags {
    /// Bit 1 is reserved and always set.
    pub const FIXED: u64 = 1 << 1;
    /// Trap flag (single-step).
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
}

/// Control-register bits used by the host (SDM vol. 3, 2.5).
pub mod cr {
    /// CR0.PE: protected mode.
    pub const CR0_PE: u64 = 1 << 0;
    /// CR0.ET: extension type, hard-wired to 1.
    pub const CR0_ET: u64 = 1 << 4;
    /// CR0.NE: native x87 error reporting.
    pub const CR0_NE: u64 = 1 << 5;
    /// CR0.PG: paging.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4.PAE: physical-address extension.
    pub const CR4_PAE: u64 = 1 << 5;
    /// EFER.LME: long mode enable (SDM vol. 3, 2.2.1).
    pub const EFER_LME: u64 = 1 << 8;
    /// EFER.LMA: long mode active.
    pub const EFER_LMA: u64 = 1 << 10;
}
