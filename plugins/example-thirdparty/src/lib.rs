//! # A third-party Hyperplug device: a programmable countdown timer
//!
//! This crate is the worked example of Hyperplug's plugin kit. It lives in
//! the Hyperplug repository only for convenience: it is **not** a member of
//! the Hyperplug workspace (its `Cargo.toml` has its own empty `[workspace]`
//! table and its own `Cargo.lock`), it depends on nothing of Hyperplug's but
//! `hyperplug-plugin-api`, and the host is never rebuilt to use it. Copy the
//! folder anywhere, point the `path` of that dependency (or a version) at the
//! API crate, and it builds the same way.
//!
//! ## The device
//!
//! Four byte-wide ports at `port` (default 0x530), see [`registers`]:
//!
//! ```text
//! +0 control  bit 0 start, bit 1 periodic, bit 2 interrupt enable,
//!             bit 7 (write 1) acknowledge: clear status.expired
//! +1 status   bit 0 expired (sticky; reading does not clear it)
//! +2 reload   low byte  } reload value in milliseconds (0 = 65536 ms)
//! +3 reload   high byte }
//! ```
//!
//! Setting `start` loads the reload value and counts down on the VM's
//! virtual clock. At zero the device sets `status.expired`; a one-shot
//! countdown then clears `start`, a periodic one reloads and goes on. The
//! IRQ line `irq` (default 5) is high while `expired` and `interrupt enable`
//! are both set.
//!
//! ## How it is built, step by step
//!
//! 1. **Options** ([`options`]): `--device ...,port=0x540,irq=7` arrives as
//!    a `DeviceConfig`; unknown keys and out-of-range values become one-line
//!    errors that the host prints, never panics.
//! 2. **Registers** ([`registers`], [`countdown`]): the host calls
//!    [`Device::read`](hyperplug_plugin_api::device::Device::read) and
//!    [`Device::write`](hyperplug_plugin_api::device::Device::write) for
//!    every guest `IN`/`OUT` that hits the ranges returned by `io_ranges`.
//!    Reads and writes cannot fail: like hardware, the device ignores what
//!    it does not decode.
//! 3. **Time and interrupts** ([`countdown`]): the device reads the virtual
//!    clock with `HostServices::now_ns`, asks for a callback with
//!    `HostServices::set_timer`, and drives its IRQ line with
//!    `HostServices::set_irq`. No threads, no sleeping.
//! 4. **Save, restore, reset** ([`snapshot`]): versioned bytes with the
//!    remaining time (not an absolute deadline), so a snapshot resumes
//!    correctly on another VM's clock.
//! 5. **Export**: `export_device!(Countdown)` (below) generates the
//!    library's root module. The host finds it by the file name prefix
//!    `libhyperplug_`, checks the ABI version and every type's layout, and
//!    wraps each call so that a panic in here becomes an error, never an
//!    unwind into the host.
//! 6. **Test without a hypervisor** (`src/tests.rs`): the unit tests drive
//!    the device through `hyperplug_plugin_api::testing::RecordingHost`, a
//!    host that records IRQ levels and timers and whose virtual clock the
//!    test moves by hand.
//!
//! ## Build, load, test
//!
//! ```text
//! cargo build --manifest-path plugins/example-thirdparty/Cargo.toml
//! hyperplug plugins --plugin-dir plugins/example-thirdparty/target/debug
//! hyperplug run --device ./plugins/example-thirdparty/target/debug/libhyperplug_example_countdown.so,port=0x530 ...
//! cargo test --manifest-path plugins/example-thirdparty/Cargo.toml
//! ```

pub mod countdown;
pub mod options;
pub mod registers;
pub mod snapshot;

#[cfg(test)]
mod tests;

pub use countdown::Countdown;

hyperplug_plugin_api::export_device!(Countdown);
