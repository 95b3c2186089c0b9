//! Shared helpers for the integration tests: find the built binary and
//! plugins, run `hyperplug` with a timeout, and skip kvm tests cleanly.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cargo target profile directory (`target/debug`) holding the binary and the `.so` files.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The built `hyperplug` binary; the README's test command builds it first.
pub fn hyperplug_bin() -> PathBuf {
    let p = target_dir().join("hyperplug");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` before `cargo test --workspace` (see README)",
        p.display()
    );
    p
}

/// A built shared library in the target directory, by its crate's lib name.
pub fn built_library(lib_name: &str) -> PathBuf {
    let p = target_dir().join(format!("lib{lib_name}.so"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Whether the kvm backend's own `detect()` says /dev/kvm is usable; prints
/// the skip line (with the backend's reason) when it is not.
pub fn kvm_usable_or_skip(test: &str) -> bool {
    let d = kvm_detection();
    if !d.usable {
        // Written to the process's stderr directly (not `eprintln!`, which the
        // test harness captures) so the skip shows in CI logs.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: /dev/kvm not usable ({test}: {})",
            d.reason
        );
    }
    d.usable
}

/// The kvm backend's verdict on this machine, loaded from the build directory.
pub fn kvm_detection() -> hyperplug_plugin_api::backend::Detection {
    use hyperplug::plugin::{Inventory, PluginPath};
    let inv = Inventory::scan(&PluginPath::new(&[target_dir()]));
    let kvm = inv
        .backend("kvm")
        .unwrap_or_else(|e| panic!("the kvm backend must be built (cargo build --workspace): {e}"));
    (kvm.module.detect())()
}

/// The result of one `hyperplug` run.
#[derive(Debug)]
pub struct RunResult {
    /// Exit status (None if killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Runs `hyperplug args...` with `stdin` fed in, killing it after `timeout`.
pub fn run_hyperplug(args: &[&str], stdin: &[u8], timeout: Duration) -> RunResult {
    let mut child = Command::new(hyperplug_bin())
        .args([
            "--plugin-dir",
            target_dir().to_str().expect("utf-8 target dir"),
        ])
        .args(args)
        .env_remove("HYPERPLUG_LOG")
        .env_remove("HYPERPLUG_PLUGIN_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hyperplug");
    {
        let mut sin = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = sin.write_all(&data);
            // Dropping closes stdin (EOF).
        });
    }
    // Drain both pipes on their own threads so a chatty run (--trace) cannot
    // fill a pipe and stall while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break Some(s),
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        panic!("hyperplug {args:?} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    };
    RunResult {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// A scratch directory unique to this test process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperplug-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Generous timeout: guest kernel code is emulated at ~1 MIPS under a paravirtual KVM.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Writes `guest` to a scratch file and runs it as a raw image
/// (`--image --load-addr --entry --mode`), with `extra` options before it.
pub fn run_guest(
    guest: &hyperplug_tests::Guest,
    name: &str,
    extra: &[&str],
    stdin: &[u8],
) -> RunResult {
    let d = scratch_dir(name);
    let img = d.join(format!("{name}.bin"));
    std::fs::write(&img, &guest.bytes).expect("write guest image");
    let load = format!("{:#x}", guest.load_addr);
    let entry = format!("{:#x}", guest.entry);
    let mode = guest.mode.to_string();
    let mut args: Vec<&str> = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--image",
        img.to_str().expect("utf-8 path"),
        "--load-addr",
        &load,
        "--entry",
        &entry,
        "--mode",
        &mode,
    ]);
    run_hyperplug(&args, stdin, TIMEOUT)
}
