//! Plugin discovery and loading: finds backend and device libraries, checks
//! their ABI version and layout, and refuses anything else with one line.
//!
//! Search order: `--plugin-dir` directories, then `HYPERPLUG_PLUGIN_PATH`
//! (colon-separated), then the directory of the running executable (where
//! cargo puts the `.so` files) and its parent (for test binaries in `deps/`).

use crate::error::{Error, Result};
use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError};
use hyperplug_plugin_api::backend::BackendModuleRef;
use hyperplug_plugin_api::device::DeviceModuleRef;
use hyperplug_plugin_api::{AbiVersion, BACKEND_MODULE_NAME, DEVICE_MODULE_NAME};
use std::path::{Path, PathBuf};

/// File-name prefix of discoverable plugins (`libhyperplug_serial.so`).
pub const PLUGIN_FILE_PREFIX: &str = "libhyperplug_";

/// The directories searched for plugins, in order.
#[derive(Debug, Clone, Default)]
pub struct PluginPath {
    /// Directories, first match wins.
    pub dirs: Vec<PathBuf>,
}

impl PluginPath {
    /// Builds the search path from `--plugin-dir` values, the environment and
    /// the executable's location.
    pub fn new(explicit: &[PathBuf]) -> Self {
        let mut dirs: Vec<PathBuf> = explicit.to_vec();
        if let Some(env) = std::env::var_os("HYPERPLUG_PLUGIN_PATH") {
            dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Ok(exe) = std::env::current_exe() {
            if let Some(dir) = exe.parent() {
                dirs.push(dir.to_path_buf());
                if dir.file_name().is_some_and(|n| n == "deps") {
                    if let Some(up) = dir.parent() {
                        dirs.push(up.to_path_buf());
                    }
                }
            }
        }
        let mut seen = Vec::new();
        dirs.retain(|d| {
            let key = d.canonicalize().unwrap_or_else(|_| d.clone());
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        });
        Self { dirs }
    }

    /// Every `libhyperplug_*.so` in the search path, first directory first;
    /// a file name found twice is taken from the earlier directory.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for dir in &self.dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut here: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(PLUGIN_FILE_PREFIX)
                            && n.ends_with(std::env::consts::DLL_SUFFIX)
                    })
                })
                .collect();
            here.sort();
            for p in here {
                if !out.iter().any(|q| q.file_name() == p.file_name()) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// What kind of root module a library exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// A `BackendModule`.
    Backend,
    /// A `DeviceModule`.
    Device,
}

/// A loaded backend library.
#[derive(Clone)]
pub struct LoadedBackend {
    /// Where it came from.
    pub path: PathBuf,
    /// Its ABI version.
    pub abi: AbiVersion,
    /// The root module.
    pub module: BackendModuleRef,
}

impl LoadedBackend {
    /// The backend's short name.
    pub fn name(&self) -> String {
        (self.module.name())().to_string()
    }
}

/// A loaded device library.
#[derive(Clone)]
pub struct LoadedDevice {
    /// Where it came from.
    pub path: PathBuf,
    /// Its ABI version.
    pub abi: AbiVersion,
    /// The root module.
    pub module: DeviceModuleRef,
}

impl LoadedDevice {
    /// The device's name.
    pub fn name(&self) -> String {
        (self.module.name())().to_string()
    }
}

fn plugin_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Plugin {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Flattens abi_stable's multi-line messages to one line.
fn one_line(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    let out = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 300 {
        let mut cut: String = out.chars().take(300).collect();
        cut.push_str("...");
        cut
    } else {
        out
    }
}

/// Opens a library and checks that it is a Hyperplug plugin of a compatible
/// ABI version, without yet checking layouts.
fn open(path: &Path) -> Result<(&'static LibHeader, PluginKind, AbiVersion)> {
    if !path.exists() {
        return Err(plugin_err(path, "no such file"));
    }
    if path.is_dir() {
        return Err(plugin_err(path, "is a directory, not a plugin library"));
    }
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => {
            plugin_err(path, format!("not a loadable shared library ({})", one_line(err)))
        }
        LibraryError::GetSymbolError { .. } => plugin_err(
            path,
            "not a Hyperplug plugin: the library exports no abi_stable root module",
        ),
        LibraryError::InvalidAbiHeader(_) => plugin_err(
            path,
            "built with an incompatible abi_stable version; rebuild it against this hyperplug-plugin-api",
        ),
        other => plugin_err(path, one_line(other)),
    })?;
    let consts = header.root_mod_consts();
    let kind = match consts.name().as_str() {
        BACKEND_MODULE_NAME => PluginKind::Backend,
        DEVICE_MODULE_NAME => PluginKind::Device,
        other => {
            return Err(plugin_err(
                path,
                format!("not a Hyperplug plugin: its root module is '{other}', expected '{BACKEND_MODULE_NAME}' or '{DEVICE_MODULE_NAME}'"),
            ))
        }
    };
    let ours = AbiVersion::current();
    let theirs = AbiVersion::from_strings(header.version_strings()).ok_or_else(|| {
        plugin_err(
            path,
            format!(
                "unparseable ABI version '{}'",
                header.version_strings().version
            ),
        )
    })?;
    if !ours.accepts(theirs) {
        return Err(plugin_err(
            path,
            format!("built for plugin ABI {theirs}, but this host speaks ABI {ours} (major versions must match); rebuild the plugin"),
        ));
    }
    Ok((header, kind, theirs))
}

/// Reports which kind of plugin a file is (and its ABI) after the same checks as loading.
pub fn probe(path: &Path) -> Result<(PluginKind, AbiVersion)> {
    open(path).map(|(_, k, v)| (k, v))
}

fn layout_err(path: &Path, e: LibraryError) -> Error {
    match e {
        LibraryError::AbiInstability(_) => plugin_err(
            path,
            format!(
                "ABI layout check failed (the plugin's types differ from the host's): {}",
                one_line(e)
            ),
        ),
        other => plugin_err(path, one_line(other)),
    }
}

/// Loads a backend library.
pub fn load_backend(path: &Path) -> Result<LoadedBackend> {
    let (header, kind, abi) = open(path)?;
    if kind != PluginKind::Backend {
        return Err(plugin_err(path, "is a device plugin, not a backend"));
    }
    let module = header
        .init_root_module::<BackendModuleRef>()
        .map_err(|e| layout_err(path, e))?;
    Ok(LoadedBackend {
        path: path.to_path_buf(),
        abi,
        module,
    })
}

/// Loads a device library.
pub fn load_device(path: &Path) -> Result<LoadedDevice> {
    let (header, kind, abi) = open(path)?;
    if kind != PluginKind::Device {
        return Err(plugin_err(path, "is a backend, not a device plugin"));
    }
    let module = header
        .init_root_module::<DeviceModuleRef>()
        .map_err(|e| layout_err(path, e))?;
    Ok(LoadedDevice {
        path: path.to_path_buf(),
        abi,
        module,
    })
}

/// Everything found on the plugin path.
#[derive(Default)]
pub struct Inventory {
    /// Loadable backends.
    pub backends: Vec<LoadedBackend>,
    /// Loadable devices.
    pub devices: Vec<LoadedDevice>,
    /// Files that looked like plugins but were refused, with the reason.
    pub refused: Vec<Error>,
}

impl Inventory {
    /// Scans the plugin path and loads every candidate.
    pub fn scan(path: &PluginPath) -> Self {
        let mut inv = Inventory::default();
        for file in path.candidates() {
            match probe(&file) {
                Ok((PluginKind::Backend, _)) => match load_backend(&file) {
                    Ok(b) if inv.backends.iter().any(|x| x.name() == b.name()) => {}
                    Ok(b) => inv.backends.push(b),
                    Err(e) => inv.refused.push(e),
                },
                Ok((PluginKind::Device, _)) => match load_device(&file) {
                    Ok(d) if inv.devices.iter().any(|x| x.name() == d.name()) => {}
                    Ok(d) => inv.devices.push(d),
                    Err(e) => inv.refused.push(e),
                },
                Err(e) => inv.refused.push(e),
            }
        }
        inv
    }

    /// Finds a device by name, or loads it if `spec` is a path (contains `/` or ends in `.so`).
    pub fn device(&self, spec: &str) -> Result<LoadedDevice> {
        if spec.contains('/') || spec.ends_with(std::env::consts::DLL_SUFFIX) {
            return load_device(Path::new(spec));
        }
        self.devices
            .iter()
            .find(|d| d.name() == spec)
            .cloned()
            .ok_or_else(|| Error::UnknownDevice {
                name: spec.to_string(),
                available: names(self.devices.iter().map(|d| d.name())),
            })
    }

    /// Finds a backend by name, or loads it if `spec` is a path.
    pub fn backend(&self, spec: &str) -> Result<LoadedBackend> {
        if spec.contains('/') || spec.ends_with(std::env::consts::DLL_SUFFIX) {
            return load_backend(Path::new(spec));
        }
        self.backends
            .iter()
            .find(|b| b.name() == spec)
            .cloned()
            .ok_or_else(|| Error::UnknownBackend {
                name: spec.to_string(),
                available: names(self.backends.iter().map(|b| b.name())),
            })
    }
}

fn names(it: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = it.collect();
    if v.is_empty() {
        "none; check --plugin-dir or HYPERPLUG_PLUGIN_PATH".to_string()
    } else {
        v.join(", ")
    }
}
