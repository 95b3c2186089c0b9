//! The Hyperplug x86 instruction emulator: the host-owned engine that runs
//! guest code for the software VMX and SVM backends.
//!
//! # Architecture
//!
//! * [`cpu`] — [`Cpu`], the architectural state executed on (GPRs, RIP,
//!   RFLAGS, segment registers with descriptor caches, GDTR/IDTR/LDTR/TR,
//!   CRs, EFER, DRs, the MSRs of the integer ISA, interrupt shadow, halt,
//!   pending events), with [`Cpu::from_state`] / [`Cpu::to_state`] for the
//!   ABI's `CpuState`, and the mode helpers.
//! * [`exception`] — [`Exception`] (vector, error code, CR2), fault/trap
//!   classes and the double-fault table; [`Fault`], what operations return.
//! * [`bus`] — [`Bus`], the caller's guest-physical memory and ports, with
//!   [`BusStop`] for accesses the caller must complete; [`FlatBus`] for tests.
//! * `mem` — segmentation (limits, types, canonical checks), paging through
//!   the MMU's TLB and walker, page splits, #AC, and the per-instruction
//!   write buffer: every write is translated and checked when made but
//!   committed only when the instruction completes, and GPRs/RIP/RFLAGS are
//!   snapshotted, so a fault or a stop leaves the state as before it.
//! * [`decode`] — iced-x86 decoding at IP 0 and the decoded-instruction
//!   cache keyed by guest-physical address and bitness, invalidated by
//!   guest writes to cached pages (self-modifying code).
//! * `exec` — [`Engine::execute`]: event injection, the interrupt window,
//!   fetch/decode/execute/commit, TF single-step, exception delivery with
//!   double/triple-fault rules, exact retired-instruction counts.
//! * `fast`, `block`, `lazy`, `utlb` — the fast path: blocks of
//!   pre-decoded 64-bit instructions (register ALU, MOV, loads/stores,
//!   Jcc/JMP/CALL/RET, PUSH/POP) run with lazy status flags and a micro-TLB
//!   in front of the MMU's TLB, and REP MOVS/STOS copied a page at a time;
//!   identical results to the general path (`Engine::set_fast_path` turns
//!   it off for comparison).
//! * `deliver` — IVT and IDT delivery (interrupt/trap/task gates, same
//!   privilege or TSS stack switch, IST, from virtual-8086 mode).
//! * `seg` — descriptor parsing and segment-register load checks.
//! * `ops/gates` — far CALL/JMP through 16/32-bit and 64-bit call gates
//!   (privilege checks, TSS stack switch, parameter copying), and to TSS
//!   descriptors and task gates.
//! * `task` — hardware task switches with 32-bit TSSs (JMP/CALL, INT and
//!   exceptions through task gates, IRET with NT).
//! * [`policy`] — [`InterceptPolicy`] and the [`Event`] returned.
//! * [`flags`] — RFLAGS bits and eager flag computation.
//! * [`model`] — the CPUID table.
//! * `ops/` — semantics, one file per instruction family (data, arith,
//!   logic, shift, stack, control, flagops, string, system, io, bits,
//!   atomic, bcd, misc, syscall, desc); the
//!   supported mnemonics are listed in [`SUPPORTED`]; anything else is #UD.
//!
//! # Completing a stop
//!
//! When `execute` returns [`EventKind::Mmio`] or [`EventKind::Io`], the
//! instruction has not executed. The caller performs the access (device
//! model) and calls `execute` again with a [`Bus`] that now completes that
//! access (answers the read, accepts the write); the instruction then runs
//! to completion.
//!
//! # Not implemented yet
//!
//! x87/SSE/AVX instructions (they raise #UD; CPUID does not offer them).

mod block;
pub mod bus;
pub mod cpu;
mod debugreg;
pub mod decode;
mod deliver;
pub mod exception;
mod exec;
mod fast;
pub mod flags;
mod lazy;
mod mem;
pub mod model;
pub(crate) mod ops;
pub mod policy;
mod seg;
mod shadow;
mod task;
mod utlb;

pub use bus::{Bus, BusStop, FlatBus};
pub use cpu::{Cpu, Mode, Seg, SegReg};
pub use exception::{Exception, Fault};
pub use exec::Engine;
pub use mem::is_canonical;
pub use ops::SUPPORTED;
pub use policy::{Event, EventKind, Intercept, InterceptKind, InterceptPolicy};

/// Shift/rotate flag computation, exposed for table tests and the oracle.
pub mod shift {
    pub use crate::ops::double_value;
    pub use crate::ops::shift_value;
}
