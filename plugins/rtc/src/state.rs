//! Byte encoding of the RTC state for snapshots.
//!
//! Version 1 layout (little-endian): index `u8`, NMI-disable `u8` (0/1),
//! CMOS RAM 128 bytes, divider origin `i64` ns, seconds count before update 1
//! `i64`, weekday offset `u8` (0-6), flags-synced-to `i64` ns, register C
//! flags `u8` (PF/AF/UF only), IRQ line level `u8` (0/1).

use crate::clock::Divider;
use crate::regs::{C_AF, C_PF, C_UF};
use crate::rtc::Rtc;
use hyperplug_plugin_api::device::DeviceState;
use hyperplug_plugin_api::PluginError;

/// Format version written by [`save`].
pub const STATE_VERSION: u32 = 1;
/// Length of a version-1 state.
pub const STATE_LEN: usize = 1 + 1 + 128 + 8 + 8 + 1 + 8 + 1 + 1;

/// Serializes the state of `rtc`.
pub fn save(rtc: &Rtc) -> DeviceState {
    let mut out = Vec::with_capacity(STATE_LEN);
    out.push(rtc.index);
    out.push(u8::from(rtc.nmi_disabled));
    out.extend_from_slice(&rtc.ram);
    out.extend_from_slice(&rtc.divider.origin_ns.to_le_bytes());
    out.extend_from_slice(&rtc.count_base.to_le_bytes());
    out.push(rtc.weekday_offset);
    out.extend_from_slice(&rtc.synced_ns.to_le_bytes());
    out.push(rtc.flags);
    out.push(u8::from(rtc.line));
    DeviceState {
        version: STATE_VERSION,
        data: out.into(),
    }
}

/// Loads `state` into `rtc`, or refuses it without changing anything.
pub fn restore(rtc: &mut Rtc, state: &DeviceState) -> Result<(), PluginError> {
    if state.version != STATE_VERSION {
        return Err(PluginError::invalid(format!(
            "rtc state version {} is not supported (this plugin reads version {STATE_VERSION})",
            state.version
        )));
    }
    let d = state.data.as_slice();
    if d.len() != STATE_LEN {
        return Err(PluginError::invalid(format!(
            "rtc state must be {STATE_LEN} bytes, got {}",
            d.len()
        )));
    }
    let mut r = Reader(d);
    let index = r.u8();
    let nmi = r.flag("NMI-disable")?;
    let mut ram = [0u8; 128];
    ram.copy_from_slice(r.take(128));
    let origin_ns = r.i64();
    let count_base = r.i64();
    let weekday_offset = r.u8();
    let synced_ns = r.i64();
    let flags = r.u8();
    let line = r.flag("IRQ line")?;
    if index >= 0x80 {
        return Err(PluginError::invalid(format!(
            "rtc state has register index {index:#x}, above 0x7f"
        )));
    }
    if weekday_offset > 6 {
        return Err(PluginError::invalid(format!(
            "rtc state has weekday offset {weekday_offset}, above 6"
        )));
    }
    if flags & !(C_PF | C_AF | C_UF) != 0 {
        return Err(PluginError::invalid(format!(
            "rtc state has register C flags {flags:#x} outside PF/AF/UF"
        )));
    }
    rtc.index = index;
    rtc.nmi_disabled = nmi;
    rtc.ram = ram;
    rtc.divider = Divider { origin_ns };
    rtc.count_base = count_base;
    rtc.weekday_offset = weekday_offset;
    rtc.synced_ns = synced_ns;
    rtc.flags = flags;
    rtc.line = line;
    Ok(())
}

/// A cursor over a buffer whose length was checked up front.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8));
        i64::from_le_bytes(b)
    }
    fn flag(&mut self, what: &str) -> Result<bool, PluginError> {
        match self.u8() {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(PluginError::invalid(format!(
                "rtc state has {what} byte {v}, expected 0 or 1"
            ))),
        }
    }
}
