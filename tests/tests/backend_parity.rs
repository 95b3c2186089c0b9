//! User story: every test guest of the project behaves the same on every
//! backend — the same serial output and the same exit status under svm with
//! shadow paging, svm with nested paging (NPT), and kvm (where /dev/kvm is
//! usable and the guest is one this machine's KVM can run).

mod support;

use hyperplug_tests::platform_guests::{
    apic_base_guest, lapic_timer_guest, pit_pic_guest, pit_pic_real_mode_guest, rtc_guest,
    smp_counter_guest, LAPIC_TICKS, PIT_TICKS,
};
use hyperplug_tests::{
    long_mode_hello_guest, multiboot_info_guest, triple_fault_guest, uart_echo_guest, Guest, Mode,
};
use support::*;

/// How a guest is started.
enum Start {
    /// A raw image (`--image`), with extra options.
    Image(Guest, Vec<String>),
    /// A multiboot kernel file (`--kernel`), with extra options.
    Kernel(Vec<u8>, Vec<String>),
    /// The embedded guest.
    Embedded,
}

/// One guest and what it must print and return.
struct Case {
    name: &'static str,
    start: Start,
    stdin: &'static [u8],
    /// Expected exit status.
    code: i32,
    /// Expected stdout; `None` when it names the backend (compared after
    /// replacing the backend's name).
    stdout: String,
    /// This machine's KVM can run it (a paravirtual KVM cannot IRET in
    /// protected mode, so interrupt-driven protected-mode guests need a
    /// hardware-assisted KVM).
    kvm: bool,
}

fn cases() -> Vec<Case> {
    let hw_kvm = kvm_detection().hardware_assisted;
    let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mb = multiboot_info_guest().expect("assemble multiboot guest");
    vec![
        Case {
            name: "embedded",
            start: Start::Embedded,
            stdin: b"",
            code: 0,
            stdout: "Hyperplug embedded guest: real mode -> protected mode -> long mode on backend BACKEND\n".into(),
            kvm: true,
        },
        Case {
            name: "uart-echo",
            start: Start::Image(uart_echo_guest().expect("assemble"), vec![]),
            stdin: b"hello, hyperplug!\nq",
            code: 0,
            stdout: "ready\nhello, hyperplug!\n\nbye\n".into(),
            kvm: true,
        },
        Case {
            name: "triple-fault",
            start: Start::Image(triple_fault_guest().expect("assemble"), vec![]),
            stdin: b"",
            code: 4,
            stdout: "triple fault next\n".into(),
            kvm: true,
        },
        Case {
            name: "cli-hlt",
            start: Start::Image(
                Guest {
                    bytes: vec![0xfa, 0xf4],
                    load_addr: 0x10_0000,
                    entry: 0x10_0000,
                    mode: Mode::Protected,
                    code: 0..2,
                },
                vec![],
            ),
            stdin: b"",
            code: 6,
            stdout: String::new(),
            kvm: true,
        },
        Case {
            name: "long-mode",
            start: Start::Image(long_mode_hello_guest().expect("assemble"), vec![]),
            stdin: b"",
            code: ((hyperplug_tests::guests::LONG_MODE_EXIT_VALUE << 1) | 1) as i32,
            stdout: "long mode ok\n".into(),
            kvm: true,
        },
        Case {
            name: "multiboot",
            start: Start::Kernel(
                mb.bytes.clone(),
                opts(&["--memory", "128M", "--cmdline", "console=ttyS0 hello"]),
            ),
            stdin: b"",
            code: 0,
            stdout: format!(
                "magic ok\nmem_lower=640K mem_upper={}K\ncmdline=KERNEL console=ttyS0 hello\n",
                (128 << 10) - 1024
            ),
            kvm: true,
        },
        Case {
            name: "pit-real-mode",
            start: Start::Image(pit_pic_real_mode_guest().expect("assemble"), vec![]),
            stdin: b"",
            code: 0,
            stdout: format!("{PIT_TICKS} ticks\n"),
            kvm: true,
        },
        Case {
            name: "pit-protected-mode",
            start: Start::Image(pit_pic_guest().expect("assemble"), vec![]),
            stdin: b"",
            code: 0,
            stdout: format!("{PIT_TICKS} ticks\n"),
            kvm: hw_kvm,
        },
        Case {
            name: "lapic-timer",
            start: Start::Image(lapic_timer_guest().expect("assemble"), vec![]),
            stdin: b"",
            code: 0,
            stdout: format!("{LAPIC_TICKS} lapic ticks\n"),
            kvm: true,
        },
        Case {
            name: "rtc",
            start: Start::Image(
                rtc_guest().expect("assemble"),
                opts(&["--device", "rtc,base=1795614307"]),
            ),
            stdin: b"",
            code: 0,
            stdout: "rtc 26-11-25 13:45\n".into(),
            kvm: true,
        },
        Case {
            name: "i8042-reset",
            start: Start::Image(
                Guest {
                    bytes: vec![0xb0, 0xfe, 0xe6, 0x64, 0xf4],
                    load_addr: 0x8000,
                    entry: 0x8000,
                    mode: Mode::Real,
                    code: 0..5,
                },
                vec![],
            ),
            stdin: b"",
            code: 0,
            stdout: String::new(),
            kvm: true,
        },
        Case {
            name: "apic-base",
            start: Start::Image(apic_base_guest().expect("assemble"), vec![]),
            stdin: b"",
            code: 0,
            stdout: "apic base fee00900\n".into(),
            kvm: true,
        },
        Case {
            name: "smp",
            start: Start::Image(
                smp_counter_guest(3, 100_000).expect("assemble"),
                opts(&["--cpus", "4"]),
            ),
            stdin: b"",
            code: 0,
            stdout: "total=300000\n".into(),
            kvm: true,
        },
    ]
}

/// Runs `case` with `backend` options; returns (status, stdout, stderr)
/// with the backend's name and the kernel path normalised.
fn run(case: &Case, backend: &[&str], tag: &str) -> (Option<i32>, String, String) {
    let name = format!("{}-{tag}", case.name);
    let r = match &case.start {
        Start::Image(g, extra) => {
            let mut args: Vec<&str> = backend.to_vec();
            args.extend(extra.iter().map(String::as_str));
            run_guest(g, &name, &args, case.stdin)
        }
        Start::Kernel(bytes, extra) => {
            let d = scratch_dir(&name);
            let k = d.join("kernel.bin");
            std::fs::write(&k, bytes).expect("write kernel");
            let ks = k.to_str().expect("utf-8 path").to_string();
            let mut args = vec!["run"];
            args.extend_from_slice(backend);
            args.extend(extra.iter().map(String::as_str));
            args.extend(["--kernel", &ks]);
            let mut r = run_hyperplug(&args, case.stdin, TIMEOUT);
            r.stdout = r.stdout.replace(&ks, "KERNEL");
            r
        }
        Start::Embedded => {
            let mut args = vec!["run"];
            args.extend_from_slice(backend);
            run_hyperplug(&args, case.stdin, TIMEOUT)
        }
    };
    let b = backend.get(1).copied().unwrap_or("");
    (
        r.code,
        r.stdout.replace(&format!("backend {b}"), "backend BACKEND"),
        r.stderr,
    )
}

#[test]
fn every_guest_behaves_the_same_on_every_backend() {
    let kvm = kvm_detection().usable;
    if !kvm {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: the kvm leg of backend parity (/dev/kvm not usable)\n",
        );
    }
    let mut legs = 0;
    for case in cases() {
        let mut backends: Vec<(&str, Vec<&str>)> = vec![
            ("svm", vec!["--backend", "svm"]),
            ("svm-npt", vec!["--backend", "svm", "--nested-paging"]),
        ];
        if kvm && case.kvm {
            backends.push(("kvm", vec!["--backend", "kvm"]));
        }
        for (tag, b) in backends {
            let (code, stdout, stderr) = run(&case, &b, tag);
            assert_eq!(
                code,
                Some(case.code),
                "{} on {tag}: stdout {stdout:?}\nstderr: {stderr}",
                case.name
            );
            assert_eq!(
                stdout, case.stdout,
                "{} on {tag}: stderr: {stderr}",
                case.name
            );
            legs += 1;
        }
    }
    assert!(legs >= 26, "ran {legs} guest/backend pairs");
}
