//! User story: an operator gives Hyperplug bad input. Each case is a one-line
//! error naming the thing and the reason, a non-zero status, and no panic.

mod support;

use support::*;

/// Asserts a clean failure: non-zero status, the error line mentions every
/// needle, and nothing panicked.
fn assert_clean_error(r: &RunResult, needles: &[&str]) {
    assert_ne!(r.code, Some(0), "expected failure\nstderr: {}", r.stderr);
    assert!(r.code.is_some(), "killed by a signal\nstderr: {}", r.stderr);
    assert!(
        !r.stderr.contains("panicked"),
        "panic in stderr: {}",
        r.stderr
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line in stderr: {}", r.stderr));
    for n in needles {
        assert!(
            line.contains(n),
            "error line {line:?} lacks {n:?}\nfull stderr: {}",
            r.stderr
        );
    }
}

fn run(args: &[&str]) -> RunResult {
    run_hyperplug(args, b"", TIMEOUT)
}

#[test]
fn plugin_file_that_is_not_a_shared_library() {
    let d = scratch_dir("notso");
    let f = d.join("libhyperplug_text.so");
    std::fs::write(&f, "this is not an ELF shared object\n").unwrap();
    let r = run(&["run", "--device", f.to_str().unwrap()]);
    assert_clean_error(
        &r,
        &["libhyperplug_text.so", "not a loadable shared library"],
    );
}

#[test]
fn library_without_root_module() {
    let lib = built_library("fixture_no_root");
    let r = run(&["run", "--device", lib.to_str().unwrap()]);
    assert_clean_error(&r, &["libfixture_no_root.so", "not a Hyperplug plugin"]);
}

#[test]
fn plugin_of_another_abi_major_version() {
    let lib = built_library("fixture_bad_abi");
    let r = run(&["run", "--device", lib.to_str().unwrap()]);
    let ours = format!("ABI {}", hyperplug_plugin_api::AbiVersion::current());
    assert_clean_error(&r, &["libfixture_bad_abi.so", "ABI 99.0.0", &ours]);
}

#[test]
fn missing_plugin_file() {
    let r = run(&["run", "--device", "/nonexistent/libhyperplug_ghost.so"]);
    assert_clean_error(&r, &["/nonexistent/libhyperplug_ghost.so", "no such file"]);
}

#[test]
fn unknown_device_name() {
    let r = run(&["run", "--device", "teleporter"]);
    assert_clean_error(&r, &["unknown device 'teleporter'", "serial"]);
}

#[test]
fn unknown_backend_name() {
    let r = run(&["run", "--backend", "quantum"]);
    assert_clean_error(&r, &["unknown backend 'quantum'", "kvm"]);
}

#[test]
fn backend_given_as_a_device_plugin() {
    let lib = built_library("hyperplug_serial");
    let r = run(&["run", "--backend", lib.to_str().unwrap()]);
    assert_clean_error(
        &r,
        &[
            "libhyperplug_serial.so",
            "is a device plugin, not a backend",
        ],
    );
}

#[test]
fn bad_memory_values() {
    for bad in ["banana", "1M", "12Q", "4097K", "99999999999G"] {
        let r = run(&["run", "--memory", bad]);
        assert_eq!(r.code, Some(2), "--memory {bad}: {}", r.stderr);
        assert!(
            r.stderr.contains("--memory"),
            "--memory {bad}: {}",
            r.stderr
        );
        assert!(r.stderr.contains(bad), "--memory {bad}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
    }
}

#[test]
fn malformed_elf() {
    let d = scratch_dir("badelf");
    // An ELF identification followed by a truncated header.
    let mut bytes = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    bytes.extend([0u8; 12]);
    let f = d.join("truncated.elf");
    std::fs::write(&f, &bytes).unwrap();
    let r = run(&["run", "--kernel", f.to_str().unwrap()]);
    assert_clean_error(&r, &["truncated.elf"]);
}

#[test]
fn not_an_image_at_all() {
    let d = scratch_dir("notimage");
    let f = d.join("notes.txt");
    std::fs::write(&f, "hello, I am not a kernel\n".repeat(100)).unwrap();
    let r = run(&["run", "--kernel", f.to_str().unwrap()]);
    assert_clean_error(&r, &["notes.txt", "not a multiboot or ELF image"]);
}

#[test]
fn malformed_multiboot_header() {
    let d = scratch_dir("badmb");
    // Multiboot v1 header with the address-fields flag (bit 16) whose
    // load_end_addr lies before load_addr: a valid checksum, impossible addresses.
    let magic: u32 = 0x1BAD_B002;
    let flags: u32 = 1 << 16;
    let checksum = 0u32.wrapping_sub(magic.wrapping_add(flags));
    let mut img = Vec::new();
    for w in [
        magic, flags, checksum, 0x10_0000, 0x10_0000, 0x0f_0000, 0, 0x10_0020,
    ] {
        img.extend(w.to_le_bytes());
    }
    img.resize(4096, 0x90);
    let f = d.join("broken-multiboot.bin");
    std::fs::write(&f, &img).unwrap();
    let r = run(&["run", "--kernel", f.to_str().unwrap()]);
    assert_clean_error(&r, &["broken-multiboot.bin"]);
}

#[test]
fn image_that_does_not_fit_in_memory() {
    let d = scratch_dir("big");
    let f = d.join("big.bin");
    std::fs::write(&f, vec![0xf4u8; 3 << 20]).unwrap();
    let r = run(&[
        "run",
        "--memory",
        "2M",
        "--image",
        f.to_str().unwrap(),
        "--load-addr",
        "0x1000",
        "--entry",
        "0x1000",
    ]);
    assert_clean_error(&r, &["big.bin", "does not fit"]);
}

#[test]
fn overlapping_devices_are_refused() {
    let r = run(&["run", "--device", "debug-exit,iobase=0x3f8,iosize=1"]);
    assert_clean_error(&r, &["overlaps", "serial"]);
}

#[test]
fn panicking_device_plugin_stops_the_vm_cleanly() {
    if !kvm_usable_or_skip("panicking plugin") {
        return;
    }
    let lib = built_library("fixture_panicky");
    let d = scratch_dir("panicky");
    let img = d.join("poke.bin");
    // 32-bit: mov dx, 0x520; out dx, al; cli; hlt
    std::fs::write(&img, [0x66, 0xba, 0x20, 0x05, 0xee, 0xfa, 0xf4]).unwrap();
    let r = run(&[
        "run",
        "--device",
        lib.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--load-addr",
        "0x100000",
        "--entry",
        "0x100000",
        "--mode",
        "protected",
    ]);
    assert_eq!(r.code, Some(125), "stderr: {}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("hyperplug: error:"))
        .unwrap_or_default();
    assert!(line.contains("device panicky"), "{}", r.stderr);
    assert!(line.contains("plugin panicked in write"), "{}", r.stderr);
    assert!(line.contains("fixture panic on write"), "{}", r.stderr);
    assert!(
        line.contains("(at tests/fixtures/panicky/src/lib.rs:"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("stack backtrace"), "{}", r.stderr);
}

#[test]
fn deterministic_mode_needs_a_software_backend() {
    if !kvm_usable_or_skip("--deterministic on kvm") {
        return;
    }
    let r = run(&["run", "--backend", "kvm", "--deterministic"]);
    assert_clean_error(&r, &["--deterministic", "software backend", "kvm"]);
}
