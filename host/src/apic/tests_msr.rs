//! x2APIC MSR map, the ICR and SELF IPI MSRs, IA32_APIC_BASE transitions.

use super::msg::{ApicEffect, Ipi, IpiKind, Shorthand};
use super::regs::*;
use super::{ApicError, ApicMode, Lapic, LapicConfig};

const XAPIC: u64 = 0xFEE0_0000 | BASE_EN;
const X2APIC: u64 = 0xFEE0_0000 | BASE_EN | BASE_EXTD;
const DISABLED: u64 = 0xFEE0_0000;

fn x2(id: u32) -> Lapic {
    let mut l = Lapic::new(LapicConfig::new(id, false)).expect("config");
    l.write_msr(MSR_APIC_BASE, X2APIC, 0).expect("enter x2APIC");
    l.write_msr(x2apic_msr(SVR), 0x1FF, 0).expect("enable");
    l
}

#[test]
fn x2apic_msr_reads() {
    let mut l = x2(0x23);
    // (MSR, expected RDMSR result)
    let table: &[(u32, Result<u64, ApicError>)] = &[
        (0x802, Ok(0x23)),
        (0x803, Ok(0x0005_0014)),
        (0x808, Ok(0)),
        (0x80A, Ok(0)),
        (0x80D, Ok(0x0002_0008)),
        (0x80F, Ok(0x1FF)),
        (0x810, Ok(0)),
        (0x817, Ok(0)),
        (0x818, Ok(0)),
        (0x827, Ok(0)),
        (0x828, Ok(0)),
        (0x830, Ok(0)),
        (0x832, Ok(0x1_0000)),
        (0x837, Ok(0x1_0000)),
        (0x838, Ok(0)),
        (0x839, Ok(0)),
        (0x83E, Ok(0)),
        (0x809, Err(ApicError::NoSuchRegister(0x809))),
        (0x80C, Err(ApicError::NoSuchRegister(0x80C))),
        (0x80E, Err(ApicError::NoSuchRegister(0x80E))),
        (0x82F, Err(ApicError::NoSuchRegister(0x82F))),
        (0x831, Err(ApicError::NoSuchRegister(0x831))),
        (0x840, Err(ApicError::NoSuchRegister(0x840))),
        (0x8FF, Err(ApicError::NoSuchRegister(0x8FF))),
        (0x80B, Err(ApicError::WriteOnly(0x80B))),
        (0x83F, Err(ApicError::WriteOnly(0x83F))),
        (0x1B, Ok(X2APIC)),
        (0x6E0, Ok(0)),
        (0x10, Err(ApicError::NotApicMsr(0x10))),
    ];
    for (msr, want) in table {
        assert_eq!(&l.read_msr(*msr, 0), want, "RDMSR {msr:#x}");
    }
    assert_eq!(x2apic_msr(ICR_LOW), 0x830);
    assert_eq!(x2apic_msr(SELF_IPI), 0x83F);
}

#[test]
fn x2apic_msr_writes() {
    // (MSR, value, outcome: Ok(read back) / Err)
    let table: &[(u32, u64, Result<u64, ApicError>)] = &[
        (0x808, 0x45, Ok(0x45)),
        (
            0x808,
            0x145,
            Err(ApicError::ReservedBits {
                msr: 0x808,
                value: 0x145,
            }),
        ),
        (
            0x808,
            1 << 32,
            Err(ApicError::ReservedBits {
                msr: 0x808,
                value: 1 << 32,
            }),
        ),
        (0x802, 7, Err(ApicError::ReadOnly(0x802))),
        (0x803, 0, Err(ApicError::ReadOnly(0x803))),
        (0x80A, 0, Err(ApicError::ReadOnly(0x80A))),
        (0x80D, 1, Err(ApicError::ReadOnly(0x80D))),
        (0x810, 0, Err(ApicError::ReadOnly(0x810))),
        (0x839, 0, Err(ApicError::ReadOnly(0x839))),
        (
            0x80B,
            1,
            Err(ApicError::ReservedBits {
                msr: 0x80B,
                value: 1,
            }),
        ),
        (
            0x828,
            1,
            Err(ApicError::ReservedBits {
                msr: 0x828,
                value: 1,
            }),
        ),
        (0x828, 0, Ok(0)),
        (0x80F, 0x1FF, Ok(0x1FF)),
        (
            0x80F,
            0x11FF,
            Err(ApicError::ReservedBits {
                msr: 0x80F,
                value: 0x11FF,
            }),
        ),
        (0x832, 0x2_00EC, Ok(0x2_00EC)),
        (0x835, 0xA7FF, Ok(0xA7FF)),
        (
            0x835,
            0x4_0000,
            Err(ApicError::ReservedBits {
                msr: 0x835,
                value: 0x4_0000,
            }),
        ),
        (0x838, 0xFFFF_FFFF, Ok(0xFFFF_FFFF)),
        (0x83E, 0xB, Ok(0xB)),
        (
            0x83E,
            0x4,
            Err(ApicError::ReservedBits {
                msr: 0x83E,
                value: 4,
            }),
        ),
        (0x831, 0, Err(ApicError::NoSuchRegister(0x831))),
        (0x80E, 0, Err(ApicError::NoSuchRegister(0x80E))),
    ];
    for (msr, value, want) in table {
        let mut l = x2(1);
        let got = l
            .write_msr(*msr, *value, 0)
            .and_then(|_| l.read_msr(*msr, 0));
        assert_eq!(&got, want, "WRMSR {msr:#x} {value:#x}");
    }
}

#[test]
fn x2apic_msrs_need_x2apic_mode() {
    let mut l = Lapic::new(LapicConfig::new(1, false)).expect("config");
    assert_eq!(l.read_msr(0x802, 0), Err(ApicError::NotX2Apic(0x802)));
    assert_eq!(l.write_msr(0x808, 0, 0), Err(ApicError::NotX2Apic(0x808)));
    assert!(Lapic::is_apic_msr(0x1B) && Lapic::is_apic_msr(0x6E0) && Lapic::is_apic_msr(0x8FF));
    assert!(!Lapic::is_apic_msr(0x900) && !Lapic::is_apic_msr(0x7FF));
}

#[test]
fn x2apic_icr_msr() {
    let mut l = x2(3);
    let eff = l.write_msr(0x830, 0x0000_0105_0000_4030, 0).expect("ICR");
    assert_eq!(
        eff,
        ApicEffect::Ipi(Ipi {
            source: 3,
            kind: IpiKind::Fixed(0x30),
            dest: 0x105,
            dest_logical: false,
            shorthand: Shorthand::None,
            level_assert: true,
            level_triggered: false,
        })
    );
    assert_eq!(l.read_msr(0x830, 0), Ok(0x0000_0105_0000_4030));
    let eff = l
        .write_msr(0x830, 0xFFFF_FFFF_0000_0C30, 0)
        .expect("logical broadcast");
    assert!(matches!(eff, ApicEffect::Ipi(i) if i.dest == 0xFFFF_FFFF && i.dest_logical));
    for bad in [1u64 << 12, 1 << 13, 1 << 16, 1 << 17, 1 << 20, 1 << 31] {
        let v = 0x4030 | bad;
        assert_eq!(
            l.write_msr(0x830, v, 0),
            Err(ApicError::ReservedBits {
                msr: 0x830,
                value: v
            }),
            "bit {bad:#x}"
        );
    }
}

#[test]
fn x2apic_self_ipi_and_eoi() {
    let mut l = x2(0);
    assert_eq!(l.write_msr(0x83F, 0x45, 0), Ok(ApicEffect::None));
    assert_eq!(l.vector_state(0x45), (true, false, false));
    assert_eq!(
        l.write_msr(0x83F, 0x145, 0),
        Err(ApicError::ReservedBits {
            msr: 0x83F,
            value: 0x145
        })
    );
    assert_eq!(l.acknowledge(), Some(0x45));
    assert!(matches!(l.write_msr(0x80B, 0, 0), Ok(ApicEffect::Eoi(e)) if e.vector == 0x45));
    l.write_msr(0x83F, 0x05, 0)
        .expect("illegal vector is not a #GP");
    assert_eq!(l.vector_state(0x05), (false, false, false));
    l.write_msr(0x828, 0, 0).expect("ESR");
    assert_eq!(
        l.read_msr(0x828, 0),
        Ok(u64::from(ESR_RECEIVE_ILLEGAL_VECTOR))
    );
}

#[test]
fn x2apic_destinations() {
    let l = x2(0x23);
    // (dest, logical, matches); LDR = cluster 2, bit 3.
    let table: &[(u32, bool, bool)] = &[
        (0x23, false, true),
        (0x24, false, false),
        (0xFF, false, false),
        (0xFFFF_FFFF, false, true),
        (0xFFFF_FFFF, true, true),
        (0x0002_0008, true, true),
        (0x0002_000F, true, true),
        (0x0002_0007, true, false),
        (0x0001_0008, true, false),
    ];
    for &(dest, logical, want) in table {
        assert_eq!(
            l.destination_matches(dest, logical),
            want,
            "{dest:#x} {logical}"
        );
    }
}

#[test]
fn apic_base_transitions() {
    // (starting state, value written, legal?, resulting mode)
    use ApicMode::*;
    let table: &[(u64, u64, bool, ApicMode)] = &[
        (XAPIC, XAPIC, true, XApic),
        (XAPIC, X2APIC, true, X2Apic),
        (XAPIC, DISABLED, true, Disabled),
        (XAPIC, DISABLED | BASE_EXTD, false, XApic),
        (X2APIC, X2APIC, true, X2Apic),
        (X2APIC, XAPIC, false, X2Apic),
        (X2APIC, DISABLED, true, Disabled),
        (X2APIC, DISABLED | BASE_EXTD, false, X2Apic),
        (DISABLED, DISABLED, true, Disabled),
        (DISABLED, XAPIC, true, XApic),
        (DISABLED, X2APIC, false, Disabled),
        (DISABLED, DISABLED | BASE_EXTD, false, Disabled),
        // Reserved bits: 7:0, 9, MAXPHYADDR (46) and up.
        (XAPIC, XAPIC | 1, false, XApic),
        (XAPIC, XAPIC | 1 << 9, false, XApic),
        (XAPIC, XAPIC | 1 << 46, false, XApic),
        (XAPIC, XAPIC | 1 << 45, true, XApic),
    ];
    for &(start, value, legal, mode) in table {
        let mut l = Lapic::new(LapicConfig::new(0, false)).expect("config");
        // Reach the start state through legal steps.
        let path: &[u64] = match start {
            X2APIC => &[X2APIC],
            DISABLED => &[DISABLED],
            _ => &[],
        };
        for &v in path {
            l.set_apic_base(v).expect("setup");
        }
        let r = l.write_msr(MSR_APIC_BASE, value, 0);
        assert_eq!(r.is_ok(), legal, "{start:#x} -> {value:#x}: {r:?}");
        assert_eq!(l.mode(), mode, "{start:#x} -> {value:#x}");
        if !legal {
            assert_eq!(l.apic_base(), start, "a #GP changes nothing");
        }
    }
}

#[test]
fn apic_base_bsp_base_and_state_loss() {
    let mut l = Lapic::new(LapicConfig::new(0, true)).expect("config");
    l.write_msr(MSR_APIC_BASE, 0xFED0_0800, 0)
        .expect("move, drop BSP bit");
    assert_eq!(l.apic_base(), 0xFED0_0900, "BSP flag is read-only");
    assert_eq!(l.base_address(), 0xFED0_0000);
    l.write_register(SVR, 0x1FF, 0);
    l.write_register(TPR, 0x40, 0);
    l.set_apic_base(0xFED0_0C00).expect("x2APIC keeps state");
    assert_eq!(l.read_msr(0x808, 0), Ok(0x40));
    l.set_apic_base(0xFED0_0000).expect("disable");
    assert!(l.pending_vector().is_none() && !l.accept(0x40, false));
    l.set_apic_base(0xFED0_0800).expect("back to xAPIC");
    assert_eq!(l.tpr(), 0, "state lost across disable");
    assert!(!l.software_enabled());
    assert_eq!(l.read_register(ID, 0), 0);
}

#[test]
fn init_and_reset_keep_or_restore_mode() {
    let mut l = x2(9);
    l.write_msr(0x808, 0x20, 0).expect("TPR");
    l.init();
    assert_eq!(l.mode(), ApicMode::X2Apic, "INIT keeps x2APIC mode");
    assert_eq!(l.read_msr(0x808, 0), Ok(0));
    assert_eq!(l.read_msr(0x802, 0), Ok(9));
    l.reset();
    assert_eq!(l.mode(), ApicMode::XApic, "RESET returns to xAPIC");
    assert_eq!(l.apic_base(), XAPIC);
}
