//! The host's error type: every variant names the thing and the reason.

use std::path::PathBuf;

/// Host errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin file could not be used.
    #[error("{}: {reason}", path.display())]
    Plugin {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No backend of that name was found.
    #[error("unknown backend '{name}' (found: {available})")]
    UnknownBackend {
        /// What was asked for.
        name: String,
        /// What exists, comma separated.
        available: String,
    },
    /// No device plugin of that name was found.
    #[error("unknown device '{name}' (found: {available}); give a name or a path to a .so")]
    UnknownDevice {
        /// What was asked for.
        name: String,
        /// What exists, comma separated.
        available: String,
    },
    /// A backend exists but cannot run here, or none can.
    #[error("{0}")]
    NoBackend(String),
    /// A backend call failed.
    #[error("backend {backend}: {op}: {message}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What the host was doing.
        op: String,
        /// The backend's message.
        message: String,
    },
    /// A device failed to create or misbehaved.
    #[error("device {device}: {message}")]
    Device {
        /// Device name.
        device: String,
        /// What happened.
        message: String,
    },
    /// Two devices claim the same addresses.
    #[error("{0}")]
    BusConflict(String),
    /// Guest memory could not be set up or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// An image could not be loaded.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// A bad command-line or configuration value.
    #[error("{0}")]
    Config(String),
}

/// Host result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
