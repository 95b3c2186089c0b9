//! The parts of PC BIOS state that direct-boot guests rely on: a real-mode
//! IVT whose every vector points at an IRET stub, and the BIOS data area
//! fields for memory size and COM1 (IBM PC/AT Technical Reference, BIOS data
//! area at segment 0x40).

/// Where the IRET stub lives: F000:FF53, where PC BIOSes keep theirs.
pub const IRET_STUB_SEGMENT: u16 = 0xF000;
/// Offset of the IRET stub in its segment.
pub const IRET_STUB_OFFSET: u16 = 0xFF53;
/// Physical address of the IRET stub.
pub const IRET_STUB_ADDR: u64 = ((IRET_STUB_SEGMENT as u64) << 4) + IRET_STUB_OFFSET as u64;
/// The IRET opcode (SDM vol. 2A, IRET: CF).
pub const IRET_OPCODE: u8 = 0xCF;
/// BDA: I/O base of COM1 (word at 0x400).
pub const BDA_COM1: u64 = 0x400;
/// BDA: equipment list word (0x410); bits 11:9 = number of serial ports.
pub const BDA_EQUIPMENT: u64 = 0x410;
/// BDA: base memory size in KiB (word at 0x413).
pub const BDA_BASE_MEMORY: u64 = 0x413;
/// BDA: EBDA segment (word at 0x40E).
pub const BDA_EBDA_SEGMENT: u64 = 0x40E;
/// The EBDA: the top KiB of conventional memory (0x9FC00), as the multiboot
/// and E820 maps report it reserved.
pub const EBDA_ADDR: u64 = 0x9_FC00;

/// The IVT: 256 far pointers (offset, segment) to the IRET stub (SDM vol. 3,
/// 21.1.4 "Interrupt and Exception Handling" in real-address mode).
pub fn ivt() -> Vec<u8> {
    let mut v = Vec::with_capacity(1024);
    for _ in 0..256 {
        v.extend_from_slice(&IRET_STUB_OFFSET.to_le_bytes());
        v.extend_from_slice(&IRET_STUB_SEGMENT.to_le_bytes());
    }
    v
}

/// BDA words to write: (address, value).
pub fn bda(serial_ports: u16) -> Vec<(u64, u16)> {
    vec![
        (BDA_COM1, if serial_ports > 0 { 0x3f8 } else { 0 }),
        (
            BDA_EQUIPMENT,
            (serial_ports.min(7) << 9) | 0x0002, /* x87 present */
        ),
        (BDA_BASE_MEMORY, (EBDA_ADDR / 1024) as u16),
        (BDA_EBDA_SEGMENT, (EBDA_ADDR >> 4) as u16),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivt_points_every_vector_at_the_stub() {
        let v = ivt();
        assert_eq!(v.len(), 1024);
        for i in 0..256 {
            let off = u16::from_le_bytes([v[i * 4], v[i * 4 + 1]]);
            let seg = u16::from_le_bytes([v[i * 4 + 2], v[i * 4 + 3]]);
            assert_eq!((u64::from(seg) << 4) + u64::from(off), IRET_STUB_ADDR);
        }
    }

    #[test]
    fn bda_fields() {
        let b = bda(1);
        assert!(b.contains(&(BDA_COM1, 0x3f8)));
        assert!(b.contains(&(BDA_BASE_MEMORY, 639)));
        assert!(b.contains(&(BDA_EBDA_SEGMENT, 0x9fc0)));
        assert_eq!(
            b.iter()
                .find(|(a, _)| *a == BDA_EQUIPMENT)
                .map(|x| x.1 >> 9 & 7),
            Some(1)
        );
    }
}
