//! `struct kvm_run` exit -> plugin-api [`Exit`], with KVM's own names.
//!
//! Decoding never trusts the run area: sizes, counts and offsets are checked
//! against the mapping, and anything unexpected becomes an `InternalError` exit.

use hyperplug_plugin_api::{Exit, ExitReason};
use kvm_bindings::*;

/// What `complete_io` must fill in before the next `KVM_RUN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing is waiting for data.
    None,
    /// An `IN`/`INS` exit: `len` bytes go at `offset` in the run area.
    IoIn {
        /// Byte offset of the data in the kvm_run mapping (`io.data_offset`).
        offset: usize,
        /// `size * count`.
        len: usize,
    },
    /// An RDMSR/WRMSR exit: `kvm_run.msr.data` / `.error` must be filled.
    Msr,
    /// An MMIO read: `len` bytes go into `kvm_run.mmio.data`.
    MmioRead {
        /// Access size, 1 to 8.
        len: usize,
    },
}

/// A decoded exit plus what the host must complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The exit for the host.
    pub exit: Exit,
    /// Completion the host owes before the next run.
    pub pending: Pending,
}

/// KVM's name for exit reason `code` (`KVM_EXIT_*` in `<linux/kvm.h>`).
pub fn exit_name(code: u32) -> Option<&'static str> {
    Some(match code {
        KVM_EXIT_UNKNOWN => "KVM_EXIT_UNKNOWN",
        KVM_EXIT_EXCEPTION => "KVM_EXIT_EXCEPTION",
        KVM_EXIT_IO => "KVM_EXIT_IO",
        KVM_EXIT_HYPERCALL => "KVM_EXIT_HYPERCALL",
        KVM_EXIT_DEBUG => "KVM_EXIT_DEBUG",
        KVM_EXIT_HLT => "KVM_EXIT_HLT",
        KVM_EXIT_MMIO => "KVM_EXIT_MMIO",
        KVM_EXIT_IRQ_WINDOW_OPEN => "KVM_EXIT_IRQ_WINDOW_OPEN",
        KVM_EXIT_SHUTDOWN => "KVM_EXIT_SHUTDOWN",
        KVM_EXIT_FAIL_ENTRY => "KVM_EXIT_FAIL_ENTRY",
        KVM_EXIT_INTR => "KVM_EXIT_INTR",
        KVM_EXIT_SET_TPR => "KVM_EXIT_SET_TPR",
        KVM_EXIT_TPR_ACCESS => "KVM_EXIT_TPR_ACCESS",
        KVM_EXIT_NMI => "KVM_EXIT_NMI",
        KVM_EXIT_INTERNAL_ERROR => "KVM_EXIT_INTERNAL_ERROR",
        KVM_EXIT_WATCHDOG => "KVM_EXIT_WATCHDOG",
        KVM_EXIT_EPR => "KVM_EXIT_EPR",
        KVM_EXIT_SYSTEM_EVENT => "KVM_EXIT_SYSTEM_EVENT",
        KVM_EXIT_IOAPIC_EOI => "KVM_EXIT_IOAPIC_EOI",
        KVM_EXIT_HYPERV => "KVM_EXIT_HYPERV",
        KVM_EXIT_X86_RDMSR => "KVM_EXIT_X86_RDMSR",
        KVM_EXIT_X86_WRMSR => "KVM_EXIT_X86_WRMSR",
        KVM_EXIT_DIRTY_RING_FULL => "KVM_EXIT_DIRTY_RING_FULL",
        KVM_EXIT_AP_RESET_HOLD => "KVM_EXIT_AP_RESET_HOLD",
        KVM_EXIT_X86_BUS_LOCK => "KVM_EXIT_X86_BUS_LOCK",
        KVM_EXIT_XEN => "KVM_EXIT_XEN",
        KVM_EXIT_NOTIFY => "KVM_EXIT_NOTIFY",
        KVM_EXIT_MEMORY_FAULT => "KVM_EXIT_MEMORY_FAULT",
        _ => return None,
    })
}

fn internal_suberror_name(sub: u32) -> &'static str {
    match sub {
        KVM_INTERNAL_ERROR_EMULATION => "emulation failure",
        KVM_INTERNAL_ERROR_SIMUL_EX => "exception during exception delivery",
        KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
        KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => "unexpected hardware exit reason",
        _ => "unknown suberror",
    }
}

fn system_event_name(kind: u32) -> &'static str {
    match kind {
        KVM_SYSTEM_EVENT_SHUTDOWN => "shutdown",
        KVM_SYSTEM_EVENT_RESET => "reset",
        KVM_SYSTEM_EVENT_CRASH => "crash",
        KVM_SYSTEM_EVENT_WAKEUP => "wakeup",
        KVM_SYSTEM_EVENT_SUSPEND => "suspend",
        KVM_SYSTEM_EVENT_SEV_TERM => "sev-term",
        _ => "unknown",
    }
}

fn hex_words(words: &[u64]) -> String {
    let parts: Vec<String> = words.iter().map(|w| format!("{w:#x}")).collect();
    format!("[{}]", parts.join(" "))
}

fn done(reason: ExitReason, code: u32, detail: String) -> Decoded {
    let name = exit_name(code).unwrap_or("KVM_EXIT_?");
    Decoded {
        exit: Exit::new(reason, code.into(), name, detail),
        pending: Pending::None,
    }
}

fn internal(code: u32, description: String) -> Decoded {
    done(
        ExitReason::InternalError {
            description: description.clone().into(),
        },
        code,
        description,
    )
}

/// The exit reported when `KVM_RUN` returns EINTR/EAGAIN (a signal or kick).
pub fn interrupted(errno: &str) -> Exit {
    Exit::new(
        ExitReason::Interrupted,
        KVM_EXIT_INTR.into(),
        "KVM_EXIT_INTR",
        format!("KVM_RUN returned {errno}"),
    )
}

/// Decodes the exit in `run`. `area` is the whole kvm_run mapping (which
/// starts with `run`), used for I/O data at `io.data_offset`.
pub fn decode(run: &kvm_run, area: &[u8]) -> Decoded {
    let code = run.exit_reason;
    match code {
        KVM_EXIT_IO => decode_io(run, area),
        KVM_EXIT_MMIO => decode_mmio(run),
        KVM_EXIT_HLT => done(ExitReason::Hlt, code, String::new()),
        KVM_EXIT_SHUTDOWN => done(ExitReason::Shutdown, code, "triple fault".into()),
        KVM_EXIT_IRQ_WINDOW_OPEN => done(
            ExitReason::InterruptWindow,
            code,
            format!(
                "ready_for_interrupt_injection={} if_flag={}",
                run.ready_for_interrupt_injection, run.if_flag
            ),
        ),
        KVM_EXIT_INTR => done(ExitReason::Interrupted, code, String::new()),
        KVM_EXIT_DEBUG => {
            // SAFETY: exit_reason KVM_EXIT_DEBUG says the `debug` member is the live one;
            // every bit pattern is a valid kvm_debug_exit_arch (plain integers).
            let arch = unsafe { run.__bindgen_anon_1.debug.arch };
            done(
                ExitReason::Debug {
                    rip: arch.pc,
                    vector: u8::try_from(arch.exception).unwrap_or(u8::MAX),
                },
                code,
                format!(
                    "exception={} pc={:#x} dr6={:#x} dr7={:#x}",
                    arch.exception, arch.pc, arch.dr6, arch.dr7
                ),
            )
        }
        KVM_EXIT_FAIL_ENTRY => {
            // SAFETY: exit_reason says `fail_entry` is live; it holds plain integers.
            let f = unsafe { run.__bindgen_anon_1.fail_entry };
            done(
                ExitReason::EntryFailure {
                    reason: f.hardware_entry_failure_reason,
                },
                code,
                format!(
                    "hardware_entry_failure_reason={:#x} cpu={}",
                    f.hardware_entry_failure_reason, f.cpu
                ),
            )
        }
        KVM_EXIT_INTERNAL_ERROR => {
            // SAFETY: exit_reason says `internal` is live; it holds plain integers.
            let i = unsafe { run.__bindgen_anon_1.internal };
            let n = (i.ndata as usize).min(i.data.len());
            let detail = format!(
                "suberror={} ({}) ndata={} data={}",
                i.suberror,
                internal_suberror_name(i.suberror),
                i.ndata,
                hex_words(&i.data[..n])
            );
            internal(code, format!("KVM internal error: {detail}")).with_detail(detail)
        }
        KVM_EXIT_X86_RDMSR | KVM_EXIT_X86_WRMSR => {
            // SAFETY: exit_reason says `msr` is the live union member; it holds plain integers.
            let m = unsafe { run.__bindgen_anon_1.msr };
            let (reason, detail) = if code == KVM_EXIT_X86_RDMSR {
                (
                    ExitReason::MsrRead { index: m.index },
                    format!("index={:#x} reason={}", m.index, m.reason),
                )
            } else {
                (
                    ExitReason::MsrWrite {
                        index: m.index,
                        data: m.data,
                    },
                    format!(
                        "index={:#x} data={:#x} reason={}",
                        m.index, m.data, m.reason
                    ),
                )
            };
            let mut d = done(reason, code, detail);
            d.pending = Pending::Msr;
            d
        }
        KVM_EXIT_SYSTEM_EVENT => {
            // SAFETY: exit_reason says `system_event` is live; it holds plain integers.
            let s = unsafe { run.__bindgen_anon_1.system_event };
            // SAFETY: `data` and `flags` overlay the same plain u64 storage; either view is valid.
            let data = unsafe { s.__bindgen_anon_1.data };
            let n = (s.ndata as usize).min(data.len());
            done(
                ExitReason::SystemEvent { kind: s.type_ },
                code,
                format!(
                    "type={} ({}) ndata={} data={}",
                    s.type_,
                    system_event_name(s.type_),
                    s.ndata,
                    hex_words(&data[..n])
                ),
            )
        }
        KVM_EXIT_UNKNOWN => {
            // SAFETY: exit_reason says `hw` is live; it holds a plain integer.
            let hw = unsafe { run.__bindgen_anon_1.hw };
            internal(
                code,
                format!(
                    "KVM exit 0 (KVM_EXIT_UNKNOWN): hardware_exit_reason={:#x}",
                    hw.hardware_exit_reason
                ),
            )
        }
        other => internal(
            other,
            format!(
                "unhandled KVM exit {other} ({})",
                exit_name(other).unwrap_or("not a known KVM_EXIT_* value")
            ),
        ),
    }
}

impl Decoded {
    fn with_detail(mut self, detail: String) -> Self {
        self.exit.native_detail = detail.into();
        self
    }
}

fn decode_io(run: &kvm_run, area: &[u8]) -> Decoded {
    // SAFETY: exit_reason KVM_EXIT_IO says `io` is live; it holds plain integers.
    let io = unsafe { run.__bindgen_anon_1.io };
    let dir = match u32::from(io.direction) {
        KVM_EXIT_IO_IN => "in",
        KVM_EXIT_IO_OUT => "out",
        _ => {
            return internal(
                KVM_EXIT_IO,
                format!("KVM_EXIT_IO with bad direction {}", io.direction),
            )
        }
    };
    let detail = format!(
        "port={:#x} size={} count={} dir={dir}",
        io.port, io.size, io.count
    );
    if !matches!(io.size, 1 | 2 | 4) || io.count == 0 {
        return internal(
            KVM_EXIT_IO,
            format!("KVM_EXIT_IO with bad access: {detail}"),
        );
    }
    let len = usize::from(io.size) * io.count as usize;
    let range = usize::try_from(io.data_offset)
        .ok()
        .and_then(|off| off.checked_add(len).map(|end| (off, end)))
        .filter(|&(_, end)| end <= area.len());
    let Some((offset, end)) = range else {
        return internal(
            KVM_EXIT_IO,
            format!(
                "KVM_EXIT_IO data at offset {:#x} (+{len}) lies outside the {}-byte run area: {detail}",
                io.data_offset,
                area.len()
            ),
        );
    };
    if dir == "out" {
        done(
            ExitReason::IoOut {
                port: io.port,
                size: io.size,
                count: io.count,
                data: area[offset..end].to_vec().into(),
            },
            KVM_EXIT_IO,
            detail,
        )
    } else {
        Decoded {
            pending: Pending::IoIn { offset, len },
            ..done(
                ExitReason::IoIn {
                    port: io.port,
                    size: io.size,
                    count: io.count,
                },
                KVM_EXIT_IO,
                detail,
            )
        }
    }
}

fn decode_mmio(run: &kvm_run) -> Decoded {
    // SAFETY: exit_reason KVM_EXIT_MMIO says `mmio` is live; it holds plain integers.
    let m = unsafe { run.__bindgen_anon_1.mmio };
    let write = m.is_write != 0;
    let detail = format!(
        "addr={:#x} len={} dir={}",
        m.phys_addr,
        m.len,
        if write { "write" } else { "read" }
    );
    let len = m.len as usize;
    if len == 0 || len > m.data.len() {
        return internal(
            KVM_EXIT_MMIO,
            format!("KVM_EXIT_MMIO with bad length: {detail}"),
        );
    }
    if write {
        done(
            ExitReason::MmioWrite {
                addr: m.phys_addr,
                data: m.data[..len].to_vec().into(),
            },
            KVM_EXIT_MMIO,
            detail,
        )
    } else {
        Decoded {
            pending: Pending::MmioRead { len },
            ..done(
                ExitReason::MmioRead {
                    addr: m.phys_addr,
                    size: len as u8,
                },
                KVM_EXIT_MMIO,
                detail,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(code: u32, f: impl FnOnce(&mut kvm_run)) -> kvm_run {
        let mut r = kvm_run {
            exit_reason: code,
            ..Default::default()
        };
        f(&mut r);
        r
    }

    #[test]
    fn io_out_string_and_in() {
        let mut area = vec![0u8; 4096];
        area[0x1000 - 8..0x1000 - 2].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        let r = run_with(KVM_EXIT_IO, |r| {
            r.__bindgen_anon_1.io = kvm_run__bindgen_ty_1__bindgen_ty_4 {
                direction: KVM_EXIT_IO_OUT as u8,
                size: 2,
                port: 0x3f8,
                count: 3,
                data_offset: 0x1000 - 8,
            }
        });
        let d = decode(&r, &area);
        assert_eq!(
            d.exit.reason,
            ExitReason::IoOut {
                port: 0x3f8,
                size: 2,
                count: 3,
                data: vec![1, 2, 3, 4, 5, 6].into()
            }
        );
        assert_eq!(d.exit.native_name.as_str(), "KVM_EXIT_IO");
        assert_eq!(
            d.exit.native_detail.as_str(),
            "port=0x3f8 size=2 count=3 dir=out"
        );
        assert_eq!(d.pending, Pending::None);

        let r = run_with(KVM_EXIT_IO, |r| {
            r.__bindgen_anon_1.io = kvm_run__bindgen_ty_1__bindgen_ty_4 {
                direction: KVM_EXIT_IO_IN as u8,
                size: 1,
                port: 0x60,
                count: 1,
                data_offset: 0x100,
            }
        });
        let d = decode(&r, &area);
        assert_eq!(
            d.exit.reason,
            ExitReason::IoIn {
                port: 0x60,
                size: 1,
                count: 1
            }
        );
        assert_eq!(
            d.pending,
            Pending::IoIn {
                offset: 0x100,
                len: 1
            }
        );
    }

    #[test]
    fn hostile_run_contents_become_internal_errors() {
        let area = vec![0u8; 4096];
        let io = |direction: u8, size: u8, count: u32, data_offset: u64| {
            run_with(KVM_EXIT_IO, |r| {
                r.__bindgen_anon_1.io = kvm_run__bindgen_ty_1__bindgen_ty_4 {
                    direction,
                    size,
                    port: 1,
                    count,
                    data_offset,
                }
            })
        };
        let mmio = |len: u32| {
            run_with(KVM_EXIT_MMIO, |r| {
                r.__bindgen_anon_1.mmio = kvm_run__bindgen_ty_1__bindgen_ty_6 {
                    phys_addr: 0x1000,
                    data: [0; 8],
                    len,
                    is_write: 0,
                }
            })
        };
        let cases: [(kvm_run, &str); 8] = [
            (io(7, 1, 1, 0), "bad direction"),
            (io(1, 3, 1, 0), "bad access"),
            (io(1, 1, 0, 0), "bad access"),
            (io(1, 4, 1, 4094), "outside"),
            (io(1, 4, u32::MAX, 0), "outside"),
            (io(1, 1, 1, u64::MAX), "outside"),
            (mmio(9), "bad length"),
            (run_with(999, |_| {}), "unhandled KVM exit 999"),
        ];
        for (r, needle) in cases {
            let d = decode(&r, &area);
            match &d.exit.reason {
                ExitReason::InternalError { description } => {
                    assert!(description.contains(needle), "{description} lacks {needle}")
                }
                other => panic!("expected InternalError for {needle}, got {other:?}"),
            }
            assert_eq!(d.pending, Pending::None);
        }
    }

    #[test]
    fn simple_exits_map_table() {
        let area = vec![0u8; 4096];
        let cases: [(u32, ExitReason, &str); 4] = [
            (KVM_EXIT_HLT, ExitReason::Hlt, "KVM_EXIT_HLT"),
            (KVM_EXIT_SHUTDOWN, ExitReason::Shutdown, "KVM_EXIT_SHUTDOWN"),
            (
                KVM_EXIT_IRQ_WINDOW_OPEN,
                ExitReason::InterruptWindow,
                "KVM_EXIT_IRQ_WINDOW_OPEN",
            ),
            (KVM_EXIT_INTR, ExitReason::Interrupted, "KVM_EXIT_INTR"),
        ];
        for (code, reason, name) in cases {
            let d = decode(&run_with(code, |_| {}), &area);
            assert_eq!(d.exit.reason, reason, "{name}");
            assert_eq!(d.exit.native_name.as_str(), name);
            assert_eq!(d.exit.native_code, u64::from(code));
        }
    }

    #[test]
    fn mmio_fail_entry_internal_system_debug() {
        let area = vec![0u8; 4096];
        let r = run_with(KVM_EXIT_MMIO, |r| {
            r.__bindgen_anon_1.mmio = kvm_run__bindgen_ty_1__bindgen_ty_6 {
                phys_addr: 0xfee0_0030,
                data: [9, 8, 7, 6, 0, 0, 0, 0],
                len: 4,
                is_write: 1,
            }
        });
        let d = decode(&r, &area);
        assert_eq!(
            d.exit.reason,
            ExitReason::MmioWrite {
                addr: 0xfee0_0030,
                data: vec![9, 8, 7, 6].into()
            }
        );
        let r = run_with(KVM_EXIT_MMIO, |r| {
            r.__bindgen_anon_1.mmio = kvm_run__bindgen_ty_1__bindgen_ty_6 {
                phys_addr: 0xd000_0000,
                data: [0; 8],
                len: 2,
                is_write: 0,
            }
        });
        let d = decode(&r, &area);
        assert_eq!(
            d.exit.reason,
            ExitReason::MmioRead {
                addr: 0xd000_0000,
                size: 2
            }
        );
        assert_eq!(d.pending, Pending::MmioRead { len: 2 });

        let r = run_with(KVM_EXIT_FAIL_ENTRY, |r| {
            r.__bindgen_anon_1.fail_entry = kvm_run__bindgen_ty_1__bindgen_ty_2 {
                hardware_entry_failure_reason: 0x21,
                cpu: 1,
            }
        });
        let d = decode(&r, &area);
        assert_eq!(d.exit.reason, ExitReason::EntryFailure { reason: 0x21 });
        assert!(d
            .exit
            .native_detail
            .contains("hardware_entry_failure_reason=0x21"));

        let r = run_with(KVM_EXIT_INTERNAL_ERROR, |r| {
            let mut data = [0u64; 16];
            data[0] = 0xdead;
            data[1] = 0xbeef;
            r.__bindgen_anon_1.internal = kvm_run__bindgen_ty_1__bindgen_ty_13 {
                suberror: 1,
                ndata: 200, // hostile: larger than the array
                data,
            }
        });
        let d = decode(&r, &area);
        assert!(matches!(d.exit.reason, ExitReason::InternalError { .. }));
        assert!(
            d.exit
                .native_detail
                .starts_with("suberror=1 (emulation failure) ndata=200 data=[0xdead 0xbeef 0x0"),
            "{}",
            d.exit.native_detail
        );

        let r = run_with(KVM_EXIT_SYSTEM_EVENT, |r| {
            r.__bindgen_anon_1.system_event.type_ = KVM_SYSTEM_EVENT_RESET;
            r.__bindgen_anon_1.system_event.ndata = 0;
        });
        let d = decode(&r, &area);
        assert_eq!(d.exit.reason, ExitReason::SystemEvent { kind: 2 });
        assert!(d.exit.native_detail.contains("(reset)"));

        let r = run_with(KVM_EXIT_DEBUG, |r| {
            r.__bindgen_anon_1.debug.arch = kvm_debug_exit_arch {
                exception: 3,
                pad: 0,
                pc: 0x7c00,
                dr6: 0,
                dr7: 0,
            }
        });
        let d = decode(&r, &area);
        assert_eq!(
            d.exit.reason,
            ExitReason::Debug {
                rip: 0x7c00,
                vector: 3
            }
        );
    }
}
