//! The device bus: dispatches port I/O and MMIO to devices by address range.
//!
//! Overlapping claims are refused when a device is added. Reads of addresses
//! nobody claims return all ones (an undriven ISA/PCI bus floats high);
//! writes to them are dropped. Both are reported under `--trace io`.

use crate::error::{Error, Result};
use hyperplug_plugin_api::device::{AddressSpace, IoRange};
use std::sync::{Arc, Mutex};

/// A device the bus can dispatch to (a plugin device or a host-internal one).
pub trait BusDevice: Send {
    /// Handles a read at absolute address `addr`.
    fn read(
        &mut self,
        space: AddressSpace,
        addr: u64,
        data: &mut [u8],
    ) -> std::result::Result<(), String>;
    /// Handles a write at absolute address `addr`.
    fn write(
        &mut self,
        space: AddressSpace,
        addr: u64,
        data: &[u8],
    ) -> std::result::Result<(), String>;
}

/// A device shared between the bus and its owner.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

struct Entry {
    range: IoRange,
    name: String,
    dev: SharedDevice,
}

/// Whether an access reached a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A device handled it.
    Claimed(String),
    /// Nobody claims the address: read all ones / write dropped.
    Unclaimed,
}

/// The bus: a sorted list of claimed ranges.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

fn space_name(s: AddressSpace) -> &'static str {
    match s {
        AddressSpace::Pio => "port",
        AddressSpace::Mmio => "MMIO",
    }
}

fn describe(r: &IoRange) -> String {
    format!(
        "{} {:#x}-{:#x}",
        space_name(r.space),
        r.base,
        r.end().saturating_sub(1)
    )
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `dev` at `ranges`; fails (adding nothing) if any range is empty,
    /// out of the port space, or overlaps a range already claimed.
    pub fn add(&mut self, name: &str, ranges: &[IoRange], dev: SharedDevice) -> Result<()> {
        for (i, r) in ranges.iter().enumerate() {
            if r.len == 0 {
                return Err(Error::BusConflict(format!(
                    "device {name}: empty range at {:#x}",
                    r.base
                )));
            }
            if r.base.checked_add(r.len).is_none()
                || (r.space == AddressSpace::Pio && r.base + r.len > 0x1_0000)
            {
                return Err(Error::BusConflict(format!(
                    "device {name}: {} is out of range",
                    describe(r)
                )));
            }
            if let Some(e) = self.entries.iter().find(|e| e.range.overlaps(r)) {
                return Err(Error::BusConflict(format!(
                    "device {name}: {} overlaps {} claimed by device {}",
                    describe(r),
                    describe(&e.range),
                    e.name
                )));
            }
            if let Some(o) = ranges[..i].iter().find(|o| o.overlaps(r)) {
                return Err(Error::BusConflict(format!(
                    "device {name}: its own ranges {} and {} overlap",
                    describe(o),
                    describe(r)
                )));
            }
        }
        for r in ranges {
            self.entries.push(Entry {
                range: *r,
                name: name.to_string(),
                dev: Arc::clone(&dev),
            });
        }
        self.entries
            .sort_by_key(|e| (e.range.space as u8, e.range.base));
        Ok(())
    }

    fn find(&self, space: AddressSpace, addr: u64) -> Option<&Entry> {
        let key = (space as u8, addr);
        let idx = self
            .entries
            .partition_point(|e| (e.range.space as u8, e.range.base) <= key);
        let e = self.entries.get(idx.checked_sub(1)?)?;
        e.range.contains(space, addr).then_some(e)
    }

    /// Names of the devices on the bus, in address order, each once.
    pub fn device_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.entries {
            if !names.contains(&e.name) {
                names.push(e.name.clone());
            }
        }
        names
    }

    /// The name of the device claiming `addr`, if any.
    pub fn owner(&self, space: AddressSpace, addr: u64) -> Option<&str> {
        self.find(space, addr).map(|e| e.name.as_str())
    }

    /// Dispatches a read; unclaimed reads fill `data` with 0xff.
    pub fn read(&self, space: AddressSpace, addr: u64, data: &mut [u8]) -> Result<Access> {
        match self.find(space, addr) {
            Some(e) => {
                let mut dev = e.dev.lock().map_err(|_| poisoned(&e.name))?;
                dev.read(space, addr, data).map_err(|m| Error::Device {
                    device: e.name.clone(),
                    message: m,
                })?;
                Ok(Access::Claimed(e.name.clone()))
            }
            None => {
                data.fill(0xff);
                tracing::debug!(target: "io", "unclaimed {} read at {addr:#x} size {} -> all ones", space_name(space), data.len());
                Ok(Access::Unclaimed)
            }
        }
    }

    /// Dispatches a write; unclaimed writes are dropped.
    pub fn write(&self, space: AddressSpace, addr: u64, data: &[u8]) -> Result<Access> {
        match self.find(space, addr) {
            Some(e) => {
                let mut dev = e.dev.lock().map_err(|_| poisoned(&e.name))?;
                dev.write(space, addr, data).map_err(|m| Error::Device {
                    device: e.name.clone(),
                    message: m,
                })?;
                Ok(Access::Claimed(e.name.clone()))
            }
            None => {
                tracing::debug!(target: "io", "unclaimed {} write at {addr:#x} data {data:02x?} dropped", space_name(space));
                Ok(Access::Unclaimed)
            }
        }
    }
}

fn poisoned(name: &str) -> Error {
    Error::Device {
        device: name.to_string(),
        message: "unusable after an earlier failure".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(
            &mut self,
            _s: AddressSpace,
            addr: u64,
            data: &mut [u8],
        ) -> std::result::Result<(), String> {
            data.fill(addr as u8);
            Ok(())
        }
        fn write(
            &mut self,
            _s: AddressSpace,
            addr: u64,
            data: &[u8],
        ) -> std::result::Result<(), String> {
            self.0.push((addr, data.to_vec()));
            Ok(())
        }
    }

    fn dev() -> SharedDevice {
        Arc::new(Mutex::new(Echo(Vec::new())))
    }

    #[test]
    fn dispatch_by_range() {
        let mut bus = Bus::new();
        bus.add("a", &[IoRange::pio(0x3f8, 8)], dev()).unwrap();
        bus.add("b", &[IoRange::mmio(0xfee0_0000, 0x1000)], dev())
            .unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            bus.read(AddressSpace::Pio, 0x3fd, &mut b).unwrap(),
            Access::Claimed("a".into())
        );
        assert_eq!(b[0], 0xfd);
        assert_eq!(
            bus.read(AddressSpace::Pio, 0x400, &mut b).unwrap(),
            Access::Unclaimed
        );
        assert_eq!(b[0], 0xff);
        assert_eq!(
            bus.read(AddressSpace::Pio, 0x3f7, &mut b).unwrap(),
            Access::Unclaimed
        );
        // Same numeric address, other space: unclaimed.
        assert_eq!(
            bus.read(AddressSpace::Mmio, 0x3f8, &mut b).unwrap(),
            Access::Unclaimed
        );
        assert_eq!(bus.owner(AddressSpace::Mmio, 0xfee0_0fff), Some("b"));
        assert_eq!(bus.owner(AddressSpace::Mmio, 0xfee0_1000), None);
        assert_eq!(
            bus.write(AddressSpace::Pio, 0x80, &[1]).unwrap(),
            Access::Unclaimed
        );
    }

    #[test]
    fn overlaps_refused() {
        let mut bus = Bus::new();
        bus.add("serial", &[IoRange::pio(0x3f8, 8)], dev()).unwrap();
        let cases = [
            IoRange::pio(0x3f8, 1),
            IoRange::pio(0x3f0, 9),
            IoRange::pio(0x3ff, 4),
            IoRange::pio(0x3f0, 0x20),
        ];
        for r in cases {
            let e = bus.add("other", &[r], dev()).unwrap_err().to_string();
            assert!(e.contains("overlaps") && e.contains("serial"), "{e}");
        }
        bus.add(
            "next",
            &[IoRange::pio(0x400, 1), IoRange::pio(0x3f0, 8)],
            dev(),
        )
        .unwrap();
        assert!(bus.add("bad", &[IoRange::pio(0xffff, 2)], dev()).is_err());
        assert!(bus.add("empty", &[IoRange::pio(0x10, 0)], dev()).is_err());
        assert!(bus
            .add(
                "self",
                &[IoRange::pio(0x20, 2), IoRange::pio(0x21, 1)],
                dev()
            )
            .is_err());
        // A refused add leaves nothing behind.
        assert_eq!(bus.owner(AddressSpace::Pio, 0x20), None);
    }
}
