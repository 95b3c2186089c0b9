//! A recording host for device authors' unit tests: implements every host
//! service, records what the device asked for, and lets the test drive the
//! virtual clock and fire timers. No hypervisor needed.
//!
//! ```
//! use hyperplug_plugin_api::testing::RecordingHost;
//! let host = RecordingHost::new();
//! let services = host.services(); // hand this to Device::create
//! # let _ = services;
//! host.advance_ns(1_000_000);
//! assert_eq!(host.now_ns(), 1_000_000);
//! ```

use crate::backend::LogLevel;
use crate::device::{FfiHostServices, FfiHostServices_TO, HostServices, MachineInfo, TIMER_OFF};
use crate::error::{PluginError, PluginResult};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RSlice, RSliceMut, RStr};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Everything a device asked of the host, in order.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// `set_irq` calls: (line, level).
    pub irqs: Vec<(u32, bool)>,
    /// Log messages.
    pub logs: Vec<(LogLevel, String)>,
    /// `request_exit` calls: (status, reason).
    pub exits: Vec<(i32, String)>,
    /// `request_reset` reasons.
    pub resets: Vec<String>,
    /// `set_cpu_intr` levels.
    pub cpu_intr: Vec<bool>,
    pub a20: Vec<bool>,
    /// Armed timers: id → deadline.
    pub timers: BTreeMap<u32, u64>,
    /// The virtual clock.
    pub now_ns: u64,
    /// Guest memory for DMA, at guest-physical 0.
    pub memory: Vec<u8>,
    /// What `machine_info` answers.
    pub info: MachineInfo,
}

/// A host for tests; clones share the same record.
#[derive(Clone, Default)]
pub struct RecordingHost(Arc<Mutex<Recorded>>);

impl RecordingHost {
    /// A host with 1 MiB of DMA memory, 128 MiB of RAM and one CPU in `machine_info`.
    pub fn new() -> Self {
        let r = Recorded {
            memory: vec![0; 1 << 20],
            info: MachineInfo {
                ram_bytes: 128 << 20,
                low_ram_bytes: 128 << 20,
                cpus: 1,
            },
            ..Default::default()
        };
        Self(Arc::new(Mutex::new(r)))
    }

    /// The ABI object to pass to a device.
    pub fn services(&self) -> HostServices {
        FfiHostServices_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// The record (locked).
    pub fn record(&self) -> MutexGuard<'_, Recorded> {
        match self.0.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    /// Current virtual time.
    pub fn now_ns(&self) -> u64 {
        self.record().now_ns
    }

    /// Moves the virtual clock forward by `ns`.
    pub fn advance_ns(&self, ns: u64) {
        let mut r = self.record();
        r.now_ns = r.now_ns.saturating_add(ns);
    }

    /// Timers whose deadline has passed, earliest first; they are disarmed.
    /// The test then calls the device's `timer_fired` for each.
    pub fn take_due_timers(&self) -> Vec<u32> {
        let mut r = self.record();
        let now = r.now_ns;
        let mut due: Vec<(u64, u32)> = r
            .timers
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, d)| (*d, *id))
            .collect();
        due.sort();
        for (_, id) in &due {
            r.timers.remove(id);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// The last level set on `line`, if any.
    pub fn irq_level(&self, line: u32) -> Option<bool> {
        self.record()
            .irqs
            .iter()
            .rev()
            .find(|(l, _)| *l == line)
            .map(|(_, v)| *v)
    }

    /// Number of rising edges seen on `line`.
    pub fn rising_edges(&self, line: u32) -> usize {
        let r = self.record();
        let mut level = false;
        let mut n = 0;
        for (l, v) in r.irqs.iter().filter(|(l, _)| *l == line) {
            let _ = l;
            if *v && !level {
                n += 1;
            }
            level = *v;
        }
        n
    }
}

impl FfiHostServices for RecordingHost {
    fn set_irq(&self, line: u32, level: bool) {
        self.record().irqs.push((line, level));
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.record().logs.push((level, message.to_string()));
    }
    fn request_exit(&self, status: i32, reason: RStr<'_>) {
        self.record().exits.push((status, reason.to_string()));
    }
    fn now_ns(&self) -> u64 {
        self.record().now_ns
    }
    fn set_timer(&self, timer: u32, deadline_ns: u64) {
        let mut r = self.record();
        if deadline_ns == TIMER_OFF {
            r.timers.remove(&timer);
        } else {
            r.timers.insert(timer, deadline_ns);
        }
    }
    fn read_guest(&self, gpa: u64, mut buf: RSliceMut<'_, u8>) -> PluginResult<()> {
        let r = self.record();
        let b = buf.as_mut_slice();
        let range = usize::try_from(gpa)
            .ok()
            .and_then(|s| Some(s..s.checked_add(b.len())?));
        match range.and_then(|rg| r.memory.get(rg)) {
            Some(src) => {
                b.copy_from_slice(src);
                RResult::ROk(())
            }
            None => RResult::RErr(PluginError::invalid(format!(
                "DMA read at {gpa:#x} out of range"
            ))),
        }
    }
    fn write_guest(&self, gpa: u64, data: RSlice<'_, u8>) -> PluginResult<()> {
        let mut r = self.record();
        let d = data.as_slice();
        let range = usize::try_from(gpa)
            .ok()
            .and_then(|s| Some(s..s.checked_add(d.len())?));
        match range.and_then(|rg| r.memory.get_mut(rg)) {
            Some(dst) => {
                dst.copy_from_slice(d);
                RResult::ROk(())
            }
            None => RResult::RErr(PluginError::invalid(format!(
                "DMA write at {gpa:#x} out of range"
            ))),
        }
    }
    fn set_cpu_intr(&self, level: bool) {
        self.record().cpu_intr.push(level);
    }
    fn request_reset(&self, reason: RStr<'_>) {
        self.record().resets.push(reason.to_string());
    }
    fn machine_info(&self) -> MachineInfo {
        self.record().info
    }
    fn set_a20(&self, enabled: bool) {
        self.record().a20.push(enabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_drives_timers() {
        let h = RecordingHost::new();
        let s = h.services();
        s.set_irq(4, true);
        s.set_irq(4, false);
        s.set_irq(4, true);
        assert_eq!(h.rising_edges(4), 2);
        assert_eq!(h.irq_level(4), Some(true));
        s.set_timer(1, 500);
        s.set_timer(2, 100);
        s.set_timer(3, 900);
        s.set_timer(3, TIMER_OFF);
        h.advance_ns(600);
        assert_eq!(h.take_due_timers(), vec![2, 1]);
        assert!(h.take_due_timers().is_empty());
        s.write_guest(0x10, RSlice::from_slice(&[1, 2, 3])).unwrap();
        let mut b = [0u8; 3];
        s.read_guest(0x10, RSliceMut::from_mut_slice(&mut b))
            .unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(s
            .read_guest(u64::MAX, RSliceMut::from_mut_slice(&mut b))
            .is_err());
    }
}
