//! User story: a real-mode program closes the A20 gate through the i8042
//! (command 0xDD) and sees addresses wrap at 1 MiB, then opens it the fast
//! way (port 0x92 bit 1) and sees them stop wrapping — the gate is a
//! platform line that reaches the vCPU's A20M# (SDM vol. 3, 8.7.13.4).

mod support;

use hyperplug_tests::{Guest, Mode};
use iced_x86::code_asm::*;
use support::*;

/// Prints 'Z' if FFFF:0010 wrapped to 0000:0000 with the gate closed, then
/// '0' if FFFF:0020 did *not* wrap to 0000:0010 with the gate open ('q' if
/// it did), a newline, and exits through debug-exit (status 1).
fn a20_guest() -> Guest {
    let mut a = CodeAssembler::new(16).unwrap();
    a.cli().unwrap();
    a.xor(ax, ax).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(byte_ptr(0x0u32), 0u32).unwrap();
    a.mov(byte_ptr(0x10u32), 0u32).unwrap();
    a.mov(dx, 0x3f8u32).unwrap();
    // Close the gate through the keyboard controller.
    a.mov(al, 0xddu32).unwrap();
    a.out(0x64u32, al).unwrap();
    a.mov(ax, 0xffffu32).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(byte_ptr(0x10u32), 0x5au32).unwrap();
    a.xor(ax, ax).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(al, byte_ptr(0x0u32)).unwrap();
    a.out(dx, al).unwrap();
    // Open it through System Control Port A (bit 1).
    a.in_(al, 0x92u32).unwrap();
    a.or(al, 0x02u32).unwrap();
    a.out(0x92u32, al).unwrap();
    a.mov(ax, 0xffffu32).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(byte_ptr(0x20u32), 0x41u32).unwrap();
    a.xor(ax, ax).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(al, byte_ptr(0x10u32)).unwrap();
    a.add(al, 0x30u32).unwrap();
    a.out(dx, al).unwrap();
    a.mov(al, 0x0au32).unwrap();
    a.out(dx, al).unwrap();
    a.mov(al, 0u32).unwrap();
    a.out(0xf4u32, al).unwrap();
    a.hlt().unwrap();
    let bytes = a.assemble(0x8000).unwrap();
    Guest {
        code: 0..bytes.len(),
        bytes,
        load_addr: 0x8000,
        entry: 0x8000,
        mode: Mode::Real,
    }
}

#[test]
fn a20_gate_wraps_and_unwraps_under_svm() {
    for paging in [&[][..], &["--nested-paging"][..]] {
        let mut args = vec!["--backend", "svm"];
        args.extend_from_slice(paging);
        let r = run_guest(&a20_guest(), "a20", &args, b"");
        assert_eq!(r.code, Some(1), "{paging:?}: {}", r.stderr);
        assert_eq!(r.stdout, "Z0\n", "{paging:?}: {}", r.stderr);
    }
}

#[test]
fn kvm_keeps_a20_open_and_says_so() {
    if !kvm_usable_or_skip("A20 under kvm") {
        return;
    }
    let r = run_guest(&a20_guest(), "a20-kvm", &["--backend", "kvm"], b"");
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    // No wrap with the gate "closed": the first byte is still 0.
    assert_eq!(r.stdout, "\u{0}0\n", "{}", r.stderr);
    assert!(r.stderr.contains("cannot gate A20"), "{}", r.stderr);
}
