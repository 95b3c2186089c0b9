//! PC firmware state on direct boot. There is no BIOS: when the host boots
//! an image directly it leaves the machine as a PC BIOS would for the parts
//! guests rely on (issue "Platform devices", point 1b): the IVT and its IRET
//! stub, the BIOS data area, ACPI tables, the 8259A pair programmed to
//! vectors 0x08-0x0F / 0x70-0x77, and PIT channel 0 ticking at 18.2 Hz.
//! The E820 map reaches guests through the multiboot memory map and
//! fw_cfg's `etc/e820`. `--no-firmware-state` skips all of it.

pub mod acpi;
pub mod bios;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::memory::GuestMemory;
use hyperplug_plugin_api::device::AddressSpace;
use vm_memory::{Bytes, GuestAddress};

/// What the firmware state is built for.
#[derive(Debug, Clone, Copy)]
pub struct FirmwareConfig {
    /// CPUs (MADT entries).
    pub cpus: u32,
    /// Serial ports present (BDA equipment word).
    pub serial_ports: u16,
    /// The PM timer is 32-bit.
    pub pm_timer_32bit: bool,
}

fn write(mem: &GuestMemory, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|e| Error::Memory(format!("firmware state at {addr:#x}: {e}")))
}

/// Port writes a BIOS POST leaves behind: ICW1-4 for both 8259As (bases 0x08
/// and 0x70, slave on IR2, 8086 mode; Intel 8259A datasheet), masks that
/// leave IRQ 0 (timer), 1 (keyboard) and 2 (cascade) open, and PIT channel
/// 0 in mode 3 with count 0 (65536: 1193182 / 65536 = 18.2 Hz; 8254
/// datasheet control word 0x36).
pub const POST_PORT_WRITES: &[(u16, u8)] = &[
    (0x20, 0x11),
    (0x21, 0x08),
    (0x21, 0x04),
    (0x21, 0x01),
    (0xa0, 0x11),
    (0xa1, 0x70),
    (0xa1, 0x02),
    (0xa1, 0x01),
    (0x21, 0xf8),
    (0xa1, 0xff),
    (0x43, 0x36),
    (0x40, 0x00),
    (0x40, 0x00),
];

/// Writes the IVT, BDA and ACPI tables into memory and programs the PIC and
/// PIT through the bus (ports nobody claims are simply dropped).
pub fn apply(mem: &GuestMemory, bus: &Bus, cfg: &FirmwareConfig) -> Result<()> {
    write(mem, 0, &bios::ivt())?;
    write(mem, bios::IRET_STUB_ADDR, &[bios::IRET_OPCODE])?;
    for (addr, v) in bios::bda(cfg.serial_ports) {
        write(mem, addr, &v.to_le_bytes())?;
    }
    let tables = acpi::build(&acpi::AcpiConfig {
        cpus: cfg.cpus,
        pm_timer_32bit: cfg.pm_timer_32bit,
    });
    for (addr, bytes) in &tables.blobs {
        write(mem, *addr, bytes)?;
    }
    for (port, v) in POST_PORT_WRITES {
        bus.write(AddressSpace::Pio, u64::from(*port), &[*v])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestRam;

    #[test]
    fn apply_writes_ivt_bda_and_rsdp() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let bus = Bus::new();
        apply(
            ram.memory(),
            &bus,
            &FirmwareConfig {
                cpus: 2,
                serial_ports: 1,
                pm_timer_32bit: false,
            },
        )
        .unwrap();
        let m = ram.memory();
        let vec0: u32 = m.read_obj(GuestAddress(0)).unwrap();
        assert_eq!(
            vec0,
            (u32::from(bios::IRET_STUB_SEGMENT) << 16) | u32::from(bios::IRET_STUB_OFFSET)
        );
        let stub: u8 = m.read_obj(GuestAddress(bios::IRET_STUB_ADDR)).unwrap();
        assert_eq!(stub, 0xCF);
        let base_kib: u16 = m.read_obj(GuestAddress(bios::BDA_BASE_MEMORY)).unwrap();
        assert_eq!(base_kib, 639);
        // The RSDP is found by the spec's scan: 16-byte boundaries in 0xE0000-0xFFFFF.
        let mut found = None;
        for a in (0xE_0000u64..0x10_0000).step_by(16) {
            let mut sig = [0u8; 8];
            m.read_slice(&mut sig, GuestAddress(a)).unwrap();
            if &sig == b"RSD PTR " {
                found = Some(a);
                break;
            }
        }
        assert_eq!(found, Some(acpi::RSDP_ADDR));
    }
}
