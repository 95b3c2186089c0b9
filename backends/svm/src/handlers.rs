//! Exit handlers, the kvm-amd way: what the backend resolves itself (CPUID,
//! CR/DR/MSR accesses it emulates, #PF under shadow paging, NPF) and what
//! goes back to the host as an `Exit` (I/O, MMIO, HLT, shutdown, the
//! interrupt window, forwarded MSRs).

use crate::exitcode::*;
use crate::exitinfo::{encode_event, Event, EventType};
use crate::run::internal;
use crate::vcpu::SvmVcpu;
use crate::vmcb::field;
use crate::vmexit::VmExit;
use hyperplug_plugin_api::backend::VmConfig;
use hyperplug_plugin_api::engine::{EngineEvent, EngineStop, NestedOutcome, ShadowOutcome};
use hyperplug_plugin_api::{Exit, ExitReason, PluginError};

/// IA32_APIC_BASE, forwarded to the host's local APIC.
const MSR_APIC_BASE: u32 = 0x1b;

/// What the run loop does after a handler.
pub enum Flow {
    /// Back into the guest.
    Resume,
    /// Return this exit to the host.
    Exit(Exit),
}

fn exit(reason: ExitReason, x: &VmExit) -> Flow {
    Flow::Exit(Exit::new(reason, x.code, &name(x.code), String::new()))
}

impl SvmVcpu {
    /// Skips the intercepted instruction (RIP = nRIP, APM vol. 2, 15.7.1).
    pub(crate) fn skip_instruction(&mut self) {
        let nrip = self.vmcb.get(field::NRIP);
        self.state.regs.rip = nrip;
        // The instruction completed: an interrupt shadow it was in is over.
        if self.state.events.interrupt.shadow != 0 {
            self.state.events.interrupt.shadow = 0;
            self.full_dirty = true;
        }
        self.vmcb.set(field::RIP, nrip);
        self.regs_dirty = true;
    }

    /// Queues an event in EVENTINJ for the next VMRUN.
    pub(crate) fn queue_event(&mut self, e: Event) {
        self.vmcb.set(field::EVENTINJ, encode_event(&e));
    }
}

/// Resolving the same fault this many times in a row means no progress.
const MAX_REPEATED_FAULTS: u32 = 16;

impl SvmVcpu {
    /// Notes a resolved fault at `addr`; an error exit when it keeps recurring.
    fn fault_progress(&mut self, addr: u64, what: &str) -> Option<Flow> {
        if self.repeat_fault.0 == addr {
            self.repeat_fault.1 += 1;
        } else {
            self.repeat_fault = (addr, 1);
        }
        (self.repeat_fault.1 > MAX_REPEATED_FAULTS).then(|| {
            Flow::Exit(internal(&format!(
                "{what} at {addr:#x} resolved {MAX_REPEATED_FAULTS} times without progress"
            )))
        })
    }
}

/// Handles exit `x` (the engine stop `ev`).
pub fn handle(v: &mut SvmVcpu, ev: &EngineEvent, x: &VmExit) -> Result<Flow, PluginError> {
    let code = x.code;
    Ok(match &ev.stop {
        EngineStop::Shutdown => exit(ExitReason::Shutdown, x),
        EngineStop::Hlt | EngineStop::Halted => exit(ExitReason::Hlt, x),
        EngineStop::Mmio { gpa, size, write } => {
            // The access is retried alone once the host completes it.
            v.lift = true;
            v.write_pending = write.is_some();
            let reason = match write.into_option() {
                Some(d) => ExitReason::MmioWrite {
                    addr: *gpa,
                    data: d.to_le_bytes()[..usize::from((*size).min(8))]
                        .to_vec()
                        .into(),
                },
                None => ExitReason::MmioRead {
                    addr: *gpa,
                    size: *size,
                },
            };
            exit(reason, x)
        }
        EngineStop::InterruptWindow => {
            // V_IRQ was taken: the window the host asked for is open.
            v.set_interrupt_window(false);
            exit(ExitReason::InterruptWindow, x)
        }
        EngineStop::Cpuid { leaf, subleaf } => {
            let apic = v.flags & VmConfig::HOST_LAPIC != 0;
            let r = crate::cpuid::cpuid(&v.engine, *leaf, *subleaf, v.id, apic);
            v.state.regs.rax = u64::from(r.eax);
            v.state.regs.rbx = u64::from(r.ebx);
            v.state.regs.rcx = u64::from(r.ecx);
            v.state.regs.rdx = u64::from(r.edx);
            v.skip_instruction();
            Flow::Resume
        }
        EngineStop::Insn { .. } if code == VMEXIT_HLT => {
            v.skip_instruction();
            exit(ExitReason::Hlt, x)
        }
        EngineStop::MsrRead { msr } | EngineStop::MsrWrite { msr, .. }
            if *msr == MSR_APIC_BASE && v.flags & VmConfig::HOST_LAPIC != 0 =>
        {
            let write = matches!(ev.stop, EngineStop::MsrWrite { .. });
            v.pending_msr = Some((*msr, write));
            let reason = match &ev.stop {
                EngineStop::MsrWrite { value, .. } => ExitReason::MsrWrite {
                    index: *msr,
                    data: *value,
                },
                _ => ExitReason::MsrRead { index: *msr },
            };
            exit(reason, x)
        }
        EngineStop::Exception {
            vector: 14,
            error_code,
            address,
        } if !v.nested() => {
            let linear = address.into_option().unwrap_or(0);
            let ec = error_code.into_option().unwrap_or(0);
            match v.engine.shadow_page_fault(linear, ec).into_result()? {
                ShadowOutcome::Fixed => v
                    .fault_progress(linear, "shadow page fault")
                    .unwrap_or(Flow::Resume),
                ShadowOutcome::Reflect {
                    error_code,
                    address,
                } => {
                    // A guest whose own #PF delivery keeps faulting at the
                    // same place without running an instruction (what a
                    // CPU ends in a triple fault) is stopped, not looped.
                    if let Some(stop) = v.fault_progress(address, "guest page fault") {
                        return Ok(stop);
                    }
                    // CR2 travels with the injected #PF (the VMCB's CR2 and
                    // the state both, so a later state store keeps it).
                    v.state.sregs.cr2 = address;
                    v.vmcb.set(field::CR2, address);
                    v.queue_event(Event {
                        vector: 14,
                        kind: EventType::Exception,
                        error_code: Some(error_code),
                    });
                    Flow::Resume
                }
                ShadowOutcome::Unbacked { gpa } => Flow::Exit(internal(&format!(
                    "guest paging structure at {gpa:#x} is not in RAM"
                ))),
            }
        }
        EngineStop::Exception {
            vector,
            error_code,
            address,
        } => {
            // Any other intercepted exception is reflected unchanged (a #PF
            // with its CR2, as EXITINFO2 reported it).
            if let (14, Some(cr2)) = (*vector, address.into_option()) {
                v.state.sregs.cr2 = cr2;
                v.vmcb.set(field::CR2, cr2);
            }
            v.queue_event(Event {
                vector: *vector,
                kind: EventType::Exception,
                error_code: error_code.into_option(),
            });
            Flow::Resume
        }
        EngineStop::NestedFault { gpa, info, .. } => {
            let write = info & crate::exitinfo::npf::RW != 0;
            match v.engine.nested_page_fault(*gpa, write).into_result()? {
                NestedOutcome::Mapped | NestedOutcome::Mmio => v
                    .fault_progress(*gpa, "nested page fault")
                    .unwrap_or(Flow::Resume),
            }
        }
        EngineStop::TableUnbacked { gpa } => Flow::Exit(internal(&format!(
            "guest paging structure at {gpa:#x} is not in RAM"
        ))),
        // Everything else the VMCB intercepts is an instruction the engine
        // implements: emulate it once with the intercepts lifted (IOIO ends
        // in a port access that goes to the host).
        _ => {
            v.lift = true;
            Flow::Resume
        }
    })
}
