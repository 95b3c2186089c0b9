//! Build script: assembles the embedded default guest (host/guest/) with
//! iced-x86's code assembler and writes it to `$OUT_DIR/embedded_guest.bin`,
//! which `src/embedded.rs` includes.

// The guest sources are shared with the hyperplug-tests crate, which uses
// helpers (debug-exit, serial input) that the embedded guest does not.
#[allow(dead_code)]
#[path = "guest/asm.rs"]
mod asm;
#[allow(dead_code)]
#[path = "guest/embedded.rs"]
mod embedded;

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=guest/");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let image = embedded::build().map_err(|e| format!("assembling the embedded guest: {e}"))?;
    let path = out_dir.join("embedded_guest.bin");
    std::fs::write(&path, &image.bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}
