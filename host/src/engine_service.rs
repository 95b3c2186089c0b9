//! The host's execution engine offered to backends across the ABI
//! ([`FfiEngine`]): `hyperplug-emulator` over the VM's guest memory, one per
//! vCPU, sharing the VM's page-table write tracker.
//!
//! Port I/O and MMIO never complete inside the engine: they stop with an
//! `Io`/`Mmio` event, the backend returns it to the host as an exit, the
//! host's bus performs it, and the completion ([`FfiEngine::complete_io`])
//! is consumed when the instruction runs again.

use crate::engine_npt::{NptState, NptStop};
use crate::memory::{GuestMemory, SlotInfo};
use hyperplug_emulator::policy::InsnIntercepts;
use hyperplug_emulator::{
    Bus, BusStop, Cpu, Engine, Event, EventKind, InterceptKind, InterceptPolicy,
};
use hyperplug_mmu::shadow::ShadowFault;
use hyperplug_mmu::track::WriteTracker;
use hyperplug_mmu::AccessKind;
use hyperplug_mmu::{PhysError, PhysMemory};
use hyperplug_plugin_api::abi_stable::std_types::{RResult, RSlice};
use hyperplug_plugin_api::engine::{
    insn, CpuidRegs, EngineEvent, EnginePaging, EnginePolicy, EngineStop, FfiEngine, NestedOutcome,
    ShadowOutcome,
};
use hyperplug_plugin_api::state::{CpuState, Regs, VcpuEvents};
use hyperplug_plugin_api::{PluginError, PluginResult};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileMemory};

/// A completion waiting for the instruction to run again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Completion {
    /// Bytes for the next port or MMIO read.
    Read(Vec<u8>),
    /// The next port or MMIO write has been performed by the host.
    WriteDone,
}

/// Guest memory as the engine sees it: RAM from the VM's slots; everything
/// else (MMIO, ports) stops for the backend to complete.
struct EngineBus {
    mem: Arc<RwLock<GuestMemory>>,
    pending: Option<Completion>,
    /// Nested paging: every guest-physical access is checked here first.
    npt: Option<NptState>,
    /// Read-only slots and the slot generation (absent in unit tests).
    slots: Option<Arc<SlotInfo>>,
}

impl EngineBus {
    fn mem(&self) -> std::sync::RwLockReadGuard<'_, GuestMemory> {
        match self.mem.read() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    fn backed(&self, gpa: u64, len: usize) -> bool {
        self.mem().get_slice(GuestAddress(gpa), len).is_ok()
    }

    /// Guest writes to a read-only slot are MMIO writes (as
    /// `MemorySlot::READONLY` promises backends).
    fn readonly(&self, gpa: u64, len: usize) -> bool {
        self.slots
            .as_ref()
            .is_some_and(|s| s.is_readonly(gpa, len as u64))
    }

    fn take_read(&mut self, buf: &mut [u8]) -> bool {
        match self.pending.take() {
            Some(Completion::Read(d)) => {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = d.get(i).copied().unwrap_or(0xff);
                }
                true
            }
            other => {
                self.pending = other;
                false
            }
        }
    }

    /// The second-level check of a guest paging-structure access.
    fn npt_table(&self, gpa: u64, kind: AccessKind) -> Result<(), PhysError> {
        match self.npt.as_ref().map(|n| n.check(gpa, kind, true)) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(NptStop::Fault(f))) => Err(PhysError::Nested(f)),
            Some(Err(NptStop::Mmio)) => Err(PhysError::Unbacked { gpa }),
        }
    }

    /// The second-level check of a data access. An MMIO marker lets the
    /// access go on to the bus, which stops it as MMIO unless a slot has
    /// appeared there since.
    fn npt_data(&self, gpa: u64, kind: AccessKind) -> Result<(), BusStop> {
        match self.npt.as_ref().map(|n| n.check(gpa, kind, false)) {
            Some(Err(NptStop::Fault(f))) => Err(BusStop::Nested(f)),
            _ => Ok(()),
        }
    }

    fn take_write(&mut self) -> bool {
        if self.pending == Some(Completion::WriteDone) {
            self.pending = None;
            true
        } else {
            false
        }
    }
}

impl PhysMemory for EngineBus {
    fn read_u32(&self, gpa: u64) -> Result<u32, PhysError> {
        self.npt_table(gpa, AccessKind::Read)?;
        self.mem()
            .read_obj(GuestAddress(gpa))
            .map_err(|_| PhysError::Unbacked { gpa })
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, PhysError> {
        self.npt_table(gpa, AccessKind::Read)?;
        self.mem()
            .read_obj(GuestAddress(gpa))
            .map_err(|_| PhysError::Unbacked { gpa })
    }
    fn cmpxchg_u32(&self, gpa: u64, old: u32, new: u32) -> Result<bool, PhysError> {
        self.npt_table(gpa, AccessKind::Write)?;
        let m = self.mem();
        let s = m
            .get_slice(GuestAddress(gpa), 4)
            .map_err(|_| PhysError::Unbacked { gpa })?;
        let a = s
            .get_atomic_ref::<AtomicU32>(0)
            .map_err(|_| PhysError::Unbacked { gpa })?;
        Ok(
            a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
        )
    }
    fn cmpxchg_u64(&self, gpa: u64, old: u64, new: u64) -> Result<bool, PhysError> {
        self.npt_table(gpa, AccessKind::Write)?;
        let m = self.mem();
        let s = m
            .get_slice(GuestAddress(gpa), 8)
            .map_err(|_| PhysError::Unbacked { gpa })?;
        let a = s
            .get_atomic_ref::<AtomicU64>(0)
            .map_err(|_| PhysError::Unbacked { gpa })?;
        Ok(
            a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
        )
    }
}

impl Bus for EngineBus {
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BusStop> {
        self.npt_data(gpa, AccessKind::Read)?;
        if self.mem().read_slice(buf, GuestAddress(gpa)).is_ok() {
            return Ok(());
        }
        if self.take_read(buf) {
            Ok(())
        } else {
            Err(BusStop::Mmio)
        }
    }
    fn check_write(&mut self, gpa: u64, len: usize) -> Result<(), BusStop> {
        self.npt_data(gpa, AccessKind::Write)?;
        if (self.backed(gpa, len) && !self.readonly(gpa, len))
            || self.pending == Some(Completion::WriteDone)
        {
            Ok(())
        } else {
            Err(BusStop::Mmio)
        }
    }
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), BusStop> {
        self.npt_data(gpa, AccessKind::Write)?;
        if self.readonly(gpa, data.len()) {
            return if self.take_write() {
                Ok(())
            } else {
                Err(BusStop::Mmio)
            };
        }
        if self.mem().write_slice(data, GuestAddress(gpa)).is_ok() || self.take_write() {
            Ok(())
        } else {
            Err(BusStop::Mmio)
        }
    }
    fn io_in(&mut self, _port: u16, size: u8) -> Result<u32, BusStop> {
        let mut b = [0u8; 4];
        let n = usize::from(size.clamp(1, 4));
        if self.take_read(&mut b[..n]) {
            Ok(u32::from_le_bytes(b))
        } else {
            Err(BusStop::Io)
        }
    }
    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> Result<(), BusStop> {
        if self.take_write() {
            Ok(())
        } else {
            Err(BusStop::Io)
        }
    }
}

/// One vCPU's engine.
pub struct HostEngine {
    cpu: Cpu,
    engine: Engine,
    bus: EngineBus,
    /// What the last stop asked the backend to complete.
    awaiting: Option<bool>,
    /// The last two converted policies and their generations.
    policy: [Option<(u64, InterceptPolicy)>; 2],
    /// The slot generation the caches were built under.
    slot_generation: u64,
    /// Retired instructions are added here (the instruction-driven clock).
    retired: Option<Arc<AtomicU64>>,
    /// A20M# is asserted (kept across state replacements: `CpuState` has
    /// no field for a platform pin).
    a20_masked: bool,
}

impl HostEngine {
    /// An engine over `mem`, sharing the VM's write `tracker`.
    pub fn new(mem: Arc<RwLock<GuestMemory>>, tracker: Arc<WriteTracker>) -> Self {
        Self {
            cpu: Cpu::from_state(&CpuState::default()),
            engine: Engine::new(tracker),
            bus: EngineBus {
                mem,
                pending: None,
                npt: None,
                slots: None,
            },
            awaiting: None,
            policy: [None, None],
            slot_generation: 0,
            retired: None,
            a20_masked: false,
        }
    }
}

impl HostEngine {
    /// Follows the VM's slot changes: read-only slots refuse writes, and a
    /// slot change drops every cached translation and decode.
    pub fn with_slots(mut self, slots: Arc<SlotInfo>) -> Self {
        self.slot_generation = slots.generation();
        self.bus.slots = Some(slots);
        self
    }

    /// Counts retired instructions into `counter` (one nanosecond each on
    /// the VM's instruction-driven clock).
    pub fn with_retired_counter(mut self, counter: Option<Arc<AtomicU64>>) -> Self {
        self.retired = counter;
        self
    }

    /// Drops what the old slot layout cached, once per slot change.
    fn follow_slot_changes(&mut self) -> Result<(), String> {
        let Some(g) = self.bus.slots.as_ref().map(|s| s.generation()) else {
            return Ok(());
        };
        if g == self.slot_generation {
            return Ok(());
        }
        self.slot_generation = g;
        self.engine.flush();
        if self.bus.npt.is_some() {
            let npt = NptState::new(&self.bus.mem())?;
            self.bus.npt = Some(npt);
        }
        Ok(())
    }
}

/// Converts the ABI policy into the emulator's.
pub fn policy_from_abi(p: &EnginePolicy) -> InterceptPolicy {
    let mut q = InterceptPolicy {
        exceptions: p.exceptions,
        cr_read: p.cr_read,
        cr_write: p.cr_write,
        dr_read: p.dr_read,
        dr_write: p.dr_write,
        insns: InsnIntercepts::from_bits_truncate(p.insns),
        interrupt_window: p.interrupt_window,
        ..Default::default()
    };
    for port in p.io_ports.iter() {
        q.io.set(*port, true);
    }
    for m in p.msr_read.iter() {
        q.msr_read.set(*m, true);
    }
    for m in p.msr_write.iter() {
        q.msr_write.set(*m, true);
    }
    q.msr_read.others = p.msr_others;
    q.msr_write.others = p.msr_others;
    q
}

fn insn_bit(k: &InterceptKind) -> Option<u32> {
    Some(match k {
        InterceptKind::Hlt => insn::HLT,
        InterceptKind::Rdtsc => insn::RDTSC,
        InterceptKind::Rdtscp => insn::RDTSCP,
        InterceptKind::Rdpmc => insn::RDPMC,
        InterceptKind::Mwait => insn::MWAIT,
        InterceptKind::Monitor => insn::MONITOR,
        InterceptKind::Pause => insn::PAUSE,
        InterceptKind::Invd => insn::INVD,
        InterceptKind::Wbinvd => insn::WBINVD,
        InterceptKind::Xsetbv => insn::XSETBV,
        InterceptKind::DescTable(_) => insn::DESC_TABLE,
        InterceptKind::Iret => insn::IRET,
        InterceptKind::Invpcid => insn::INVPCID,
        _ => return None,
    })
}

/// Converts an emulator event into the ABI's.
pub fn event_to_abi(e: &Event, cpu_rip: u64) -> EngineEvent {
    let mut out = EngineEvent {
        stop: EngineStop::Budget,
        retired: e.retired,
        rip: cpu_rip,
        insn_len: 0,
        insn_bytes: [0; 15],
    };
    out.stop = match &e.kind {
        EventKind::Budget => EngineStop::Budget,
        EventKind::Hlt => EngineStop::Hlt,
        EventKind::Shutdown => EngineStop::Shutdown,
        EventKind::Halted => EngineStop::Halted,
        EventKind::Mmio { gpa, size, write } => EngineStop::Mmio {
            gpa: *gpa,
            size: *size,
            write: write
                .map(|w| {
                    let mut b = [0u8; 8];
                    let n = usize::from((*size).min(8));
                    b[..n].copy_from_slice(&w[..n]);
                    u64::from_le_bytes(b)
                })
                .into(),
        },
        EventKind::Io { port, size, write } => EngineStop::Io {
            port: *port,
            size: *size,
            write: (*write).into(),
        },
        EventKind::TableUnbacked(gpa) => EngineStop::TableUnbacked { gpa: *gpa },
        EventKind::Nested(f) => EngineStop::NestedFault {
            gpa: f.gpa,
            linear: f.linear.into(),
            info: f.info,
        },
        EventKind::Intercept(i) => {
            out.rip = i.rip;
            out.insn_len = i.insn_len;
            out.insn_bytes = i.insn_bytes;
            match &i.kind {
                InterceptKind::Io {
                    port,
                    size,
                    input,
                    string,
                    rep,
                    addr_size,
                    seg,
                    imm,
                    ..
                } => EngineStop::IoIntercept {
                    port: *port,
                    size: *size,
                    input: *input,
                    string: *string,
                    rep: *rep,
                    addr_size: *addr_size,
                    seg: *seg,
                    imm: *imm,
                },
                InterceptKind::CrRead { cr, gpr } => EngineStop::CrRead { cr: *cr, gpr: *gpr },
                InterceptKind::CrWrite {
                    cr,
                    gpr,
                    value,
                    clts,
                    lmsw,
                } => EngineStop::CrWrite {
                    cr: *cr,
                    gpr: (*gpr).into(),
                    value: *value,
                    clts: *clts,
                    lmsw: *lmsw,
                },
                InterceptKind::DrRead { dr, gpr } => EngineStop::DrRead { dr: *dr, gpr: *gpr },
                InterceptKind::DrWrite { dr, gpr } => EngineStop::DrWrite { dr: *dr, gpr: *gpr },
                InterceptKind::Exception {
                    vector,
                    error_code,
                    address,
                    ..
                } => EngineStop::Exception {
                    vector: *vector,
                    error_code: (*error_code).into(),
                    address: (*address).into(),
                },
                InterceptKind::MsrRead { msr } => EngineStop::MsrRead { msr: *msr },
                InterceptKind::MsrWrite { msr, value } => EngineStop::MsrWrite {
                    msr: *msr,
                    value: *value,
                },
                InterceptKind::Cpuid { leaf, subleaf } => EngineStop::Cpuid {
                    leaf: *leaf,
                    subleaf: *subleaf,
                },
                InterceptKind::Invlpg { linear } => EngineStop::Invlpg { linear: *linear },
                InterceptKind::IntN { vector } => EngineStop::IntN { vector: *vector },
                InterceptKind::InterruptWindow => EngineStop::InterruptWindow,
                other => match insn_bit(other) {
                    Some(which) => EngineStop::Insn { which },
                    None => EngineStop::Insn { which: 0 },
                },
            }
        }
    };
    out
}

impl FfiEngine for HostEngine {
    fn get_state(&self) -> CpuState {
        self.cpu.to_state()
    }

    fn set_state(&mut self, state: CpuState) -> PluginResult<()> {
        self.cpu = Cpu::from_state(&state);
        self.cpu.a20_masked = self.a20_masked;
        self.engine.flush();
        RResult::ROk(())
    }

    fn execute(&mut self, policy: &EnginePolicy, budget: u64) -> PluginResult<EngineEvent> {
        if let Err(e) = self.follow_slot_changes() {
            return RResult::RErr(PluginError::other(format!("slot change: {e}")));
        }
        // Two cached conversions: backends alternate between their full
        // policy and a lifted one for emulating an intercepted instruction.
        let g = policy.generation;
        let hit = self
            .policy
            .iter()
            .position(|p| matches!(p, Some((pg, _)) if g != 0 && *pg == g));
        let slot = match hit {
            Some(i) => i,
            None => {
                self.policy.swap(0, 1);
                self.policy[0] = Some((g, policy_from_abi(policy)));
                0
            }
        };
        let Some((_, q)) = self.policy[slot].as_ref() else {
            return RResult::RErr(PluginError::other("engine policy missing"));
        };
        let e = self.engine.execute(&mut self.cpu, &mut self.bus, q, budget);
        if let Some(c) = &self.retired {
            c.fetch_add(e.retired, Ordering::AcqRel);
        }
        self.awaiting = match &e.kind {
            EventKind::Mmio { write, .. } => Some(write.is_none()),
            EventKind::Io { write, .. } => Some(write.is_none()),
            _ => None,
        };
        RResult::ROk(event_to_abi(&e, self.cpu.rip))
    }

    fn complete_io(&mut self, data: RSlice<'_, u8>) -> PluginResult<()> {
        match self.awaiting.take() {
            Some(true) => {
                self.bus.pending = Some(Completion::Read(data.to_vec()));
                RResult::ROk(())
            }
            Some(false) => {
                self.bus.pending = Some(Completion::WriteDone);
                RResult::ROk(())
            }
            None => RResult::RErr(PluginError::invalid(
                "complete_io() without an Io/Mmio stop waiting",
            )),
        }
    }

    fn set_regs(&mut self, regs: Regs) -> PluginResult<()> {
        // In place: a round trip through `CpuState` would drop what it has
        // no field for (debug registers, the TSC count, ...).
        self.cpu.apply_regs(&regs);
        RResult::ROk(())
    }

    fn set_events(&mut self, events: VcpuEvents) -> PluginResult<()> {
        self.cpu.apply_events(&events);
        RResult::ROk(())
    }

    fn set_paging(&mut self, paging: EnginePaging) -> PluginResult<()> {
        self.bus.npt = match paging {
            EnginePaging::NestedNpt => match NptState::new(&self.bus.mem()) {
                Ok(n) => Some(n),
                Err(e) => return RResult::RErr(PluginError::other(format!("nested paging: {e}"))),
            },
            _ => None,
        };
        self.engine
            .set_shadow_paging(paging == EnginePaging::Shadow);
        RResult::ROk(())
    }

    fn shadow_page_fault(&mut self, linear: u64, error_code: u32) -> PluginResult<ShadowOutcome> {
        let r = self
            .engine
            .shadow_page_fault(&self.cpu, &self.bus, linear, error_code);
        RResult::ROk(match r {
            ShadowFault::Fixed(_) => ShadowOutcome::Fixed,
            ShadowFault::Reflect(pf) => ShadowOutcome::Reflect {
                error_code: pf.error_code.bits(),
                address: pf.linear,
            },
            ShadowFault::Phys(PhysError::Unbacked { gpa }) => ShadowOutcome::Unbacked { gpa },
            ShadowFault::Phys(PhysError::Nested(f)) => ShadowOutcome::Unbacked { gpa: f.gpa },
        })
    }

    fn nested_page_fault(&mut self, gpa: u64, write: bool) -> PluginResult<NestedOutcome> {
        let Some(npt) = self.bus.npt.as_mut() else {
            return RResult::RErr(PluginError::invalid(
                "nested_page_fault() without nested paging (set_paging(NestedNpt))",
            ));
        };
        match npt.fault(gpa, write) {
            Ok(true) => RResult::ROk(NestedOutcome::Mapped),
            Ok(false) => RResult::ROk(NestedOutcome::Mmio),
            Err(e) => RResult::RErr(PluginError::other(format!(
                "nested page fault at {gpa:#x}: {e}"
            ))),
        }
    }

    fn set_a20(&mut self, enabled: bool) -> PluginResult<()> {
        self.a20_masked = !enabled;
        self.cpu.a20_masked = !enabled;
        RResult::ROk(())
    }

    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        let [eax, ebx, ecx, edx] = self.engine.model().lookup(leaf, subleaf);
        CpuidRegs { eax, ebx, ecx, edx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestRam;
    use hyperplug_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use hyperplug_plugin_api::abi_stable::std_types::ROption;
    use hyperplug_plugin_api::engine::FfiEngine_TO;
    use hyperplug_plugin_api::state::Segment;

    fn real_mode_state(rip: u64) -> CpuState {
        let seg = |type_| Segment {
            base: 0,
            limit: 0xffff,
            selector: 0,
            type_,
            present: 1,
            s: 1,
            ..Default::default()
        };
        let mut s = CpuState::default();
        s.sregs.cs = seg(0xb);
        for r in [
            &mut s.sregs.ds,
            &mut s.sregs.es,
            &mut s.sregs.ss,
            &mut s.sregs.fs,
            &mut s.sregs.gs,
        ] {
            *r = seg(3);
        }
        s.sregs.tr = Segment {
            type_: 0xb,
            present: 1,
            limit: 0xffff,
            ..Default::default()
        };
        s.sregs.ldt = Segment {
            type_: 2,
            present: 1,
            limit: 0xffff,
            ..Default::default()
        };
        s.sregs.idt.limit = 0x3ff;
        s.sregs.cr0 = 0x10;
        s.regs.rip = rip;
        s.regs.rflags = 2;
        s.regs.rsp = 0x7000;
        s
    }

    #[test]
    fn port_io_stops_and_completes_across_the_abi() {
        let ram = GuestRam::new(2 << 20).unwrap();
        // mov dx, 0x60; in al, dx; mov dx, 0xe9; out dx, al; hlt
        let code = [0xba, 0x60, 0x00, 0xec, 0xba, 0xe9, 0x00, 0xee, 0xf4];
        ram.memory()
            .write_slice(&code, GuestAddress(0x1000))
            .unwrap();
        let eng = HostEngine::new(ram.shared(), Arc::new(WriteTracker::new()));
        let mut eng = FfiEngine_TO::from_value(eng, TD_Opaque);
        eng.set_state(real_mode_state(0x1000)).unwrap();
        let p = EnginePolicy::default();
        // The IN stops before executing; the MOV before it retired.
        let e = eng.execute(&p, 100).unwrap();
        assert_eq!(
            e.stop,
            EngineStop::Io {
                port: 0x60,
                size: 1,
                write: ROption::RNone
            }
        );
        assert_eq!(e.retired, 1);
        assert!(eng.complete_io(RSlice::from_slice(&[0x5a])).is_ok());
        let e = eng.execute(&p, 100).unwrap();
        assert_eq!(
            e.stop,
            EngineStop::Io {
                port: 0xe9,
                size: 1,
                write: ROption::RSome(0x5a)
            }
        );
        assert!(eng.complete_io(RSlice::from_slice(&[])).is_ok());
        let e = eng.execute(&p, 100).unwrap();
        assert_eq!(e.stop, EngineStop::Hlt);
        let s = eng.get_state();
        assert_eq!(s.regs.rax & 0xff, 0x5a, "the completed IN landed in AL");
        assert_eq!(s.regs.rip, 0x1009);
        assert!(
            eng.complete_io(RSlice::from_slice(&[])).is_err(),
            "nothing to complete"
        );
    }

    #[test]
    fn intercepts_carry_instruction_details() {
        let ram = GuestRam::new(2 << 20).unwrap();
        // cpuid; hlt
        ram.memory()
            .write_slice(&[0x0f, 0xa2, 0xf4], GuestAddress(0x1000))
            .unwrap();
        let eng = HostEngine::new(ram.shared(), Arc::new(WriteTracker::new()));
        let mut eng = FfiEngine_TO::from_value(eng, TD_Opaque);
        let mut st = real_mode_state(0x1000);
        st.regs.rax = 7;
        eng.set_state(st).unwrap();
        let p = EnginePolicy {
            insns: insn::CPUID | insn::HLT,
            ..Default::default()
        };
        let e = eng.execute(&p, 100).unwrap();
        assert_eq!(
            e.stop,
            EngineStop::Cpuid {
                leaf: 7,
                subleaf: 0
            }
        );
        assert_eq!(
            (e.rip, e.insn_len, &e.insn_bytes[..2]),
            (0x1000, 2, &[0x0f, 0xa2][..])
        );
    }
}
