//! The CMOS RAM contents a PC BIOS leaves behind, computed from the
//! machine's RAM size and CPU count.
//!
//! Layout: IBM PC AT Technical Reference, "CMOS RAM Address Map"
//! (0x10-0x2f, checksum over 0x10-0x2d stored high byte first at 0x2e);
//! 0x30/0x31 and 0x34/0x35 as AMI/Award BIOSes and QEMU/SeaBIOS use them;
//! 0x5b-0x5d (memory above 4 GiB) and 0x5f (CPUs - 1) as QEMU/SeaBIOS use them.

use crate::regs::*;
use hyperplug_plugin_api::device::MachineInfo;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const UNIT_64K: u64 = 64 * KIB;

/// Conventional memory the BIOS reports at 0x15 (640 KiB, less on tiny machines).
pub const BASE_MEMORY_KIB: u64 = 640;

/// Equipment byte 0x14: bit 1 = math coprocessor present (every x86-64 CPU
/// has x87), bits 5:4 = 00 primary display EGA/VGA, bit 0 = 0 no floppy drives.
pub const EQUIPMENT: u8 = 0x02;

/// Writes the memory-size, CPU-count and equipment fields and the checksum
/// into `ram` (the other bytes are left as they are).
pub fn fill(ram: &mut [u8; 128], info: &MachineInfo) {
    let low = info.low_ram_bytes.min(info.ram_bytes);
    let high = info.ram_bytes.saturating_sub(low);
    ram[usize::from(CMOS_EQUIPMENT)] = EQUIPMENT;
    put(ram, CMOS_BASE_MEM, (low / KIB).min(BASE_MEMORY_KIB), 2);
    let ext_kib = (low.saturating_sub(MIB) / KIB).min(0xffff);
    put(ram, CMOS_EXT_MEM, ext_kib, 2);
    put(ram, CMOS_EXT_MEM_POST, ext_kib, 2);
    let above_16m = (low.saturating_sub(16 * MIB) / UNIT_64K).min(0xffff);
    put(ram, CMOS_MEM_ABOVE_16M, above_16m, 2);
    put(ram, CMOS_MEM_ABOVE_4G, (high / UNIT_64K).min(0xff_ffff), 3);
    put(
        ram,
        CMOS_CPUS_MINUS_1,
        u64::from(info.cpus.saturating_sub(1)).min(0xff),
        1,
    );
    let sum = checksum(ram);
    put_be16(ram, CMOS_CHECKSUM, sum);
}

/// The PC AT checksum: the 16-bit sum of bytes 0x10-0x2d.
pub fn checksum(ram: &[u8; 128]) -> u16 {
    ram[0x10..=0x2d]
        .iter()
        .fold(0u16, |s, b| s.wrapping_add(u16::from(*b)))
}

fn put(ram: &mut [u8; 128], at: u8, value: u64, bytes: usize) {
    for (i, b) in value.to_le_bytes().iter().take(bytes).enumerate() {
        ram[usize::from(at) + i] = *b;
    }
}

fn put_be16(ram: &mut [u8; 128], at: u8, value: u16) {
    let [hi, lo] = value.to_be_bytes();
    ram[usize::from(at)] = hi;
    ram[usize::from(at) + 1] = lo;
}
