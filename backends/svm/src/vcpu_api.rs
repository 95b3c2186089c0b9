//! The `Vcpu` interface the host drives: state access, run, completions,
//! event injection and the interrupt window through the VMCB.

use crate::exitinfo::{Event, EventType};
use crate::vcpu::SvmVcpu;
use crate::vmcb::field::{self, vintr};
use hyperplug_plugin_api::backend::{kicker_into_ffi, Vcpu, VcpuKicker};
use hyperplug_plugin_api::state::{Fpu, MsrEntry, Regs, Sregs, VcpuEvents, Xsave};
use hyperplug_plugin_api::{Exit, PluginError};

/// MISC1 bit 4: VINTR intercept (APM vol. 2, appendix B, Table B-1).
const MISC1_VINTR: u64 = 1 << 4;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

impl SvmVcpu {
    /// Requests (or cancels) the interrupt window: V_IRQ with the VINTR
    /// intercept, the way kvm-amd opens a window (APM vol. 2, 15.21.4).
    pub(crate) fn set_interrupt_window(&mut self, on: bool) {
        let vi = self.vmcb.get(field::VINTR);
        let misc1 = self.vmcb.get(field::INTERCEPT_MISC1);
        let (vi, misc1) = if on {
            (vi | vintr::V_IRQ | vintr::V_IGN_TPR, misc1 | MISC1_VINTR)
        } else {
            (vi & !vintr::V_IRQ, misc1 & !MISC1_VINTR)
        };
        if vi != self.vmcb.get(field::VINTR) || misc1 != self.vmcb.get(field::INTERCEPT_MISC1) {
            self.vmcb.set(field::VINTR, vi);
            self.vmcb.set(field::INTERCEPT_MISC1, misc1);
            self.intercepts_changed();
        }
    }

    fn eventinj_pending(&self) -> bool {
        self.vmcb.get(field::EVENTINJ) & (1 << 31) != 0
    }

    fn changed(&mut self) {
        self.full_dirty = true;
        self.store_state();
    }
}

impl Vcpu for SvmVcpu {
    fn get_regs(&mut self) -> Result<Regs, PluginError> {
        Ok(self.state.regs)
    }
    fn set_regs(&mut self, regs: &Regs) -> Result<(), PluginError> {
        self.state.regs = *regs;
        self.regs_dirty = true;
        self.store_state();
        Ok(())
    }
    fn get_sregs(&mut self) -> Result<Sregs, PluginError> {
        Ok(self.state.sregs)
    }
    fn set_sregs(&mut self, sregs: &Sregs) -> Result<(), PluginError> {
        self.state.sregs = *sregs;
        self.changed();
        Ok(())
    }
    fn get_fpu(&mut self) -> Result<Fpu, PluginError> {
        Ok(self.state.fpu)
    }
    fn set_fpu(&mut self, fpu: &Fpu) -> Result<(), PluginError> {
        self.state.fpu = *fpu;
        self.changed();
        Ok(())
    }
    fn get_xsave(&mut self) -> Result<Xsave, PluginError> {
        Ok(self.state.xsave.clone())
    }
    fn set_xsave(&mut self, xsave: &Xsave) -> Result<(), PluginError> {
        self.state.xsave = xsave.clone();
        self.changed();
        Ok(())
    }
    fn get_msrs(&mut self, indices: &[u32]) -> Result<Vec<MsrEntry>, PluginError> {
        Ok(self
            .state
            .msrs
            .iter()
            .filter(|m| indices.contains(&m.index))
            .copied()
            .collect())
    }
    fn set_msrs(&mut self, entries: &[MsrEntry]) -> Result<(), PluginError> {
        for e in entries {
            match self.state.msrs.iter_mut().find(|m| m.index == e.index) {
                Some(m) => m.data = e.data,
                None => self.state.msrs.push(*e),
            }
        }
        self.changed();
        Ok(())
    }
    fn get_events(&mut self) -> Result<VcpuEvents, PluginError> {
        Ok(self.state.events)
    }
    fn set_events(&mut self, events: &VcpuEvents) -> Result<(), PluginError> {
        self.state.events = *events;
        self.changed();
        Ok(())
    }
    fn run(&mut self) -> Result<Exit, PluginError> {
        self.run_guest()
    }
    fn complete_io(&mut self, data: &[u8]) -> Result<(), PluginError> {
        self.write_pending = false;
        self.engine.complete_io(data.into()).into_result()
    }
    fn inject_interrupt(&mut self, vector: u8) -> Result<(), PluginError> {
        if self.eventinj_pending() {
            return Err(PluginError::invalid(
                "inject_interrupt: EVENTINJ already holds an event",
            ));
        }
        self.set_interrupt_window(false);
        self.queue_event(Event {
            vector,
            kind: EventType::Intr,
            error_code: None,
        });
        Ok(())
    }
    fn request_interrupt_window(&mut self, request: bool) -> Result<(), PluginError> {
        self.set_interrupt_window(request);
        Ok(())
    }
    fn interrupt_window_open(&mut self) -> Result<bool, PluginError> {
        Ok(self.state.regs.rflags & RFLAGS_IF != 0
            && self.state.events.interrupt.shadow == 0
            && self.state.events.interrupt.injected == 0
            && !self.eventinj_pending()
            && !self.lift)
    }
    fn kicker(&self) -> Result<VcpuKicker, PluginError> {
        Ok(kicker_into_ffi(self.kick.clone()))
    }
    fn inject_nmi(&mut self) -> Result<(), PluginError> {
        if self.eventinj_pending() {
            self.state.events.nmi.pending = 1;
            self.changed();
        } else {
            self.queue_event(Event {
                vector: 2,
                kind: EventType::Nmi,
                error_code: None,
            });
        }
        Ok(())
    }
    fn complete_msr(&mut self, value: u64, fault: bool) -> Result<(), PluginError> {
        let Some((_, write)) = self.pending_msr.take() else {
            return Err(PluginError::invalid(
                "complete_msr without a forwarded MSR exit",
            ));
        };
        if fault {
            self.queue_event(Event {
                vector: 13,
                kind: EventType::Exception,
                error_code: Some(0),
            });
            return Ok(());
        }
        if !write {
            self.state.regs.rax = value & 0xffff_ffff;
            self.state.regs.rdx = value >> 32;
        }
        self.skip_instruction();
        Ok(())
    }
    fn debug_dump(&mut self) -> Result<String, PluginError> {
        Ok(self.vmcb.dump())
    }
    fn set_a20(&mut self, enabled: bool) -> Result<(), PluginError> {
        // A20M# is a pin of the processor: the engine applies it.
        self.engine.set_a20(enabled).into_result()
    }
}
