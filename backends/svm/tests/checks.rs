//! VMRUN consistency checks (APM vol. 2, 15.5.1): one valid VMCB per mode
//! passes; changing exactly one field fails with that check's message.

use hyperplug_backend_svm::checks::{msg, vmrun_checks, vmrun_checks_model, Model, VmrunError};
use hyperplug_backend_svm::exitinfo::{encode_event, Event, EventType};
use hyperplug_backend_svm::intercept::MISC2_VMRUN;
use hyperplug_backend_svm::vmcb::{field, SegReg, Vmcb, VmcbSeg};

const MAXPHY: u8 = 48;

fn common(v: &mut Vmcb) {
    v.set(field::INTERCEPT_MISC2, u64::from(MISC2_VMRUN));
    v.set(field::GUEST_ASID, 1);
    v.set(field::DR6, 0xFFFF_0FF0);
    v.set(field::DR7, 0x400);
    v.set(field::IOPM_BASE_PA, 0x10_0000);
    v.set(field::MSRPM_BASE_PA, 0x10_4000);
}

fn long_mode() -> Vmcb {
    let mut v = Vmcb::new();
    common(&mut v);
    v.set(field::EFER, 0x1D00); // SVME | NXE | LMA | LME
    v.set(field::CR0, 0x8001_0033);
    v.set(field::CR4, 0x6A0); // PAE PGE OSFXSR OSXMMEXCPT
    v.set(field::CR3, 0xFFFF_FFFF_F000);
    v.set_seg(
        SegReg::Cs,
        VmcbSeg {
            selector: 8,
            attrib: 0x29B,
            limit: 0xFFFF_FFFF,
            base: 0,
        },
    );
    v
}

fn real_mode() -> Vmcb {
    let mut v = Vmcb::new();
    common(&mut v);
    v.set(field::EFER, 0x1000);
    v.set(field::CR0, 0x6000_0010); // CD NW ET: legal
    v.set_seg(
        SegReg::Cs,
        VmcbSeg {
            selector: 0xF000,
            attrib: 0x9B,
            limit: 0xFFFF,
            base: 0xF_0000,
        },
    );
    v
}

fn err(check: &'static str) -> Result<(), VmrunError> {
    Err(VmrunError { check })
}

#[test]
fn valid_vmcbs_pass() {
    assert_eq!(vmrun_checks(&long_mode(), MAXPHY), Ok(()));
    assert_eq!(vmrun_checks(&real_mode(), MAXPHY), Ok(()));
    let mut pae = real_mode();
    pae.set(field::CR0, 0x8000_0011);
    pae.set(field::CR4, 0x20);
    pae.set(field::CR3, 0xFFFF_FFE0);
    assert_eq!(vmrun_checks(&pae, MAXPHY), Ok(()));
}

type Edit = fn(&mut Vmcb);

#[test]
fn each_check_fails_alone() {
    let cases: &[(&str, Edit, &'static str)] = &[
        ("svme", |v| v.set(field::EFER, 0xD00), msg::EFER_SVME),
        (
            "nw without cd",
            |v| v.set(field::CR0, 0xA001_0033),
            msg::CR0_CD_NW,
        ),
        (
            "cr0 high",
            |v| v.set(field::CR0, 0x1_8001_0033),
            msg::CR0_HIGH,
        ),
        (
            "cr3 above maxphyaddr",
            |v| v.set(field::CR3, 1 << 48),
            msg::CR3_MBZ,
        ),
        ("cr3 bit 63", |v| v.set(field::CR3, 1 << 63), msg::CR3_MBZ),
        (
            "cr4 bit 13 (VMXE)",
            |v| v.set(field::CR4, 0x26A0),
            msg::CR4_MBZ,
        ),
        (
            "cr4 bit 24",
            |v| v.set(field::CR4, 0x100_06A0),
            msg::CR4_MBZ,
        ),
        (
            "dr6 high",
            |v| v.set(field::DR6, 0x1_FFFF_0FF0),
            msg::DR6_HIGH,
        ),
        (
            "dr7 high",
            |v| v.set(field::DR7, 0x1_0000_0400),
            msg::DR7_HIGH,
        ),
        ("efer bit 9", |v| v.set(field::EFER, 0x1F00), msg::EFER_MBZ),
        (
            "efer bit 63",
            |v| v.set(field::EFER, 0x8000_0000_0000_1D00),
            msg::EFER_MBZ,
        ),
        (
            "long no pae",
            |v| v.set(field::CR4, 0x680),
            msg::LONG_NO_PAE,
        ),
        (
            "long no pe",
            |v| v.set(field::CR0, 0x8001_0032),
            msg::LONG_NO_PE,
        ),
        (
            "cs.l and cs.d",
            |v| {
                v.set_seg(
                    SegReg::Cs,
                    VmcbSeg {
                        selector: 8,
                        attrib: 0x69B,
                        limit: 0xFFFF_FFFF,
                        base: 0,
                    },
                )
            },
            msg::LONG_CS_L_D,
        ),
        (
            "no vmrun intercept",
            |v| v.set(field::INTERCEPT_MISC2, 0x2),
            msg::NO_VMRUN_INTERCEPT,
        ),
        (
            "msrpm too high",
            |v| v.set(field::MSRPM_BASE_PA, (1 << 48) - 0x1000),
            msg::MSRPM_RANGE,
        ),
        (
            "iopm too high",
            |v| v.set(field::IOPM_BASE_PA, (1 << 48) - 0x2000),
            msg::IOPM_RANGE,
        ),
        (
            "iopm overflow",
            |v| v.set(field::IOPM_BASE_PA, u64::MAX),
            msg::IOPM_RANGE,
        ),
        (
            "eventinj type 1",
            |v| v.set(field::EVENTINJ, 0x8000_0120),
            "EVENTINJ.TYPE is a reserved value",
        ),
        (
            "eventinj exception 2",
            |v| v.set(field::EVENTINJ, 0x8000_0302),
            "EVENTINJ injects vector 2 (NMI) as an exception",
        ),
        ("asid zero", |v| v.set(field::GUEST_ASID, 0), msg::ASID_ZERO),
        (
            "n_cr3 above maxphyaddr",
            |v| {
                v.set(field::NP_ENABLE, 1);
                v.set(field::N_CR3, 1 << 50);
            },
            msg::N_CR3_MBZ,
        ),
    ];
    for (name, edit, want) in cases {
        let mut v = long_mode();
        edit(&mut v);
        assert_eq!(vmrun_checks(&v, MAXPHY), err(want), "{name}");
    }
}

#[test]
fn boundaries_pass() {
    let cases: &[(&str, Edit)] = &[
        ("msrpm ends at the last byte", |v| {
            v.set(field::MSRPM_BASE_PA, (1 << 48) - 0x2000)
        }),
        ("iopm ends at the last byte", |v| {
            v.set(field::IOPM_BASE_PA, (1 << 48) - 0x3000)
        }),
        ("iopm low bits ignored", |v| {
            v.set(field::IOPM_BASE_PA, (1 << 48) - 0x3000 + 0xFFF)
        }),
        ("cr3 just below maxphyaddr", |v| {
            v.set(field::CR3, (1 << 48) - 0x1000)
        }),
        ("legal exception injection", |v| {
            v.set(
                field::EVENTINJ,
                encode_event(&Event {
                    vector: 13,
                    kind: EventType::Exception,
                    error_code: Some(0),
                }),
            )
        }),
        ("n_cr3 ignored without NP", |v| v.set(field::N_CR3, 1 << 50)),
        ("cs.d without cs.l", |v| {
            v.set_seg(
                SegReg::Cs,
                VmcbSeg {
                    selector: 8,
                    attrib: 0x49B,
                    limit: 0xFFFF_FFFF,
                    base: 0,
                },
            )
        }),
    ];
    for (name, edit) in cases {
        let mut v = long_mode();
        edit(&mut v);
        assert_eq!(vmrun_checks(&v, MAXPHY), Ok(()), "{name}");
    }
}

#[test]
fn legacy_cr3_is_32_bits_and_model_restricts_cr4() {
    let mut v = real_mode();
    v.set(field::CR3, 1 << 32);
    assert_eq!(vmrun_checks(&v, MAXPHY), err(msg::CR3_MBZ));
    let mut v = long_mode();
    v.set(field::CR4, 0x10_06A0); // SMEP
    assert_eq!(vmrun_checks(&v, MAXPHY), Ok(()));
    let model = Model {
        cr4_valid: 0x7FF,
        ..Model::default()
    };
    assert_eq!(vmrun_checks_model(&v, MAXPHY, &model), err(msg::CR4_MBZ));
}
