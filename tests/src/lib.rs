//! Hyperplug test guests and the small kit that builds them.
//!
//! Every guest is assembled in Rust with iced-x86's code assembler, so no
//! external assembler is needed. The integration tests in `tests/tests/`
//! run these guests under each backend; the unit tests here check the
//! bytes themselves (decodable, headers right) so they run everywhere.
//!
//! - [`asm`]: serial, power-off and debug-exit sequences for 16/32/64-bit
//!   code (shared with the host's build script, which builds the embedded
//!   guest from the same file).
//! - [`embedded_guest`]: the host's embedded default guest, rebuilt here so
//!   tests can check the image the host embeds.
//! - [`kit`]: [`Guest`], [`Mode`], code+data assembly, decimal printing.
//! - [`guests`]: the test guests.
//! - [`multiboot`]: multiboot v1 header encoding and lookup.
//! - [`decode`]: decoding helpers used by the checks.
//! - [`emu_runner`]: runs native-oracle cases on the emulator and compares outcomes.
//! - [`kvm_oracle`]: the /dev/kvm CPL-0 oracle (16/32/64-bit) against the emulator.

#[path = "../../host/guest/asm.rs"]
pub mod asm;
pub mod decode;
#[path = "../../host/guest/embedded.rs"]
pub mod embedded_guest;
pub mod emu_runner;
pub mod guests;
pub mod kit;
pub mod kvm_oracle;
pub mod mmu_guest;
pub mod multiboot;
pub mod platform_guests;

#[cfg(test)]
mod checks;

pub use guests::{
    long_mode_hello_guest, multiboot_info_guest, triple_fault_guest, uart_echo_guest,
};
pub use kit::{Guest, Mode};
