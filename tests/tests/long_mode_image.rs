//! User story: a raw 64-bit image started with `--image --mode long` (host-built
//! GDT and identity page tables) prints and ends through debug-exit, whose
//! status `(V << 1) | 1` becomes the process exit status.

mod support;

use hyperplug_tests::guests::LONG_MODE_EXIT_VALUE;
use hyperplug_tests::long_mode_hello_guest;
use support::*;

#[test]
fn long_mode_raw_image_exits_through_debug_exit() {
    let g = long_mode_hello_guest().expect("assemble long-mode guest");
    let r = run_guest(&g, "long", &[], b"");
    let want = ((LONG_MODE_EXIT_VALUE << 1) | 1) as i32;
    assert_eq!(
        r.code,
        Some(want),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout, "long mode ok\n");
}

#[test]
fn debug_exit_can_be_turned_off() {
    let g = long_mode_hello_guest().expect("assemble long-mode guest");
    // Without the device the write to 0xf4 is dropped; the guest then halts
    // with interrupts off and the host stops it (status 6).
    let r = run_guest(
        &g,
        "long-nodebug",
        &["--no-debug-exit", "--trace", "io"],
        b"",
    );
    assert_eq!(
        r.code,
        Some(6),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout, "long mode ok\n");
    // `--trace io` shows the dropped write to the absent device's port.
    assert!(
        r.stderr.contains("unclaimed port write at 0xf4"),
        "{}",
        r.stderr
    );
}
