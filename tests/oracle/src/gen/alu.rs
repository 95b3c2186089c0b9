//! Generators for data movement, add/sub-class arithmetic, multiply/divide, logic,
//! sign extension (CBW..CQO) and LEA.

use crate::case::gpr;
use crate::error::OracleError;
use crate::gen::builder::{Builder, GOp};
use crate::gen::ops::{self, reg, Rm};
use iced_x86::{MemoryOperand, Register};

/// A generated group, or None when the family cannot be used right now.
pub(crate) type Group = Option<Vec<GOp>>;

/// A random operand size: 8, 16, 32 or 64 bits (32/64 favoured).
pub(crate) fn size(b: &mut Builder) -> u32 {
    [8u32, 16, 32, 32, 64, 64][b.rng.below(6) as usize]
}

/// A random operand size without 8 bits.
pub(crate) fn size_no8(b: &mut Builder) -> u32 {
    [16u32, 32, 64, 64][b.rng.below(4) as usize]
}

/// An immediate for a `size`-bit operand, sign-extended to i64 (64-bit: an imm32).
pub(crate) fn imm_for(b: &mut Builder, size: u32) -> i64 {
    let v = b.rng.edgy_u64();
    match size {
        8 => i64::from(v as u8 as i8),
        16 => i64::from(v as u16 as i16),
        _ => i64::from(v as u32 as i32),
    }
}

/// Name of the `op rm, imm` form for `size` (64-bit uses imm32).
fn rm_imm_name(op: &str, size: u32) -> String {
    match size {
        8 => format!("{op}_rm8_imm8"),
        64 => format!("{op}_rm64_imm32"),
        s => format!("{op}_rm{s}_imm{s}"),
    }
}

/// Binary ALU operation with all operand forms (ADD ... CMP, AND/OR/XOR, TEST, MOV).
/// `writes` is false for CMP/TEST (the destination is only read).
fn binop(b: &mut Builder, op: &str, writes: bool, short_forms: bool) -> Result<Group, OracleError> {
    let s = size(b);
    let mut g = Vec::new();
    let dst = |b: &mut Builder, g: &mut Vec<GOp>| -> Option<Rm> {
        if writes {
            let (rm, pre) = b.wrm(s)?;
            g.extend(pre);
            Some(rm)
        } else {
            let (rm, pre) = b.rrm(s);
            g.extend(pre);
            Some(rm)
        }
    };
    let form = b.rng.below(if short_forms { 5 } else { 4 });
    let ins = match form {
        0 => {
            let Some(rm) = dst(b, &mut g) else {
                return Ok(None);
            };
            let r = b.rreg(s);
            ops::i_rm_r(&format!("{op}_rm{s}_r{s}"), rm, r)?
        }
        1 if op != "Test" => {
            let r = if writes { b.wreg(s) } else { Some(b.rreg(s)) };
            let Some(r) = r else { return Ok(None) };
            let (rm, pre) = b.rrm(s);
            g.extend(pre);
            ops::i_r_rm(&format!("{op}_r{s}_rm{s}"), r, rm)?
        }
        2 if s != 8 && op != "Test" && op != "Mov" => {
            let Some(rm) = dst(b, &mut g) else {
                return Ok(None);
            };
            let imm = b.rng.range(-128, 127);
            ops::i_rm_imm(&format!("{op}_rm{s}_imm8"), rm, imm)?
        }
        4 => {
            // AL/AX/EAX/RAX, imm short forms (not for MOV, which has no such form).
            if writes && !b.writable(gpr::RAX) {
                return Ok(None);
            }
            let acc = ["AL", "AX", "EAX", "RAX"][(s.trailing_zeros() - 3) as usize];
            let isz = if s == 64 { 32 } else { s };
            let imm = imm_for(b, s);
            ops::i_rm_imm(
                &format!("{op}_{acc}_imm{isz}"),
                Rm::Reg(reg(gpr::RAX, s)),
                imm,
            )?
        }
        _ => {
            let Some(rm) = dst(b, &mut g) else {
                return Ok(None);
            };
            let imm = imm_for(b, s);
            ops::i_rm_imm(&rm_imm_name(op, s), rm, imm)?
        }
    };
    g.push(GOp::Ins(ins, None));
    Ok(Some(g))
}

/// MOV in its register, memory and immediate forms, MOVZX/MOVSX/MOVSXD, MOV moffs.
pub(crate) fn data_move(b: &mut Builder) -> Result<Group, OracleError> {
    match b.rng.below(6) {
        0..=2 => binop(b, "Mov", true, false),
        3 => {
            // mov r64, imm64 / mov r32, imm32 / ...
            let s = size(b);
            let Some(r) = b.wreg(s) else { return Ok(None) };
            let v = b.rng.edgy_u64();
            let ins = match s {
                64 => ops::i_r_imm64("Mov_r64_imm64", r, v)?,
                _ => ops::i_rm_imm(&format!("Mov_r{s}_imm{s}"), Rm::Reg(r), imm_for(b, s))?,
            };
            Ok(Some(vec![GOp::Ins(ins, None)]))
        }
        4 => {
            // movzx/movsx/movsxd
            let (name, dsz, ssz) = *b
                .rng
                .pick(&[
                    ("Movzx", 16u32, 8u32),
                    ("Movzx", 32, 8),
                    ("Movzx", 64, 8),
                    ("Movzx", 32, 16),
                    ("Movzx", 64, 16),
                    ("Movsx", 16, 8),
                    ("Movsx", 32, 8),
                    ("Movsx", 64, 8),
                    ("Movsx", 32, 16),
                    ("Movsx", 64, 16),
                    ("Movsxd", 64, 32),
                ])
                .unwrap_or(&("Movzx", 32, 8));
            let Some(r) = b.wreg(dsz) else {
                return Ok(None);
            };
            let (rm, mut g) = b.rrm(ssz);
            let ins = ops::i_r_rm(&format!("{name}_r{dsz}_rm{ssz}"), r, rm)?;
            g.push(GOp::Ins(ins, None));
            Ok(Some(g))
        }
        _ => {
            // mov al/ax/eax/rax, [moffs64] and the store direction.
            let s = size(b);
            let addr = crate::case::DATA_ADDR + 0x1000 + b.rng.below(0x6000);
            let acc = ["AL", "AX", "EAX", "RAX"][(s.trailing_zeros() - 3) as usize];
            let m = MemoryOperand::with_displ(addr, 8);
            let load = b.rng.chance(1, 2);
            if load && !b.writable(gpr::RAX) {
                return Ok(None);
            }
            let ins = if load {
                ops::i_r_rm(&format!("Mov_{acc}_moffs{s}"), reg(gpr::RAX, s), Rm::Mem(m))?
            } else {
                ops::i_rm_r(&format!("Mov_moffs{s}_{acc}"), Rm::Mem(m), reg(gpr::RAX, s))?
            };
            Ok(Some(vec![GOp::Ins(ins, None)]))
        }
    }
}

/// ADD/ADC/SUB/SBB/CMP in all forms, INC/DEC, NEG.
pub(crate) fn arith(b: &mut Builder) -> Result<Group, OracleError> {
    let k = b.rng.below(8);
    if k < 6 {
        let op = ["Add", "Adc", "Sub", "Sbb", "Cmp", "Add"][k as usize];
        return binop(b, op, op != "Cmp", true);
    }
    let s = size(b);
    let Some((rm, mut g)) = b.wrm(s) else {
        return Ok(None);
    };
    let op = *b.rng.pick(&["Inc", "Dec", "Neg"]).unwrap_or(&"Inc");
    g.push(GOp::Ins(ops::i_rm(&format!("{op}_rm{s}"), rm)?, None));
    Ok(Some(g))
}

/// AND/OR/XOR/TEST in all forms, NOT.
pub(crate) fn logic(b: &mut Builder) -> Result<Group, OracleError> {
    let k = b.rng.below(9);
    if k < 8 {
        let op = ["And", "Or", "Xor", "Test", "And", "Or", "Xor", "Test"][k as usize];
        return binop(b, op, op != "Test", true);
    }
    let s = size(b);
    let Some((rm, mut g)) = b.wrm(s) else {
        return Ok(None);
    };
    g.push(GOp::Ins(ops::i_rm(&format!("Not_rm{s}"), rm)?, None));
    Ok(Some(g))
}

/// MUL/IMUL (one, two and three operands), DIV/IDIV (often with a taming prologue so
/// some divisions succeed; the others raise #DE).
pub(crate) fn mul_div(b: &mut Builder) -> Result<Group, OracleError> {
    let s = size(b);
    let needs_rdx = s != 8;
    if !b.writable(gpr::RAX) || (needs_rdx && !b.writable(gpr::RDX)) {
        return imul_2_3(b);
    }
    let k = b.rng.below(6);
    if k == 5 {
        return imul_2_3(b);
    }
    let op = ["Mul", "Imul", "Div", "Idiv", "Div"][k as usize];
    let mut g = Vec::new();
    if (op == "Div" || op == "Idiv") && b.rng.chance(2, 3) {
        // Make the dividend small relative to the divisor's width.
        let pro = match (op, s) {
            ("Div", 8) => ops::i_r_rm("Movzx_r32_rm8", Register::EAX, Rm::Reg(Register::AL))?,
            ("Idiv", 8) => ops::i0("Cbw")?,
            ("Div", _) => ops::i_rm_r("Xor_rm32_r32", Rm::Reg(Register::EDX), Register::EDX)?,
            (_, 16) => ops::i0("Cwd")?,
            (_, 32) => ops::i0("Cdq")?,
            _ => ops::i0("Cqo")?,
        };
        g.push(GOp::Ins(pro, None));
    }
    let (rm, pre) = b.rrm(s);
    g.extend(pre);
    g.push(GOp::Ins(ops::i_rm(&format!("{op}_rm{s}"), rm)?, None));
    Ok(Some(g))
}

/// IMUL r, r/m and IMUL r, r/m, imm8/imm.
fn imul_2_3(b: &mut Builder) -> Result<Group, OracleError> {
    let s = size_no8(b);
    let Some(r) = b.wreg(s) else { return Ok(None) };
    let (rm, mut g) = b.rrm(s);
    let ins = match b.rng.below(3) {
        0 => ops::i_r_rm(&format!("Imul_r{s}_rm{s}"), r, rm)?,
        1 => ops::i_r_rm_imm(
            &format!("Imul_r{s}_rm{s}_imm8"),
            r,
            rm,
            b.rng.range(-128, 127) as i32,
        )?,
        _ => {
            let isz = if s == 64 { 32 } else { s };
            let imm = imm_for(b, s) as i32;
            ops::i_r_rm_imm(&format!("Imul_r{s}_rm{s}_imm{isz}"), r, rm, imm)?
        }
    };
    g.push(GOp::Ins(ins, None));
    Ok(Some(g))
}

/// CBW, CWDE, CDQE, CWD, CDQ, CQO.
pub(crate) fn convert(b: &mut Builder) -> Result<Group, OracleError> {
    let k = b.rng.below(6) as usize;
    let name = ["Cbw", "Cwde", "Cdqe", "Cwd", "Cdq", "Cqo"][k];
    if !b.writable(gpr::RAX) || (k >= 3 && !b.writable(gpr::RDX)) {
        return Ok(None);
    }
    Ok(Some(vec![GOp::Ins(ops::i0(name)?, None)]))
}

/// LEA with arbitrary base/index/scale/displacement (no memory access), 16/32/64-bit
/// destinations, 32-bit address size, and RIP-relative.
pub(crate) fn lea(b: &mut Builder) -> Result<Group, OracleError> {
    let s = size_no8(b);
    let Some(r) = b.wreg(s) else { return Ok(None) };
    let asz = if b.rng.chance(1, 4) { 32 } else { 64 };
    let base = reg(b.rng.below(16) as usize, asz);
    let mut ix = b.rng.below(16) as usize;
    if ix == gpr::RSP {
        ix = gpr::RBP;
    }
    let disp = match b.rng.below(3) {
        0 => 0,
        1 => b.rng.range(-128, 127),
        _ => i64::from(b.rng.next_u64() as i32),
    };
    let m = match b.rng.below(5) {
        0 => MemoryOperand::with_base_displ(
            Register::RIP,
            (crate::case::DATA_ADDR + b.rng.below(0x1_0000)) as i64,
        ),
        1 => MemoryOperand::with_base_displ(base, disp),
        _ => {
            let scale = [1u32, 2, 4, 8][b.rng.below(4) as usize];
            MemoryOperand::with_base_index_scale_displ_size(base, reg(ix, asz), scale, disp, 1)
        }
    };
    let m = if asz == 32 && m.base == Register::RIP {
        MemoryOperand::with_base_displ(base, disp)
    } else {
        m
    };
    let ins = ops::i_r_rm(&format!("Lea_r{s}_m"), r, Rm::Mem(m))?;
    Ok(Some(vec![GOp::Ins(ins, None)]))
}
