//! One vCPU's run loop: the wait-for-SIPI state of application processors,
//! interrupt injection through the backend's interrupt window, and the
//! dispatch of every exit to the bus, the local APIC or the machine.

use crate::bus::Access;
use crate::dump::format_registers;
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::platform::{Platform, Trace};
use hyperplug_plugin_api::abi_stable::std_types::RSlice;
use hyperplug_plugin_api::backend::VcpuBox;
use hyperplug_plugin_api::device::AddressSpace;
use hyperplug_plugin_api::state::{rflags, Regs};
use hyperplug_plugin_api::{Exit, ExitReason, PluginError};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::turns::Turns;

/// The largest I/O transfer one exit may carry (a page of string I/O).
const MAX_IO_BYTES: usize = 4096;

/// `ExitReason::SystemEvent` kinds (KVM's numbering, which the ABI adopts).
pub mod system_event {
    /// The guest powered the machine off.
    pub const SHUTDOWN: u32 = 1;
    /// The guest reset the machine.
    pub const RESET: u32 = 2;
}

/// What all vCPU loops of a VM share.
pub(crate) struct Shared<'a> {
    pub platform: &'a Platform,
    pub backend: &'a str,
    pub trace: Trace,
    pub exits: &'a AtomicU64,
    /// vCPUs that cannot run until something external happens (halted with
    /// interrupts off, or waiting for a start-up IPI).
    pub parked: AtomicUsize,
    /// `--deterministic`: the vCPUs take turns (see [`Turns`]).
    pub turns: Option<Turns>,
    /// The backend said it cannot gate A20 (warned once).
    pub a20_unsupported: std::sync::atomic::AtomicBool,
}

pub(crate) fn backend_err(backend: &str, op: &str, e: PluginError) -> Error {
    Error::Backend {
        backend: backend.to_string(),
        op: op.to_string(),
        message: e.message.to_string(),
    }
}

/// Where a vCPU is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Executing guest code.
    Running,
    /// An application processor before its start-up IPI (SDM vol. 3, 9.4.1).
    WaitForSipi,
}

/// One vCPU's loop.
pub(crate) struct VcpuRunner<'a> {
    pub id: usize,
    pub vcpu: &'a mut VcpuBox,
    pub shared: &'a Shared<'a>,
    /// The A20-line generation this vCPU's backend has seen.
    pub a20_seen: u64,
}

impl VcpuRunner<'_> {
    pub(crate) fn err(&self, op: &str, e: PluginError) -> Error {
        backend_err(self.shared.backend, &format!("vCPU {}: {op}", self.id), e)
    }

    fn dump(&mut self) -> String {
        let r = self.vcpu.get_regs().into_result();
        let s = self.vcpu.get_sregs().into_result();
        match (r, s) {
            (Ok(r), Ok(s)) => format_registers(&r, &s),
            (Err(e), _) | (_, Err(e)) => format!("(registers unavailable: {})\n", e.message),
        }
    }

    pub(crate) fn stopped(&mut self, what: impl Into<String>) -> Outcome {
        let dump = self.dump();
        let who = if self.shared.platform.cpus() > 1 {
            format!("vCPU {}: ", self.id)
        } else {
            String::new()
        };
        Outcome::GuestStopped {
            what: format!("{who}{}", what.into()),
            dump,
        }
    }

    /// Runs until the VM stops; returns the outcome this vCPU caused, if any.
    pub fn run(&mut self) -> Result<Option<Outcome>> {
        let p = self.shared.platform;
        let mut state = if self.id == 0 {
            RunState::Running
        } else {
            RunState::WaitForSipi
        };
        if state == RunState::WaitForSipi {
            self.shared.parked.fetch_add(1, Ordering::SeqCst);
        }
        let waker = p.apic.waker(self.id).cloned();
        // Deterministic runs: halted (with RFLAGS.IF) between turns.
        let mut halted: Option<bool> = None;
        loop {
            if let Some(t) = &self.shared.turns {
                if !t.wait(self.id, &p.stop) {
                    return Ok(None);
                }
                let r = self.turn(&mut state, &mut halted, waker.as_deref());
                t.pass(self.id);
                match r {
                    Ok(None) if !p.stop.requested() => continue,
                    other => return other,
                }
            }
            if p.stop.requested() {
                return Ok(None);
            }
            let seen = waker.as_ref().map(|w| w.generation()).unwrap_or(0);
            let mail = p.apic.take_mailbox(self.id);
            if mail.init && self.id != 0 && state == RunState::Running {
                state = RunState::WaitForSipi;
                self.shared.parked.fetch_add(1, Ordering::SeqCst);
            }
            if let (Some(vector), RunState::WaitForSipi) = (mail.sipi, state) {
                self.start_at(vector)?;
                state = RunState::Running;
                self.shared.parked.fetch_sub(1, Ordering::SeqCst);
            }
            if mail.nmi && state == RunState::Running {
                self.vcpu
                    .inject_nmi()
                    .into_result()
                    .map_err(|e| self.err("inject NMI", e))?;
            }
            if state == RunState::WaitForSipi {
                if let Some(o) = self.check_all_parked() {
                    return Ok(Some(o));
                }
                if let Some(w) = &waker {
                    w.wait(seen, Duration::from_millis(100));
                }
                continue;
            }
            if p.clock.is_counted() {
                // Timers fire at instruction boundaries on the
                // instruction-driven clock (`--deterministic`).
                p.timers.fire_due();
            }
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
            if let Some(o) = self.handle_exit(exit)? {
                return Ok(Some(o));
            }
        }
    }

    /// Starts an application processor at the start-up IPI's vector: real
    /// mode at CS = vector << 8, IP = 0 (SDM vol. 3, 9.4.4.1).
    pub(crate) fn start_at(&mut self, vector: u8) -> Result<()> {
        let mut s = self
            .vcpu
            .get_sregs()
            .into_result()
            .map_err(|e| self.err("get special registers", e))?;
        init_state(&mut s);
        s.cs.selector = u16::from(vector) << 8;
        s.cs.base = u64::from(vector) << 12;
        self.vcpu
            .set_sregs(s)
            .into_result()
            .map_err(|e| self.err("set special registers", e))?;
        let r = Regs {
            rip: 0,
            rflags: rflags::FIXED,
            ..Default::default()
        };
        self.vcpu
            .set_regs(r)
            .into_result()
            .map_err(|e| self.err("set registers", e))?;
        tracing::debug!(target: "irq", "vCPU {} started at {:#x}", self.id, u64::from(vector) << 12);
        Ok(())
    }

    fn check_all_parked(&mut self) -> Option<Outcome> {
        let cpus = self.shared.platform.cpus() as usize;
        (self.shared.parked.load(Ordering::SeqCst) >= cpus && self.id == 0).then(|| {
            self.stopped(
                "every vCPU is halted with interrupts disabled or waiting for a start-up IPI",
            )
        })
    }

    /// Hands an A20-gate change to the backend before the next run. A
    /// backend that cannot gate A20 (kvm) runs with it open; that is said
    /// once.
    pub(crate) fn sync_a20(&mut self) -> Result<()> {
        let line = &self.shared.platform.a20;
        let g = line.generation();
        if g == self.a20_seen {
            return Ok(());
        }
        self.a20_seen = g;
        if let Err(e) = self.vcpu.set_a20(line.enabled()).into_result() {
            if e.kind == hyperplug_plugin_api::ErrorKind::Unsupported {
                if !self.shared.a20_unsupported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "devices", "backend {}: {}; A20 stays open", self.shared.backend, e.message);
                }
                return Ok(());
            }
            return Err(self.err("set A20", e));
        }
        Ok(())
    }

    /// If this vCPU's local APIC (or, on the BSP, the 8259A through LINT0)
    /// has an interrupt for it: inject the vector when the guest can take
    /// it, else ask the backend for an interrupt-window exit.
    pub(crate) fn deliver_interrupt(&mut self) -> Result<()> {
        let p = self.shared.platform;
        let lapic = p.apic.pending_vector(self.id).is_some();
        let pic = p.intr.cpu_intr() && p.apic.pic_reaches(self.id);
        if !lapic && !pic {
            return Ok(());
        }
        let open = self
            .vcpu
            .interrupt_window_open()
            .into_result()
            .map_err(|e| self.err("interrupt window", e))?;
        if open {
            let vector = if lapic {
                p.apic.acknowledge(self.id)
            } else {
                p.intr.acknowledge().map_err(|m| Error::Device {
                    device: "interrupt controller".into(),
                    message: m,
                })?
            };
            if let Some(v) = vector {
                tracing::trace!(target: "irq", "vCPU {} inject vector {v:#x}", self.id);
                self.vcpu
                    .inject_interrupt(v)
                    .into_result()
                    .map_err(|e| self.err("inject interrupt", e))?;
            }
        }
        self.vcpu
            .request_interrupt_window(!open)
            .into_result()
            .map_err(|e| self.err("interrupt window", e))?;
        Ok(())
    }

    pub(crate) fn handle_exit(&mut self, exit: Exit) -> Result<Option<Outcome>> {
        let p = self.shared.platform;
        match exit.reason {
            ExitReason::IoIn { port, size, count } => {
                let data = self.io_in(port, size, count)?;
                self.vcpu
                    .complete_io(RSlice::from_slice(&data))
                    .into_result()
                    .map_err(|e| self.err("complete I/O", e))?;
            }
            ExitReason::IoOut {
                port,
                size,
                count,
                data,
            } => self.io_out(port, size, count, &data)?,
            ExitReason::MmioRead { addr, size } => {
                let mut data = vec![0u8; usize::from(size.clamp(1, 8))];
                if p.apic.is_lapic_mmio(self.id, addr) {
                    p.apic.lapic_read(self.id, addr, &mut data);
                } else {
                    p.bus.read(AddressSpace::Mmio, addr, &mut data)?;
                }
                self.vcpu
                    .complete_io(RSlice::from_slice(&data))
                    .into_result()
                    .map_err(|e| self.err("complete MMIO", e))?;
            }
            ExitReason::MmioWrite { addr, data } => {
                if p.apic.is_lapic_mmio(self.id, addr) {
                    p.apic.lapic_write(self.id, addr, &data);
                } else {
                    p.bus.write(AddressSpace::Mmio, addr, &data)?;
                }
            }
            ExitReason::MsrRead { index } => {
                let v = p.apic.lapic_read_msr(self.id, index);
                self.vcpu
                    .complete_msr(v.unwrap_or(0), v.is_none())
                    .into_result()
                    .map_err(|e| self.err("complete RDMSR", e))?;
            }
            ExitReason::MsrWrite { index, data } => {
                let ok = p.apic.lapic_write_msr(self.id, index, data);
                self.vcpu
                    .complete_msr(0, !ok)
                    .into_result()
                    .map_err(|e| self.err("complete WRMSR", e))?;
            }
            ExitReason::Hlt => return self.halt(),
            ExitReason::Shutdown => {
                let dump = self.dump();
                let dump = if p.cpus() > 1 {
                    format!("vCPU {}:\n{dump}", self.id)
                } else {
                    dump
                };
                return Ok(Some(Outcome::TripleFault { dump }));
            }
            ExitReason::InterruptWindow | ExitReason::Interrupted => {}
            ExitReason::Debug { rip, vector } => {
                tracing::debug!(target: "exits", "debug exception {vector} at {rip:#x} ignored");
            }
            ExitReason::SystemEvent {
                kind: system_event::SHUTDOWN,
            } => return Ok(Some(Outcome::PowerOff)),
            ExitReason::SystemEvent {
                kind: system_event::RESET,
            } => {
                return Ok(Some(Outcome::Reset {
                    reason: format!("backend {}: reset event", self.shared.backend),
                }))
            }
            ExitReason::SystemEvent { kind } => {
                return Ok(Some(self.stopped(format!(
                    "backend system event {kind} ({} {})",
                    exit.native_name, exit.native_detail
                ))))
            }
            ExitReason::EntryFailure { reason } => {
                return Ok(Some(self.stopped(format!(
                    "VM entry failed: {} reason {reason:#x} {}",
                    exit.native_name, exit.native_detail
                ))))
            }
            ExitReason::InternalError { description } => {
                return Ok(Some(self.stopped(format!(
                    "backend internal error: {description} ({})",
                    exit.native_detail
                ))))
            }
        }
        Ok(None)
    }

    /// Whether something can deliver an interrupt to this vCPU right now.
    pub(crate) fn interrupt_ready(&self) -> bool {
        let p = self.shared.platform;
        p.apic.pending_vector(self.id).is_some()
            || (p.intr.cpu_intr() && p.apic.pic_reaches(self.id))
    }

    /// HLT (SDM vol. 2A, HLT: execution resumes on an interrupt, NMI, SMI or
    /// INIT). With interrupts disabled nothing modelled can wake the vCPU: a
    /// uniprocessor VM stops; in an SMP VM the vCPU parks until an INIT (or
    /// the whole VM stops when every vCPU is parked). With interrupts on, it
    /// waits for an interrupt (or, with no interrupt controller at all, any
    /// rising IRQ edge) or a stop request.
    pub(crate) fn halt(&mut self) -> Result<Option<Outcome>> {
        let p = self.shared.platform;
        let r = self
            .vcpu
            .get_regs()
            .into_result()
            .map_err(|e| self.err("get registers", e))?;
        let Some(waker) = p.apic.waker(self.id).cloned() else {
            return Ok(None);
        };
        if r.rflags & rflags::IF == 0 {
            if p.cpus() == 1 {
                return Ok(Some(self.stopped(
                    "guest halted with interrupts disabled (cli; hlt): nothing can wake it",
                )));
            }
            self.shared.parked.fetch_add(1, Ordering::SeqCst);
            let result = loop {
                let seen = waker.generation();
                if p.stop.requested() {
                    break None;
                }
                if let Some(o) = self.check_all_parked() {
                    break Some(o);
                }
                // An INIT or NMI ends the halt; the main loop acts on it.
                let mail = p.apic.take_mailbox(self.id);
                if mail.init || mail.nmi || mail.sipi.is_some() {
                    p.apic.restore_mailbox(self.id, mail);
                    break None;
                }
                waker.wait(seen, Duration::from_millis(100));
            };
            self.shared.parked.fetch_sub(1, Ordering::SeqCst);
            return Ok(result);
        }
        let edges = p.intr.edges();
        loop {
            let seen = waker.generation();
            if p.stop.requested() || self.interrupt_ready() {
                return Ok(None);
            }
            if p.clock.is_counted() {
                // Idle time on the instruction-driven clock: skip to the
                // next timer deadline instead of waiting for it.
                if let Some(deadline) = p.timers.next_deadline() {
                    p.clock.advance_to(deadline);
                    p.timers.fire_due();
                    continue;
                }
            }
            if !p.intr.has_controller() && p.apic.pic_reaches(self.id) && p.intr.edges() != edges {
                return Ok(None);
            }
            waker.wait(seen, Duration::from_millis(100));
        }
    }

    fn io_in(&mut self, port: u16, size: u8, count: u32) -> Result<Vec<u8>> {
        let size = usize::from(size.clamp(1, 4));
        let count = count.max(1) as usize;
        let total = size.saturating_mul(count);
        if total > MAX_IO_BYTES {
            return Err(Error::Backend {
                backend: self.shared.backend.to_string(),
                op: "I/O exit".into(),
                message: format!(
                    "IN of {count} x {size} bytes at port {port:#x} exceeds {MAX_IO_BYTES} bytes"
                ),
            });
        }
        let mut data = vec![0u8; total];
        for chunk in data.chunks_mut(size) {
            let _: Access =
                self.shared
                    .platform
                    .bus
                    .read(AddressSpace::Pio, u64::from(port), chunk)?;
        }
        Ok(data)
    }

    fn io_out(&mut self, port: u16, size: u8, count: u32, data: &[u8]) -> Result<()> {
        let size = usize::from(size.clamp(1, 4));
        for chunk in data.chunks(size).take(count.max(1) as usize) {
            let _: Access =
                self.shared
                    .platform
                    .bus
                    .write(AddressSpace::Pio, u64::from(port), chunk)?;
            if self.shared.platform.stop.requested() {
                break;
            }
        }
        Ok(())
    }
}

/// The special registers after INIT (SDM vol. 3, 10.1.1 "Processor State
/// After Reset", Table 10-1, which INIT establishes too): real mode, every
/// segment base 0 / limit FFFFH / present read-write accessed data (CS:
/// execute-read accessed code), GDTR and IDTR base 0 / limit FFFFH, CR0
/// 60000010H, CR2-CR4 and EFER 0. The local APIC base is kept.
pub fn init_state(s: &mut hyperplug_plugin_api::state::Sregs) {
    use hyperplug_plugin_api::state::{DTable, Segment, Sregs};
    // The image loader's real-mode state, with what INIT differs in.
    let (_, real) = crate::image::x86_setup::real_mode(0);
    *s = Sregs {
        tr: Segment {
            type_: 3,
            ..real.tr
        },
        idt: DTable {
            limit: 0xffff,
            ..real.idt
        },
        cr0: 0x6000_0010,
        apic_base: s.apic_base,
        interrupt_bitmap: s.interrupt_bitmap,
        ..real
    };
}
