//! VMRUN and #VMEXIT: the loop that runs the guest on the host engine until
//! an exit the host must see (APM vol. 2, 15.5 "VMRUN Instruction", 15.6
//! "#VMEXIT").

use crate::exitcode::{self, VMEXIT_INTR, VMEXIT_INVALID, VMEXIT_IOIO};
use crate::exitinfo::{decode_eventinj, describe, EventType};
use crate::handlers::Flow;
use crate::vcpu::SvmVcpu;
use crate::vmcb::field;
use crate::vmexit::{encode, ExitContext, VmExit};
use hyperplug_plugin_api::engine::EngineStop;
use hyperplug_plugin_api::{Exit, ExitReason, PluginError};

/// Instructions per engine slice: how often a kick is noticed.
const SLICE: u64 = 200_000;
/// With `VmConfig::DETERMINISTIC`: the fixed quantum of retired guest
/// instructions after which `run` returns, so the host fires its timers on
/// the instruction-driven clock at the same instruction every run.
pub const QUANTUM: u64 = 10_000;
/// Guest physical-address width the model reports (CPUID 0x8000_0008).
pub const MAXPHYADDR: u8 = 48;

impl SvmVcpu {
    /// Runs the guest until an exit for the host.
    pub fn run_guest(&mut self) -> Result<Exit, PluginError> {
        if std::mem::take(&mut self.write_pending) {
            self.engine.complete_io((&[][..]).into()).into_result()?;
        }
        let deterministic =
            self.flags & hyperplug_plugin_api::backend::VmConfig::DETERMINISTIC != 0;
        let mut retired = 0u64;
        // Guest code ran since `state` was last taken from the engine.
        let mut stale = false;
        loop {
            if self.kick.take() {
                // The host reads registers after this exit: if guest code
                // ran since the last stop, take the engine's state (changes
                // the host made since were pushed before that code ran).
                if stale {
                    self.pull_state();
                }
                return Ok(self.external_interrupt());
            }
            if deterministic && retired >= QUANTUM && !self.lift {
                // The quantum is over: a physical interrupt from the host's
                // scheduler, as VMEXIT_INTR.
                if stale {
                    self.pull_state();
                }
                return Ok(self.external_interrupt());
            }
            self.push_state()?;
            let ev = if self.lift {
                self.ensure_policy();
                let Some(p) = self.lifted.as_ref() else {
                    return Err(PluginError::other("svm: no lifted policy"));
                };
                self.engine.execute(p, 1).into_result()?
            } else {
                if let Err(exit) = self.vmrun() {
                    return Ok(exit);
                }
                let Some(p) = self.policy.as_ref() else {
                    return Err(PluginError::other("svm: no policy"));
                };
                let budget = if deterministic {
                    QUANTUM.saturating_sub(retired).max(1)
                } else {
                    SLICE
                };
                self.engine.execute(p, budget).into_result()?
            };
            retired += ev.retired;
            stale = true;
            if ev.retired > 0 {
                self.repeat_fault = (u64::MAX, 0);
            }
            match &ev.stop {
                EngineStop::Budget if self.lift => {
                    // The emulated instruction retired.
                    self.lift = false;
                    continue;
                }
                EngineStop::Budget => continue,
                EngineStop::Io { port, size, write } => {
                    // A port access of the IOIO instruction being emulated:
                    // the host performs it, `complete_io` finishes it.
                    self.lift = true;
                    self.write_pending = write.is_some();
                    self.pull_state();
                    let reason = match write.into_option() {
                        Some(v) => ExitReason::IoOut {
                            port: *port,
                            size: *size,
                            count: 1,
                            data: v.to_le_bytes()[..usize::from((*size).min(4))]
                                .to_vec()
                                .into(),
                        },
                        None => ExitReason::IoIn {
                            port: *port,
                            size: *size,
                            count: 1,
                        },
                    };
                    let detail = self.exit_line();
                    return Ok(Exit::new(reason, VMEXIT_IOIO, "VMEXIT_IOIO", detail));
                }
                _ => {}
            }
            self.lift = false;
            self.pull_state();
            stale = false;
            if self.cr0_write_passes(&ev.stop) {
                // Selective CR0 write intercept: only writes that change a
                // bit other than TS and MP exit (APM vol. 2, 15.9.1).
                self.lift = true;
                continue;
            }
            let cx = ExitContext {
                nested: self.nested(),
                cr0_write_intercepted: self.vmcb.get(field::INTERCEPT_CR) & (1 << 16) != 0,
            };
            let Some(x) = encode(&ev, cx) else {
                continue;
            };
            self.record_exit(&x);
            // The trace describes the exit as recorded, before any handler
            // moves RIP.
            let line = self.exit_line();
            match crate::handlers::handle(self, &ev, &x)? {
                // IOIO's line travels with the port exit that follows.
                Flow::Resume if x.code == VMEXIT_IOIO => {}
                Flow::Resume => {
                    if self.flags & hyperplug_plugin_api::backend::VmConfig::TRACE_EXITS != 0 {
                        self.trace(&format!("{} {line}", exitcode::name(x.code)));
                    }
                }
                Flow::Exit(mut e) => {
                    if e.native_detail.is_empty() {
                        e.native_detail = line.into();
                    }
                    return Ok(e);
                }
            }
        }
    }

    /// Whether a CR0 write stopped only for the selective CR0-write
    /// intercept and changes nothing but CR0.TS/CR0.MP: then it is no exit.
    fn cr0_write_passes(&self, stop: &EngineStop) -> bool {
        const MP: u64 = 1 << 1;
        const TS: u64 = 1 << 3;
        let EngineStop::CrWrite {
            cr: 0,
            value,
            clts,
            lmsw,
            ..
        } = *stop
        else {
            return false;
        };
        if self.vmcb.get(field::INTERCEPT_CR) & (1 << 16) != 0 {
            return false;
        }
        let old = self.state.sregs.cr0;
        let new = if clts {
            old & !TS
        } else if lmsw {
            // LMSW loads PE, MP, EM, TS and cannot clear PE (SDM vol. 2, LMSW).
            (old & !0xe) | (value & 0xf) | (old & 1)
        } else {
            value
        };
        (old ^ new) & !(MP | TS) == 0
    }

    /// VMRUN: the consistency checks, then event injection from EVENTINJ.
    /// A failed check is #VMEXIT(VMEXIT_INVALID) (APM vol. 2, 15.5.1).
    fn vmrun(&mut self) -> Result<(), Exit> {
        self.ensure_policy();
        if let Err(e) = crate::checks::vmrun_checks(&self.vmcb, MAXPHYADDR) {
            self.vmcb.set(field::EXITCODE, VMEXIT_INVALID);
            self.vmcb.set(field::EXITINFO1, 0);
            self.vmcb.set(field::EXITINFO2, 0);
            self.trace(&format!("VMEXIT_INVALID ({})", e.check));
            return Err(Exit::new(
                ExitReason::EntryFailure {
                    reason: VMEXIT_INVALID,
                },
                VMEXIT_INVALID,
                "VMEXIT_INVALID",
                format!("VMRUN consistency check failed: {}", e.check),
            ));
        }
        // The event being delivered at the last exit is now history.
        self.vmcb.set(field::EXITINTINFO, 0);
        let inj = self.vmcb.get(field::EVENTINJ);
        match decode_eventinj(inj) {
            Ok(Some(e)) => {
                self.vmcb.set(field::EVENTINJ, 0);
                let ev = &mut self.state.events;
                match e.kind {
                    EventType::Intr => {
                        ev.interrupt.injected = 1;
                        ev.interrupt.nr = e.vector;
                        ev.interrupt.soft = 0;
                    }
                    EventType::Nmi => {
                        // Delivered as an NMI: it blocks further NMIs until
                        // the guest's IRET (SDM vol. 3, 6.7.1).
                        ev.nmi.pending = 1;
                    }
                    EventType::Exception | EventType::SoftInt => {
                        ev.exception.injected = 1;
                        ev.exception.nr = e.vector;
                        ev.exception.has_error_code = u8::from(e.error_code.is_some());
                        ev.exception.error_code = e.error_code.unwrap_or(0);
                        if e.vector == 14 {
                            ev.exception_has_payload = 1;
                            ev.exception_payload = self.vmcb.get(field::CR2);
                        }
                    }
                }
                let events = self.state.events;
                if let Err(err) = self.engine.set_events(events).into_result() {
                    return Err(internal(&format!("event injection: {}", err.message)));
                }
                self.state.events.exception = Default::default();
                self.state.events.interrupt.injected = 0;
                self.state.events.nmi.pending = 0;
                self.state.events.exception_has_payload = 0;
            }
            Ok(None) => {}
            // The checks above refuse an illegal EVENTINJ; this is a backstop.
            Err(why) => return Err(internal(why)),
        }
        Ok(())
    }

    /// Writes a #VMEXIT into the VMCB and traces it.
    fn record_exit(&mut self, x: &VmExit) {
        self.vmcb.set(field::EXITCODE, x.code);
        self.vmcb.set(field::EXITINFO1, x.info1);
        self.vmcb.set(field::EXITINFO2, x.info2);
        self.vmcb.set(field::NRIP, x.nrip);
        self.vmcb
            .set_insn_bytes(&x.insn_bytes[..usize::from(x.insn_len.min(15))]);
        // EXITINTINFO: an event whose delivery the exit interrupted (the
        // engine keeps it pending and delivers it on the next run, as a
        // hypervisor re-injects it; APM vol. 2, 15.7.2).
        let ev = &self.state.events;
        let pending = if ev.exception.injected != 0 || ev.exception.pending != 0 {
            Some(crate::exitinfo::Event {
                vector: ev.exception.nr,
                kind: EventType::Exception,
                error_code: (ev.exception.has_error_code != 0).then_some(ev.exception.error_code),
            })
        } else if ev.interrupt.injected != 0 {
            Some(crate::exitinfo::Event {
                vector: ev.interrupt.nr,
                kind: EventType::Intr,
                error_code: None,
            })
        } else {
            None
        };
        self.vmcb.set(
            field::EXITINTINFO,
            pending.map_or(0, |e| crate::exitinfo::encode_event(&e)),
        );
    }

    /// The last exit's EXITINFO as a trace line (without the exit name).
    pub(crate) fn exit_line(&self) -> String {
        let (code, i1, i2) = (
            self.vmcb.get(field::EXITCODE),
            self.vmcb.get(field::EXITINFO1),
            self.vmcb.get(field::EXITINFO2),
        );
        format!(
            "exitinfo1={i1:#x} exitinfo2={i2:#x} rip={:#x} {}",
            self.vmcb.get(field::RIP),
            describe(code, i1, i2)
        )
    }

    /// #VMEXIT(VMEXIT_INTR): the host kicked this vCPU.
    pub(crate) fn external_interrupt(&mut self) -> Exit {
        self.vmcb.set(field::EXITCODE, VMEXIT_INTR);
        self.vmcb.set(field::EXITINFO1, 0);
        self.vmcb.set(field::EXITINFO2, 0);
        Exit::new(
            ExitReason::Interrupted,
            VMEXIT_INTR,
            "VMEXIT_INTR",
            self.exit_line(),
        )
    }
}

/// An internal-error exit.
pub(crate) fn internal(what: &str) -> Exit {
    Exit::new(
        ExitReason::InternalError {
            description: format!("svm: {what}").into(),
        },
        0,
        "internal error",
        what.to_string(),
    )
}
