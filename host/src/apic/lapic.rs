//! The local APIC of one vCPU: interrupt acceptance, priorities, EOI,
//! destinations, LINT pins and the timer (SDM vol. 3, chapter 11).
//!
//! Register access (xAPIC MMIO, x2APIC MSRs) is in `lapic_access`, the
//! IA32_APIC_BASE state machine in `lapic_base`. A `Lapic` is plain data:
//! the host keeps each one behind its own lock.

use super::bits::VectorSet;
use super::lapic_timer::ApicTimer;
use super::lvt::{LvtEntry, LvtIndex, LVT_MASKED, LVT_REMOTE_IRR, LVT_RESET};
use super::msg::{
    ApicMessage, DeliveryMode, EoiEffect, Ipi, IpiKind, Received, Shorthand, BROADCAST,
    XAPIC_BROADCAST,
};
use super::regs;
use super::ApicError;

/// Construction parameters of a local APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicConfig {
    /// The (x2)APIC ID; its low 8 bits are the xAPIC ID (SDM 11.12.5.1).
    pub apic_id: u32,
    /// Bootstrap processor: IA32_APIC_BASE bit 8.
    pub bsp: bool,
    /// APIC timer input clock (the bus clock before the divider), in Hz.
    pub timer_hz: u64,
    /// Guest TSC rate for TSC-deadline mode, in Hz.
    pub tsc_hz: u64,
    /// MAXPHYADDR of the CPU model: IA32_APIC_BASE bits at and above it are reserved.
    pub phys_addr_bits: u8,
}

impl LapicConfig {
    /// Defaults: 1 GHz timer clock (1 tick = 1 ns before the divider),
    /// 1 GHz TSC, 46 physical address bits.
    pub fn new(apic_id: u32, bsp: bool) -> Self {
        Self {
            apic_id,
            bsp,
            timer_hz: 1_000_000_000,
            tsc_hz: 1_000_000_000,
            phys_addr_bits: 46,
        }
    }
}

/// Operating state from IA32_APIC_BASE EN/EXTD (SDM 11.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApicMode {
    /// EN=0, EXTD=0: globally disabled; LINT0/LINT1 act as INTR/NMI.
    Disabled,
    /// EN=1, EXTD=0: xAPIC, registers in the MMIO page.
    XApic,
    /// EN=1, EXTD=1: x2APIC, registers in MSRs 0x800-0x8FF.
    X2Apic,
}

impl ApicMode {
    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::XApic => "xAPIC",
            Self::X2Apic => "x2APIC",
        }
    }
}

/// A local interrupt pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LintPin {
    /// LINT0 (INTR from the 8259A in virtual-wire mode).
    Lint0,
    /// LINT1 (NMI).
    Lint1,
}

/// One vCPU's local APIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lapic {
    pub(super) cfg: LapicConfig,
    pub(super) apic_base: u64,
    pub(super) xapic_id: u8,
    pub(super) tpr: u8,
    pub(super) ldr: u32,
    pub(super) dfr: u32,
    pub(super) svr: u32,
    pub(super) isr: VectorSet,
    pub(super) tmr: VectorSet,
    pub(super) irr: VectorSet,
    pub(super) esr: u32,
    pub(super) esr_pending: u32,
    pub(super) icr: u64,
    pub(super) lvt: [u32; 6],
    pub(super) timer: ApicTimer,
}

impl Lapic {
    /// A local APIC in its RESET state (xAPIC mode, enabled, SDM 11.4.7.1).
    pub fn new(cfg: LapicConfig) -> Result<Self, ApicError> {
        if cfg.timer_hz == 0 || cfg.tsc_hz == 0 {
            return Err(ApicError::Config(
                "timer and TSC frequencies must be non-zero".into(),
            ));
        }
        if !(32..=52).contains(&cfg.phys_addr_bits) {
            return Err(ApicError::Config(format!(
                "physical address width {} is outside 32..=52",
                cfg.phys_addr_bits
            )));
        }
        let mut l = Self {
            cfg,
            apic_base: 0,
            xapic_id: 0,
            tpr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            irr: VectorSet::default(),
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [LVT_RESET; 6],
            timer: ApicTimer::new(cfg.timer_hz, cfg.tsc_hz),
        };
        l.reset();
        Ok(l)
    }

    /// RESET: xAPIC mode, enabled, base 0xFEE00000, IDs from the
    /// configuration, every register at its power-up value (SDM 11.4.7.1,
    /// 11.12.5.1).
    pub fn reset(&mut self) {
        self.apic_base = regs::DEFAULT_BASE | regs::BASE_EN;
        if self.cfg.bsp {
            self.apic_base |= regs::BASE_BSP;
        }
        self.xapic_id = self.cfg.apic_id as u8;
        self.reset_registers();
    }

    /// INIT: every register as after RESET except the APIC ID, and
    /// IA32_APIC_BASE (hence the xAPIC/x2APIC mode) is kept (SDM 11.4.7.3,
    /// 11.12.5.1).
    pub fn init(&mut self) {
        self.reset_registers();
    }

    pub(super) fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = 0xFFFF_FFFF;
        self.svr = regs::SVR_RESET;
        self.isr = VectorSet::default();
        self.tmr = VectorSet::default();
        self.irr = VectorSet::default();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr = 0;
        self.lvt = [LVT_RESET; 6];
        self.timer.reset();
    }

    /// The x2APIC ID from the configuration (what x2APIC mode reports).
    pub fn apic_id(&self) -> u32 {
        self.cfg.apic_id
    }

    /// The ID destinations match against: the 32-bit x2APIC ID in x2APIC
    /// mode, the (software-writable) 8-bit xAPIC ID otherwise.
    pub fn id(&self) -> u32 {
        match self.mode() {
            ApicMode::X2Apic => self.cfg.apic_id,
            _ => u32::from(self.xapic_id),
        }
    }

    /// State from IA32_APIC_BASE.
    pub fn mode(&self) -> ApicMode {
        match (
            self.apic_base & regs::BASE_EN != 0,
            self.apic_base & regs::BASE_EXTD != 0,
        ) {
            (true, true) => ApicMode::X2Apic,
            (true, false) => ApicMode::XApic,
            _ => ApicMode::Disabled,
        }
    }

    /// SVR bit 8: APIC software enable (SDM 11.4.7.2).
    pub fn software_enabled(&self) -> bool {
        self.svr & regs::SVR_ENABLE != 0
    }

    /// Globally and software enabled: able to take fixed interrupts.
    fn enabled(&self) -> bool {
        self.mode() != ApicMode::Disabled && self.software_enabled()
    }

    /// The spurious vector, SVR[7:0] (SDM 11.9).
    pub fn spurious_vector(&self) -> u8 {
        (self.svr & 0xFF) as u8
    }

    /// TPR (bits 7:0).
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// Sets the TPR; a MOV to CR8 writes TPR[7:4] = CR8[3:0] (SDM 11.8.6).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// Processor priority (SDM 11.8.3.1): PPR[7:4] = max(TPR[7:4],
    /// ISRV[7:4]); PPR[3:0] = TPR[3:0] when TPR[7:4] ≥ ISRV[7:4], else 0.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// Arbitration priority for lowest-priority delivery (SDM 11.6.2.4,
    /// Figure 11-15): TPR when TPR[7:4] ≥ IRRV[7:4] and TPR[7:4] > ISRV[7:4],
    /// else max(TPR[7:4], ISRV[7:4], IRRV[7:4]) << 4.
    pub fn apr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0) >> 4;
        let irrv = self.irr.highest().unwrap_or(0) >> 4;
        let tpr = self.tpr >> 4;
        if tpr >= irrv && tpr > isrv {
            self.tpr
        } else {
            tpr.max(isrv).max(irrv) << 4
        }
    }

    /// Takes a fixed interrupt into the IRR, TMR set for level-triggered and
    /// cleared for edge (SDM 11.8.4). Vectors 0-15 are illegal: dropped and
    /// logged as "receive illegal vector" (11.5.2). A software-disabled or
    /// globally disabled APIC drops it. Returns whether it was taken.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) -> bool {
        if self.mode() == ApicMode::Disabled {
            return false;
        }
        if vector < 16 {
            self.record_error(regs::ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        if !self.software_enabled() {
            return false;
        }
        self.irr.set(vector);
        if level_triggered {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
        true
    }

    /// Logs an error in the internal error state (visible in the ESR after
    /// the next ESR write) and raises the LVT error interrupt unless masked
    /// (SDM 11.5.3).
    pub(super) fn record_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let entry = self.lvt_entry(LvtIndex::Error);
        if entry.masked() || !self.enabled() {
            return;
        }
        if entry.vector() < 16 {
            self.esr_pending |= regs::ESR_RECEIVE_ILLEGAL_VECTOR;
            return;
        }
        self.irr.set(entry.vector());
        self.tmr.clear(entry.vector());
    }

    /// The interrupt the vCPU should take next: the highest IRR vector whose
    /// priority class is above PPR[7:4] (SDM 11.8.3.1); None when nothing
    /// qualifies or the APIC is disabled.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// Interrupt acknowledge (INTA): moves the pending vector from IRR to
    /// ISR and returns it; if nothing is pending any more, returns the
    /// spurious vector without touching the ISR (SDM 11.9). None when the
    /// APIC is globally disabled.
    pub fn acknowledge(&mut self) -> Option<u8> {
        if self.mode() == ApicMode::Disabled {
            return None;
        }
        match self.pending_vector() {
            Some(v) => {
                self.irr.clear(v);
                self.isr.set(v);
                Some(v)
            }
            None => Some(self.spurious_vector()),
        }
    }

    /// EOI: retires the highest in-service vector (SDM 11.8.5). For a
    /// level-triggered vector, the LINT entries waiting on it get their
    /// remote IRR cleared and the host must forward the EOI to the IOAPIC.
    pub fn eoi(&mut self) -> Option<EoiEffect> {
        let vector = self.isr.highest()?;
        self.isr.clear(vector);
        let level_triggered = self.tmr.test(vector);
        if level_triggered {
            for lint in [LvtIndex::Lint0, LvtIndex::Lint1] {
                let e = &mut self.lvt[lint.index()];
                if *e & 0xFF == u32::from(vector) {
                    *e &= !LVT_REMOTE_IRR;
                }
            }
        }
        Some(EoiEffect {
            vector,
            level_triggered,
        })
    }

    /// Whether IRR, ISR or TMR holds `vector` (for tests and debugging).
    pub fn vector_state(&self, vector: u8) -> (bool, bool, bool) {
        (
            self.irr.test(vector),
            self.isr.test(vector),
            self.tmr.test(vector),
        )
    }

    /// The LVT entry `which`.
    pub fn lvt_entry(&self, which: LvtIndex) -> LvtEntry {
        LvtEntry(self.lvt[which.index()])
    }

    /// LVT LINT0.
    pub fn lint0(&self) -> LvtEntry {
        self.lvt_entry(LvtIndex::Lint0)
    }

    /// LVT LINT1.
    pub fn lint1(&self) -> LvtEntry {
        self.lvt_entry(LvtIndex::Lint1)
    }

    fn lint_mode(&self, pin: LintPin) -> Option<DeliveryMode> {
        if self.mode() == ApicMode::Disabled {
            // A globally disabled APIC passes LINT0/LINT1 through as the
            // processor's INTR and NMI inputs (SDM 11.4.3).
            return Some(match pin {
                LintPin::Lint0 => DeliveryMode::ExtInt,
                LintPin::Lint1 => DeliveryMode::Nmi,
            });
        }
        let e = match pin {
            LintPin::Lint0 => self.lint0(),
            LintPin::Lint1 => self.lint1(),
        };
        if e.masked() {
            None
        } else {
            e.delivery_mode()
        }
    }

    /// How LINT0 delivers, None when masked: `Some(ExtInt)` means virtual-wire
    /// mode, where the 8259A's INTR goes through this pin.
    pub fn lint0_mode(&self) -> Option<DeliveryMode> {
        self.lint_mode(LintPin::Lint0)
    }

    /// How LINT1 delivers, None when masked (normally NMI).
    pub fn lint1_mode(&self) -> Option<DeliveryMode> {
        self.lint_mode(LintPin::Lint1)
    }

    /// The pin is asserted (call on each rising edge for edge-triggered
    /// entries, and while asserted for level-triggered ones). Fixed mode puts
    /// the vector in the IRR; a level-triggered fixed entry sets its remote
    /// IRR and takes nothing more until the EOI (SDM 11.5.1). NMI, SMI, INIT
    /// and ExtINT are returned for the host to act on.
    pub fn lint_asserted(&mut self, pin: LintPin) -> Received {
        let Some(mode) = self.lint_mode(pin) else {
            return Received::Dropped;
        };
        let idx = match pin {
            LintPin::Lint0 => LvtIndex::Lint0,
            LintPin::Lint1 => LvtIndex::Lint1,
        };
        let entry = self.lvt_entry(idx);
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                let level = entry.level_triggered();
                if level && entry.remote_irr() {
                    return Received::Dropped;
                }
                if !self.accept(entry.vector(), level) {
                    return Received::Dropped;
                }
                if level {
                    self.lvt[idx.index()] |= LVT_REMOTE_IRR;
                }
                Received::Accepted(entry.vector())
            }
            other => self.special(other, entry.vector()),
        }
    }

    fn special(&mut self, mode: DeliveryMode, vector: u8) -> Received {
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => Received::Dropped,
            DeliveryMode::Smi => Received::Smi,
            DeliveryMode::Nmi => Received::Nmi,
            DeliveryMode::Init => {
                self.init();
                Received::Init
            }
            DeliveryMode::StartUp => Received::StartUp(vector),
            DeliveryMode::ExtInt => Received::ExtInt,
        }
    }

    /// Whether a message with this destination addresses this APIC (SDM
    /// 11.6.2). Physical: the ID, or the broadcast ID (0xFF in xAPIC mode,
    /// where only the low 8 bits count; 0xFFFF_FFFF in x2APIC mode).
    /// Logical xAPIC (11.6.2.2): flat model (DFR[31:28] = 1111b) matches when
    /// dest & LDR[31:24] ≠ 0; cluster model (0000b) when dest[7:4] is the
    /// LDR cluster or 0xF and dest[3:0] & LDR[27:24] ≠ 0. Logical x2APIC
    /// (11.12.10.2): dest[31:16] is the LDR cluster and dest[15:0] & LDR[15:0]
    /// ≠ 0, or dest is 0xFFFF_FFFF.
    pub fn destination_matches(&self, dest: u32, logical: bool) -> bool {
        match self.mode() {
            ApicMode::Disabled => false,
            ApicMode::X2Apic => {
                if dest == BROADCAST {
                    return true;
                }
                if !logical {
                    return dest == self.cfg.apic_id;
                }
                let ldr = self.x2apic_ldr();
                dest >> 16 == ldr >> 16 && dest & ldr & 0xFFFF != 0
            }
            ApicMode::XApic => {
                let dest = dest & 0xFF;
                if !logical {
                    return dest == XAPIC_BROADCAST || dest == u32::from(self.xapic_id);
                }
                let ldr = self.ldr >> 24;
                if self.dfr >> 28 == 0xF {
                    dest & ldr != 0
                } else {
                    let cluster = dest >> 4;
                    (cluster == 0xF || cluster == ldr >> 4) && dest & ldr & 0xF != 0
                }
            }
        }
    }

    /// The x2APIC logical ID derived from the x2APIC ID (SDM 11.12.10.2):
    /// cluster ID[19:4] in bits 31:16, bit ID[3:0] set in bits 15:0.
    pub fn x2apic_ldr(&self) -> u32 {
        let id = self.cfg.apic_id;
        ((id >> 4) << 16) | (1 << (id & 0xF))
    }

    /// Whether this APIC is a target of `ipi` (shorthand first, then the
    /// destination field).
    pub fn is_ipi_target(&self, ipi: &Ipi) -> bool {
        if self.mode() == ApicMode::Disabled {
            return false;
        }
        let me = self.id() == ipi.source;
        match ipi.shorthand {
            Shorthand::SelfOnly => me,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => !me,
            Shorthand::None => self.destination_matches(ipi.dest, ipi.dest_logical),
        }
    }

    /// Takes an IPI addressed to this APIC. Fixed and lowest-priority IPIs
    /// are edge-triggered (the ICR trigger bit only qualifies INIT
    /// de-assert, SDM 11.6.1); INIT resets this APIC (11.4.7.3).
    pub fn receive_ipi(&mut self, ipi: &Ipi) -> Received {
        if self.mode() == ApicMode::Disabled {
            return Received::Dropped;
        }
        match ipi.kind {
            IpiKind::Fixed(v) | IpiKind::LowestPriority(v) => {
                if self.accept(v, false) {
                    Received::Accepted(v)
                } else {
                    Received::Dropped
                }
            }
            IpiKind::Smi => Received::Smi,
            IpiKind::Nmi => Received::Nmi,
            IpiKind::Init => self.special(DeliveryMode::Init, 0),
            IpiKind::InitDeassert => Received::InitDeassert,
            IpiKind::StartUp(v) => Received::StartUp(v),
        }
    }

    /// Takes an interrupt message (from the IOAPIC) addressed to this APIC.
    pub fn receive(&mut self, msg: &ApicMessage) -> Received {
        if self.mode() == ApicMode::Disabled {
            return Received::Dropped;
        }
        match msg.delivery_mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if self.accept(msg.vector, msg.level_triggered) {
                    Received::Accepted(msg.vector)
                } else {
                    Received::Dropped
                }
            }
            other => self.special(other, msg.vector),
        }
    }

    /// When the host should call `timer_expired` next (virtual ns), None
    /// when the timer is not armed.
    pub fn timer_deadline_ns(&self) -> Option<u64> {
        let masked = self.lvt_entry(LvtIndex::Timer).masked();
        self.timer.deadline_ns(masked)
    }

    /// Runs the timer up to `now_ns`: when it expired, delivers the LVT timer
    /// vector unless masked and re-arms periodic mode (SDM 11.5.4). Returns
    /// whether an interrupt was accepted.
    pub fn timer_expired(&mut self, now_ns: u64) -> bool {
        if !self.timer.expire(now_ns) {
            return false;
        }
        let e = self.lvt_entry(LvtIndex::Timer);
        if e.masked() {
            return false;
        }
        self.accept(e.vector(), false)
    }

    /// Guest TSC = `offset` + now_ns × tsc_hz / 10⁹; TSC-deadline mode
    /// compares IA32_TSC_DEADLINE against it.
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.timer.set_tsc_offset(offset);
    }

    /// The guest TSC at `now_ns` as the timer sees it.
    pub fn tsc_at(&self, now_ns: u64) -> u64 {
        self.timer.tsc_at(now_ns)
    }

    /// Writes an LVT entry: only the entry's writable bits change; remote IRR
    /// and delivery status are kept; a software-disabled APIC keeps every
    /// mask set (SDM 11.4.7.2); a timer-mode change disarms the timer
    /// (11.5.4.1). A masked timer's missed expiries are consumed first, so
    /// unmasking does not deliver a stale one.
    pub(super) fn write_lvt(&mut self, which: LvtIndex, value: u32, now_ns: u64) {
        let old = self.lvt[which.index()];
        let mut new = (old & !which.writable()) | (value & which.writable());
        if !self.software_enabled() {
            new |= LVT_MASKED;
        }
        if which == LvtIndex::Timer {
            if old & LVT_MASKED != 0 {
                self.timer.expire(now_ns);
            }
            self.timer.set_mode(LvtEntry(new).timer_mode());
        }
        self.lvt[which.index()] = new;
    }

    /// Writes the SVR; clearing the software enable sets every LVT mask (SDM 11.4.7.2).
    pub(super) fn write_svr(&mut self, value: u32) {
        self.svr = value & regs::SVR_WRITABLE;
        if !self.software_enabled() {
            for e in &mut self.lvt {
                *e |= LVT_MASKED;
            }
        }
    }

    /// Physical base address of the xAPIC MMIO page (IA32_APIC_BASE[MAXPHYADDR-1:12]).
    pub fn base_address(&self) -> u64 {
        self.apic_base & !0xFFF & ((1u64 << self.cfg.phys_addr_bits) - 1)
    }

    /// Whether the MMIO page at `base_address` is live (xAPIC mode only: a
    /// disabled APIC and x2APIC mode do not decode it, SDM 11.4.3, 11.12.1.2).
    pub fn mmio_active(&self) -> bool {
        self.mode() == ApicMode::XApic
    }
}
