//! Hyperplug device plugin: the Motorola MC146818A CMOS real-time clock at
//! ports 0x70 (index; bit 7 = NMI disable, a PC chipset latch) and 0x71
//! (data), with 128 bytes of CMOS RAM holding the memory-size fields a PC
//! BIOS sets, raising IRQ 8 for periodic, alarm and update-ended interrupts.
//!
//! The clock runs on the host's virtual clock from a base wall time (option
//! `base`). The IRQ line is a level: it rises when IRQF becomes 1 and falls
//! when register C is read (MC146818A datasheet, "IRQ" pin and "Register C").
//! Port 0x70 is write-only on a PC: reading it gives 0xff. Accesses wider than
//! a byte are taken byte by byte at consecutive ports.

pub mod calendar;
pub mod clock;
pub mod cmos;
pub mod options;
pub mod regs;
pub mod rtc;
pub mod state;

#[cfg(test)]
mod tests;

use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, HostServices, IoRange};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use options::RtcOptions;
pub use rtc::Rtc;

/// Index port.
pub const INDEX_PORT: u16 = 0x70;
/// Data port.
pub const DATA_PORT: u16 = 0x71;
/// Port 0x70 bit 7: NMI disable.
pub const NMI_DISABLE: u8 = 0x80;

/// The RTC device plugin.
pub struct RtcDevice {
    rtc: Rtc,
}

impl RtcDevice {
    /// The clock and CMOS RAM.
    pub fn rtc(&self) -> &Rtc {
        &self.rtc
    }

    /// Whether the guest last wrote port 0x70 with bit 7 set (NMIs disabled).
    pub fn nmi_disabled(&self) -> bool {
        self.rtc.nmi_disabled()
    }

    fn read_port(&mut self, port: u64) -> u8 {
        match port {
            p if p == u64::from(DATA_PORT) => {
                let i = self.rtc.index;
                self.rtc.read_reg(i)
            }
            _ => 0xff,
        }
    }

    fn write_port(&mut self, port: u64, v: u8) {
        match port {
            p if p == u64::from(INDEX_PORT) => {
                self.rtc.nmi_disabled = v & NMI_DISABLE != 0;
                self.rtc.index = v & 0x7f;
            }
            p if p == u64::from(DATA_PORT) => {
                let i = self.rtc.index;
                self.rtc.write_reg(i, v);
            }
            _ => {}
        }
    }
}

impl Device for RtcDevice {
    const NAME: &'static str = "rtc";
    const DESCRIPTION: &'static str =
        "MC146818A CMOS RTC at 0x70/0x71 with PC CMOS RAM; periodic/alarm/update IRQs";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        let o = RtcOptions::parse(config)?;
        let mut ram = [0u8; 128];
        cmos::fill(&mut ram, &host.machine_info());
        let rtc = Rtc::new(host, o.irq, o.base_secs, o.base_subsec_ns, ram);
        Ok(Self { rtc })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![IoRange::pio(INDEX_PORT, 2)]
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let port = addr.wrapping_add(i as u64);
            *b = if space == AddressSpace::Pio {
                self.read_port(port)
            } else {
                0xff
            };
        }
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        if space != AddressSpace::Pio {
            return;
        }
        for (i, b) in data.iter().enumerate() {
            self.write_port(addr.wrapping_add(i as u64), *b);
        }
    }

    fn reset(&mut self) {
        self.rtc.pin_reset();
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        Ok(state::save(&self.rtc))
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError> {
        state::restore(&mut self.rtc, state)?;
        let (irq, line) = (self.rtc.irq, self.rtc.line);
        self.rtc.host.set_irq(irq, line);
        self.rtc.arm_timer();
        Ok(())
    }

    fn timer_fired(&mut self, _timer: u32) {
        self.rtc.sync();
        self.rtc.arm_timer();
    }
}

hyperplug_plugin_api::export_device!(RtcDevice);
