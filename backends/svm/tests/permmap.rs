//! IOPM / MSRPM bit positions (APM vol. 2, 15.10.1, 15.11).

use hyperplug_backend_svm::permmap::*;

#[test]
fn iopm_bit_positions() {
    // (port, byte, bit)
    for (port, byte, bit) in [
        (0u16, 0usize, 0u8),
        (7, 0, 7),
        (8, 1, 0),
        (0x3F8, 0x7F, 0),
        (0xCFC, 0x19F, 4),
        (0xFFFF, 0x1FFF, 7),
    ] {
        let mut m = Iopm::none_intercepted();
        m.set(port, true);
        assert_eq!(m.bytes()[byte], 1 << bit, "port {port:#x}");
        assert_eq!(m.bytes().iter().filter(|&&b| b != 0).count(), 1);
        assert_eq!(m.intercepted_ports(), vec![port]);
        assert!(m.intercepts(port, 1));
        m.set(port, false);
        assert!(m.bytes().iter().all(|&b| b == 0));
    }
    assert_eq!(Iopm::all_intercepted().bytes().len(), IOPM_SIZE);
    assert_eq!(Iopm::all_intercepted().intercepted_ports().len(), 65536);
    assert!(Iopm::none_intercepted().intercepted_ports().is_empty());
}

#[test]
fn iopm_multi_byte_access_checks_every_bit() {
    let mut m = Iopm::none_intercepted();
    m.set(0x71, true);
    // (port, size, intercepted)
    for (port, size, want) in [
        (0x70, 1, false),
        (0x70, 2, true),
        (0x6E, 4, true),
        (0x6D, 4, false),
        (0x71, 1, true),
        (0x72, 4, false),
    ] {
        assert_eq!(m.intercepts(port, size), want, "{port:#x}/{size}");
    }
}

#[test]
fn iopm_wrap_uses_extra_bits() {
    let mut m = Iopm::none_intercepted();
    assert!(!m.intercepts(0xFFFF, 2));
    assert!(m.set_bit(0x1_0000, true));
    assert!(
        m.intercepts(0xFFFF, 2),
        "bit 0x10000 covers the second byte"
    );
    assert!(!m.intercepts(0xFFFF, 1));
    assert!(!m.intercepts(0, 1), "no wrap to port 0");
    assert_eq!(m.bytes()[0x2000], 1);
    assert!(m.intercepted_ports().is_empty());
    assert!(!m.set_bit(IOPM_SIZE as u32 * 8, true));
}

#[test]
fn msrpm_bit_positions() {
    // (msr, byte, read bit); the write bit is read bit + 1.
    let cases = [
        (0x0000_0000u32, 0x000usize, 0u8),
        (0x0000_0001, 0x000, 2),
        (0x0000_0003, 0x000, 6),
        (0x0000_0010, 0x004, 0),
        (0x0000_0174, 0x05D, 0),
        (0x0000_1FFF, 0x7FF, 6),
        (0xC000_0080, 0x820, 0),
        (0xC000_0082, 0x820, 4),
        (0xC000_0102, 0x840, 4),
        (0xC001_0000, 0x1000, 0),
        (0xC001_0117, 0x1045, 6),
        (0xC001_1FFF, 0x17FF, 6),
    ];
    for (msr, byte, bit) in cases {
        let mut m = Msrpm::none_intercepted();
        assert!(m.set_read(msr, true));
        assert_eq!(m.bytes()[byte], 1 << bit, "read {msr:#x}");
        assert!(m.intercepts_read(msr) && !m.intercepts_write(msr));
        assert!(m.set_write(msr, true));
        assert!(m.set_read(msr, false));
        assert_eq!(m.bytes()[byte], 1 << (bit + 1), "write {msr:#x}");
        assert!(!m.intercepts_read(msr) && m.intercepts_write(msr));
        assert_eq!(m.read_list(), Vec::<u32>::new());
        assert_eq!(m.write_list(), vec![msr]);
    }
}

#[test]
fn msrpm_out_of_range_always_intercepts() {
    let mut m = Msrpm::none_intercepted();
    for msr in [
        0x2000u32,
        0xBFFF_FFFF,
        0xC000_2000,
        0xC001_2000,
        0xC002_0000,
        u32::MAX,
    ] {
        assert!(!m.set_read(msr, false), "{msr:#x}");
        assert!(!m.set_write(msr, false));
        assert!(m.intercepts_read(msr) && m.intercepts_write(msr));
    }
    let all = Msrpm::all_intercepted();
    assert_eq!(all.bytes().len(), MSRPM_SIZE);
    assert_eq!(all.read_list().len(), 3 * 0x2000);
    assert_eq!(all.write_list().len(), 3 * 0x2000);
    assert_eq!(all.read_list()[0x2000], 0xC000_0000);
}
