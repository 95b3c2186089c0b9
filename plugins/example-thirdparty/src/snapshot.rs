//! Step 4 of a device: save and restore, so a VM can be snapshotted and
//! resumed (possibly under another backend, possibly in another process).
//!
//! The host stores the bytes opaquely next to a version number we choose.
//! Two rules make the format robust:
//!
//! - **Version it.** A later build that changes the layout bumps
//!   [`VERSION`] and can still read old versions (or refuses them with a
//!   clear error, never misreads them).
//! - **Save relative time.** The virtual clock of the VM that restores may
//!   not read what it read when the state was saved, so a running countdown
//!   is saved as the nanoseconds it had *left*, not as an absolute deadline.
//!
//! Version 1 is 12 bytes: control, status, reload (u16 LE), remaining ns
//! (u64 LE, 0 when stopped).

use crate::registers::{CTRL_STORED, STATUS_EXPIRED};
use hyperplug_plugin_api::device::DeviceState;
use hyperplug_plugin_api::PluginError;

/// The state format this build writes.
pub const VERSION: u32 = 1;
/// Length of a version-1 state.
pub const LEN_V1: usize = 12;

/// The device's state, independent of any clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Stored control bits.
    pub control: u8,
    /// Status bits.
    pub status: u8,
    /// Reload value in milliseconds.
    pub reload: u16,
    /// Nanoseconds until the next expiry while running; 0 when stopped.
    pub remaining_ns: u64,
}

impl Saved {
    /// Encodes as the current version.
    pub fn encode(&self) -> DeviceState {
        let mut data = Vec::with_capacity(LEN_V1);
        data.push(self.control);
        data.push(self.status);
        data.extend_from_slice(&self.reload.to_le_bytes());
        data.extend_from_slice(&self.remaining_ns.to_le_bytes());
        DeviceState {
            version: VERSION,
            data: data.into(),
        }
    }

    /// Decodes a saved state, refusing other versions and corrupt bytes.
    pub fn decode(state: &DeviceState) -> Result<Self, PluginError> {
        if state.version != VERSION {
            return Err(PluginError::invalid(format!(
                "countdown state version {} is not supported (this build reads version {VERSION})",
                state.version
            )));
        }
        let d = state.data.as_slice();
        let Ok(b) = <[u8; LEN_V1]>::try_from(d) else {
            return Err(PluginError::invalid(format!(
                "countdown state is {} bytes, expected {LEN_V1}",
                d.len()
            )));
        };
        let [control, status, r0, r1, t @ ..] = b;
        if control & !CTRL_STORED != 0 || status & !STATUS_EXPIRED != 0 {
            return Err(PluginError::invalid(format!(
                "countdown state is corrupt (control {control:#04x}, status {status:#04x})"
            )));
        }
        let reload = u16::from_le_bytes([r0, r1]);
        let remaining = u64::from_le_bytes(t);
        Ok(Self {
            control,
            status,
            reload,
            remaining_ns: remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Saved {
            control: 0b111,
            status: 1,
            reload: 0x1234,
            remaining_ns: 987_654_321,
        };
        let enc = s.encode();
        assert_eq!(enc.version, VERSION);
        assert_eq!(enc.data.len(), LEN_V1);
        assert_eq!(&enc.data[..4], &[0b111, 1, 0x34, 0x12]);
        assert_eq!(Saved::decode(&enc), Ok(s));
    }

    #[test]
    fn refuses_bad_states() {
        let good = Saved {
            control: 1,
            status: 0,
            reload: 5,
            remaining_ns: 7,
        }
        .encode();
        let cases: Vec<(DeviceState, &str)> = vec![
            (
                DeviceState {
                    version: 2,
                    ..good.clone()
                },
                "version 2 is not supported",
            ),
            (
                DeviceState {
                    version: 1,
                    data: good.data[..11].to_vec().into(),
                },
                "11 bytes, expected 12",
            ),
            (
                DeviceState {
                    version: 1,
                    data: [good.data.as_slice(), &[0]].concat().into(),
                },
                "13 bytes, expected 12",
            ),
            (
                DeviceState {
                    version: 1,
                    data: [&[0x80u8][..], &good.data[1..]].concat().into(),
                },
                "corrupt",
            ),
            (
                DeviceState {
                    version: 1,
                    data: [&good.data[..1], &[2u8][..], &good.data[2..]]
                        .concat()
                        .into(),
                },
                "corrupt",
            ),
        ];
        for (state, needle) in cases {
            let e = Saved::decode(&state).expect_err(needle);
            assert!(e.message.contains(needle), "{} lacks {needle}", e.message);
        }
    }
}
