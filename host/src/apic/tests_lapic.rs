//! Local APIC tests: reset values, priorities, IRR/ISR/EOI, spurious and
//! disabled behaviour, ICR → IPI, destinations, errors, LINT pins.

use super::lvt::LvtIndex;
use super::msg::{
    ApicEffect, ApicMessage, DeliveryMode, EoiEffect, Ipi, IpiKind, Received, Shorthand,
};
use super::regs::*;
use super::{ApicMode, Lapic, LapicConfig, LintPin};

fn lapic(id: u32) -> Lapic {
    let mut l = Lapic::new(LapicConfig::new(id, id == 0)).expect("valid config");
    l.write_register(SVR, 0x1FF, 0);
    l
}

#[test]
fn reset_register_values() {
    let mut l = Lapic::new(LapicConfig::new(3, true)).expect("config");
    let table: &[(u32, u32)] = &[
        (ID, 0x0300_0000),
        (VERSION, 0x0005_0014),
        (TPR, 0),
        (APR, 0),
        (PPR, 0),
        (LDR, 0),
        (DFR, 0xFFFF_FFFF),
        (SVR, 0xFF),
        (ISR, 0),
        (ISR + 0x70, 0),
        (TMR + 0x30, 0),
        (IRR + 0x70, 0),
        (ESR, 0),
        (ICR_LOW, 0),
        (ICR_HIGH, 0),
        (LVT_TIMER, 0x1_0000),
        (LVT_THERMAL, 0x1_0000),
        (LVT_PERF, 0x1_0000),
        (LVT_LINT0, 0x1_0000),
        (LVT_LINT1, 0x1_0000),
        (LVT_ERROR, 0x1_0000),
        (TIMER_INITIAL, 0),
        (TIMER_CURRENT, 0),
        (TIMER_DIVIDE, 0),
    ];
    for &(off, want) in table {
        assert_eq!(l.read_register(off, 0), want, "register {off:#x}");
    }
    assert_eq!(
        l.read_register(ESR, 0),
        0,
        "no illegal-register error logged"
    );
    assert_eq!(l.apic_base(), 0xFEE0_0900);
    assert_eq!(l.mode(), ApicMode::XApic);
    assert!(!l.software_enabled());
    let ap = Lapic::new(LapicConfig::new(1, false)).expect("config");
    assert_eq!(ap.apic_base(), 0xFEE0_0800);
}

#[test]
fn bad_config_is_an_error() {
    let mut c = LapicConfig::new(0, true);
    c.timer_hz = 0;
    assert!(Lapic::new(c).is_err());
    let mut c = LapicConfig::new(0, true);
    c.phys_addr_bits = 64;
    assert!(Lapic::new(c).is_err());
}

#[test]
fn tpr_ppr_masking() {
    // (tpr, vector put in service first, vector requested, PPR, delivered?)
    let table: &[(u8, Option<u8>, u8, u8, bool)] = &[
        (0x00, None, 0x31, 0x00, true),
        (0x30, None, 0x31, 0x30, false),
        (0x3F, None, 0x3F, 0x3F, false),
        (0x2F, None, 0x31, 0x2F, true),
        (0x40, None, 0x31, 0x40, false),
        (0x00, Some(0x55), 0x51, 0x50, false),
        (0x00, Some(0x55), 0x61, 0x50, true),
        (0x30, Some(0x55), 0x61, 0x50, true),
        (0x5A, Some(0x55), 0x61, 0x5A, true),
        (0x6A, Some(0x55), 0x61, 0x6A, false),
        (0x00, Some(0xF0), 0xFF, 0xF0, false),
    ];
    for &(tpr, in_service, req, ppr, delivered) in table {
        let mut l = lapic(0);
        if let Some(v) = in_service {
            assert!(l.accept(v, false));
            assert_eq!(l.acknowledge(), Some(v));
        }
        l.write_register(TPR, u32::from(tpr), 0);
        assert!(l.accept(req, false));
        assert_eq!(
            l.read_register(PPR, 0),
            u32::from(ppr),
            "PPR for {tpr:#x}/{in_service:?}"
        );
        assert_eq!(
            l.pending_vector(),
            delivered.then_some(req),
            "tpr {tpr:#x} isr {in_service:?} vector {req:#x}"
        );
    }
}

#[test]
fn apr_follows_tpr_isr_irr() {
    // (tpr, isr, irr, apr) per SDM Figure 11-15.
    let table: &[(u8, Option<u8>, Option<u8>, u8)] = &[
        (0x00, None, None, 0x00),
        (0x35, None, None, 0x35),
        (0x35, None, Some(0x81), 0x80),
        (0x35, Some(0x41), None, 0x40),
        (0x45, Some(0x41), None, 0x40),
        (0x55, Some(0x41), Some(0x52), 0x55),
    ];
    for &(tpr, isr, irr, apr) in table {
        let mut l = lapic(0);
        if let Some(v) = isr {
            l.accept(v, false);
            assert_eq!(l.acknowledge(), Some(v));
        }
        l.set_tpr(tpr);
        if let Some(v) = irr {
            l.accept(v, false);
        }
        assert_eq!(
            l.read_register(APR, 0),
            u32::from(apr),
            "{tpr:#x} {isr:?} {irr:?}"
        );
    }
}

#[test]
fn irr_isr_eoi_nesting() {
    let mut l = lapic(0);
    assert!(l.accept(0x40, false));
    assert_eq!(l.acknowledge(), Some(0x40));
    assert_eq!(l.vector_state(0x40), (false, true, false));
    assert!(l.accept(0x80, false));
    assert_eq!(l.pending_vector(), Some(0x80), "higher class preempts");
    assert_eq!(l.acknowledge(), Some(0x80));
    assert!(l.accept(0x60, false));
    assert_eq!(
        l.pending_vector(),
        None,
        "0x60 is below the in-service 0x80"
    );
    assert_eq!(l.read_register(ISR + 0x40, 0), 1, "ISR word 4 holds 0x80");
    let mut order = Vec::new();
    while let ApicEffect::Eoi(e) = l.write_register(EOI, 0, 0) {
        order.push(e.vector);
        if let Some(v) = l.pending_vector() {
            assert_eq!(l.acknowledge(), Some(v));
        }
    }
    assert_eq!(order, vec![0x80, 0x60, 0x40]);
    assert_eq!(l.eoi(), None, "EOI with an empty ISR does nothing");
    assert_eq!(l.pending_vector(), None);
}

#[test]
fn level_triggered_eoi_effect() {
    for level in [false, true] {
        let mut l = lapic(0);
        assert!(l.accept(0x50, level));
        assert_eq!(l.read_register(TMR + 0x20, 0), u32::from(level) << 0x10);
        assert_eq!(l.acknowledge(), Some(0x50));
        let eff = l.mmio_write(EOI.into(), &0u32.to_le_bytes(), 0);
        assert_eq!(
            eff,
            ApicEffect::Eoi(EoiEffect {
                vector: 0x50,
                level_triggered: level
            })
        );
    }
}

#[test]
fn spurious_when_pending_vanishes() {
    let mut l = lapic(0);
    l.write_register(SVR, 0x1EF, 0);
    assert!(l.accept(0x35, false));
    assert_eq!(l.pending_vector(), Some(0x35));
    l.write_register(TPR, 0xF0, 0);
    assert_eq!(l.acknowledge(), Some(0xEF), "spurious vector");
    assert_eq!(
        l.vector_state(0x35),
        (true, false, false),
        "stays requested, not in service"
    );
    assert_eq!(l.vector_state(0xEF), (false, false, false));
    assert_eq!(l.eoi(), None);
}

#[test]
fn software_disable() {
    let mut l = Lapic::new(LapicConfig::new(0, true)).expect("config");
    assert!(
        !l.accept(0x40, false),
        "disabled APIC drops fixed interrupts"
    );
    assert_eq!(l.pending_vector(), None);
    l.write_register(LVT_LINT0, 0x0000_0700, 0);
    assert_eq!(
        l.read_register(LVT_LINT0, 0),
        0x0001_0700,
        "mask stays set while disabled"
    );
    l.write_register(SVR, 0x1FF, 0);
    l.write_register(LVT_LINT0, 0x0000_0700, 0);
    assert_eq!(l.read_register(LVT_LINT0, 0), 0x0000_0700);
    assert!(l.accept(0x40, false));
    assert_eq!(l.pending_vector(), Some(0x40));
    l.write_register(SVR, 0x0FF, 0);
    assert_eq!(l.pending_vector(), None, "held while disabled");
    assert!(l.vector_state(0x40).0);
    for off in [
        LVT_TIMER,
        LVT_THERMAL,
        LVT_PERF,
        LVT_LINT0,
        LVT_LINT1,
        LVT_ERROR,
    ] {
        assert_ne!(
            l.read_register(off, 0) & (1 << 16),
            0,
            "LVT {off:#x} masked"
        );
    }
    l.write_register(SVR, 0x1FF, 0);
    assert_eq!(l.pending_vector(), Some(0x40));
}

fn ipi(kind: IpiKind, dest: u32, logical: bool, sh: Shorthand, assert: bool, trig: bool) -> Ipi {
    Ipi {
        source: 2,
        kind,
        dest,
        dest_logical: logical,
        shorthand: sh,
        level_assert: assert,
        level_triggered: trig,
    }
}

#[test]
fn icr_writes_make_ipis() {
    use IpiKind::*;
    use Shorthand::*;
    // (ICR high, ICR low, IPI)
    let table: &[(u32, u32, Option<Ipi>)] = &[
        (
            0x0500_0000,
            0x0000_4030,
            Some(ipi(Fixed(0x30), 5, false, None, true, false)),
        ),
        (
            0x0300_0000,
            0x0000_4930,
            Some(ipi(LowestPriority(0x30), 3, true, None, true, false)),
        ),
        (
            0x0100_0000,
            0x0000_4200,
            Some(ipi(Smi, 1, false, None, true, false)),
        ),
        (
            0x0100_0000,
            0x0000_4400,
            Some(ipi(Nmi, 1, false, None, true, false)),
        ),
        (
            0x0100_0000,
            0x0000_C500,
            Some(ipi(Init, 1, false, None, true, true)),
        ),
        (
            0x0100_0000,
            0x0000_8500,
            Some(ipi(InitDeassert, 1, false, None, false, true)),
        ),
        (
            0x0100_0000,
            0x0000_4608,
            Some(ipi(StartUp(0x08), 1, false, None, true, false)),
        ),
        (
            0,
            0x0004_4041,
            Some(ipi(Fixed(0x41), 0, false, SelfOnly, true, false)),
        ),
        (
            0,
            0x0008_4042,
            Some(ipi(Fixed(0x42), 0, false, AllIncludingSelf, true, false)),
        ),
        (
            0,
            0x000C_4500,
            Some(ipi(Init, 0, false, AllExcludingSelf, true, false)),
        ),
        (
            0,
            0x000C_4699,
            Some(ipi(StartUp(0x99), 0, false, AllExcludingSelf, true, false)),
        ),
        (
            0xFF00_0000,
            0x0000_4050,
            Some(ipi(Fixed(0x50), 0xFF, false, None, true, false)),
        ),
        // Reserved delivery modes 011b and 111b send nothing.
        (0x0100_0000, 0x0000_4330, Option::None),
        (0x0100_0000, 0x0000_4730, Option::None),
        // Fixed with an illegal vector is not sent (ESR checked elsewhere).
        (0x0100_0000, 0x0000_400F, Option::None),
    ];
    for &(high, low, want) in table {
        let mut l = lapic(2);
        assert_eq!(l.write_register(ICR_HIGH, high, 0), ApicEffect::None);
        let eff = l.write_register(ICR_LOW, low, 0);
        assert_eq!(
            eff,
            want.map_or(ApicEffect::None, ApicEffect::Ipi),
            "ICR {high:#x}:{low:#x}"
        );
        assert_eq!(
            l.read_register(ICR_LOW, 0),
            low,
            "ICR low reads back, delivery status 0"
        );
        assert_eq!(l.read_register(ICR_HIGH, 0), high);
    }
    let mut l = lapic(2);
    l.write_register(ICR_LOW, 0x0000_1040, 0);
    assert_eq!(l.read_register(ICR_LOW, 0) & ICR_DELIVERY_STATUS, 0);
}

#[test]
fn ipi_shorthands_pick_targets() {
    let apics: Vec<Lapic> = (0..4).map(lapic).collect();
    // (shorthand, dest, targets among IDs 0..4); the sender is 2.
    let table: &[(Shorthand, u32, [bool; 4])] = &[
        (Shorthand::None, 1, [false, true, false, false]),
        (Shorthand::None, 0xFF, [true; 4]),
        (Shorthand::SelfOnly, 1, [false, false, true, false]),
        (Shorthand::AllIncludingSelf, 1, [true; 4]),
        (Shorthand::AllExcludingSelf, 1, [true, true, false, true]),
    ];
    for &(sh, dest, want) in table {
        let i = ipi(IpiKind::Fixed(0x40), dest, false, sh, true, false);
        let got: Vec<bool> = apics.iter().map(|a| a.is_ipi_target(&i)).collect();
        assert_eq!(got, want, "{sh:?} {dest:#x}");
    }
}

#[test]
fn receive_ipi_kinds() {
    let mut l = lapic(1);
    let mk = |k| ipi(k, 1, false, Shorthand::None, true, false);
    assert_eq!(
        l.receive_ipi(&mk(IpiKind::Fixed(0x44))),
        Received::Accepted(0x44)
    );
    assert_eq!(l.vector_state(0x44), (true, false, false));
    assert_eq!(l.receive_ipi(&mk(IpiKind::Nmi)), Received::Nmi);
    assert_eq!(l.receive_ipi(&mk(IpiKind::Smi)), Received::Smi);
    assert_eq!(
        l.receive_ipi(&mk(IpiKind::StartUp(0x9F))),
        Received::StartUp(0x9F)
    );
    assert_eq!(
        l.receive_ipi(&mk(IpiKind::InitDeassert)),
        Received::InitDeassert
    );
    l.write_register(ID, 0x0700_0000, 0);
    assert_eq!(l.receive_ipi(&mk(IpiKind::Init)), Received::Init);
    assert_eq!(
        l.vector_state(0x44),
        (false, false, false),
        "INIT clears the IRR"
    );
    assert!(!l.software_enabled(), "INIT resets the SVR");
    assert_eq!(
        l.read_register(ID, 0),
        0x0700_0000,
        "INIT keeps the APIC ID"
    );
    assert_eq!(l.receive_ipi(&mk(IpiKind::Fixed(0x44))), Received::Dropped);
}

#[test]
fn logical_destinations_xapic() {
    // (DFR, LDR, dest, matches)
    let table: &[(u32, u32, u32, bool)] = &[
        (0xFFFF_FFFF, 0x0100_0000, 0x01, true),
        (0xFFFF_FFFF, 0x0100_0000, 0x02, false),
        (0xFFFF_FFFF, 0x0400_0000, 0x0F, true),
        (0xFFFF_FFFF, 0x8000_0000, 0xFF, true),
        (0xFFFF_FFFF, 0x0000_0000, 0xFF, false),
        (0x0FFF_FFFF, 0x2100_0000, 0x21, true),
        (0x0FFF_FFFF, 0x2100_0000, 0x23, true),
        (0x0FFF_FFFF, 0x2100_0000, 0x22, false),
        (0x0FFF_FFFF, 0x2100_0000, 0x31, false),
        (0x0FFF_FFFF, 0x2100_0000, 0xF1, true),
        (0x0FFF_FFFF, 0x2800_0000, 0xFF, true),
    ];
    for &(dfr, ldr, dest, want) in table {
        let mut l = lapic(0);
        l.write_register(DFR, dfr, 0);
        l.write_register(LDR, ldr, 0);
        assert_eq!(l.read_register(DFR, 0), dfr | 0x0FFF_FFFF);
        assert_eq!(
            l.destination_matches(dest, true),
            want,
            "DFR {dfr:#x} LDR {ldr:#x} dest {dest:#x}"
        );
    }
}

#[test]
fn physical_destinations_xapic() {
    let mut l = lapic(5);
    // (dest, matches): only the low 8 bits count in xAPIC mode.
    for (dest, want) in [
        (5, true),
        (6, false),
        (0xFF, true),
        (0x105, true),
        (0xFFFF_FFFF, true),
    ] {
        assert_eq!(l.destination_matches(dest, false), want, "{dest:#x}");
    }
    l.write_register(ID, 0x0900_0000, 0);
    assert!(l.destination_matches(9, false), "software-written xAPIC ID");
    assert!(!l.destination_matches(5, false));
}

#[test]
fn receive_messages() {
    let mut l = lapic(0);
    let msg = |mode, vector, level| ApicMessage {
        dest: 0,
        dest_logical: false,
        vector,
        delivery_mode: mode,
        level_triggered: level,
    };
    assert_eq!(
        l.receive(&msg(DeliveryMode::Fixed, 0x61, true)),
        Received::Accepted(0x61)
    );
    assert_eq!(l.vector_state(0x61), (true, false, true));
    assert_eq!(
        l.receive(&msg(DeliveryMode::ExtInt, 0, false)),
        Received::ExtInt
    );
    assert_eq!(l.receive(&msg(DeliveryMode::Nmi, 0, false)), Received::Nmi);
    assert_eq!(
        l.receive(&msg(DeliveryMode::Fixed, 0x0E, false)),
        Received::Dropped
    );
}

#[test]
fn esr_on_illegal_vectors() {
    let mut l = lapic(0);
    // Send illegal vector (ICR), visible only after an ESR write (11.5.3).
    assert_eq!(l.write_register(ICR_LOW, 0x0000_4005, 0), ApicEffect::None);
    assert_eq!(l.read_register(ESR, 0), 0);
    l.write_register(ESR, 0, 0);
    assert_eq!(l.read_register(ESR, 0), ESR_SEND_ILLEGAL_VECTOR);
    l.write_register(ESR, 0, 0);
    assert_eq!(l.read_register(ESR, 0), 0, "the next write clears it");
    // Receive illegal vector: a message, and a local (LVT timer) interrupt.
    assert!(!l.accept(0x07, false));
    assert_eq!(l.vector_state(0x07), (false, false, false));
    l.write_register(LVT_TIMER, 0x03, 0);
    l.write_register(TIMER_INITIAL, 10, 0);
    l.write_register(TIMER_DIVIDE, 0xB, 0);
    assert!(!l.timer_expired(10));
    l.write_register(ESR, 0, 0);
    assert_eq!(l.read_register(ESR, 0), ESR_RECEIVE_ILLEGAL_VECTOR);
    // Illegal register address.
    l.read_register(0x3F0, 0);
    l.write_register(ESR, 0, 0);
    assert_eq!(l.read_register(ESR, 0), ESR_ILLEGAL_REGISTER);
}

#[test]
fn error_lvt_interrupt() {
    let mut l = lapic(0);
    l.write_register(LVT_ERROR, 0xFE, 0);
    l.write_register(ICR_LOW, 0x0000_4001, 0);
    assert_eq!(l.pending_vector(), Some(0xFE), "error interrupt raised");
    let mut m = lapic(0);
    m.write_register(LVT_ERROR, 0x1_00FE, 0);
    m.write_register(ICR_LOW, 0x0000_4001, 0);
    assert_eq!(m.pending_vector(), None, "masked error LVT");
}

#[test]
fn lint_pins() {
    let mut l = lapic(0);
    assert_eq!(l.lint0_mode(), None, "masked at reset");
    assert_eq!(l.lint_asserted(LintPin::Lint0), Received::Dropped);
    l.write_register(LVT_LINT0, 0x700, 0);
    l.write_register(LVT_LINT1, 0x400, 0);
    assert_eq!(l.lint0_mode(), Some(DeliveryMode::ExtInt));
    assert_eq!(l.lint1_mode(), Some(DeliveryMode::Nmi));
    assert_eq!(l.lint_asserted(LintPin::Lint0), Received::ExtInt);
    assert_eq!(l.lint_asserted(LintPin::Lint1), Received::Nmi);
    // Level-triggered fixed LINT0: remote IRR until the EOI.
    l.write_register(LVT_LINT0, 0x8000 | 0x66, 0);
    assert_eq!(l.lint_asserted(LintPin::Lint0), Received::Accepted(0x66));
    assert!(l.lint0().remote_irr());
    assert_eq!(l.read_register(LVT_LINT0, 0), 0xC066);
    l.write_register(LVT_LINT0, 0x8066, 0);
    assert!(l.lint0().remote_irr(), "remote IRR is read-only");
    assert_eq!(l.lint_asserted(LintPin::Lint0), Received::Dropped);
    assert_eq!(l.acknowledge(), Some(0x66));
    assert_eq!(
        l.eoi(),
        Some(EoiEffect {
            vector: 0x66,
            level_triggered: true
        })
    );
    assert!(!l.lint0().remote_irr());
    assert_eq!(l.lint_asserted(LintPin::Lint0), Received::Accepted(0x66));
    // Edge-triggered fixed LINT1.
    l.write_register(LVT_LINT1, 0x67, 0);
    assert_eq!(l.lint_asserted(LintPin::Lint1), Received::Accepted(0x67));
    assert!(!l.lint1().remote_irr());
    // Globally disabled: LINT0 is INTR, LINT1 is NMI.
    l.set_apic_base(0xFEE0_0000).expect("disable");
    assert_eq!(l.lint0_mode(), Some(DeliveryMode::ExtInt));
    assert_eq!(l.lint_asserted(LintPin::Lint1), Received::Nmi);
}

#[test]
fn lvt_writable_bits() {
    // (register, value written, value read back)
    let table: &[(u32, u32, u32)] = &[
        (LVT_TIMER, 0xFFFF_FFFF, 0x0007_00FF),
        (LVT_THERMAL, 0xFFFF_FFFF, 0x0001_07FF),
        (LVT_PERF, 0xFFFF_FFFF, 0x0001_07FF),
        (LVT_LINT0, 0xFFFF_FFFF, 0x0001_A7FF),
        (LVT_LINT1, 0xFFFF_FFFF, 0x0001_A7FF),
        (LVT_ERROR, 0xFFFF_FFFF, 0x0001_00FF),
        (LVT_TIMER, 0x0002_0031, 0x0002_0031),
    ];
    for &(off, w, r) in table {
        let mut l = lapic(0);
        l.write_register(off, w, 0);
        assert_eq!(l.read_register(off, 0), r, "{off:#x}");
    }
    assert_eq!(LvtIndex::from_offset(0x338), None);
}

#[test]
fn mmio_widths_and_mode() {
    let mut l = lapic(4);
    let mut b = [0u8; 4];
    l.mmio_read(u64::from(ID), &mut b, 0);
    assert_eq!(u32::from_le_bytes(b), 0x0400_0000);
    let mut one = [0u8; 1];
    l.mmio_read(u64::from(ID) + 3, &mut one, 0);
    assert_eq!(one[0], 4);
    l.mmio_read(u64::from(ID) + 4, &mut b, 0);
    assert_eq!(b, [0; 4], "slot padding reads 0");
    l.mmio_write(u64::from(TPR), &[0x20, 0, 0, 0], 0);
    assert_eq!(l.tpr(), 0x20);
    l.mmio_write(u64::from(TPR), &[0x30], 0);
    assert_eq!(l.tpr(), 0x20, "byte stores are ignored");
    l.mmio_write(u64::from(TPR), &[0x40, 0, 0, 0, 9, 9, 9, 9], 0);
    assert_eq!(l.tpr(), 0x40, "8-byte store writes the register");
    l.set_apic_base(0xFEE0_0C00).expect("x2APIC");
    assert!(!l.mmio_active());
    l.mmio_read(u64::from(ID), &mut b, 0);
    assert_eq!(b, [0; 4], "MMIO page is off in x2APIC mode");
}
