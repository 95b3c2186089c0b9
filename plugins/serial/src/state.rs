//! Byte encoding of vm-superio's `SerialState` for device snapshots.
//!
//! Version 1 layout (little-endian):
//! `DLL DLM IER IIR LCR LSR MCR MSR SCR` (one byte each), then the receive
//! FIFO length as `u32`, then that many FIFO bytes, oldest first.

use hyperplug_plugin_api::PluginError;
use vm_superio::SerialState;

/// Format version written by [`encode`].
pub const STATE_VERSION: u32 = 1;
/// Receive FIFO depth of a 16550A (PC16550D datasheet: 16 bytes) as vm-superio
/// models it: vm-superio keeps up to 64 bytes, and its `from_state` refuses more.
pub const RX_FIFO_CAPACITY: usize = 64;

const REGISTER_BYTES: usize = 9;
const HEADER_BYTES: usize = REGISTER_BYTES + 4;

/// Serializes `s`.
pub fn encode(s: &SerialState) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + s.in_buffer.len());
    out.extend_from_slice(&[
        s.baud_divisor_low,
        s.baud_divisor_high,
        s.interrupt_enable,
        s.interrupt_identification,
        s.line_control,
        s.line_status,
        s.modem_control,
        s.modem_status,
        s.scratch,
    ]);
    // The FIFO never exceeds RX_FIFO_CAPACITY, so the length fits in u32.
    out.extend_from_slice(&(s.in_buffer.len() as u32).to_le_bytes());
    out.extend_from_slice(&s.in_buffer);
    out
}

/// Parses a state written by [`encode`] with format `version`.
pub fn decode(version: u32, data: &[u8]) -> Result<SerialState, PluginError> {
    if version != STATE_VERSION {
        return Err(PluginError::invalid(format!(
            "serial state version {version} is not supported (this plugin reads version {STATE_VERSION})"
        )));
    }
    if data.len() < HEADER_BYTES {
        return Err(PluginError::invalid(format!(
            "serial state is truncated: {} bytes, need at least {HEADER_BYTES}",
            data.len()
        )));
    }
    let r = &data[..REGISTER_BYTES];
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&data[REGISTER_BYTES..HEADER_BYTES]);
    let fifo_len = u32::from_le_bytes(len_bytes) as usize;
    if fifo_len > RX_FIFO_CAPACITY {
        return Err(PluginError::invalid(format!(
            "serial state holds {fifo_len} receive FIFO bytes, more than the {RX_FIFO_CAPACITY} the UART keeps"
        )));
    }
    let fifo = &data[HEADER_BYTES..];
    if fifo.len() != fifo_len {
        return Err(PluginError::invalid(format!(
            "serial state says {fifo_len} receive FIFO bytes but carries {}",
            fifo.len()
        )));
    }
    Ok(SerialState {
        baud_divisor_low: r[0],
        baud_divisor_high: r[1],
        interrupt_enable: r[2],
        interrupt_identification: r[3],
        line_control: r[4],
        line_status: r[5],
        modem_control: r[6],
        modem_status: r[7],
        scratch: r[8],
        in_buffer: fifo.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SerialState {
        SerialState {
            baud_divisor_low: 1,
            baud_divisor_high: 2,
            interrupt_enable: 3,
            interrupt_identification: 4,
            line_control: 5,
            line_status: 6,
            modem_control: 7,
            modem_status: 8,
            scratch: 9,
            in_buffer: b"xyz".to_vec(),
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(
            bytes,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 0, 0, 0, b'x', b'y', b'z']
        );
        assert_eq!(decode(STATE_VERSION, &bytes).unwrap(), s);
        let d = SerialState::default();
        assert_eq!(decode(STATE_VERSION, &encode(&d)).unwrap(), d);
    }

    #[test]
    fn malformed_states_are_rejected() {
        let good = encode(&sample());
        let mut long_fifo = encode(&SerialState::default());
        long_fifo[9..13].copy_from_slice(&65u32.to_le_bytes());
        long_fifo.extend_from_slice(&[0; 65]);
        let cases: &[(u32, Vec<u8>, &str)] = &[
            (2, good.clone(), "version 2 is not supported"),
            (1, good[..12].to_vec(), "truncated"),
            (
                1,
                good[..15].to_vec(),
                "says 3 receive FIFO bytes but carries 2",
            ),
            (1, [good.as_slice(), b"!"].concat(), "carries 4"),
            (1, long_fifo, "holds 65 receive FIFO bytes"),
        ];
        for (v, data, msg) in cases {
            let e = decode(*v, data).unwrap_err();
            assert!(e.message.contains(msg), "{msg}: {}", e.message);
        }
    }
}
