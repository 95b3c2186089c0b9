//! Local APIC register offsets in the xAPIC MMIO page (SDM 11.4.1, Table
//! 11-1) and their x2APIC MSR numbers, MSR = 0x800 + offset / 16 (SDM
//! 11.12.1.2, Table 11-6), plus the architectural constants of the model.

/// Local APIC ID.
pub const ID: u32 = 0x020;
/// Local APIC version.
pub const VERSION: u32 = 0x030;
/// Task priority register.
pub const TPR: u32 = 0x080;
/// Arbitration priority register (xAPIC only).
pub const APR: u32 = 0x090;
/// Processor priority register.
pub const PPR: u32 = 0x0A0;
/// End of interrupt (write-only).
pub const EOI: u32 = 0x0B0;
/// Remote read register (xAPIC only; this model reads 0).
pub const RRD: u32 = 0x0C0;
/// Logical destination register.
pub const LDR: u32 = 0x0D0;
/// Destination format register (xAPIC only).
pub const DFR: u32 = 0x0E0;
/// Spurious interrupt vector register.
pub const SVR: u32 = 0x0F0;
/// In-service register, eight words 0x100-0x170.
pub const ISR: u32 = 0x100;
/// Trigger mode register, eight words 0x180-0x1F0.
pub const TMR: u32 = 0x180;
/// Interrupt request register, eight words 0x200-0x270.
pub const IRR: u32 = 0x200;
/// Error status register.
pub const ESR: u32 = 0x280;
/// Interrupt command register, low half (x2APIC: the whole 64-bit ICR).
pub const ICR_LOW: u32 = 0x300;
/// Interrupt command register, high half (xAPIC only).
pub const ICR_HIGH: u32 = 0x310;
/// LVT timer.
pub const LVT_TIMER: u32 = 0x320;
/// LVT thermal sensor.
pub const LVT_THERMAL: u32 = 0x330;
/// LVT performance monitoring counters.
pub const LVT_PERF: u32 = 0x340;
/// LVT LINT0.
pub const LVT_LINT0: u32 = 0x350;
/// LVT LINT1.
pub const LVT_LINT1: u32 = 0x360;
/// LVT error.
pub const LVT_ERROR: u32 = 0x370;
/// Timer initial count.
pub const TIMER_INITIAL: u32 = 0x380;
/// Timer current count (read-only).
pub const TIMER_CURRENT: u32 = 0x390;
/// Timer divide configuration.
pub const TIMER_DIVIDE: u32 = 0x3E0;
/// SELF IPI (x2APIC only, write-only).
pub const SELF_IPI: u32 = 0x3F0;

/// IA32_APIC_BASE MSR (SDM 11.4.4).
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_TSC_DEADLINE MSR (SDM 11.5.4.1).
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// First x2APIC register MSR (SDM 11.12.1.2).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last x2APIC register MSR.
pub const MSR_X2APIC_LAST: u32 = 0x8FF;

/// Default APIC base address (SDM 11.4.4).
pub const DEFAULT_BASE: u64 = 0xFEE0_0000;
/// Size of the xAPIC MMIO page.
pub const PAGE_SIZE: u64 = 0x1000;

/// IA32_APIC_BASE bit 8: this processor is the bootstrap processor.
pub const BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode enable (EXTD, SDM 11.12.1).
pub const BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: APIC global enable (EN).
pub const BASE_EN: u64 = 1 << 11;

/// Version register: version 0x14 (integrated APIC), max LVT entry 5 (six
/// LVT entries, no CMCI), no EOI-broadcast suppression (SDM 11.4.8, Figure 11-7).
pub const VERSION_VALUE: u32 = 0x0005_0014;

/// SVR bit 8: APIC software enable (SDM 11.9, Figure 11-23).
pub const SVR_ENABLE: u32 = 1 << 8;
/// SVR bits the model implements: vector 7:0, enable 8, focus checking 9.
pub const SVR_WRITABLE: u32 = 0x3FF;
/// SVR value after RESET and INIT (SDM 11.4.7.1).
pub const SVR_RESET: u32 = 0xFF;

/// ESR bit 5: send illegal vector (SDM 11.5.3, Figure 11-9).
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: receive illegal vector.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// ESR bit 7: illegal register address.
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// ICR bit 11: logical destination mode (SDM 11.6.1, Figure 11-12).
pub const ICR_DEST_LOGICAL: u32 = 1 << 11;
/// ICR bit 12: delivery status (always 0 here: delivery is immediate).
pub const ICR_DELIVERY_STATUS: u32 = 1 << 12;
/// ICR bit 14: level (1 = assert).
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// ICR bit 15: trigger mode (1 = level).
pub const ICR_LEVEL_TRIGGER: u32 = 1 << 15;
/// ICR low-word bits the xAPIC model stores: vector, delivery mode,
/// destination mode, level, trigger, shorthand (bit 12 is read-only 0).
pub const ICR_LOW_WRITABLE: u32 = 0x000C_CFFF;
/// x2APIC ICR: defined bits; the rest (12, 13, 16, 17, 20-31) are reserved
/// and #GP on WRMSR (SDM 11.12.9, Figure 11-28).
pub const X2APIC_ICR_DEFINED: u64 = 0xFFFF_FFFF_000C_CFFF;

/// The x2APIC MSR number of an xAPIC register offset (SDM 11.12.1.2).
pub fn x2apic_msr(offset: u32) -> u32 {
    MSR_X2APIC_FIRST + (offset >> 4)
}
