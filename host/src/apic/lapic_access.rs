//! Local APIC register access: the xAPIC MMIO page (SDM 11.4.1, Table 11-1)
//! and the x2APIC MSRs 0x800-0x8FF (SDM 11.12.1.2, Table 11-6), plus
//! IA32_APIC_BASE and IA32_TSC_DEADLINE.
//!
//! xAPIC registers are 32 bits wide at 16-byte aligned offsets. Reads of any
//! width return the bytes of the register's slot (bytes 4-15 of a slot read
//! 0); writes take effect only as 32- or 64-bit stores at the start of a slot
//! (the SDM leaves other widths undefined; they are ignored here).

use super::lapic::{ApicMode, Lapic};
use super::lvt::LvtIndex;
use super::msg::{ApicEffect, DeliveryMode, Ipi, IpiKind, Shorthand};
use super::regs::*;
use super::ApicError;

/// A decoded register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Id,
    Version,
    Tpr,
    Apr,
    Ppr,
    Eoi,
    Rrd,
    Ldr,
    Dfr,
    Svr,
    Isr(usize),
    Tmr(usize),
    Irr(usize),
    Esr,
    IcrLow,
    IcrHigh,
    Lvt(LvtIndex),
    TimerInitial,
    TimerCurrent,
    TimerDivide,
    SelfIpi,
}

impl Reg {
    /// The register at a 16-byte aligned xAPIC offset.
    fn decode(offset: u32) -> Option<Self> {
        let word = |base: u32| ((offset - base) >> 4) as usize;
        Some(match offset {
            ID => Self::Id,
            VERSION => Self::Version,
            TPR => Self::Tpr,
            APR => Self::Apr,
            PPR => Self::Ppr,
            EOI => Self::Eoi,
            RRD => Self::Rrd,
            LDR => Self::Ldr,
            DFR => Self::Dfr,
            SVR => Self::Svr,
            0x100..=0x170 => Self::Isr(word(ISR)),
            0x180..=0x1F0 => Self::Tmr(word(TMR)),
            0x200..=0x270 => Self::Irr(word(IRR)),
            ESR => Self::Esr,
            ICR_LOW => Self::IcrLow,
            ICR_HIGH => Self::IcrHigh,
            0x320..=0x370 => Self::Lvt(LvtIndex::from_offset(offset)?),
            TIMER_INITIAL => Self::TimerInitial,
            TIMER_CURRENT => Self::TimerCurrent,
            TIMER_DIVIDE => Self::TimerDivide,
            SELF_IPI => Self::SelfIpi,
            _ => return None,
        })
    }

    /// Whether the register exists in `mode` (APR, RRD, DFR and ICR high
    /// are xAPIC-only; SELF IPI is x2APIC-only).
    fn exists_in(self, mode: ApicMode) -> bool {
        match self {
            Self::Apr | Self::Rrd | Self::Dfr | Self::IcrHigh => mode != ApicMode::X2Apic,
            Self::SelfIpi => mode == ApicMode::X2Apic,
            _ => true,
        }
    }

    /// Read-only in x2APIC mode (WRMSR #GPs).
    fn read_only(self) -> bool {
        matches!(
            self,
            Self::Id
                | Self::Version
                | Self::Apr
                | Self::Ppr
                | Self::Rrd
                | Self::Ldr
                | Self::Isr(_)
                | Self::Tmr(_)
                | Self::Irr(_)
                | Self::TimerCurrent
        )
    }

    /// Bits an x2APIC WRMSR may set; others #GP (SDM 11.12.1.2). EOI and
    /// ESR accept only 0 in x2APIC mode.
    fn x2apic_defined(self) -> u64 {
        match self {
            Self::Tpr | Self::SelfIpi => 0xFF,
            Self::Svr => u64::from(SVR_WRITABLE),
            Self::Eoi | Self::Esr => 0,
            Self::IcrLow => X2APIC_ICR_DEFINED,
            Self::Lvt(i) => u64::from(i.defined()),
            Self::TimerInitial => 0xFFFF_FFFF,
            Self::TimerDivide => u64::from(super::lapic_timer::DIVIDE_WRITABLE),
            _ => 0,
        }
    }
}

impl Lapic {
    fn read_reg(&self, reg: Reg, now_ns: u64) -> u64 {
        let x2 = self.mode() == ApicMode::X2Apic;
        let v: u32 = match reg {
            Reg::Id if x2 => self.cfg.apic_id,
            Reg::Id => u32::from(self.xapic_id) << 24,
            Reg::Version => VERSION_VALUE,
            Reg::Tpr => u32::from(self.tpr),
            Reg::Apr => u32::from(self.apr()),
            Reg::Ppr => u32::from(self.ppr()),
            Reg::Eoi | Reg::Rrd | Reg::SelfIpi => 0,
            Reg::Ldr if x2 => self.x2apic_ldr(),
            Reg::Ldr => self.ldr,
            Reg::Dfr => self.dfr,
            Reg::Svr => self.svr,
            Reg::Isr(i) => self.isr.word(i),
            Reg::Tmr(i) => self.tmr.word(i),
            Reg::Irr(i) => self.irr.word(i),
            Reg::Esr => self.esr,
            Reg::IcrLow if x2 => return self.icr,
            Reg::IcrLow => self.icr as u32,
            Reg::IcrHigh => (self.icr >> 32) as u32,
            Reg::Lvt(i) => self.lvt[i.index()],
            Reg::TimerInitial => self.timer.initial(),
            Reg::TimerCurrent => self.timer.current(now_ns),
            Reg::TimerDivide => self.timer.divide(),
        };
        u64::from(v)
    }

    /// Applies a validated write.
    fn write_reg(&mut self, reg: Reg, value: u64, now_ns: u64) -> ApicEffect {
        let x2 = self.mode() == ApicMode::X2Apic;
        let v = value as u32;
        match reg {
            Reg::Id if !x2 => self.xapic_id = (v >> 24) as u8,
            Reg::Tpr => self.tpr = v as u8,
            Reg::Eoi => {
                return self.eoi().map_or(ApicEffect::None, ApicEffect::Eoi);
            }
            Reg::Ldr if !x2 => self.ldr = v & 0xFF00_0000,
            Reg::Dfr => self.dfr = v | 0x0FFF_FFFF,
            Reg::Svr => self.write_svr(v),
            Reg::Esr => {
                // A write latches the errors logged since the last one (11.5.3).
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            Reg::IcrLow if x2 => {
                self.icr = value & X2APIC_ICR_DEFINED;
                return self.send_ipi(self.icr as u32, (self.icr >> 32) as u32);
            }
            Reg::IcrLow => {
                self.icr = (self.icr & !0xFFFF_FFFF) | u64::from(v & ICR_LOW_WRITABLE);
                return self.send_ipi(self.icr as u32, (self.icr >> 56) as u32);
            }
            Reg::IcrHigh => {
                self.icr = (self.icr & 0xFFFF_FFFF) | (u64::from(v & 0xFF00_0000) << 32)
            }
            Reg::Lvt(i) => self.write_lvt(i, v, now_ns),
            Reg::TimerInitial => self.timer.write_initial(v, now_ns),
            Reg::TimerDivide => self.timer.write_divide(v, now_ns),
            Reg::SelfIpi => {
                // SELF IPI: a fixed, edge-triggered interrupt to this APIC (11.12.11).
                self.accept(v as u8, false);
            }
            // Read-only registers ignore xAPIC writes.
            _ => {}
        }
        ApicEffect::None
    }

    /// Builds the IPI an ICR write sends (SDM 11.6.1). Fixed and
    /// lowest-priority IPIs with a vector below 16 are not sent and log
    /// "send illegal vector" (11.5.3). The reserved delivery modes (011b,
    /// 111b in the ICR) send nothing.
    fn send_ipi(&mut self, low: u32, dest: u32) -> ApicEffect {
        let vector = low as u8;
        let level_assert = low & ICR_LEVEL_ASSERT != 0;
        let level_triggered = low & ICR_LEVEL_TRIGGER != 0;
        let kind = match DeliveryMode::from_bits(low >> 8) {
            Some(DeliveryMode::Fixed) => IpiKind::Fixed(vector),
            Some(DeliveryMode::LowestPriority) => IpiKind::LowestPriority(vector),
            Some(DeliveryMode::Smi) => IpiKind::Smi,
            Some(DeliveryMode::Nmi) => IpiKind::Nmi,
            Some(DeliveryMode::Init) if !level_assert && level_triggered => IpiKind::InitDeassert,
            Some(DeliveryMode::Init) => IpiKind::Init,
            Some(DeliveryMode::StartUp) => IpiKind::StartUp(vector),
            Some(DeliveryMode::ExtInt) | None => return ApicEffect::None,
        };
        if matches!(kind, IpiKind::Fixed(_) | IpiKind::LowestPriority(_)) && vector < 16 {
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
            return ApicEffect::None;
        }
        ApicEffect::Ipi(Ipi {
            source: self.id(),
            kind,
            dest,
            dest_logical: low & ICR_DEST_LOGICAL != 0,
            shorthand: Shorthand::from_bits(low >> 18),
            level_assert,
            level_triggered,
        })
    }

    /// Reads the 32-bit register at xAPIC offset `offset` (0..0x1000). Bytes
    /// 4-15 of a slot read 0; an unimplemented register reads 0 and logs
    /// "illegal register address" (SDM 11.5.3).
    pub fn read_register(&mut self, offset: u32, now_ns: u64) -> u32 {
        if offset & 0xF != 0 {
            return 0;
        }
        match Reg::decode(offset).filter(|r| r.exists_in(ApicMode::XApic)) {
            Some(r) => self.read_reg(r, now_ns) as u32,
            None => {
                self.record_error(ESR_ILLEGAL_REGISTER);
                0
            }
        }
    }

    /// Writes the 32-bit register at xAPIC offset `offset`; read-only
    /// registers ignore it, unimplemented ones log "illegal register
    /// address" (SDM 11.5.3).
    pub fn write_register(&mut self, offset: u32, value: u32, now_ns: u64) -> ApicEffect {
        if offset & 0xF != 0 {
            return ApicEffect::None;
        }
        match Reg::decode(offset).filter(|r| r.exists_in(ApicMode::XApic)) {
            Some(r) => self.write_reg(r, u64::from(value), now_ns),
            None => {
                self.record_error(ESR_ILLEGAL_REGISTER);
                ApicEffect::None
            }
        }
    }

    /// An MMIO read of `data.len()` bytes at `offset` into the APIC page.
    /// Outside xAPIC mode or the page, reads 0.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8], now_ns: u64) {
        let mut slot: Option<(u64, [u8; 4])> = None;
        for (i, byte) in data.iter_mut().enumerate() {
            let addr = offset.saturating_add(i as u64);
            *byte = 0;
            if !self.mmio_active() || addr >= PAGE_SIZE || addr & 0xF >= 4 {
                continue;
            }
            let base = addr & !0xF;
            let bytes = match slot {
                Some((b, v)) if b == base => v,
                _ => {
                    let v = self.read_register(base as u32, now_ns).to_le_bytes();
                    slot = Some((base, v));
                    v
                }
            };
            *byte = bytes[(addr & 3) as usize];
        }
    }

    /// An MMIO write at `offset` into the APIC page: 4- or 8-byte stores at
    /// the start of a 16-byte slot write its register (the upper 4 bytes of
    /// an 8-byte store fall into the slot's reserved bytes); other stores
    /// are ignored, as is everything outside xAPIC mode.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], now_ns: u64) -> ApicEffect {
        if !self.mmio_active() || offset >= PAGE_SIZE || offset & 0xF != 0 {
            return ApicEffect::None;
        }
        let Some(low) = data.get(..4).filter(|_| data.len() == 4 || data.len() == 8) else {
            return ApicEffect::None;
        };
        let mut b = [0u8; 4];
        b.copy_from_slice(low);
        self.write_register(offset as u32, u32::from_le_bytes(b), now_ns)
    }

    /// Whether `msr` belongs to the local APIC: IA32_APIC_BASE,
    /// IA32_TSC_DEADLINE or the x2APIC range 0x800-0x8FF.
    pub fn is_apic_msr(msr: u32) -> bool {
        msr == MSR_APIC_BASE
            || msr == MSR_TSC_DEADLINE
            || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
    }

    fn x2apic_reg(&self, msr: u32) -> Result<Reg, ApicError> {
        if self.mode() != ApicMode::X2Apic {
            return Err(ApicError::NotX2Apic(msr));
        }
        Reg::decode((msr - MSR_X2APIC_FIRST) << 4)
            .filter(|r| r.exists_in(ApicMode::X2Apic))
            .ok_or(ApicError::NoSuchRegister(msr))
    }

    /// RDMSR of a local APIC MSR; an error means #GP(0).
    pub fn read_msr(&mut self, msr: u32, now_ns: u64) -> Result<u64, ApicError> {
        match msr {
            MSR_APIC_BASE => Ok(self.apic_base()),
            MSR_TSC_DEADLINE => Ok(self.timer.tsc_deadline()),
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {
                let reg = self.x2apic_reg(msr)?;
                if matches!(reg, Reg::Eoi | Reg::SelfIpi) {
                    return Err(ApicError::WriteOnly(msr));
                }
                Ok(self.read_reg(reg, now_ns))
            }
            _ => Err(ApicError::NotApicMsr(msr)),
        }
    }

    /// WRMSR of a local APIC MSR; an error means #GP(0) and no change.
    pub fn write_msr(
        &mut self,
        msr: u32,
        value: u64,
        now_ns: u64,
    ) -> Result<ApicEffect, ApicError> {
        match msr {
            MSR_APIC_BASE => {
                self.set_apic_base(value)?;
                Ok(ApicEffect::None)
            }
            MSR_TSC_DEADLINE => {
                self.timer.write_tsc_deadline(value);
                Ok(ApicEffect::None)
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {
                let reg = self.x2apic_reg(msr)?;
                if reg.read_only() {
                    return Err(ApicError::ReadOnly(msr));
                }
                if value & !reg.x2apic_defined() != 0 {
                    return Err(ApicError::ReservedBits { msr, value });
                }
                Ok(self.write_reg(reg, value, now_ns))
            }
            _ => Err(ApicError::NotApicMsr(msr)),
        }
    }
}
