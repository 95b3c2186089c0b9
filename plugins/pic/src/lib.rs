//! Hyperplug device plugin: the PC/AT pair of Intel 8259A programmable
//! interrupt controllers as one interrupt-controller device.
//!
//! - Master at ports 0x20/0x21, slave at 0xa0/0xa1 with its INT wired to the
//!   master's IR2, and the PIIX edge/level control registers (ELCR1/ELCR2)
//!   at 0x4d0/0x4d1.
//! - The host routes device IRQ lines here ([`Device::irq_input`]): lines
//!   0-7 reach the master, 8-15 the slave. Line 2 is the cascade input on a
//!   PC/AT and is ignored (with a one-time warning); lines 16 and up belong
//!   to the IOAPIC only and are ignored silently.
//! - The master's INT output drives the CPU's INTR through
//!   [`HostServices::set_cpu_intr`], reported whenever it changes;
//!   [`Device::interrupt_ack`] is the INTA cycle and returns `None` only when
//!   INTR is not asserted.
//! - Multi-byte accesses are split into byte accesses at consecutive ports;
//!   bytes at ports the PIC does not decode read 0xff.
//! - Only 8086 mode is meaningful on x86: if a chip is initialized for
//!   MCS-80/85 mode (ICW4 µPM = 0 or no ICW4), a warning is logged and
//!   vectors are still formed as in 8086 mode.
//!
//! Semantics follow the Intel 8259A datasheet (order number 231468); the
//! rules are cited in [`chip`] and [`pair`].

pub mod chip;
pub mod options;
pub mod pair;
pub mod state;

#[cfg(test)]
mod tests;

use hyperplug_plugin_api::backend::LogLevel;
use hyperplug_plugin_api::device::{
    AddressSpace, Device, DeviceState, HostServices, IoRange, CAP_INTERRUPT_CONTROLLER,
};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use pair::{PicPair, WriteEvent, CASCADE_INPUT, OPEN_BUS};

/// The port ranges the pair decodes.
pub fn io_ranges() -> Vec<IoRange> {
    vec![
        IoRange::pio(pair::MASTER_CMD, 2),
        IoRange::pio(pair::SLAVE_CMD, 2),
        IoRange::pio(pair::ELCR_MASTER, 2),
    ]
}

/// The PIC device: a [`PicPair`] plus the INTR level last reported to the host.
pub struct Pic {
    pair: PicPair,
    host: HostServices,
    intr: bool,
    warned_irq2: bool,
}

impl Pic {
    /// The two chips (for inspection).
    pub fn pair(&self) -> &PicPair {
        &self.pair
    }

    /// Whether INTR is asserted.
    pub fn intr(&self) -> bool {
        self.intr
    }

    /// Reports the master's INT output to the CPU if it changed, or always when `force`.
    fn sync_intr(&mut self, force: bool) {
        let level = self.pair.intr();
        if force || level != self.intr {
            self.intr = level;
            self.host.set_cpu_intr(level);
        }
    }

    fn read_byte(&mut self, port: u64) -> u8 {
        u16::try_from(port)
            .ok()
            .and_then(|p| self.pair.read(p))
            .unwrap_or(OPEN_BUS)
    }

    fn write_byte(&mut self, port: u64, v: u8) {
        let Ok(p) = u16::try_from(port) else {
            return;
        };
        if let WriteEvent::Initialized(i) = self.pair.write(p, v) {
            let chip = &self.pair.chips[i];
            if !chip.mode_8086() {
                let name = if i == pair::MASTER { "master" } else { "slave" };
                let msg = format!(
                    "{name} 8259A initialized for MCS-80/85 mode (ICW4 µPM = 0); \
                     delivering 8086-mode vectors from base {:#04x}",
                    chip.vector_base()
                );
                self.host.log(LogLevel::Warn, msg.as_str().into());
            }
        }
    }
}

impl Device for Pic {
    const NAME: &'static str = "pic";
    const DESCRIPTION: &'static str =
        "8259A PIC pair (master 0x20/0x21, slave 0xa0/0xa1 on IRQ 2) with ELCR at 0x4d0/0x4d1";
    const OPTIONS_HELP: &'static str = options::HELP;
    const CAPABILITIES: u32 = CAP_INTERRUPT_CONTROLLER;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        options::parse(config)?;
        Ok(Self {
            pair: PicPair::new(),
            host,
            intr: false,
            warned_irq2: false,
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        io_ranges()
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match space {
                AddressSpace::Pio => self.read_byte(addr.wrapping_add(i as u64)),
                AddressSpace::Mmio => OPEN_BUS,
            };
        }
        self.sync_intr(false);
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        if space != AddressSpace::Pio {
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            self.write_byte(addr.wrapping_add(i as u64), b);
        }
        self.sync_intr(false);
    }

    fn reset(&mut self) {
        self.pair.reset();
        self.sync_intr(true);
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        Ok(DeviceState {
            version: state::STATE_VERSION,
            data: state::encode(&self.pair).into(),
        })
    }

    fn restore(&mut self, st: &DeviceState) -> Result<(), PluginError> {
        self.pair = state::decode(st.version, st.data.as_slice())?;
        self.sync_intr(true);
        Ok(())
    }

    fn irq_input(&mut self, line: u32, level: bool) {
        if !self.pair.set_irq(line, level) && line == u32::from(CASCADE_INPUT) && !self.warned_irq2
        {
            self.warned_irq2 = true;
            self.host.log(
                LogLevel::Warn,
                "IRQ 2 is the cascade input of the master 8259A; a device on line 2 is ignored"
                    .into(),
            );
        }
        self.sync_intr(false);
    }

    fn interrupt_ack(&mut self) -> Option<u8> {
        if !self.pair.intr() {
            self.sync_intr(false);
            return None;
        }
        let vector = self.pair.inta();
        self.sync_intr(false);
        Some(vector)
    }
}

hyperplug_plugin_api::export_device!(Pic);
