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
/// The SLP_TYP value that means S5 on this machine (as the FADT's \_S5 package will say).
pub const SLP_TYP_S5: u16 = 0;

/// PM1a_CNT: latches SCI_EN and the sleep type; SLP_EN with S5 powers off.
pub struct Pm1aControl {
    value: u16,
    stop: StopHandle,
}

impl Pm1aControl {
    /// A register that stops the VM through `stop` on S5.
    pub fn new(stop: StopHandle) -> Self {
        Self { value: 0, stop }
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
        // SLP_EN is write-only: it triggers the transition and reads back as 0.
        self.value = v & !SLP_EN;
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
