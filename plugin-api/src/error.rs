//! The error type every fallible ABI call returns.

use abi_stable::std_types::{RResult, RString};
use abi_stable::StableAbi;

/// What went wrong, coarsely, so the host can decide how to react.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument or configuration value.
    InvalidInput,
    /// The backend or device cannot do this (unsupported feature).
    Unsupported,
    /// An operating-system call failed (errno in the message).
    Os,
    /// The plugin panicked; it is poisoned and refuses further calls.
    Panic,
    /// Anything else.
    Other,
}

/// An error crossing the ABI: a kind plus a one-line message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Classification.
    pub kind: ErrorKind,
    /// Human-readable, one line, without a trailing period.
    pub message: RString,
}

/// The `Result` type used across the ABI.
pub type PluginResult<T> = RResult<T, PluginError>;

impl PluginError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
        }
    }
    /// An [`ErrorKind::InvalidInput`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// An [`ErrorKind::Unsupported`] error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// An [`ErrorKind::Os`] error.
    pub fn os(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Os, message)
    }
    /// An [`ErrorKind::Other`] error.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<crate::config::ConfigError> for PluginError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::invalid(e.to_string())
    }
}
