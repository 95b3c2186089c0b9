//! EXITINFO1 / EVENTINJ encodings (APM vol. 2, 15.10.2, 15.11, 15.20, 15.25.6, 15.33).

use hyperplug_backend_svm::exitcode as c;
use hyperplug_backend_svm::exitinfo::*;

#[test]
fn ioio_bit_positions() {
    // (port, size, addr, seg, rep, str, in, expected EXITINFO1)
    type Case = (u16, u8, u8, u8, bool, bool, bool, u64);
    let cases: &[Case] = &[
        (
            0x3F8,
            1,
            8,
            0,
            false,
            false,
            false,
            0x03F8_0000 | 1 << 4 | 1 << 9,
        ),
        (
            0x3F8,
            1,
            8,
            0,
            false,
            false,
            true,
            0x03F8_0000 | 1 << 4 | 1 << 9 | 1,
        ),
        (
            0x60,
            2,
            4,
            0,
            false,
            false,
            true,
            0x0060_0000 | 1 << 5 | 1 << 8 | 1,
        ),
        (
            0xCFC,
            4,
            2,
            0,
            false,
            false,
            false,
            0x0CFC_0000 | 1 << 6 | 1 << 7,
        ),
        (
            0x1F0,
            2,
            4,
            3,
            true,
            true,
            false,
            0x01F0_0000 | 3 << 10 | 1 << 8 | 1 << 5 | 1 << 3 | 1 << 2,
        ),
        (
            0xFFFF,
            4,
            8,
            5,
            true,
            true,
            true,
            0xFFFF_0000 | 5 << 10 | 1 << 9 | 1 << 6 | 0b1101,
        ),
    ];
    for &(port, size, a, seg, rep, s, input, want) in cases {
        let e = ioio_exitinfo1(port, size, a, seg, rep, s, input);
        assert_eq!(e, want, "port {port:#x}");
        let d = decode_ioio(e);
        assert_eq!(
            d,
            IoioInfo {
                port,
                size,
                addr_size: a,
                seg,
                rep,
                string: s,
                input
            }
        );
    }
}

#[test]
fn crdr_and_msr() {
    assert_eq!(crdr_exitinfo1(true, 3), 1 << 63 | 3);
    assert_eq!(crdr_exitinfo1(false, 0), 0);
    assert_eq!(crdr_exitinfo1(true, 0x1F), 1 << 63 | 0xF);
    assert_eq!(msr_exitinfo1(false), 0);
    assert_eq!(msr_exitinfo1(true), 1);
    assert_eq!(exception_exitinfo(Some(0x11), Some(0xDEAD)), (0x11, 0xDEAD));
    assert_eq!(exception_exitinfo(None, None), (0, 0));
}

#[test]
fn event_encode_decode() {
    let cases = [
        (
            Event {
                vector: 0x20,
                kind: EventType::Intr,
                error_code: None,
            },
            0x8000_0020u64,
        ),
        (
            Event {
                vector: 2,
                kind: EventType::Nmi,
                error_code: None,
            },
            0x8000_0202,
        ),
        (
            Event {
                vector: 14,
                kind: EventType::Exception,
                error_code: Some(6),
            },
            0x6_8000_0B0E,
        ),
        (
            Event {
                vector: 0x80,
                kind: EventType::SoftInt,
                error_code: None,
            },
            0x8000_0480,
        ),
        (
            Event {
                vector: 3,
                kind: EventType::Exception,
                error_code: None,
            },
            0x8000_0303,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(encode_event(&e), want, "{e:?}");
        assert_eq!(decode_eventinj(want), Ok(Some(e)));
    }
    assert_eq!(decode_eventinj(0), Ok(None));
    assert_eq!(decode_eventinj(0x0B0E), Ok(None), "V clear");
    // NMI: VECTOR is ignored.
    assert_eq!(
        decode_eventinj(0x8000_0205).map(|e| e.map(|e| e.vector)),
        Ok(Some(2))
    );
}

#[test]
fn eventinj_illegal() {
    let bad = [
        0x8000_0100u64, // TYPE 1 reserved
        0x8000_0500,    // TYPE 5
        0x8000_0600,    // TYPE 6
        0x8000_0700,    // TYPE 7
        0x8000_0302,    // exception with vector 2 (NMI)
        0x8000_0320,    // exception vector 32
        0x8000_03FF,    // exception vector 255
    ];
    for v in bad {
        assert!(decode_eventinj(v).is_err(), "{v:#x}");
    }
    assert!(decode_eventinj(0x8000_031F).is_ok());
}

#[test]
fn npf_and_describe() {
    assert_eq!(describe_npf(0b111 | 1 << 32), "P RW US final");
    assert_eq!(describe_npf(1 << 4 | 1 << 33), "ID table");
    assert_eq!(describe_npf(1 << 3), "RSVD");
    let io = ioio_exitinfo1(0x3F8, 1, 8, 0, false, false, false);
    assert_eq!(describe(c::VMEXIT_IOIO, io, 0), "port=0x3f8 out size=1");
    assert_eq!(describe(c::VMEXIT_MSR, 1, 0), "wrmsr");
    assert_eq!(describe(c::VMEXIT_MSR, 0, 0), "rdmsr");
    assert_eq!(
        describe(c::VMEXIT_CR3_WRITE, crdr_exitinfo1(true, 5), 0),
        "gpr=5"
    );
    assert_eq!(
        describe(c::VMEXIT_EXCP14, 2, 0x1000),
        "error_code=0x2 cr2=0x1000"
    );
    assert_eq!(
        describe(c::VMEXIT_NPF, 0x1_0000_0006, 0x5000),
        "gpa=0x5000 RW US final"
    );
    assert_eq!(describe(c::VMEXIT_HLT, 0, 0), "info1=0x0 info2=0x0");
}
