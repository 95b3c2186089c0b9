//! The crate's error type.

use std::fmt;

/// Why the oracle or the generator could not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OracleError {
    /// The case itself is unusable (code too long, data too large, ...).
    BadCase(String),
    /// A system call made by the harness failed.
    Sys {
        /// What the harness was doing.
        what: &'static str,
        /// The errno.
        errno: i32,
    },
    /// The child process could not be set up (failed step and errno).
    ChildSetup {
        /// Setup step number that failed (see `native::child`).
        step: i32,
    },
    /// The child process died unexpectedly (wait status).
    ChildDied(i32),
    /// The snippet tried to make a system call at this RIP; the child was killed.
    SyscallAttempted {
        /// RIP after the system-call instruction.
        rip: u64,
    },
    /// The snippet ran longer than the CPU-time budget (milliseconds).
    Timeout(u64),
    /// The child stopped in a way the harness does not understand.
    UnexpectedStop(String),
    /// The generator could not encode an instruction.
    Encode(String),
}

impl OracleError {
    /// Builds a [`OracleError::Sys`] from the current errno.
    pub(crate) fn last_os(what: &'static str) -> Self {
        OracleError::Sys {
            what,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

impl fmt::Display for OracleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OracleError::BadCase(m) => write!(f, "bad case: {m}"),
            OracleError::Sys { what, errno } => write!(
                f,
                "{what} failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            OracleError::ChildSetup { step } => {
                write!(f, "oracle child setup failed at step {step}")
            }
            OracleError::ChildDied(status) => {
                write!(
                    f,
                    "oracle child died unexpectedly (wait status {status:#x})"
                )
            }
            OracleError::SyscallAttempted { rip } => {
                write!(f, "snippet attempted a system call (rip {rip:#x})")
            }
            OracleError::Timeout(ms) => write!(f, "snippet exceeded its {ms} ms CPU budget"),
            OracleError::UnexpectedStop(m) => write!(f, "unexpected child stop: {m}"),
            OracleError::Encode(m) => write!(f, "cannot encode generated instruction: {m}"),
        }
    }
}

impl std::error::Error for OracleError {}
