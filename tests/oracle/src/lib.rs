//! Differential-testing oracle for the Hyperplug x86 emulator.
//!
//! * [`run_native`] runs a [`Case`] (64-bit user-mode machine code plus initial registers
//!   and data) on the host CPU in a ptrace'd child process and returns the [`Outcome`].
//! * [`gen_case`] builds random cases from instruction [`Family`]s, deterministically
//!   from a seed, and records which flags are architecturally undefined where.
//! * [`undefined_flags`] is the SDM's table of flags each instruction leaves undefined.
//! * [`show`] prints a case and its outcome reproducibly.

pub mod case;
pub mod error;
pub mod native;

pub use case::{Case, Exception, Outcome, Regs};
pub use error::OracleError;
pub use native::{run_native, NativeOracle};
pub mod cpu;
pub mod flags;
pub mod gen;
pub mod rng;

pub use flags::undefined_flags;
pub use gen::{case_for, contains_syscall, gen_case, Family, GenConfig};
pub use rng::Rng;
pub mod show;
