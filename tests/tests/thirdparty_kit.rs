//! User story: a third party builds a device against `hyperplug-plugin-api`
//! alone and loads it without rebuilding the host.
//!
//! The example device (`plugins/example-thirdparty`, a countdown timer) is
//! its own workspace. This test builds it with a nested cargo into its own
//! target directory (the workspace's is locked by the `cargo test` running
//! us), then: loads the `.so` with the host library and checks its name and
//! ABI; drives it across the ABI with a recording host; checks that
//! `hyperplug plugins --plugin-dir` lists it; and, where /dev/kvm is usable,
//! runs a guest that programs a 1 ms one-shot countdown, polls it to expiry
//! and prints `countdown expired`.

mod support;

use hyperplug_plugin_api::abi_stable::std_types::{RResult, RSlice, RSliceMut};
use hyperplug_plugin_api::device::{AddressSpace, IoRange};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::{AbiVersion, DeviceConfig};
use hyperplug_tests::asm::{
    emit_call_print, emit_halt_forever, emit_power_off, emit_print_str, AsmResult,
};
use hyperplug_tests::kit::{assemble_with_data, cstr, Guest, Mode, GUEST_STACK_TOP, RAW_LOAD_ADDR};
use iced_x86::code_asm::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use support::*;

/// The countdown device's base port in the guest run (its default).
const PORT: u16 = 0x530;
/// Register offsets and bits of the example device (its README/registers.rs).
const CONTROL: u16 = 0;
const STATUS: u16 = 1;
const RELOAD: u16 = 2;
const CTRL_START: u8 = 1 << 0;
const CTRL_IRQ_ENABLE: u8 = 1 << 2;
const STATUS_EXPIRED: u8 = 1 << 0;

/// Writes a progress line past the test harness's capture.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "thirdparty_kit: {msg}");
}

/// The repository root: the parent of this crate's manifest directory.
fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().expect("tests/ has a parent").to_path_buf()
}

/// Builds the example crate with a nested cargo into
/// `<root>/target/thirdparty-kit` and returns the profile directory that
/// holds the `.so`.
fn build_example() -> PathBuf {
    let root = repo_root();
    let manifest = root.join("plugins/example-thirdparty/Cargo.toml");
    let target = root.join("target/thirdparty-kit");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    say(&format!(
        "building {} with a nested cargo into {} (the first build compiles abi_stable: ~30-60 s)",
        manifest.display(),
        target.display()
    ));
    let start = Instant::now();
    let out = Command::new(&cargo)
        .args(["build", "--offline", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        // A cross-compilation default would move the output to target/<triple>/.
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run the nested cargo");
    say(&format!(
        "nested build took {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    assert!(
        out.status.success(),
        "nested cargo build of the example plugin failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug")
}

/// 32-bit protected-mode guest: checks the countdown is idle, loads a
/// reload value of 1 ms (one 16-bit `out` to +2, little-endian), starts a
/// one-shot countdown without interrupts, polls the status register until
/// `expired`, prints `countdown expired\n` on COM1 and powers off (ACPI S5).
/// If the device reports `expired` before it was started, it prints
/// `expired before start\n` instead.
fn countdown_guest() -> AsmResult<Guest> {
    let data = [cstr("countdown expired\n"), cstr("expired before start\n")];
    let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let out = assemble_with_data(32, RAW_LOAD_ADDR, &data, |a, addrs| {
        let mut print = a.create_label();
        let mut poll = a.create_label();
        let mut early = a.create_label();
        let mut done = a.create_label();
        a.cli()?;
        a.mov(esp, GUEST_STACK_TOP)?;
        // Idle at power-on: status.expired must be clear.
        a.mov(dx, u32::from(PORT + STATUS))?;
        a.in_(al, dx)?;
        a.test(al, u32::from(STATUS_EXPIRED))?;
        a.jnz(early)?;
        // reload = 1 ms
        a.mov(dx, u32::from(PORT + RELOAD))?;
        a.mov(ax, 1u32)?;
        a.out(dx, ax)?;
        // start, one-shot, interrupts disabled
        a.mov(dx, u32::from(PORT + CONTROL))?;
        a.mov(al, u32::from(CTRL_START))?;
        a.out(dx, al)?;
        // poll status until expired
        a.mov(dx, u32::from(PORT + STATUS))?;
        a.set_label(&mut poll)?;
        a.in_(al, dx)?;
        a.test(al, u32::from(STATUS_EXPIRED))?;
        a.jz(poll)?;
        emit_call_print(a, print, addrs[0])?;
        a.jmp(done)?;
        a.set_label(&mut early)?;
        emit_call_print(a, print, addrs[1])?;
        a.set_label(&mut done)?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: RAW_LOAD_ADDR,
        entry: RAW_LOAD_ADDR,
        mode: Mode::Protected,
        code: 0..out.code_len,
    })
}

/// Creates the device from the loaded library with `opts` on `host`, across the ABI.
fn create(
    loaded: &hyperplug::plugin::LoadedDevice,
    opts: &str,
    host: &RecordingHost,
) -> RResult<hyperplug_plugin_api::device::DeviceBox, hyperplug_plugin_api::PluginError> {
    (loaded.module.create())(DeviceConfig::parse(opts), host.services())
}

/// Drives the loaded device through the ABI with a recording host: the
/// options reach it, its registers decode, its timer runs on the virtual
/// clock and its IRQ line follows.
fn check_across_the_abi(loaded: &hyperplug::plugin::LoadedDevice) {
    let host = RecordingHost::new();
    match create(loaded, "irq=99", &host) {
        RResult::RErr(e) => assert!(
            e.message.contains("irq 99 out of range"),
            "bad option error: {}",
            e.message
        ),
        RResult::ROk(_) => panic!("irq=99 was accepted"),
    }
    let mut dev = match create(loaded, "port=0x540,irq=7", &host) {
        RResult::ROk(d) => d,
        RResult::RErr(e) => panic!("create failed: {}", e.message),
    };
    assert_eq!(dev.io_ranges().to_vec(), vec![IoRange::pio(0x540, 4)]);
    let out = |dev: &mut hyperplug_plugin_api::device::DeviceBox, off: u64, bytes: &[u8]| {
        dev.write(AddressSpace::Pio, 0x540 + off, RSlice::from_slice(bytes))
            .into_result()
            .expect("write");
    };
    out(&mut dev, u64::from(RELOAD), &2u16.to_le_bytes());
    out(
        &mut dev,
        u64::from(CONTROL),
        &[CTRL_START | CTRL_IRQ_ENABLE],
    );
    assert_eq!(host.record().timers.get(&0).copied(), Some(2_000_000));
    host.advance_ns(2_000_000);
    assert_eq!(host.take_due_timers(), vec![0]);
    dev.timer_fired(0).into_result().expect("timer_fired");
    let mut status = [0u8];
    dev.read(
        AddressSpace::Pio,
        0x540 + u64::from(STATUS),
        RSliceMut::from_mut_slice(&mut status),
    )
    .into_result()
    .expect("read");
    assert_eq!(status[0], STATUS_EXPIRED);
    assert_eq!(host.irq_level(7), Some(true), "IRQ 7 raised on expiry");
    let state = dev.save().into_result().expect("save");
    assert_eq!(state.version, 1);
}

#[test]
fn third_party_device_builds_alone_and_loads_into_the_unchanged_host() {
    let dir = build_example();
    let so = dir.join("libhyperplug_example_countdown.so");
    assert!(so.exists(), "{} was not built", so.display());

    // The host library loads it: right name, the host's ABI version.
    let loaded = hyperplug::plugin::load_device(&so)
        .unwrap_or_else(|e| panic!("host refused {}: {e}", so.display()));
    assert_eq!(loaded.name(), "countdown");
    assert_eq!(loaded.abi, AbiVersion::current());
    assert!((loaded.module.options_help())().as_str().contains("port=N"));
    check_across_the_abi(&loaded);

    // The unchanged host binary discovers it on the plugin path.
    let dir_s = dir.to_str().expect("utf-8 path");
    let r = run_hyperplug(&["--plugin-dir", dir_s, "plugins"], b"", TIMEOUT);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("countdown "))
        .unwrap_or_else(|| panic!("countdown not listed:\n{}", r.stdout));
    assert!(
        line.contains(&format!("ABI {}", AbiVersion::current())),
        "{line}"
    );
    assert!(
        r.stdout.contains(so.to_str().expect("utf-8")),
        "{}",
        r.stdout
    );

    let g = countdown_guest().expect("assemble the countdown guest");
    let work = scratch_dir("countdown");
    let img = work.join("countdown.bin");
    std::fs::write(&img, &g.bytes).expect("write guest image");
    let device = format!("{},port={PORT:#x}", so.display());
    let load = format!("{:#x}", g.load_addr);
    let entry = format!("{:#x}", g.entry);
    let r = run_hyperplug(
        &[
            "run",
            "--device",
            &device,
            "--image",
            img.to_str().expect("utf-8"),
            "--load-addr",
            &load,
            "--entry",
            &entry,
            "--mode",
            "protected",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout, "countdown expired\n", "stderr: {}", r.stderr);
}
