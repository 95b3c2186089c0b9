//! The engine: fetch, decode (through the cache), execute, commit, and
//! deliver events, until the budget is used or something must stop.

use crate::block::Blocks;
use crate::bus::Bus;
use crate::cpu::{Cpu, Mode, SegReg};
use crate::decode::{decode, DecodeCache, DecodeOutcome, Decoded};
use crate::exception::{vector, Exception, Fault, OpResult};
use crate::fast::FastStop;
use crate::flags;
use crate::mem::{bus_fault, is_canonical, PendingWrite};
use crate::model::CpuModel;
use crate::policy::{Event, EventKind, Intercept, InterceptKind, InterceptPolicy};
use crate::utlb::Utlb;
use hyperplug_mmu::tlb::Tlb;
use hyperplug_mmu::track::WriteTracker;
use hyperplug_mmu::{Access, AccessKind, PagingContext};
use iced_x86::Instruction;
use std::sync::Arc;

/// The per-vCPU engine state that is not architectural: TLB, decode cache,
/// write buffer, CPU model.
pub struct Engine {
    pub(crate) st: EngineState,
    pub(crate) dcache: DecodeCache,
    pub(crate) blocks: Blocks,
    fast_on: bool,
    /// The write-tracker generation the decode cache has caught up with:
    /// frames holding cached decodes are tracked, so writes by other vCPUs
    /// and by the host (DMA) reach this cache too.
    pub(crate) code_seen: u64,
    /// The frame last tracked for the decode cache and the tracker
    /// generation then: re-tracking it is skipped while nothing was logged
    /// (a frame is only ever untracked after logged writes).
    code_tracked: (u64, u64),
}

/// The parts of the engine an executing instruction reaches.
pub(crate) struct EngineState {
    pub(crate) tlb: Tlb,
    pub(crate) tracker: Arc<WriteTracker>,
    pub(crate) wbuf: Vec<PendingWrite>,
    pub(crate) model: CpuModel,
    last_paging: PagingContext,
    /// Translations the TLB granted, for the fast path and fetches.
    pub(crate) utlb: Utlb,
    /// A data breakpoint is enabled in DR7: record data-access hits.
    pub(crate) dbp_armed: bool,
    /// DR6.Bn bits of data breakpoints the current instruction hit.
    pub(crate) dbp_hits: u64,
    /// Instructions retired so far in the current `execute` call (the TSC
    /// advances with them).
    pub(crate) retired_in_run: u64,
    /// The current instruction is locked (LOCK prefix, XCHG with memory).
    pub(crate) locking: bool,
    /// A locked instruction's first memory read: (gpa, length, bytes); its
    /// write commits only if memory still holds them.
    pub(crate) locked_read: Option<(u64, u8, [u8; 8])>,
    /// Shadow paging: translations come from here (see `shadow`).
    pub(crate) shadow: Option<hyperplug_mmu::shadow::ShadowMmu>,
    /// The linear address and access of the last shadow miss stopped at.
    pub(crate) shadow_miss: Option<(u64, Access)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tlb", &self.st.tlb)
            .field("dcache", &self.dcache)
            .finish()
    }
}

/// The execution context of one instruction.
pub(crate) struct Ctx<'a, B: Bus> {
    pub(crate) cpu: &'a mut Cpu,
    pub(crate) bus: &'a mut B,
    pub(crate) eng: &'a mut EngineState,
    pub(crate) policy: &'a InterceptPolicy,
    pub(crate) insn: Instruction,
    pub(crate) bytes: [u8; 15],
    /// Address size in bytes (2, 4, 8).
    pub(crate) asz: u8,
    /// RIP of the instruction.
    pub(crate) rip: u64,
    /// RIP after it.
    pub(crate) next_rip: u64,
    pub(crate) mode: Mode,
    pub(crate) cpl: u8,
    /// A REP string instruction has more iterations: RIP stays on it.
    pub(crate) rep_more: bool,
    /// Translations may come from (and go to) the micro-TLB: nothing in
    /// this instruction so far can have changed what it caches.
    pub(crate) utlb_ok: bool,
    /// An exception the new task raises before its first instruction after
    /// a task switch's commit point, or its T-flag #DB (see `task`).
    pub(crate) after_switch: Option<Exception>,
}

/// Registers restored when an instruction faults.
#[derive(Clone, Copy)]
struct Snapshot {
    gpr: [u64; 16],
    rip: u64,
    rflags: u64,
}

enum Step {
    Retired,
    RepIteration,
    Faulted,
    Stop(EventKind, bool),
}

impl Engine {
    /// An engine for a vCPU of a VM whose page-table write tracker is `tracker`.
    pub fn new(tracker: Arc<WriteTracker>) -> Self {
        Self {
            st: EngineState {
                tlb: Tlb::new(tracker.clone()),
                tracker,
                wbuf: Vec::with_capacity(64),
                model: CpuModel::default(),
                last_paging: PagingContext::default(),
                utlb: Utlb::new(),
                dbp_armed: false,
                dbp_hits: 0,
                shadow: None,
                shadow_miss: None,
                retired_in_run: 0,
                locking: false,
                locked_read: None,
            },
            dcache: DecodeCache::new(),
            blocks: Blocks::new(),
            fast_on: true,
            code_seen: 0,
            code_tracked: (u64::MAX, 0),
        }
    }

    /// An engine with its own tracker (a single-vCPU VM, tests).
    pub fn standalone() -> Self {
        Self::new(Arc::new(WriteTracker::new()))
    }

    /// The CPU model (CPUID table) the guest sees.
    pub fn model(&self) -> &CpuModel {
        &self.st.model
    }

    /// The CPU model, to change.
    pub fn model_mut(&mut self) -> &mut CpuModel {
        &mut self.st.model
    }

    /// Turns the fast path (pre-decoded blocks, lazy flags, bulk REP
    /// MOVS/STOS) on or off; results are identical either way, this is
    /// for comparison tests and debugging. On by default.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_on = on;
    }

    /// The decode cache (statistics).
    pub fn decode_cache(&self) -> &DecodeCache {
        &self.dcache
    }

    /// Tells the engine that something other than the engine wrote guest
    /// memory (DMA, the host): drops cached decodes of those pages.
    pub fn invalidate_gpa(&mut self, gpa: u64, len: u64) {
        self.dcache.on_write(gpa, len);
        self.st.tracker.on_guest_write(gpa, len);
        self.st.utlb.invalidate();
    }

    /// Drops every cached translation and decode.
    pub fn flush(&mut self) {
        self.st.tlb.flush_all();
        if let Some(sh) = self.st.shadow.as_mut() {
            sh.flush_all();
        }
        self.st.utlb.invalidate();
        self.dcache.clear();
        self.code_seen = self.st.tracker.generation();
    }

    /// Runs `cpu` for at most `budget` steps (instructions, plus iterations
    /// of REP string instructions that do not finish them), stopping early
    /// for anything in `policy`, HLT, shutdown, or an access the caller must
    /// complete. See [`EventKind`].
    pub fn execute<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        budget: u64,
    ) -> Event {
        let e = self.execute_inner(cpu, bus, policy, budget);
        // The time-stamp counter advances with every retired instruction
        // (one tick each: SDM vol. 3, 18.17 only asks for a monotonic,
        // constant-rate count; this model's rate is its instruction rate).
        cpu.msrs.tsc = cpu.msrs.tsc.wrapping_add(e.retired);
        self.st.retired_in_run = 0;
        e
    }

    fn execute_inner<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        budget: u64,
    ) -> Event {
        // The caller may have changed paging state between runs.
        let now = cpu.paging();
        if now != self.st.last_paging {
            self.st.tlb.on_cr_write(&self.st.last_paging, &now);
            if let Some(sh) = self.st.shadow.as_mut() {
                sh.on_cr_write(&self.st.last_paging, &now);
            }
            self.st.last_paging = now;
        }
        // The caller may have changed anything, including the bus.
        self.st.utlb.invalidate();
        let mut retired = 0u64;
        let mut steps = 0u64;
        let done = |kind, retired, steps| Event {
            kind,
            retired,
            steps,
        };
        loop {
            if let Some(p) = cpu.pending_exception.take() {
                let e = Exception {
                    vector: p.vector,
                    error_code: p.error_code,
                    cr2: None,
                };
                // An injected event pushes RF as it is in RFLAGS (SDM vol. 3,
                // 26.5.1.1 "Details of Vectored-Event Injection").
                if let Err(k) = self.deliver_fault(cpu, bus, policy, e, false) {
                    // Delivery stopped (an intercepted fault on the IDT or
                    // stack, MMIO): the event is still to be delivered once
                    // the caller resolved the stop, as a hypervisor
                    // re-injects what EXITINTINFO reports (APM vol. 2,
                    // 15.7.2).
                    if k != EventKind::Shutdown {
                        cpu.pending_exception = Some(p);
                    }
                    return done(k, retired, steps);
                }
            }
            // An NMI ignores RFLAGS.IF; it waits out a MOV SS / POP SS
            // shadow and, after one was delivered, the next IRET (SDM vol.
            // 3, 6.7.1, 6.8.3).
            if cpu.nmi_pending && !cpu.nmi_blocked && !cpu.ss_shadow {
                cpu.nmi_pending = false;
                let r = self.deliver_event(
                    cpu,
                    bus,
                    policy,
                    crate::exception::vector::NMI,
                    None,
                    crate::deliver::Source::External,
                );
                let r = match r {
                    Ok(Some(e)) => self.deliver_after_switch(cpu, bus, policy, e),
                    Ok(None) => Ok(()),
                    Err(k) => Err(k),
                };
                if let Err(k) = r {
                    if k != EventKind::Shutdown {
                        cpu.nmi_pending = true;
                    }
                    return done(k, retired, steps);
                }
                cpu.nmi_blocked = true;
            }
            let shadow = cpu.sti_shadow || cpu.ss_shadow;
            if cpu.rflags & flags::IF != 0 && !shadow {
                // An interrupt already injected goes first; the window the
                // caller asks for is the one after it (injection happens at
                // VMRUN, before a virtual interrupt is considered: APM vol.
                // 2, 15.20, 15.21.4).
                if policy.interrupt_window && cpu.pending_interrupt.is_none() {
                    let k = EventKind::Intercept(Intercept {
                        kind: InterceptKind::InterruptWindow,
                        rip: cpu.rip,
                        insn_len: 0,
                        insn_bytes: [0; 15],
                    });
                    return done(k, retired, steps);
                }
                if let Some(v) = cpu.pending_interrupt.take() {
                    let r = self.deliver_event(
                        cpu,
                        bus,
                        policy,
                        v,
                        None,
                        crate::deliver::Source::External,
                    );
                    let r = match r {
                        Ok(Some(e)) => self.deliver_after_switch(cpu, bus, policy, e),
                        Ok(None) => Ok(()),
                        Err(k) => Err(k),
                    };
                    if let Err(k) = r {
                        if k != EventKind::Shutdown {
                            cpu.pending_interrupt = Some(v);
                        }
                        return done(k, retired, steps);
                    }
                }
            }
            if cpu.halted {
                return done(EventKind::Halted, retired, steps);
            }
            if steps >= budget {
                return done(EventKind::Budget, retired, steps);
            }
            // The checks above give the same answer at every boundary the
            // fast loop crosses (see `fast`).
            if self.fast_on && Self::fast_ok(cpu) {
                if let FastStop::Budget = self.run_fast(cpu, bus, budget, &mut steps, &mut retired)
                {
                    return done(EventKind::Budget, retired, steps);
                }
            }
            steps += 1;
            self.st.retired_in_run = retired;
            match self.step(cpu, bus, policy) {
                Step::Retired => retired += 1,
                Step::RepIteration | Step::Faulted => {}
                Step::Stop(k, ret) => {
                    if ret {
                        retired += 1;
                    }
                    return done(k, retired, steps);
                }
            }
        }
    }

    /// Fetches and decodes the instruction at CS:RIP.
    fn fetch<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        mode: Mode,
    ) -> OpResult<(Decoded, u64)> {
        let bitness = mode.bitness();
        if self.st.tracker.generation() != self.code_seen {
            self.sync_code_writes();
        }
        self.st.utlb.sync(&self.st.tracker);
        let mut cx = Ctx::new(cpu, bus, &mut self.st, policy, mode);
        cx.utlb_ok = true;
        let lin = if mode == Mode::Long64 {
            if !is_canonical(cx.cpu.rip, cx.cpu.cr4 & (1 << 12) != 0) {
                return Err(Exception::gp(0).into());
            }
            cx.cpu.rip
        } else {
            cx.linear(SegReg::Cs, cx.cpu.rip, 1, AccessKind::Execute)?
        };
        let acc = Access::new(AccessKind::Execute, cx.cpl);
        let gpa = cx.translate(lin, acc)?;
        if let Some(d) = self.dcache.get(gpa, bitness) {
            let d = *d;
            Self::check_cs_limit(cpu, mode, usize::from(d.len))?;
            return Ok((d, gpa));
        }
        let mut buf = [0u8; 15];
        let in_page = (4096 - (gpa & 0xfff) as usize).min(15);
        // Track the frame before reading it: a write by anyone after this
        // point is logged and drops the decode at the next sync.
        let gen = cx.eng.tracker.generation();
        if self.code_tracked != (gpa >> 12, gen) {
            track_code_frame(&cx.eng.tracker, gpa >> 12);
            self.code_tracked = (gpa >> 12, gen);
        }
        cx.bus
            .read_phys(gpa, &mut buf[..in_page])
            .map_err(|s| bus_fault(s, gpa, in_page, None))?;
        let d = match decode(bitness, &buf[..in_page]) {
            DecodeOutcome::Ok(d) => {
                self.dcache.insert(gpa, bitness, d);
                d
            }
            DecodeOutcome::Invalid => return Err(Exception::ud().into()),
            DecodeOutcome::NeedMore => {
                // The instruction continues on the next page.
                let next = lin.wrapping_add(in_page as u64);
                let next = if mode == Mode::Long64 {
                    next
                } else {
                    next & 0xffff_ffff
                };
                let g2 = cx.translate(next, acc)?;
                let rest = 15 - in_page;
                cx.bus
                    .read_phys(g2, &mut buf[in_page..])
                    .map_err(|s| bus_fault(s, g2, rest, None))?;
                match decode(bitness, &buf) {
                    DecodeOutcome::Ok(d) => d,
                    _ => return Err(Exception::ud().into()),
                }
            }
        };
        Self::check_cs_limit(cpu, mode, usize::from(d.len))?;
        Ok((d, gpa))
    }

    /// Drops cached decodes of frames written since the last sync (by any
    /// vCPU or the host), from the VM's write-tracker log.
    #[cold]
    pub(crate) fn sync_code_writes(&mut self) {
        use hyperplug_mmu::track::{Catchup, TrackEvent, LOG_CAPACITY};
        let mut buf = [TrackEvent::Write { start: 0, end: 0 }; LOG_CAPACITY];
        match self.st.tracker.events_since(self.code_seen, &mut buf) {
            Catchup::Overflow { upto } => {
                self.dcache.clear();
                self.code_seen = upto;
            }
            Catchup::Events { count, upto } => {
                for ev in &buf[..count] {
                    let (start, end) = ev.range();
                    if end > start {
                        self.dcache.on_write(start, end - start);
                    }
                }
                self.code_seen = upto;
            }
        }
    }

    /// The whole instruction must lie within CS's limit (SDM vol. 3, 5.3).
    #[inline]
    fn check_cs_limit(cpu: &Cpu, mode: Mode, len: usize) -> OpResult {
        if mode != Mode::Long64 {
            let last = cpu.rip.wrapping_add(len as u64 - 1);
            if last > u64::from(cpu.seg[SegReg::Cs as usize].limit) || last < cpu.rip {
                return Err(Exception::gp(0).into());
            }
        }
        Ok(())
    }

    fn step<B: Bus>(&mut self, cpu: &mut Cpu, bus: &mut B, policy: &InterceptPolicy) -> Step {
        let mode = cpu.mode();
        let tf = cpu.rflags & flags::TF != 0;
        let snap = Snapshot {
            gpr: cpu.gpr,
            rip: cpu.rip,
            rflags: cpu.rflags,
        };
        self.st.wbuf.clear();
        self.st.dbp_hits = 0;
        self.st.dbp_armed = false;
        if cpu.dr[7] & crate::debugreg::DR7_ENABLES != 0 {
            self.st.dbp_armed = crate::debugreg::data_armed(&cpu.dr);
            if let Some(s) = self.insn_breakpoint(cpu, bus, policy, mode, snap) {
                return s;
            }
        }
        let (d, _gpa) = match self.fetch(cpu, bus, policy, mode) {
            Ok(x) => x,
            Err(f) => return self.fault(cpu, bus, policy, f, snap, None),
        };
        let len = usize::from(d.len);
        // A locked read-modify-write is atomic with respect to every other
        // vCPU's locked operation (SDM vol. 3, 9.1.2.2 "Software Controlled
        // Bus Locking"; XCHG with memory locks implicitly): hold the lock
        // from the first read to the commit of the writes.
        let _bus_lock = is_locked(&d.insn).then(bus_lock);
        self.st.locking = _bus_lock.is_some();
        self.st.locked_read = None;
        let shadows = (cpu.sti_shadow, cpu.ss_shadow);
        let mut cx = Ctx::new(cpu, bus, &mut self.st, policy, mode);
        cx.insn = d.insn;
        cx.bytes = d.bytes;
        cx.asz = d.asz;
        cx.utlb_ok = d.safe;
        cx.next_rip = cx.wrap_ip(cx.rip.wrapping_add(len as u64));
        // The shadow covers exactly one instruction (SDM vol. 3, 6.8.3).
        cx.cpu.sti_shadow = false;
        cx.cpu.ss_shadow = false;
        cx.cpu.rip = cx.next_rip;
        // RF is cleared at the start of the instruction, after the
        // instruction-breakpoint check (SDM vol. 3, 17.3.1.1); a fault
        // restores the snapshot.
        cx.cpu.rflags &= !flags::RF;
        let r = crate::ops::dispatch(&mut cx);
        let rep_more = cx.rep_more;
        let after_switch = cx.after_switch.take();
        let data_hits = std::mem::take(&mut self.st.dbp_hits);
        self.st.dbp_armed = false;
        if !d.safe {
            self.st.utlb.invalidate();
        }
        match r {
            Ok(()) => {
                if rep_more {
                    cpu.rip = snap.rip;
                }
                let committed = if self.st.locking {
                    self.commit_locked(bus)
                } else {
                    self.commit(bus).map(|()| true)
                };
                match committed {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another vCPU's plain store changed the operand
                        // between the read and the write: the locked
                        // operation has not happened yet; run it again.
                        cpu.gpr = snap.gpr;
                        cpu.rip = snap.rip;
                        cpu.rflags = snap.rflags;
                        (cpu.sti_shadow, cpu.ss_shadow) = shadows;
                        return Step::RepIteration;
                    }
                    // A write failed after its check: nothing sensible to roll back to.
                    Err(k) => return Step::Stop(k, false),
                }
                // Between iterations of a REP string instruction RF is 1, so
                // an interrupt or trap after any iteration but the last pushes
                // RF = 1 and the instruction breakpoint is not reported again
                // (SDM vol. 3, 17.3.1.1).
                if rep_more {
                    cpu.rflags |= flags::RF;
                }
                if let Some(e) = after_switch {
                    // The new task's exception comes before its first
                    // instruction (SDM vol. 3, 7.3, step 13; 17.3.1.5).
                    return match self.deliver_after_switch(cpu, bus, policy, e) {
                        Ok(()) => Step::Retired,
                        Err(k) => Step::Stop(k, true),
                    };
                }
                if tf || data_hits != 0 {
                    // Single-step trap after the instruction (SDM vol. 3,
                    // 17.3.1.4) sets DR6.BS; data breakpoints (17.3.1.2)
                    // set DR6.Bn; then #DB with the next RIP saved -
                    // unless the policy intercepts #DB, like any exception.
                    if tf {
                        cpu.dr[6] |= 1 << 14;
                    }
                    cpu.dr[6] |= data_hits;
                    let e = Exception::new(vector::DB);
                    if policy.exceptions & (1u32 << vector::DB) != 0 {
                        return Step::Stop(exception_intercept(cpu.rip, e, Some(&d)), !rep_more);
                    }
                    if let Err(k) = self.deliver_fault(cpu, bus, policy, e, false) {
                        return Step::Stop(k, !rep_more);
                    }
                }
                if cpu.halted {
                    return Step::Stop(EventKind::Hlt, true);
                }
                if rep_more {
                    Step::RepIteration
                } else {
                    Step::Retired
                }
            }
            Err(f) => self.fault(cpu, bus, policy, f, snap, Some(&d)),
        }
    }

    /// Instruction breakpoint check before fetch (SDM vol. 3, 17.3.1.1):
    /// an enabled execute breakpoint at CS.base + RIP with RFLAGS.RF clear
    /// raises a fault-class #DB with DR6.Bn set. Unlike every other fault,
    /// the pushed RFLAGS has RF as it is (0): the handler sets RF in the
    /// image to run the instruction once after IRET.
    fn insn_breakpoint<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        mode: Mode,
        snap: Snapshot,
    ) -> Option<Step> {
        if cpu.rflags & flags::RF != 0 {
            return None;
        }
        let lin = if mode == Mode::Long64 {
            cpu.rip
        } else {
            cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip) & 0xffff_ffff
        };
        let hits = crate::debugreg::insn_hits(&cpu.dr, lin);
        if hits == 0 {
            return None;
        }
        cpu.dr[6] |= hits;
        self.st.dbp_armed = false;
        let e = Exception::new(vector::DB);
        if policy.exceptions & (1u32 << vector::DB) != 0 {
            return Some(Step::Stop(exception_intercept(cpu.rip, e, None), false));
        }
        Some(self.fault(cpu, bus, policy, e.into(), snap, None))
    }

    fn fault<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        f: Fault,
        snap: Snapshot,
        d: Option<&Decoded>,
    ) -> Step {
        cpu.gpr = snap.gpr;
        cpu.rip = snap.rip;
        cpu.rflags = snap.rflags;
        self.st.wbuf.clear();
        self.st.utlb.invalidate();
        match f {
            Fault::Event(k) => Step::Stop(k, false),
            Fault::Exception(e) => {
                if policy.exceptions & (1u32 << (e.vector & 31)) != 0 {
                    return Step::Stop(exception_intercept(cpu.rip, e, d), false);
                }
                let rf = crate::exception::pushes_rf(e.vector);
                match self.deliver_fault(cpu, bus, policy, e, rf) {
                    Ok(()) => Step::Faulted,
                    Err(k) => Step::Stop(k, false),
                }
            }
        }
    }

    /// Commits the buffered writes of an instruction.
    fn commit<B: Bus>(&mut self, bus: &mut B) -> Result<(), EventKind> {
        for w in self.st.wbuf.drain(..) {
            let data = &w.data[..usize::from(w.len)];
            if let Err(s) = bus.write_phys(w.gpa, data) {
                if let Fault::Event(k) = bus_fault(s, w.gpa, data.len(), Some(data)) {
                    return Err(k);
                }
            }
            self.dcache.on_write(w.gpa, u64::from(w.len));
            self.st.tracker.on_guest_write(w.gpa, u64::from(w.len));
        }
        Ok(())
    }

    /// Commits a locked instruction's write atomically against every other
    /// access, plain stores included (SDM vol. 3, 9.1.2): a compare-and-swap
    /// of the naturally aligned word holding the operand, expecting what the
    /// instruction read. `Ok(false)`: memory changed since the read (the
    /// caller re-executes the instruction). Forms this cannot cover (several
    /// writes, an operand crossing an 8-byte boundary, unbacked memory)
    /// commit as usual, still under the bus lock.
    fn commit_locked<B: Bus>(&mut self, bus: &mut B) -> Result<bool, EventKind> {
        let (w, read) = match (self.st.wbuf.as_slice(), self.st.locked_read) {
            ([w], Some(r)) if r.0 == w.gpa && r.1 == w.len => (*w, r),
            _ => return self.commit(bus).map(|()| true),
        };
        let len = usize::from(w.len);
        let off = (w.gpa & 7) as usize;
        if len > 8 || off + len > 8 {
            return self.commit(bus).map(|()| true);
        }
        let base = w.gpa & !7;
        let Ok(cur) = bus.read_u64(base) else {
            return self.commit(bus).map(|()| true);
        };
        let mut bytes = cur.to_le_bytes();
        if bytes[off..off + len] != read.2[..len] {
            return Ok(false);
        }
        bytes[off..off + len].copy_from_slice(&w.data[..len]);
        let new = u64::from_le_bytes(bytes);
        match bus.cmpxchg_u64(base, cur, new) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(_) => return self.commit(bus).map(|()| true),
        }
        self.st.wbuf.clear();
        self.dcache.on_write(w.gpa, u64::from(w.len));
        self.st.tracker.on_guest_write(w.gpa, u64::from(w.len));
        Ok(true)
    }

    /// Delivers a fault/abort (or the #DB trap) with the double- and
    /// triple-fault rules of SDM vol. 3, 6.15 (Interrupt 8). The RFLAGS
    /// image saved for `e` has RF = 1 if `set_rf`; for a nested exception
    /// the processor detects, RF = 1 if it is fault-class (SDM vol. 3,
    /// 17.3.1.1); otherwise RF as it is. RFLAGS.RF is as before on failure.
    fn deliver_fault<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        e: Exception,
        set_rf: bool,
    ) -> Result<(), EventKind> {
        let rf0 = cpu.rflags & flags::RF;
        let r = self.deliver_fault_rf(cpu, bus, policy, e, set_rf);
        if r.is_err() {
            cpu.rflags = (cpu.rflags & !flags::RF) | rf0;
        }
        r
    }

    /// [`Engine::deliver_fault`] without the RF restore on failure.
    fn deliver_fault_rf<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        e: Exception,
        set_rf: bool,
    ) -> Result<(), EventKind> {
        if let Some(cr2) = e.cr2 {
            cpu.cr2 = cr2;
        }
        let mut rf0 = cpu.rflags & flags::RF;
        let mut cur = e;
        let mut set_rf = set_rf;
        // Exceptions raised by new tasks of task gates, each in its own
        // task: a chain of them is bounded here (hardware could loop).
        let mut switches = 0;
        loop {
            cpu.rflags = (cpu.rflags & !flags::RF) | if set_rf { flags::RF } else { rf0 };
            match self.deliver_event(
                cpu,
                bus,
                policy,
                cur.vector,
                cur.error_code,
                crate::deliver::Source::Exception,
            ) {
                Ok(None) => return Ok(()),
                Ok(Some(next)) => {
                    switches += 1;
                    if switches > MAX_TASK_CHAIN {
                        return Err(EventKind::Shutdown);
                    }
                    if policy.exceptions & (1u32 << (next.vector & 31)) != 0 {
                        return Err(exception_intercept(cpu.rip, next, None));
                    }
                    if let Some(a) = next.cr2 {
                        cpu.cr2 = a;
                    }
                    rf0 = cpu.rflags & flags::RF;
                    set_rf = crate::exception::pushes_rf(next.vector);
                    cur = next;
                }
                Err(EventKind::Shutdown) => return Err(EventKind::Shutdown),
                Err(EventKind::Intercept(i)) => {
                    // A nested exception the policy intercepts.
                    if let InterceptKind::Exception {
                        vector: v2,
                        error_code,
                        address,
                        ..
                    } = i.kind
                    {
                        // An intercepted nested exception stops first, even
                        // while delivering #DF: a hypervisor sees it (for a
                        // shadow-paging miss it is not a guest fault at all).
                        if policy.exceptions & (1u32 << (v2 & 31)) != 0 {
                            return Err(EventKind::Intercept(i));
                        }
                        if cur.vector == vector::DF {
                            return Err(EventKind::Shutdown);
                        }
                        let second = Exception {
                            vector: v2,
                            error_code,
                            cr2: address,
                        };
                        if let Some(a) = address {
                            cpu.cr2 = a;
                        }
                        cur = if Exception::makes_double_fault(cur.vector, v2) {
                            Exception::with_code(vector::DF, 0)
                        } else {
                            second
                        };
                        set_rf = crate::exception::pushes_rf(cur.vector);
                        if cur.vector == vector::DF && policy.exceptions & (1 << vector::DF) != 0 {
                            return Err(exception_intercept(cpu.rip, cur, None));
                        }
                        continue;
                    }
                    return Err(EventKind::Intercept(i));
                }
                Err(k) => return Err(k),
            }
        }
    }

    /// Delivers an exception raised in a new task after a task switch's
    /// commit point (or its T-flag #DB trap) with RF = 1 if fault-class,
    /// unless the policy intercepts it.
    fn deliver_after_switch<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        e: Exception,
    ) -> Result<(), EventKind> {
        if policy.exceptions & (1u32 << (e.vector & 31)) != 0 {
            return Err(exception_intercept(cpu.rip, e, None));
        }
        self.deliver_fault(cpu, bus, policy, e, crate::exception::pushes_rf(e.vector))
    }

    /// Delivers one event through the IVT/IDT; a nested exception comes back
    /// as an `Intercept(Exception)` for [`Engine::deliver_fault`] to classify.
    /// `Ok(Some)`: delivered through a task gate, and the new task raised
    /// this exception after the commit point.
    fn deliver_event<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        policy: &InterceptPolicy,
        v: u8,
        code: Option<u32>,
        src: crate::deliver::Source,
    ) -> Result<Option<Exception>, EventKind> {
        let mode = cpu.mode();
        let snap = Snapshot {
            gpr: cpu.gpr,
            rip: cpu.rip,
            rflags: cpu.rflags,
        };
        let segs = (cpu.seg, cpu.halted);
        self.st.wbuf.clear();
        let mut cx = Ctx::new(cpu, bus, &mut self.st, policy, mode);
        cx.next_rip = cx.rip;
        let r = cx.deliver(v, code, src);
        let after = cx.after_switch.take();
        self.st.utlb.invalidate();
        match r {
            Ok(()) => {
                cpu.halted = false;
                self.commit(bus).map(|()| after)
            }
            Err(f) => {
                cpu.gpr = snap.gpr;
                cpu.rip = snap.rip;
                cpu.rflags = snap.rflags;
                cpu.seg = segs.0;
                cpu.halted = segs.1;
                self.st.wbuf.clear();
                match f {
                    Fault::Event(k) => Err(k),
                    Fault::Exception(e2) => Err(exception_intercept(cpu.rip, e2, None)),
                }
            }
        }
    }
}

/// Most exceptions in a row that new tasks raise after task switches
/// within one delivery before the engine stops with a shutdown.
const MAX_TASK_CHAIN: u32 = 32;

/// The intercept event for exception `e` at `rip`.
fn exception_intercept(rip: u64, e: Exception, d: Option<&Decoded>) -> EventKind {
    let access = e.cr2.map(|_| {
        let ec = e.error_code.unwrap_or(0);
        if ec & 0x10 != 0 {
            AccessKind::Execute
        } else if ec & 2 != 0 {
            AccessKind::Write
        } else {
            AccessKind::Read
        }
    });
    EventKind::Intercept(Intercept {
        kind: InterceptKind::Exception {
            vector: e.vector,
            error_code: e.error_code,
            address: e.cr2,
            access,
        },
        rip,
        insn_len: d.map_or(0, |d| d.insn.len() as u8),
        insn_bytes: d.map_or([0; 15], |d| d.bytes),
    })
}

impl<'a, B: Bus> Ctx<'a, B> {
    pub(crate) fn new(
        cpu: &'a mut Cpu,
        bus: &'a mut B,
        eng: &'a mut EngineState,
        policy: &'a InterceptPolicy,
        mode: Mode,
    ) -> Self {
        let cpl = cpu.cpl();
        let rip = cpu.rip;
        Self {
            cpu,
            bus,
            eng,
            policy,
            insn: Instruction::default(),
            bytes: [0; 15],
            asz: (mode.bitness() / 8) as u8,
            rip,
            next_rip: rip,
            mode,
            cpl,
            rep_more: false,
            utlb_ok: false,
            after_switch: None,
        }
    }

    /// Truncates an instruction pointer to the current code size.
    #[inline]
    pub(crate) fn wrap_ip(&self, ip: u64) -> u64 {
        match self.mode.bitness() {
            16 => ip & 0xffff,
            32 => ip & 0xffff_ffff,
            _ => ip,
        }
    }

    /// The time-stamp counter now: the stored count plus the instructions
    /// retired earlier in this run.
    pub(crate) fn tsc_now(&self) -> u64 {
        self.cpu.msrs.tsc.wrapping_add(self.eng.retired_in_run)
    }

    /// Stops with an intercept of this instruction.
    pub(crate) fn intercept(&self, kind: InterceptKind) -> Fault {
        Fault::Event(EventKind::Intercept(Intercept {
            kind,
            rip: self.rip,
            insn_len: self.insn.len() as u8,
            insn_bytes: self.bytes,
        }))
    }

    /// Reloads the paging context after a CR/EFER write, flushing the TLB per SDM 4.10.4.1.
    pub(crate) fn paging_changed(&mut self, cr3_source: Option<u64>) {
        let now = self.cpu.paging();
        let old = self.eng.last_paging;
        self.eng.tlb.on_cr_write(&old, &now);
        if let Some(sh) = self.eng.shadow.as_mut() {
            sh.on_cr_write(&old, &now);
        }
        if let Some(src) = cr3_source {
            self.eng.tlb.mov_cr3(&now, src);
        }
        self.eng.last_paging = now;
    }

    /// #GP(0) unless CPL is 0.
    pub(crate) fn require_cpl0(&self) -> OpResult {
        if self.cpl != 0 {
            return Err(Exception::gp(0).into());
        }
        Ok(())
    }
}

/// The lock that makes locked read-modify-write instructions atomic across
/// the engines (vCPUs) of this process.
static BUS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`BUS_LOCK`] (a panic elsewhere never poisons the bus).
fn bus_lock() -> std::sync::MutexGuard<'static, ()> {
    BUS_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// LOCK-prefixed instructions, and XCHG with a memory operand (always
/// locked: SDM vol. 2, XCHG).
pub(crate) fn is_locked(i: &Instruction) -> bool {
    i.has_lock_prefix()
        || (i.mnemonic() == iced_x86::Mnemonic::Xchg
            && (0..i.op_count()).any(|n| i.op_kind(n) == iced_x86::OpKind::Memory))
}

/// Tracks a frame the decode cache is about to hold (kept out of line: the
/// fetch path stays small).
#[cold]
#[inline(never)]
fn track_code_frame(tracker: &WriteTracker, gfn: u64) {
    tracker.track(gfn);
}
