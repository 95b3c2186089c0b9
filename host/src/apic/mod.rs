//! Host-owned interrupt controllers: one local APIC per vCPU and the IOAPIC.
//!
//! These are pure models with no threads, locks or clocks of their own: the
//! caller passes the current virtual time (`now_ns`) to every access that
//! can depend on it, wraps each controller in its own lock, delivers the
//! messages the models return, and injects what `Lapic::pending_vector` /
//! `Lapic::acknowledge` offer through the backend's interrupt window.
//!
//! References:
//! - Intel SDM vol. 3, chapter 11 "Advanced Programmable Interrupt
//!   Controller (APIC)": 11.4 (local APIC, IA32_APIC_BASE, state after reset
//!   and INIT), 11.5 (LVT, error handling, timer), 11.6 (ICR and IPI
//!   destinations), 11.8 (acceptance, TPR/PPR, EOI), 11.9 (spurious
//!   interrupt), 11.12 (x2APIC: MSR map, state transitions, logical ID,
//!   SELF IPI).
//! - Intel 82093AA I/O Advanced Programmable Interrupt Controller (IOAPIC)
//!   datasheet, section 3 (register window and redirection table).
//!
//! Flow for the host integrator:
//! 1. Device line → `IoApic::set_pin` → `ApicMessage`s → for every `Lapic`
//!    with `destination_matches(msg.dest, msg.dest_logical)`: `receive(&msg)`
//!    (for lowest priority pick one target, e.g. the lowest `apr()`).
//! 2. Guest writes the ICR → `ApicEffect::Ipi(ipi)` → for every `Lapic`
//!    with `is_ipi_target(&ipi)`: `receive_ipi(&ipi)`; act on the
//!    `Received` value (NMI, INIT, SIPI, ExtINT are vCPU-level events).
//! 3. EOI write → `ApicEffect::Eoi(e)`; if `e.level_triggered`, call
//!    `IoApic::eoi(e.vector)` and deliver what it returns.
//! 4. Timer: after every LAPIC access re-read `timer_deadline_ns()`; when
//!    the clock passes it call `timer_expired(now_ns)`.

mod bits;
pub mod ioapic;
pub mod lapic;
mod lapic_access;
mod lapic_base;
pub mod lapic_timer;
pub mod lvt;
pub mod msg;
pub mod regs;

#[cfg(test)]
mod tests_ioapic;
#[cfg(test)]
mod tests_lapic;
#[cfg(test)]
mod tests_msr;
#[cfg(test)]
mod tests_timer;

pub use ioapic::{IoApic, RedirectionEntry, IOAPIC_PINS};
pub use lapic::{ApicMode, Lapic, LapicConfig, LintPin};
pub use lvt::{LvtEntry, LvtIndex, TimerMode};
pub use msg::{
    ApicEffect, ApicMessage, DeliveryMode, EoiEffect, Ipi, IpiKind, Received, Shorthand, BROADCAST,
    XAPIC_BROADCAST,
};

/// Errors of the interrupt-controller models. MSR errors are the cases
/// where the SDM specifies #GP(0) for RDMSR/WRMSR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApicError {
    /// A model parameter is unusable.
    #[error("APIC configuration: {0}")]
    Config(String),
    /// The MSR is not one of the local APIC's (IA32_APIC_BASE, IA32_TSC_DEADLINE, 0x800-0x8FF).
    #[error("MSR {0:#x} is not a local APIC MSR")]
    NotApicMsr(u32),
    /// An x2APIC MSR was accessed while the local APIC is not in x2APIC mode (SDM 11.12.1.2).
    #[error("MSR {0:#x}: x2APIC register access while x2APIC mode is off")]
    NotX2Apic(u32),
    /// The x2APIC MSR number names no register (SDM 11.12.1.2, Table 11-6).
    #[error("MSR {0:#x}: no x2APIC register there")]
    NoSuchRegister(u32),
    /// RDMSR of a write-only x2APIC register (EOI, SELF IPI).
    #[error("MSR {0:#x}: register is write-only")]
    WriteOnly(u32),
    /// WRMSR of a read-only x2APIC register.
    #[error("MSR {0:#x}: register is read-only")]
    ReadOnly(u32),
    /// WRMSR with reserved bits set.
    #[error("MSR {msr:#x}: value {value:#x} sets reserved bits")]
    ReservedBits {
        /// The MSR.
        msr: u32,
        /// The rejected value.
        value: u64,
    },
    /// IA32_APIC_BASE write asking for an illegal state transition (SDM 11.12.5).
    #[error("IA32_APIC_BASE: illegal transition from {from} to {to}")]
    IllegalTransition {
        /// Current state.
        from: &'static str,
        /// Requested state.
        to: &'static str,
    },
    /// An IOAPIC pin number beyond the redirection table.
    #[error("IOAPIC pin {0} does not exist (0..{n})", n = IOAPIC_PINS)]
    NoSuchPin(u32),
}
