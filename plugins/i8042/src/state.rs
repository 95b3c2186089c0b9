//! Byte encoding of the i8042 state for snapshots.
//!
//! Version 1 layout: controller RAM (32 bytes, byte 0 = command byte),
//! output port, last-write-was-command (0/1), pending command (0 or
//! 0x60-0x7f / 0xd1-0xd4), last data byte read, output buffer (present 0/1,
//! byte, source 0 = controller / 1 = keyboard / 2 = aux), keyboard (scanning
//! 0/1, scan-code set 1-3, LEDs, typematic, awaited parameter command 0 /
//! 0xed / 0xf0 / 0xf3, last byte sent), IRQ 1 and IRQ 12 levels (0/1), then
//! the waiting-byte count (at most 64) and that many (byte, source) pairs.

use crate::controller::{Controller, Source, QUEUE_LIMIT};
use crate::keyboard::Keyboard;
use hyperplug_plugin_api::device::DeviceState;
use hyperplug_plugin_api::PluginError;

/// Format version written by [`save`].
pub const STATE_VERSION: u32 = 1;
/// Bytes before the queue.
pub const FIXED_LEN: usize = 32 + 1 + 1 + 1 + 1 + 3 + 6 + 2 + 1;

/// Serializes the controller and the line levels.
pub fn save(c: &Controller, lines: (bool, bool)) -> DeviceState {
    let mut out = Vec::with_capacity(FIXED_LEN + 2 * c.queue.len());
    out.extend_from_slice(&c.ram);
    out.push(c.output_port);
    out.push(u8::from(c.last_was_command));
    out.push(c.pending);
    out.push(c.last_data);
    match c.obuf {
        Some((b, s)) => out.extend_from_slice(&[1, b, s as u8]),
        None => out.extend_from_slice(&[0, 0, 0]),
    }
    let k = &c.keyboard;
    out.extend_from_slice(&[
        u8::from(k.scanning),
        k.scancode_set,
        k.leds,
        k.typematic,
        k.expect,
        k.last_sent,
    ]);
    out.push(u8::from(lines.0));
    out.push(u8::from(lines.1));
    // The queue never exceeds QUEUE_LIMIT (64) entries.
    out.push(c.queue.len() as u8);
    for (b, s) in &c.queue {
        out.extend_from_slice(&[*b, *s as u8]);
    }
    DeviceState {
        version: STATE_VERSION,
        data: out.into(),
    }
}

fn bad(msg: String) -> PluginError {
    PluginError::invalid(format!("i8042 state {msg}"))
}

fn flag(v: u8, what: &str) -> Result<bool, PluginError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad(format!("has {what} byte {v}, expected 0 or 1"))),
    }
}

fn source(v: u8) -> Result<Source, PluginError> {
    Source::from_u8(v).ok_or_else(|| bad(format!("has output source {v}, expected 0-2")))
}

/// Parses a state written by [`save`].
pub fn restore(state: &DeviceState) -> Result<(Controller, (bool, bool)), PluginError> {
    if state.version != STATE_VERSION {
        return Err(bad(format!(
            "version {} is not supported (this plugin reads version {STATE_VERSION})",
            state.version
        )));
    }
    let d = state.data.as_slice();
    if d.len() < FIXED_LEN {
        return Err(bad(format!(
            "is truncated: {} bytes, need at least {FIXED_LEN}",
            d.len()
        )));
    }
    let mut ram = [0u8; 32];
    ram.copy_from_slice(&d[..32]);
    let f = &d[32..FIXED_LEN];
    let pending = f[2];
    if !matches!(pending, 0 | 0x60..=0x7f | 0xd1..=0xd4) {
        return Err(bad(format!("has pending command {pending:#x}")));
    }
    let obuf = match flag(f[4], "output-buffer-full")? {
        true => Some((f[5], source(f[6])?)),
        false => None,
    };
    let keyboard = Keyboard {
        scanning: flag(f[7], "scanning")?,
        scancode_set: f[8],
        leds: f[9],
        typematic: f[10],
        expect: f[11],
        last_sent: f[12],
    };
    if !(1..=3).contains(&keyboard.scancode_set) {
        return Err(bad(format!("has scan-code set {}", keyboard.scancode_set)));
    }
    if !matches!(keyboard.expect, 0 | 0xed | 0xf0 | 0xf3) {
        return Err(bad(format!(
            "has keyboard awaiting a parameter for {:#x}",
            keyboard.expect
        )));
    }
    let lines = (flag(f[13], "IRQ 1 level")?, flag(f[14], "IRQ 12 level")?);
    let count = usize::from(f[15]);
    if count > QUEUE_LIMIT {
        return Err(bad(format!(
            "holds {count} waiting bytes, above {QUEUE_LIMIT}"
        )));
    }
    let rest = &d[FIXED_LEN..];
    if rest.len() != 2 * count {
        return Err(bad(format!(
            "says {count} waiting bytes but carries {} bytes of them",
            rest.len()
        )));
    }
    let queue = rest
        .chunks_exact(2)
        .map(|p| Ok((p[0], source(p[1])?)))
        .collect::<Result<_, PluginError>>()?;
    let c = Controller {
        ram,
        output_port: f[0],
        last_was_command: flag(f[1], "last-write")?,
        pending,
        obuf,
        last_data: f[3],
        queue,
        keyboard,
    };
    Ok((c, lines))
}
