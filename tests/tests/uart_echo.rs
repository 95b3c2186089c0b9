//! User story: a guest with a polled serial driver reads what the operator
//! types (host stdin) by polling the UART's line-status register, and echoes it.

mod support;

use hyperplug_tests::uart_echo_guest;
use support::*;

#[test]
fn guest_echoes_stdin_through_the_uart() {
    if !kvm_usable_or_skip("uart echo") {
        return;
    }
    let g = uart_echo_guest().expect("assemble echo guest");
    let d = scratch_dir("echo");
    let img = d.join("echo.bin");
    std::fs::write(&img, &g.bytes).unwrap();
    let load = format!("{:#x}", g.load_addr);
    let entry = format!("{:#x}", g.entry);
    let r = run_hyperplug(
        &[
            "run",
            "--image",
            img.to_str().unwrap(),
            "--load-addr",
            &load,
            "--entry",
            &entry,
            "--mode",
            "protected",
        ],
        b"hello, hyperplug!\nq",
        TIMEOUT,
    );
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout, "ready\nhello, hyperplug!\n\nbye\n",
        "stderr: {}",
        r.stderr
    );
}
