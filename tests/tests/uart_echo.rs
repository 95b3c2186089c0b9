//! User story: a guest with a polled serial driver reads what the operator
//! types (host stdin) by polling the UART's line-status register, and echoes it.

mod support;

use hyperplug_tests::uart_echo_guest;
use support::*;

#[test]
fn guest_echoes_stdin_through_the_uart() {
    let g = uart_echo_guest().expect("assemble echo guest");
    let r = run_guest(&g, "echo", &[], b"hello, hyperplug!\nq");
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
