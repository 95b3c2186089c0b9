//! Generators for bit operations (BT*, BSF/BSR, POPCNT/LZCNT/TZCNT, BMI1/BMI2, ADX),
//! byte swaps (BSWAP, MOVBE) and conditional moves/sets (CMOVcc, SETcc).

use crate::error::OracleError;
use crate::gen::alu::{size_no8, Group};
use crate::gen::builder::{Builder, GOp};
use crate::gen::ops::{self, reg, Rm};

/// Condition-code suffixes in encoding order (SDM vol. 1 appendix B, table B-1).
pub(crate) const CC: [&str; 16] = [
    "o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g",
];

/// BT/BTS/BTR/BTC with register or imm8 bit offsets (register offsets into memory are
/// bounded first: they address memory outside the operand), BSF/BSR, POPCNT, LZCNT, TZCNT,
/// and the BMI1/BMI2/ADX instructions the host supports.
pub(crate) fn bit_ops(b: &mut Builder) -> Result<Group, OracleError> {
    let k = b.rng.below(10);
    match k {
        0..=3 => bt(b),
        4 | 5 => scan_count(b),
        _ => bmi(b),
    }
}

fn bt(b: &mut Builder) -> Result<Group, OracleError> {
    let op = *b.rng.pick(&["Bt", "Bts", "Btr", "Btc"]).unwrap_or(&"Bt");
    let s = size_no8(b);
    let (rm, mut g) = if op == "Bt" {
        b.rrm(s)
    } else {
        match b.wrm(s) {
            Some(x) => x,
            None => return Ok(None),
        }
    };
    if b.rng.chance(1, 2) {
        let imm = b.rng.below(256) as i64;
        g.push(GOp::Ins(
            ops::i_rm_imm(&format!("{op}_rm{s}_imm8"), rm, imm)?,
            None,
        ));
        return Ok(Some(g));
    }
    let offset = if rm.is_mem() {
        // Bound the bit offset to 0..=0x7FF bits (256 bytes) past the operand.
        let Some(i) = b.wreg_index() else {
            return Ok(None);
        };
        let and = ops::i_rm_imm("And_rm32_imm32", Rm::Reg(reg(i, 32)), 0x7FF)?;
        g.push(GOp::Ins(and, None));
        reg(i, s)
    } else {
        b.rreg(s)
    };
    g.push(GOp::Ins(
        ops::i_rm_r(&format!("{op}_rm{s}_r{s}"), rm, offset)?,
        None,
    ));
    Ok(Some(g))
}

fn scan_count(b: &mut Builder) -> Result<Group, OracleError> {
    let mut choices = vec!["Bsf", "Bsr"];
    if b.feat.popcnt {
        choices.push("Popcnt");
    }
    if b.feat.lzcnt {
        choices.push("Lzcnt");
    }
    if b.feat.bmi1 {
        choices.push("Tzcnt");
    }
    let op = *b.rng.pick(&choices).unwrap_or(&"Bsf");
    let s = size_no8(b);
    let Some(r) = b.wreg(s) else { return Ok(None) };
    let (rm, mut g) = b.rrm(s);
    g.push(GOp::Ins(
        ops::i_r_rm(&format!("{op}_r{s}_rm{s}"), r, rm)?,
        None,
    ));
    Ok(Some(g))
}

fn bmi(b: &mut Builder) -> Result<Group, OracleError> {
    let mut choices: Vec<&str> = Vec::new();
    if b.feat.bmi1 {
        choices.extend(["Andn", "Bextr", "Blsi", "Blsmsk", "Blsr"]);
    }
    if b.feat.bmi2 {
        choices.extend([
            "Bzhi", "Pdep", "Pext", "Mulx", "Rorx", "Sarx", "Shlx", "Shrx",
        ]);
    }
    if b.feat.adx {
        choices.extend(["Adcx", "Adox"]);
    }
    let Some(op) = b.rng.pick(&choices).copied() else {
        return scan_count(b);
    };
    let s = if b.rng.chance(1, 2) { 32 } else { 64 };
    let Some(d) = b.wreg(s) else { return Ok(None) };
    let (rm, mut g) = b.rrm(s);
    let v = format!("VEX_{op}");
    let ins = match op {
        "Andn" | "Pdep" | "Pext" => {
            ops::i_r_r_rm(&format!("{v}_r{s}_r{s}_rm{s}"), d, b.rreg(s), rm)?
        }
        "Mulx" => {
            // MULX hi, lo, src (implicit RDX); the two destinations must differ.
            let Some(lo) = b.wreg(s) else { return Ok(None) };
            if lo == d {
                return Ok(None);
            }
            ops::i_r_r_rm(&format!("{v}_r{s}_r{s}_rm{s}"), d, lo, rm)?
        }
        "Bextr" | "Bzhi" | "Sarx" | "Shlx" | "Shrx" => {
            ops::i_r_rm_r(&format!("{v}_r{s}_rm{s}_r{s}"), d, rm, b.rreg(s))?
        }
        "Rorx" => ops::i_r_rm_imm(
            &format!("{v}_r{s}_rm{s}_imm8"),
            d,
            rm,
            b.rng.below(256) as i32,
        )?,
        "Adcx" | "Adox" => ops::i_r_rm(&format!("{op}_r{s}_rm{s}"), d, rm)?,
        _ => ops::i_r_rm(&format!("{v}_r{s}_rm{s}"), d, rm)?,
    };
    g.push(GOp::Ins(ins, None));
    Ok(Some(g))
}

/// BSWAP r32/r64 (BSWAP r16 is undefined, SDM vol. 2A BSWAP) and MOVBE if supported.
pub(crate) fn byte_swap(b: &mut Builder) -> Result<Group, OracleError> {
    if b.feat.movbe && b.rng.chance(1, 2) {
        let s = size_no8(b);
        let (m, mut g) = b.mem();
        let ins = if b.rng.chance(1, 2) {
            let Some(r) = b.wreg(s) else { return Ok(None) };
            ops::i_r_rm(&format!("Movbe_r{s}_m{s}"), r, Rm::Mem(m))?
        } else {
            let r = b.rreg(s);
            ops::i_rm_r(&format!("Movbe_m{s}_r{s}"), Rm::Mem(m), r)?
        };
        g.push(GOp::Ins(ins, None));
        return Ok(Some(g));
    }
    let s = if b.rng.chance(1, 2) { 32 } else { 64 };
    let Some(r) = b.wreg(s) else { return Ok(None) };
    Ok(Some(vec![GOp::Ins(
        ops::i_rm(&format!("Bswap_r{s}"), Rm::Reg(r))?,
        None,
    )]))
}

/// CMOVcc r, r/m (16/32/64; the 32-bit form zero-extends even when the condition is
/// false) and SETcc r/m8.
pub(crate) fn cond_move(b: &mut Builder) -> Result<Group, OracleError> {
    let cc = CC[b.rng.below(16) as usize];
    if b.rng.chance(1, 2) {
        let Some((rm, mut g)) = b.wrm(8) else {
            return Ok(None);
        };
        g.push(GOp::Ins(ops::i_rm(&format!("Set{cc}_rm8"), rm)?, None));
        return Ok(Some(g));
    }
    let s = size_no8(b);
    let Some(r) = b.wreg(s) else { return Ok(None) };
    let (rm, mut g) = b.rrm(s);
    g.push(GOp::Ins(
        ops::i_r_rm(&format!("Cmov{cc}_r{s}_rm{s}"), r, rm)?,
        None,
    ));
    Ok(Some(g))
}
