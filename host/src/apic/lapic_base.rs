//! IA32_APIC_BASE (MSR 0x1B) and its state machine (SDM 11.4.4, Figure
//! 11-5; x2APIC states and transitions 11.12.5).

use super::lapic::{ApicMode, Lapic};
use super::regs;
use super::ApicError;

impl Lapic {
    /// IA32_APIC_BASE as RDMSR returns it.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// WRMSR IA32_APIC_BASE. Reserved bits (7:0, 9, MAXPHYADDR and up) #GP.
    /// The BSP flag is read-only. Legal: disabled ↔ xAPIC, xAPIC → x2APIC,
    /// x2APIC → disabled, and staying in a state (possibly moving the base).
    /// Illegal (#GP): EN=0 with EXTD=1, x2APIC → xAPIC, disabled → x2APIC
    /// (SDM 11.12.5.1). Entering the disabled state loses the register
    /// state: the APIC comes back as after RESET, IDs kept (SDM 11.4.3).
    pub fn set_apic_base(&mut self, value: u64) -> Result<(), ApicError> {
        let addr_mask = (1u64 << self.cfg.phys_addr_bits) - 1;
        let reserved = 0xFF | (1 << 9) | !addr_mask;
        if value & reserved != 0 {
            return Err(ApicError::ReservedBits {
                msr: regs::MSR_APIC_BASE,
                value,
            });
        }
        let from = self.mode();
        let to = match (value & regs::BASE_EN != 0, value & regs::BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => {
                return Err(ApicError::IllegalTransition {
                    from: from.name(),
                    to: "invalid (EN=0, EXTD=1)",
                })
            }
        };
        let legal = !matches!(
            (from, to),
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic)
        );
        if !legal {
            return Err(ApicError::IllegalTransition {
                from: from.name(),
                to: to.name(),
            });
        }
        if to == ApicMode::Disabled && from != ApicMode::Disabled {
            self.reset_registers();
        }
        self.apic_base = (value & !regs::BASE_BSP) | (self.apic_base & regs::BASE_BSP);
        Ok(())
    }
}
