//! Byte encoding of the PIC pair for device snapshots.
//!
//! Version 1: the master then the slave, [`CHIP_BYTES`] each:
//! `IRR ISR IMR pins ELCR ICW2 ICW3 ICW4 lowest-priority init-step flags`,
//! where `pins` are the IR0-IR7 input levels, `init-step` is 0 (done), 1, 2
//! or 3 (next A0 = 1 write is ICW2, ICW3, ICW4) and `flags` holds
//! bit 0 LTIM, 1 SNGL, 2 IC4, 3 read ISR, 4 poll pending, 5 special mask,
//! 6 rotate in AEOI; bit 7 is 0.

use crate::chip::{Chip, InitStep, ICW4_DEFINED};
use crate::pair::{PicPair, CASCADE_INPUT, ELCR_MASTER_MASK, ELCR_SLAVE_MASK};
use hyperplug_plugin_api::PluginError;

/// Format version written by [`encode`].
pub const STATE_VERSION: u32 = 1;
/// Bytes per chip.
pub const CHIP_BYTES: usize = 11;
/// Bytes of a version-1 state.
pub const STATE_BYTES: usize = 2 * CHIP_BYTES;

const FLAG_LTIM: u8 = 1 << 0;
const FLAG_SNGL: u8 = 1 << 1;
const FLAG_IC4: u8 = 1 << 2;
const FLAG_READ_ISR: u8 = 1 << 3;
const FLAG_POLL: u8 = 1 << 4;
const FLAG_SMM: u8 = 1 << 5;
const FLAG_ROTATE_AEOI: u8 = 1 << 6;
const FLAGS_DEFINED: u8 = 0x7f;

fn encode_chip(c: &Chip, out: &mut Vec<u8>) {
    let flags = [
        (c.ltim, FLAG_LTIM),
        (c.single, FLAG_SNGL),
        (c.ic4, FLAG_IC4),
        (c.read_isr, FLAG_READ_ISR),
        (c.poll, FLAG_POLL),
        (c.special_mask, FLAG_SMM),
        (c.rotate_aeoi, FLAG_ROTATE_AEOI),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0u8, |acc, (_, f)| acc | f);
    out.extend_from_slice(&[
        c.irr,
        c.isr,
        c.imr,
        c.lines,
        c.elcr,
        c.icw2,
        c.icw3,
        c.icw4,
        c.lowest,
        c.init as u8,
        flags,
    ]);
}

/// Serializes `pair`.
pub fn encode(pair: &PicPair) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATE_BYTES);
    for c in &pair.chips {
        encode_chip(c, &mut out);
    }
    out
}

fn decode_chip(is_master: bool, b: &[u8], elcr_mask: u8) -> Result<Chip, PluginError> {
    let name = if is_master { "master" } else { "slave" };
    let bad = |what: String| PluginError::invalid(format!("pic state: {name} {what}"));
    let flags = b[10];
    if flags & !FLAGS_DEFINED != 0 {
        return Err(bad(format!("flags {flags:#04x} set undefined bits")));
    }
    if b[4] & !elcr_mask != 0 {
        return Err(bad(format!(
            "ELCR {:#04x} sets bits outside {elcr_mask:#04x}",
            b[4]
        )));
    }
    if b[7] & !ICW4_DEFINED != 0 {
        return Err(bad(format!("ICW4 {:#04x} sets undefined bits", b[7])));
    }
    if b[8] > 7 {
        return Err(bad(format!("lowest-priority level {} is not 0-7", b[8])));
    }
    let init =
        InitStep::from_u8(b[9]).ok_or_else(|| bad(format!("init step {} is not 0-3", b[9])))?;
    let c = Chip {
        is_master,
        irr: b[0],
        isr: b[1],
        imr: b[2],
        lines: b[3],
        elcr: b[4],
        icw2: b[5],
        icw3: b[6],
        icw4: b[7],
        lowest: b[8],
        init,
        ltim: flags & FLAG_LTIM != 0,
        single: flags & FLAG_SNGL != 0,
        ic4: flags & FLAG_IC4 != 0,
        read_isr: flags & FLAG_READ_ISR != 0,
        poll: flags & FLAG_POLL != 0,
        special_mask: flags & FLAG_SMM != 0,
        rotate_aeoi: flags & FLAG_ROTATE_AEOI != 0,
    };
    if (init == InitStep::Icw3 && c.single) || (init == InitStep::Icw4 && !c.ic4) {
        return Err(bad(format!(
            "waits for ICW{} that its ICW1 did not ask for",
            b[9] + 1
        )));
    }
    let stale = (c.irr ^ c.lines) & c.level_mode();
    if stale != 0 {
        return Err(bad(format!(
            "IRR {:#04x} disagrees with level-triggered inputs {:#04x} (pins {:#04x})",
            c.irr,
            c.level_mode(),
            c.lines
        )));
    }
    Ok(c)
}

/// Parses a state written by [`encode`] with format `version`.
pub fn decode(version: u32, data: &[u8]) -> Result<PicPair, PluginError> {
    if version != STATE_VERSION {
        return Err(PluginError::invalid(format!(
            "pic state version {version} is not supported (this plugin reads version {STATE_VERSION})"
        )));
    }
    if data.len() != STATE_BYTES {
        return Err(PluginError::invalid(format!(
            "pic state must be {STATE_BYTES} bytes, got {}",
            data.len()
        )));
    }
    let (m, s) = data.split_at(CHIP_BYTES);
    let pair = PicPair {
        chips: [
            decode_chip(true, m, ELCR_MASTER_MASK)?,
            decode_chip(false, s, ELCR_SLAVE_MASK)?,
        ],
    };
    if !pair.cascade_consistent() {
        return Err(PluginError::invalid(format!(
            "pic state: master IR{CASCADE_INPUT} level disagrees with the slave's INT output"
        )));
    }
    Ok(pair)
}
