//! The stable ABI between the Hyperplug host and its plugins.
//!
//! Backends (`kvm`, later `vmx`/`svm`) and device models are shared libraries
//! that the host loads at run time. Everything that crosses the boundary is
//! defined here: `#[repr(C)]` + [`StableAbi`](abi_stable::StableAbi) types,
//! `#[sabi_trait]` trait objects, and two root modules
//! ([`BackendModule`](backend::BackendModule) and
//! [`DeviceModule`](device::DeviceModule)). abi_stable checks every type's
//! layout on load; the host additionally checks [`ABI_VERSION`] first so that a
//! plugin built against another major version gets a one-line error.
//!
//! Plugin authors implement the plain Rust traits [`device::Device`] (or
//! [`backend::Backend`], [`backend::Vm`], [`backend::Vcpu`]) and export them
//! with [`export_device!`] / [`export_backend!`]. The generated adapters catch
//! panics on the plugin side, so no unwind ever crosses the boundary: a
//! panicking plugin returns a [`PluginError`] and is poisoned from then on.
#![allow(non_local_definitions)] // emitted by abi_stable's #[sabi_trait] expansion

pub mod backend;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod exit;
mod guard;
pub mod state;
pub mod testing;

pub use config::{ConfigError, DeviceConfig};
pub use error::{ErrorKind, PluginError, PluginResult};
pub use exit::{Exit, ExitReason};
pub use guard::{guard, install_plugin_panic_hook, panic_message};

/// abi_stable and the ABI types, re-exported so plugins use the same versions.
pub use abi_stable;
use abi_stable::sabi_types::VersionStrings;

/// The plugin ABI version: the semver of this crate. Plugins record the
/// version they were built against; the host accepts a plugin whose major
/// version equals its own (and, while major is 0, whose minor does too).
pub const ABI_VERSION: VersionStrings = abi_stable::package_version_strings!();

/// Root-module name of backend libraries (checked before the layout check).
pub const BACKEND_MODULE_NAME: &str = "hyperplug_backend";
/// Root-module name of device libraries.
pub const DEVICE_MODULE_NAME: &str = "hyperplug_device";

/// A parsed `major.minor.patch`, for messages and compatibility checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    /// Incompatible changes bump this.
    pub major: u32,
    /// Compatible additions bump this.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl AbiVersion {
    /// Parses abi_stable's version strings; `None` if they are malformed.
    pub fn from_strings(v: VersionStrings) -> Option<Self> {
        let n = v.parsed().ok()?;
        Some(Self {
            major: n.major,
            minor: n.minor,
            patch: n.patch,
        })
    }

    /// The version of this crate (the host's ABI).
    pub fn current() -> Self {
        // The crate version is a literal semver; parsing cannot fail.
        Self::from_strings(ABI_VERSION).unwrap_or(Self {
            major: 0,
            minor: 0,
            patch: 0,
        })
    }

    /// Whether a plugin built against `plugin` can be loaded by a host at `self`.
    pub fn accepts(self, plugin: AbiVersion) -> bool {
        self.major == plugin.major && (self.major != 0 || self.minor == plugin.minor)
    }
}

impl std::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility_rules() {
        let v = |major, minor| AbiVersion {
            major,
            minor,
            patch: 0,
        };
        let cases = [
            (v(1, 0), v(1, 0), true),
            (v(1, 2), v(1, 0), true),
            (v(1, 0), v(1, 3), true),
            (v(1, 0), v(2, 0), false),
            (v(2, 0), v(1, 9), false),
            (v(0, 1), v(0, 1), true),
            (v(0, 1), v(0, 2), false),
        ];
        for (host, plugin, ok) in cases {
            assert_eq!(host.accepts(plugin), ok, "host {host} plugin {plugin}");
        }
    }

    #[test]
    fn current_version_is_the_crate_version() {
        assert_eq!(AbiVersion::current().to_string(), env!("CARGO_PKG_VERSION"));
    }
}
