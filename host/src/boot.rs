//! Booting the embedded default guest.

use crate::embedded;
use crate::error::{Error, Result};
use crate::image::{self, BootSetup, Mode};
use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

/// Longest backend name the embedded guest prints.
pub const MAX_BACKEND_NAME: usize = 63;

/// Loads the embedded guest and writes the backend's name where it reads it.
pub fn load_embedded(mem: &GuestMemory, ram_size: u64, backend: &str) -> Result<BootSetup> {
    let mut name: Vec<u8> = backend
        .bytes()
        .filter(|b| b.is_ascii_graphic())
        .take(MAX_BACKEND_NAME)
        .collect();
    name.push(0);
    mem.write_slice(&name, GuestAddress(embedded::BACKEND_NAME_ADDR))
        .map_err(|e| {
            Error::Memory(format!(
                "cannot write the backend name for the embedded guest: {e}"
            ))
        })?;
    let mut setup = image::load_raw_bytes(
        mem,
        ram_size,
        "embedded guest",
        embedded::image(),
        embedded::LOAD_ADDR,
        embedded::ENTRY,
        Mode::Real,
    )?;
    setup.description = format!(
        "embedded guest ({} bytes at {:#x})",
        embedded::image().len(),
        embedded::LOAD_ADDR
    );
    Ok(setup)
}
