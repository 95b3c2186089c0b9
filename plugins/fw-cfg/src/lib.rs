//! Hyperplug device plugin: QEMU-compatible fw_cfg, port interface as on
//! QEMU's x86 machines (QEMU docs/specs/fw_cfg.rst): selector at 0x510,
//! data at 0x511, DMA address register at 0x514-0x51b.
//!
//! Rules encoded, with the spec section:
//! - "Selector Register": a 16-bit write to 0x510 selects the item and
//!   resets the data offset to 0. Choice: the selector is a 16-bit register
//!   and only a 16-bit write changes it; byte (and 32-bit) writes to 0x510
//!   are ignored, as QEMU's x86 selector port accepts only 16-bit accesses.
//!   Reads of 0x510 give 0.
//! - "Data Register": each byte read from 0x511 gives the next byte of the
//!   item; reads past the end give 0. Writes to the data register are
//!   ignored (the spec deprecates them; no item is writable).
//! - "DMA interface": see [`dma`].
//!
//! Items: signature, feature bitmap, UUID (zero), RAM size, NOGRAPHIC (1),
//! NB_CPUS, BOOT_MENU (0), MAX_CPUS, the file directory, `etc/e820` and the
//! user files (`file=` / `string=` options).

pub mod dma;
pub mod items;
pub mod options;

#[cfg(test)]
mod tests;

use dma::{Descriptor, DESCRIPTOR_LEN, DMA_ERROR, DMA_READ, DMA_SELECT, DMA_SIGNATURE, DMA_SKIP};
use hyperplug_plugin_api::abi_stable::std_types::{RSlice, RSliceMut};
use hyperplug_plugin_api::backend::LogLevel;
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, HostServices, IoRange};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use items::Items;
use options::FwCfgOptions;

/// Selector port.
pub const SELECTOR_PORT: u16 = 0x510;
/// Data port.
pub const DATA_PORT: u16 = 0x511;
/// DMA address register (8 ports).
pub const DMA_PORT: u16 = 0x514;
/// Name of the E820 map file.
pub const E820_FILE: &str = "etc/e820";
/// Format version of the saved state.
pub const STATE_VERSION: u32 = 1;
/// Saved state: key u16, offset u64, DMA address register 8 bytes.
pub const STATE_LEN: usize = 2 + 8 + 8;
/// DMA reads are copied in chunks of this size.
const DMA_CHUNK: usize = 64 * 1024;

/// The fw_cfg device.
pub struct FwCfg {
    host: HostServices,
    items: Items,
    dma: bool,
    key: u16,
    offset: u64,
    dma_addr: [u8; 8],
}

impl FwCfg {
    /// The item table.
    pub fn items(&self) -> &Items {
        &self.items
    }

    /// The selected key.
    pub fn selected(&self) -> u16 {
        self.key
    }

    fn select(&mut self, key: u16) {
        self.key = key;
        self.offset = 0;
    }

    fn next_byte(&mut self) -> u8 {
        let data = self.items.get(self.key);
        let b = usize::try_from(self.offset)
            .ok()
            .and_then(|o| data.get(o))
            .copied()
            .unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }

    fn dma_port(&self, port: u64) -> Option<usize> {
        let off = port.checked_sub(u64::from(DMA_PORT))?;
        (self.dma && off < 8).then_some(off as usize)
    }

    /// Runs the descriptor at `gpa`.
    fn run_dma(&mut self, gpa: u64) {
        let mut raw = [0u8; DESCRIPTOR_LEN];
        if self
            .host
            .read_guest(gpa, RSliceMut::from_mut_slice(&mut raw))
            .is_err()
        {
            let msg = format!("DMA descriptor at {gpa:#x} is not in guest memory");
            self.host.log(LogLevel::Warn, msg.as_str().into());
            return;
        }
        let d = Descriptor::parse(&raw);
        if d.control & DMA_SELECT != 0 {
            self.select((d.control >> 16) as u16);
        }
        let ok = if d.control & DMA_READ != 0 {
            self.dma_read(d.address, d.length)
        } else if d.control & dma::DMA_WRITE != 0 {
            false
        } else {
            if d.control & DMA_SKIP != 0 {
                self.offset = self.offset.saturating_add(u64::from(d.length));
            }
            true
        };
        let control: u32 = if ok { 0 } else { DMA_ERROR };
        if self
            .host
            .write_guest(gpa, RSlice::from_slice(&control.to_be_bytes()))
            .is_err()
        {
            let msg = format!("DMA descriptor at {gpa:#x} could not be completed");
            self.host.log(LogLevel::Warn, msg.as_str().into());
        }
    }

    /// Copies `len` item bytes to `address`; false if memory refused it.
    fn dma_read(&mut self, address: u64, len: u32) -> bool {
        let mut done: u64 = 0;
        let total = u64::from(len);
        let mut buf = Vec::new();
        while done < total {
            let n = (total - done).min(DMA_CHUNK as u64) as usize;
            buf.clear();
            buf.extend((0..n).map(|_| self.next_byte()));
            let Some(at) = address.checked_add(done) else {
                return false;
            };
            if self.host.write_guest(at, RSlice::from_slice(&buf)).is_err() {
                return false;
            }
            done += n as u64;
        }
        true
    }

    fn read_port(&mut self, port: u64) -> u8 {
        if port == u64::from(DATA_PORT) {
            self.next_byte()
        } else if port == u64::from(SELECTOR_PORT) {
            0
        } else if let Some(i) = self.dma_port(port) {
            DMA_SIGNATURE[i]
        } else {
            0xff
        }
    }
}

impl Device for FwCfg {
    const NAME: &'static str = "fw-cfg";
    const DESCRIPTION: &'static str =
        "QEMU-compatible fw_cfg: selector 0x510, data 0x511, DMA 0x514; standard keys and files";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        let o = FwCfgOptions::parse(config)?;
        let info = host.machine_info();
        let mut files = o.files;
        files.push((E820_FILE.to_string(), items::e820(&info)));
        Ok(Self {
            items: Items::new(&info, o.dma, files),
            dma: o.dma,
            host,
            key: 0,
            offset: 0,
            dma_addr: [0; 8],
        })
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        let mut r = vec![IoRange::pio(SELECTOR_PORT, 2)];
        if self.dma {
            r.push(IoRange::pio(DMA_PORT, 8));
        }
        r
    }

    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = if space == AddressSpace::Pio {
                self.read_port(addr.wrapping_add(i as u64))
            } else {
                0xff
            };
        }
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        if space != AddressSpace::Pio {
            return;
        }
        if addr == u64::from(SELECTOR_PORT) {
            if let [lo, hi] = data {
                self.select(u16::from_le_bytes([*lo, *hi]));
            }
            return;
        }
        let Some(start) = self.dma_port(addr) else {
            return;
        };
        // The register is big-endian: the byte at 0x514 is the most significant.
        let mut triggered = false;
        for (i, b) in data.iter().enumerate() {
            let off = start + i;
            if off < 8 {
                self.dma_addr[off] = *b;
                triggered |= off == 7;
            }
        }
        if triggered {
            let gpa = u64::from_be_bytes(self.dma_addr);
            self.run_dma(gpa);
        }
    }

    fn reset(&mut self) {
        self.key = 0;
        self.offset = 0;
        self.dma_addr = [0; 8];
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        let mut v = Vec::with_capacity(STATE_LEN);
        v.extend_from_slice(&self.key.to_le_bytes());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.dma_addr);
        Ok(DeviceState {
            version: STATE_VERSION,
            data: v.into(),
        })
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), PluginError> {
        if state.version != STATE_VERSION {
            return Err(PluginError::invalid(format!(
                "fw-cfg state version {} is not supported (this plugin reads version {STATE_VERSION})",
                state.version
            )));
        }
        let d = state.data.as_slice();
        if d.len() != STATE_LEN {
            return Err(PluginError::invalid(format!(
                "fw-cfg state must be {STATE_LEN} bytes, got {}",
                d.len()
            )));
        }
        let mut off = [0u8; 8];
        off.copy_from_slice(&d[2..10]);
        self.key = u16::from_le_bytes([d[0], d[1]]);
        self.offset = u64::from_le_bytes(off);
        self.dma_addr.copy_from_slice(&d[10..18]);
        Ok(())
    }
}

hyperplug_plugin_api::export_device!(FwCfg);
