//! The ACPI PM1a control register, host-internal: where a guest requests S5
//! (soft off). The port is 0x604, where QEMU's PC machine puts it, so test
//! kernels written for QEMU power off the same way.

use crate::bus::BusDevice;
use crate::stop::StopHandle;
use hyperplug_plugin_api::device::AddressSpace;

/// PM1a control block port.
pub const PM1A_CNT_PORT: u16 = 0x604;
/// PM1a control block length in ports.
pub const PM1A_CNT_LEN: u16 = 2;
/// SLP_EN, bit 13 of PM1_CNT (ACPI 6.5, 4.8.3.2.1 "PM1 Control Registers").
pub const SLP_EN: u16 = 1 << 13;
/// SLP_TYPx, bits 10-12 of PM1_CNT.
pub const SLP_TYP_MASK: u16 = 0b111 << 10;
/// The SLP_TYP value that means S5 on this machine (the DSDT's \_S5 package says 0).
pub const SLP_TYP_S5: u16 = 0;
/// SCI_EN, bit 0 of PM1_CNT: the machine is in ACPI mode. With no SMI_CMD
/// port in the FADT it is always set (ACPI 6.5, 4.8.3.2.1).
pub const SCI_EN: u16 = 1 << 0;
/// PM1a event block port (PM1_STS at +0, PM1_EN at +2).
pub const PM1A_EVT_PORT: u16 = 0x600;
/// PM1a event block length.
pub const PM1A_EVT_LEN: u16 = 4;

/// PM1a_CNT: latches SCI_EN and the sleep type; SLP_EN with S5 powers off.
pub struct Pm1aControl {
    value: u16,
    stop: StopHandle,
}

impl Pm1aControl {
    /// A register that stops the VM through `stop` on S5.
    pub fn new(stop: StopHandle) -> Self {
        Self {
            value: SCI_EN,
            stop,
        }
    }
}

impl BusDevice for Pm1aControl {
    fn read(&mut self, _space: AddressSpace, addr: u64, data: &mut [u8]) -> Result<(), String> {
        let bytes = self.value.to_le_bytes();
        let off = (addr - PM1A_CNT_PORT as u64) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(off + i).copied().unwrap_or(0xff);
        }
        Ok(())
    }

    fn write(&mut self, _space: AddressSpace, addr: u64, data: &[u8]) -> Result<(), String> {
        let off = (addr - PM1A_CNT_PORT as u64) as usize;
        let mut bytes = self.value.to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(off + i) {
                *slot = *b;
            }
        }
        let v = u16::from_le_bytes(bytes);
        // SLP_EN is write-only: it triggers the transition and reads back as 0;
        // SCI_EN stays set (no legacy mode to return to).
        self.value = (v & !SLP_EN) | SCI_EN;
        if v & SLP_EN != 0 {
            let typ = (v & SLP_TYP_MASK) >> 10;
            if typ == SLP_TYP_S5 {
                self.stop.power_off();
            } else {
                tracing::warn!(target: "io", "ACPI sleep type {typ} requested; only S5 (type {SLP_TYP_S5}) is supported, ignored");
            }
        }
        Ok(())
    }
}

/// PM1a event block: PM1_STS (write 1 to clear) and PM1_EN (ACPI 6.5,
/// 4.8.3.1 "PM1 Event Grouping"). No fixed event (power button, RTC alarm,
/// timer carry) is raised yet, so status reads 0 unless a bit is set here.
#[derive(Default)]
pub struct Pm1aEvent {
    status: u16,
    enable: u16,
}

impl BusDevice for Pm1aEvent {
    fn read(&mut self, _space: AddressSpace, addr: u64, data: &mut [u8]) -> Result<(), String> {
        let regs = [self.status.to_le_bytes(), self.enable.to_le_bytes()].concat();
        let off = (addr - PM1A_EVT_PORT as u64) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = regs.get(off + i).copied().unwrap_or(0xff);
        }
        Ok(())
    }

    fn write(&mut self, _space: AddressSpace, addr: u64, data: &[u8]) -> Result<(), String> {
        let off = (addr - PM1A_EVT_PORT as u64) as usize;
        for (i, b) in data.iter().enumerate() {
            match off + i {
                0 => self.status &= !u16::from(*b),
                1 => self.status &= !(u16::from(*b) << 8),
                2 => self.enable = (self.enable & 0xff00) | u16::from(*b),
                3 => self.enable = (self.enable & 0x00ff) | (u16::from(*b) << 8),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_and_sci_en_reads_set() {
        let stop = StopHandle::default();
        let mut pm = Pm1aControl::new(stop.clone());
        let mut b = [0u8; 2];
        pm.read(AddressSpace::Pio, PM1A_CNT_PORT as u64, &mut b)
            .unwrap();
        assert_eq!(u16::from_le_bytes(b) & SCI_EN, SCI_EN);
        // Sleep type 5 with SLP_EN: not S5 here, ignored.
        pm.write(
            AddressSpace::Pio,
            PM1A_CNT_PORT as u64,
            &(SLP_EN | (5 << 10)).to_le_bytes(),
        )
        .unwrap();
        assert!(!stop.requested());
        pm.write(
            AddressSpace::Pio,
            PM1A_CNT_PORT as u64,
            &SLP_EN.to_le_bytes(),
        )
        .unwrap();
        assert!(stop.requested());
        pm.read(AddressSpace::Pio, PM1A_CNT_PORT as u64, &mut b)
            .unwrap();
        assert_eq!(u16::from_le_bytes(b) & SLP_EN, 0, "SLP_EN reads back 0");
    }

    #[test]
    fn pm1_event_block() {
        let mut ev = Pm1aEvent {
            status: 0x0101,
            enable: 0,
        };
        ev.write(AddressSpace::Pio, 0x600, &[0x01]).unwrap();
        let mut b = [0u8; 4];
        ev.read(AddressSpace::Pio, 0x600, &mut b).unwrap();
        assert_eq!(b, [0x00, 0x01, 0, 0]);
        ev.write(AddressSpace::Pio, 0x602, &[0x20, 0x01]).unwrap();
        ev.read(AddressSpace::Pio, 0x602, &mut b[..2]).unwrap();
        assert_eq!(&b[..2], &[0x20, 0x01]);
    }
}
