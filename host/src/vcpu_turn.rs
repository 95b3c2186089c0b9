//! A deterministic vCPU's turn (`--deterministic`, see [`crate::turns`]):
//! the vCPU acts on its INIT/SIPI/NMI mail, then runs the guest once or,
//! if it waits (halted, before its start-up IPI), notes an idle turn; a
//! whole round of idle turns skips the instruction-driven clock to the next
//! timer deadline. Nothing here blocks on the host's time unless only
//! outside input can wake the VM.

use crate::error::Result;
use crate::outcome::Outcome;
use crate::stop::VcpuWaker;
use crate::vcpu_loop::{RunState, VcpuRunner};
use hyperplug_plugin_api::state::rflags;
use hyperplug_plugin_api::ExitReason;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl VcpuRunner<'_> {
    /// One turn of a deterministic run: act on INIT/SIPI/NMI, then either
    /// run the guest once (one quantum or up to one exit) or, if this vCPU
    /// waits, note an idle turn; when every vCPU idled for a whole round,
    /// skip the instruction-driven clock to the next timer deadline.
    pub(crate) fn turn(
        &mut self,
        state: &mut RunState,
        halted: &mut Option<bool>,
        waker: Option<&VcpuWaker>,
    ) -> Result<Option<Outcome>> {
        let p = self.shared.platform;
        if p.stop.requested() {
            return Ok(None);
        }
        let mail = p.apic.take_mailbox(self.id);
        if mail.init && self.id != 0 && *state == RunState::Running {
            *state = RunState::WaitForSipi;
            if *halted == Some(false) {
                // Already counted as parked.
                self.shared.parked.fetch_sub(1, Ordering::SeqCst);
            }
            *halted = None;
            self.shared.parked.fetch_add(1, Ordering::SeqCst);
        }
        if let (Some(vector), RunState::WaitForSipi) = (mail.sipi, *state) {
            self.start_at(vector)?;
            *state = RunState::Running;
            self.shared.parked.fetch_sub(1, Ordering::SeqCst);
        }
        if mail.nmi && *state == RunState::Running {
            self.vcpu
                .inject_nmi()
                .into_result()
                .map_err(|e| self.err("inject NMI", e))?;
            // An NMI ends HLT whatever RFLAGS.IF is.
            if *halted == Some(false) {
                self.shared.parked.fetch_sub(1, Ordering::SeqCst);
            }
            *halted = None;
        }
        p.timers.fire_due();
        let waiting = match (*state, *halted) {
            (RunState::WaitForSipi, _) => true,
            (RunState::Running, Some(true)) => !self.interrupt_ready(),
            (RunState::Running, Some(false)) => true,
            (RunState::Running, None) => false,
        };
        let Some(t) = &self.shared.turns else {
            return Ok(None);
        };
        if waiting {
            if t.note_idle() {
                t.note_progress();
                if let Some(deadline) = p.timers.next_deadline() {
                    p.clock.advance_to(deadline);
                    p.timers.fire_due();
                } else if self.shared.parked.load(Ordering::SeqCst) >= p.cpus() as usize {
                    return Ok(Some(self.stopped(
                        "every vCPU is halted with interrupts disabled or waiting for a start-up IPI",
                    )));
                } else if let Some(w) = waker {
                    // Only input from outside (a console) can wake the VM.
                    let seen = w.generation();
                    w.wait(seen, Duration::from_millis(100));
                }
            }
            return Ok(None);
        }
        *halted = None;
        t.note_progress();
        self.sync_a20()?;
        self.deliver_interrupt()?;
        let exit = self
            .vcpu
            .run()
            .into_result()
            .map_err(|e| self.err("run", e))?;
        self.shared.exits.fetch_add(1, Ordering::Relaxed);
        if self.shared.trace.exits {
            tracing::info!(target: "exits", "vcpu{} {} {}", self.id, exit.native_name, exit.native_detail);
        }
        if exit.reason == ExitReason::Hlt {
            let r = self
                .vcpu
                .get_regs()
                .into_result()
                .map_err(|e| self.err("get registers", e))?;
            let if_set = r.rflags & rflags::IF != 0;
            if !if_set && p.cpus() == 1 {
                return self.halt();
            }
            if !if_set {
                self.shared.parked.fetch_add(1, Ordering::SeqCst);
            }
            *halted = Some(if_set);
            return Ok(None);
        }
        self.handle_exit(exit)
    }
}
