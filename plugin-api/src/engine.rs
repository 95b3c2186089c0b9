//! The host's execution engine (x86 emulator + MMU) as the software backends
//! reach it across the ABI, the way kvm-intel reaches kvm.ko's emulator.
//!
//! A backend asks the host for one engine per vCPU
//! ([`FfiBackendHost::create_engine`](crate::backend::FfiBackendHost::create_engine)).
//! The engine owns the vCPU's architectural state; the backend turns its
//! control structure (VMCS controls, VMCB intercepts) into an
//! [`EnginePolicy`] and calls [`FfiEngine::execute`], which runs many guest
//! instructions on the host side (the hot loop never crosses the ABI) and
//! returns one [`EngineEvent`]: everything either vendor needs to encode
//! its exit.

use crate::error::PluginResult;
use crate::state::{CpuState, Regs, VcpuEvents};
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, ROption, RSlice, RVec};
use abi_stable::StableAbi;

/// Instruction intercept bits of [`EnginePolicy::insns`].
pub mod insn {
    /// HLT.
    pub const HLT: u32 = 1 << 0;
    /// CPUID.
    pub const CPUID: u32 = 1 << 1;
    /// RDTSC.
    pub const RDTSC: u32 = 1 << 2;
    /// RDTSCP.
    pub const RDTSCP: u32 = 1 << 3;
    /// RDPMC.
    pub const RDPMC: u32 = 1 << 4;
    /// INVLPG.
    pub const INVLPG: u32 = 1 << 5;
    /// MWAIT.
    pub const MWAIT: u32 = 1 << 6;
    /// MONITOR.
    pub const MONITOR: u32 = 1 << 7;
    /// PAUSE.
    pub const PAUSE: u32 = 1 << 8;
    /// INVD.
    pub const INVD: u32 = 1 << 9;
    /// WBINVD.
    pub const WBINVD: u32 = 1 << 10;
    /// XSETBV.
    pub const XSETBV: u32 = 1 << 11;
    /// LGDT/LIDT/SGDT/SIDT/LLDT/SLDT/LTR/STR.
    pub const DESC_TABLE: u32 = 1 << 12;
    /// INT n, INT3, INTO.
    pub const INTN: u32 = 1 << 13;
    /// IRET.
    pub const IRET: u32 = 1 << 14;
    /// INVPCID.
    pub const INVPCID: u32 = 1 << 15;
}

/// What must stop execution before it happens.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
pub struct EnginePolicy {
    /// Exception bitmap: bit n intercepts vector n.
    pub exceptions: u32,
    /// Intercepted ports (every other port access stops as an `Io` event
    /// the backend completes: port I/O always leaves the engine).
    pub io_ports: RVec<u16>,
    /// Intercepted RDMSR indices.
    pub msr_read: RVec<u32>,
    /// Intercepted WRMSR indices.
    pub msr_write: RVec<u32>,
    /// Intercept every MSR not listed (reads and writes).
    pub msr_others: bool,
    /// CR read intercepts, bit n = CRn.
    pub cr_read: u16,
    /// CR write intercepts, bit n = CRn.
    pub cr_write: u16,
    /// DR read intercepts.
    pub dr_read: u8,
    /// DR write intercepts.
    pub dr_write: u8,
    /// [`insn`] bits.
    pub insns: u32,
    /// Stop as soon as an external interrupt could be delivered.
    pub interrupt_window: bool,
    /// Identifies this policy's contents: the host converts a policy once
    /// and reuses the conversion while the generation stays the same (a
    /// backend bumps it whenever it changes anything above). 0 = never cache.
    pub generation: u64,
}

/// Why the engine stopped. Instruction-level intercepts stop *before* the
/// instruction executes; `rip`/`insn_*` in [`EngineEvent`] describe it.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum EngineStop {
    /// The budget of instructions is used up.
    Budget,
    /// HLT executed (not intercepted).
    Hlt,
    /// Triple fault (SDM vol. 3, 6.15).
    Shutdown,
    /// The vCPU is halted and nothing is pending.
    Halted,
    /// An MMIO access to complete (`complete_io` with the read data, or
    /// empty for a write), then `execute` again.
    Mmio {
        /// Guest-physical address.
        gpa: u64,
        /// Size in bytes.
        size: u8,
        /// The data of a write.
        write: ROption<u64>,
    },
    /// A port access to complete likewise.
    Io {
        /// Port.
        port: u16,
        /// Size in bytes.
        size: u8,
        /// The value of an OUT.
        write: ROption<u32>,
    },
    /// An intercepted IN/OUT/INS/OUTS with the details VMX exit
    /// qualifications and SVM EXITINFO1 encode.
    IoIntercept {
        /// Port.
        port: u16,
        /// Size.
        size: u8,
        /// IN/INS.
        input: bool,
        /// INS/OUTS.
        string: bool,
        /// REP.
        rep: bool,
        /// Address size of a string instruction.
        addr_size: u8,
        /// Segment of OUTS's source.
        seg: u8,
        /// Immediate-port form.
        imm: bool,
    },
    /// MOV from CRn.
    CrRead {
        /// CR number.
        cr: u8,
        /// Destination GPR.
        gpr: u8,
    },
    /// MOV to CRn, CLTS, LMSW.
    CrWrite {
        /// CR number.
        cr: u8,
        /// Source GPR, if any.
        gpr: ROption<u8>,
        /// The value.
        value: u64,
        /// CLTS.
        clts: bool,
        /// LMSW.
        lmsw: bool,
    },
    /// MOV from DRn.
    DrRead {
        /// DR number.
        dr: u8,
        /// GPR.
        gpr: u8,
    },
    /// MOV to DRn.
    DrWrite {
        /// DR number.
        dr: u8,
        /// GPR.
        gpr: u8,
    },
    /// An exception in the bitmap (state as at the faulting instruction; CR2
    /// not yet written).
    Exception {
        /// Vector.
        vector: u8,
        /// Error code.
        error_code: ROption<u32>,
        /// #PF linear address.
        address: ROption<u64>,
    },
    /// RDMSR.
    MsrRead {
        /// ECX.
        msr: u32,
    },
    /// WRMSR.
    MsrWrite {
        /// ECX.
        msr: u32,
        /// EDX:EAX.
        value: u64,
    },
    /// CPUID.
    Cpuid {
        /// EAX.
        leaf: u32,
        /// ECX.
        subleaf: u32,
    },
    /// INVLPG.
    Invlpg {
        /// The linear address.
        linear: u64,
    },
    /// INT n / INT3 / INTO.
    IntN {
        /// Vector.
        vector: u8,
    },
    /// Another instruction intercept from [`insn`] (the bit that matched).
    Insn {
        /// One [`insn`] bit.
        which: u32,
    },
    /// The interrupt window is open.
    InterruptWindow,
    /// A second-level (nested paging) fault: the access has not happened.
    /// Resolve it with [`FfiEngine::nested_page_fault`] and execute again.
    NestedFault {
        /// The guest-physical address.
        gpa: u64,
        /// The guest-linear address, when the access had one.
        linear: ROption<u64>,
        /// NPF EXITINFO1 as APM vol. 2, 15.25.6 defines it (a #PF-style error
        /// code plus bit 32 "final translation" / bit 33 "guest table walk").
        info: u64,
    },
    /// A paging-structure entry outside guest RAM.
    TableUnbacked {
        /// Its guest-physical address.
        gpa: u64,
    },
}

/// One stop of the engine.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// Why.
    pub stop: EngineStop,
    /// Instructions retired during this `execute` call.
    pub retired: u64,
    /// RIP of the intercepted instruction (or current RIP).
    pub rip: u64,
    /// Its length (0 when not at an instruction).
    pub insn_len: u8,
    /// Its bytes (decode assists, SVM "guest instruction bytes").
    pub insn_bytes: [u8; 15],
}

/// How the engine translates guest-linear addresses and reaches guest-physical
/// memory.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePaging {
    /// The engine walks the guest's tables itself (with its TLB), as a CPU
    /// with no virtualization in between.
    Direct,
    /// Shadow paging (DESIGN.md "Memory and MMU"): translations come from
    /// the host MMU's shadow tables; a miss is a #PF the backend should
    /// intercept and resolve with [`FfiEngine::shadow_page_fault`].
    Shadow,
    /// Nested paging: guest-physical accesses go through second-level tables
    /// (AMD NPT format) the host builds lazily from the memory slots; a miss
    /// stops as [`EngineStop::NestedFault`].
    NestedNpt,
}

/// What [`FfiEngine::shadow_page_fault`] did.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// The guest's tables allow the access: a shadow is installed, re-execute.
    Fixed,
    /// The guest's tables refuse: inject #PF with this error code and CR2.
    Reflect {
        /// The #PF error code the guest must see.
        error_code: u32,
        /// The faulting linear address (CR2).
        address: u64,
    },
    /// A paging-structure entry is not in RAM.
    Unbacked {
        /// Its guest-physical address.
        gpa: u64,
    },
}

/// What [`FfiEngine::nested_page_fault`] did.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestedOutcome {
    /// The second-level mapping is in place: re-execute.
    Mapped,
    /// No slot backs the address: it is MMIO; the next access stops as `Mmio`.
    Mmio,
}

/// The four CPUID output registers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The engine of one vCPU.
#[sabi_trait]
pub trait FfiEngine: Send {
    /// The vCPU's state.
    fn get_state(&self) -> CpuState;
    /// Replaces the vCPU's state (flushes the engine's translation caches).
    fn set_state(&mut self, state: CpuState) -> PluginResult<()>;
    /// Runs at most `budget` instructions under `policy`.
    fn execute(&mut self, policy: &EnginePolicy, budget: u64) -> PluginResult<EngineEvent>;
    /// Completes the last `Mmio`/`Io` stop: the bytes read (little-endian),
    /// or nothing for a write. The next `execute` re-runs the instruction.
    fn complete_io(&mut self, data: RSlice<'_, u8>) -> PluginResult<()>;
    /// Replaces only the general registers, RIP and RFLAGS (cheap: keeps
    /// every translation and decode cached).
    fn set_regs(&mut self, regs: Regs) -> PluginResult<()>;
    /// Replaces the pending/injected events: an injected exception or
    /// interrupt is delivered at the start of the next `execute`, without
    /// an intercept check of its own vector (event injection, APM vol. 2,
    /// 15.20; SDM vol. 3, 27.6 "Event Injection").
    fn set_events(&mut self, events: VcpuEvents) -> PluginResult<()>;
    /// Selects the paging strategy (drops every cached translation).
    fn set_paging(&mut self, paging: EnginePaging) -> PluginResult<()>;
    /// The #PF intercept under [`EnginePaging::Shadow`]: walks the guest's
    /// tables for the access `error_code` describes at `linear`.
    fn shadow_page_fault(&mut self, linear: u64, error_code: u32) -> PluginResult<ShadowOutcome>;
    /// Resolves a [`EngineStop::NestedFault`] at `gpa` from the memory slots.
    fn nested_page_fault(&mut self, gpa: u64, write: bool) -> PluginResult<NestedOutcome>;
    /// The CPUID outputs (EAX, EBX, ECX, EDX) of the engine's own CPU model:
    /// the features the engine implements.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs;
    /// Asserts (`false`) or releases A20M#: physical-address bit 20 reads as
    /// 0 while asserted (SDM vol. 3, 8.7.13.4). Kept across `set_state`.
    #[sabi(last_prefix_field)]
    fn set_a20(&mut self, enabled: bool) -> PluginResult<()>;
}

/// An owned engine.
pub type EngineBox = FfiEngine_TO<'static, RBox<()>>;
