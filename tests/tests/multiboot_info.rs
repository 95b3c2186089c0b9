//! User story: a test kernel built for QEMU's `-kernel` (multiboot v1) boots
//! under Hyperplug and finds its multiboot information: the magic in EAX,
//! memory sizes and the command line, which it reports over the serial port.

mod support;

use hyperplug_tests::multiboot_info_guest;
use support::*;

#[test]
fn multiboot_guest_reads_its_info() {
    let g = multiboot_info_guest().expect("assemble multiboot guest");
    let d = scratch_dir("multiboot");
    let kernel = d.join("mbtest.bin");
    std::fs::write(&kernel, &g.bytes).unwrap();
    let k = kernel.to_str().unwrap();
    let r = run_hyperplug(
        &[
            "run",
            "--memory",
            "128M",
            "--kernel",
            k,
            "--cmdline",
            "console=ttyS0 hello",
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
    let expected = format!(
        "magic ok\nmem_lower=640K mem_upper={}K\ncmdline={k} console=ttyS0 hello\n",
        (128 << 10) - 1024
    );
    assert_eq!(r.stdout, expected, "stderr: {}", r.stderr);
}

#[test]
fn multiboot_memory_size_follows_memory_option() {
    let g = multiboot_info_guest().expect("assemble multiboot guest");
    let d = scratch_dir("multiboot-mem");
    let kernel = d.join("k");
    std::fs::write(&kernel, &g.bytes).unwrap();
    let r = run_hyperplug(
        &[
            "run",
            "--memory",
            "64M",
            "--kernel",
            kernel.to_str().unwrap(),
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stdout
            .contains(&format!("mem_upper={}K", (64 << 10) - 1024)),
        "{}",
        r.stdout
    );
    // With no --cmdline the command line is just the image name, as QEMU passes it.
    assert!(
        r.stdout
            .contains(&format!("cmdline={} \n", kernel.display())),
        "{}",
        r.stdout
    );
}
