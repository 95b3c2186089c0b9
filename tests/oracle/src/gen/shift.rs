//! Generators for shifts and rotates (by 1, imm8 and CL) and SHLD/SHRD.

use crate::case::gpr;
use crate::error::OracleError;
use crate::gen::alu::{size, size_no8, Group};
use crate::gen::builder::{Builder, GOp};
use crate::gen::ops;
use iced_x86::Register;

/// A shift count biased to the boundaries that change flag behaviour (0, 1, operand
/// size, mask limits).
fn count(b: &mut Builder) -> u8 {
    const EDGE: [u8; 16] = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255];
    if b.rng.chance(3, 4) {
        EDGE[b.rng.below(EDGE.len() as u64) as usize]
    } else {
        b.rng.below(256) as u8
    }
}

/// ROL/ROR/RCL/RCR/SHL/SHR/SAR with a count of 1, an imm8, or CL (CL often set first
/// so the count, and with it the flag effect, is known).
pub(crate) fn shift_rotate(b: &mut Builder) -> Result<Group, OracleError> {
    if b.rng.chance(1, 4) {
        return double_shift(b);
    }
    let op = *b
        .rng
        .pick(&["Rol", "Ror", "Rcl", "Rcr", "Shl", "Shr", "Sar"])
        .unwrap_or(&"Shl");
    let s = size(b);
    let Some((rm, mut g)) = b.wrm(s) else {
        return Ok(None);
    };
    match b.rng.below(3) {
        0 => g.push(GOp::Ins(
            ops::i_rm_imm(&format!("{op}_rm{s}_1"), rm, 1)?,
            Some(1),
        )),
        1 => {
            let c = count(b);
            let ins = ops::i_rm_imm(&format!("{op}_rm{s}_imm8"), rm, i64::from(c))?;
            g.push(GOp::Ins(ins, Some(u64::from(c))));
        }
        _ => {
            let mut known = None;
            if b.writable(gpr::RCX) && b.rng.chance(1, 2) {
                let c = count(b);
                let mov = ops::i_rm_imm(
                    "Mov_r8_imm8",
                    ops::Rm::Reg(Register::CL),
                    i64::from(c as i8),
                )?;
                g.insert(0, GOp::Ins(mov, None));
                known = Some(u64::from(c));
            }
            g.push(GOp::Ins(
                ops::i_rm_r(&format!("{op}_rm{s}_CL"), rm, Register::CL)?,
                known,
            ));
        }
    }
    Ok(Some(g))
}

/// SHLD/SHRD by imm8 or CL. 16-bit forms keep the masked count <= 16, since larger
/// counts leave the destination undefined (SDM vol. 2B SHLD "Operation").
fn double_shift(b: &mut Builder) -> Result<Group, OracleError> {
    let op = if b.rng.chance(1, 2) { "Shld" } else { "Shrd" };
    let s = size_no8(b);
    let Some((rm, mut g)) = b.wrm(s) else {
        return Ok(None);
    };
    let src = b.rreg(s);
    let mut c = count(b);
    if s == 16 && (c & 0x1F) > 16 {
        c = (c & 0xE0) | (c & 0x0F);
    }
    let use_cl = b.writable(gpr::RCX) && b.rng.chance(1, 2);
    if use_cl {
        let mov = ops::i_rm_imm(
            "Mov_r8_imm8",
            ops::Rm::Reg(Register::CL),
            i64::from(c as i8),
        )?;
        g.insert(0, GOp::Ins(mov, None));
        let ins = ops::i_rm_r_r(&format!("{op}_rm{s}_r{s}_CL"), rm, src, Register::CL)?;
        g.push(GOp::Ins(ins, Some(u64::from(c))));
    } else if s != 16 && b.rng.chance(1, 4) {
        // CL with whatever the register holds (32/64-bit counts are always in range).
        let ins = ops::i_rm_r_r(&format!("{op}_rm{s}_r{s}_CL"), rm, src, Register::CL)?;
        g.push(GOp::Ins(ins, None));
    } else {
        let ins = ops::i_rm_r_imm(&format!("{op}_rm{s}_r{s}_imm8"), rm, src, i32::from(c))?;
        g.push(GOp::Ins(ins, Some(u64::from(c))));
    }
    Ok(Some(g))
}
