//! Generators for stack operations (PUSH/POP in all forms, PUSHF/POPF, ENTER/LEAVE),
//! flag instructions, exchanges (XCHG, XADD, CMPXCHG, CMPXCHG8B/16B, LOCK) and string
//! instructions with REP prefixes.

use crate::case::{gpr, rflags};
use crate::error::OracleError;
use crate::gen::alu::{imm_for, size, size_no8, Group};
use crate::gen::builder::{Builder, GOp};
use crate::gen::ops::{self, reg, Rm};
use iced_x86::{Instruction, MemoryOperand, Register, RepPrefixKind};

/// PUSH/POP of registers, memory and immediates (16- and 64-bit), PUSHF/POPF with
/// controlled values (so TF/AC never get set), ENTER/LEAVE.
pub(crate) fn stack(b: &mut Builder) -> Result<Group, OracleError> {
    let mut g = Vec::new();
    match b.rng.below(12) {
        0 | 1 => {
            let s = if b.rng.chance(1, 5) { 16 } else { 64 };
            let r = b.rreg(s);
            g.push(GOp::Ins(
                ops::i_rm(&format!("Push_r{s}"), Rm::Reg(r))?,
                None,
            ));
        }
        2 => {
            let s = if b.rng.chance(1, 5) { 16 } else { 64 };
            let (m, pre) = b.mem();
            g.extend(pre);
            g.push(GOp::Ins(
                ops::i_rm(&format!("Push_rm{s}"), Rm::Mem(m))?,
                None,
            ));
        }
        3 => {
            let (name, imm) = match b.rng.below(3) {
                0 => ("Pushq_imm8", b.rng.range(-128, 127) as i32),
                1 => ("Pushq_imm32", imm_for(b, 32) as i32),
                _ => ("Push_imm16", imm_for(b, 16) as i32),
            };
            g.push(GOp::Ins(ops::i_imm(name, imm)?, None));
        }
        4 | 5 => {
            let s = if b.rng.chance(1, 5) { 16 } else { 64 };
            let Some(r) = b.wreg(s) else { return Ok(None) };
            g.push(GOp::Ins(ops::i_rm(&format!("Pop_r{s}"), Rm::Reg(r))?, None));
        }
        6 => {
            // POP to memory (with an RSP base the address is computed after the pop).
            let s = if b.rng.chance(1, 5) { 16 } else { 64 };
            let (m, pre) = b.mem();
            g.extend(pre);
            g.push(GOp::Ins(
                ops::i_rm(&format!("Pop_rm{s}"), Rm::Mem(m))?,
                None,
            ));
        }
        7 | 8 => {
            // PUSHF, then POP into a register.
            let wide = b.rng.chance(3, 4);
            let s = if wide { 64 } else { 16 };
            let Some(r) = b.wreg(s) else { return Ok(None) };
            g.push(GOp::Ins(
                ops::i0(if wide { "Pushfq" } else { "Pushfw" })?,
                None,
            ));
            g.push(GOp::Ins(ops::i_rm(&format!("Pop_r{s}"), Rm::Reg(r))?, None));
        }
        9 | 10 => {
            // PUSH a random status/DF pattern, POPF it.
            let v = (b.rng.next_u64() & rflags::SETTABLE) as i32;
            if b.rng.chance(3, 4) {
                g.push(GOp::Ins(ops::i_imm("Pushq_imm32", v)?, None));
                g.push(GOp::Ins(ops::i0("Popfq")?, None));
            } else {
                g.push(GOp::Ins(ops::i_imm("Push_imm16", v)?, None));
                g.push(GOp::Ins(ops::i0("Popfw")?, None));
            }
        }
        _ => {
            // ENTER size, 0/1 ... LEAVE (nesting level > 1 would read old frames).
            if !b.writable(gpr::RBP) {
                return Ok(None);
            }
            let frame = (b.rng.below(9) * 8) as i32;
            let level = b.rng.below(2) as i32;
            let enter = Instruction::with2(ops::code_n("Enterq_imm16_imm8", 2)?, frame, level)
                .map_err(|e| OracleError::Encode(e.to_string()))?;
            g.push(GOp::Ins(enter, None));
            g.push(GOp::Ins(ops::i0("Leaveq")?, None));
        }
    }
    Ok(Some(g))
}

/// CLC, STC, CMC, CLD, STD, LAHF, SAHF.
pub(crate) fn flag_ops(b: &mut Builder) -> Result<Group, OracleError> {
    let k = b.rng.below(7) as usize;
    let name = ["Clc", "Stc", "Cmc", "Cld", "Std", "Lahf", "Sahf"][k];
    if name == "Lahf" && !b.writable(gpr::RAX) {
        return Ok(None);
    }
    Ok(Some(vec![GOp::Ins(ops::i0(name)?, None)]))
}

/// XCHG (register and memory, short RAX form), XADD, CMPXCHG, CMPXCHG8B/16B, with LOCK
/// on memory destinations half of the time.
pub(crate) fn exchange(b: &mut Builder) -> Result<Group, OracleError> {
    let lock = b.rng.chance(1, 2);
    let mut g = Vec::new();
    match b.rng.below(8) {
        0..=4 => {
            let op = ["Xchg", "Xadd", "Cmpxchg", "Xchg", "Cmpxchg"][b.rng.below(5) as usize];
            if op == "Cmpxchg" && !b.writable(gpr::RAX) {
                return Ok(None);
            }
            let s = size(b);
            let Some((rm, pre)) = b.wrm(s) else {
                return Ok(None);
            };
            g.extend(pre);
            let r = if op == "Cmpxchg" {
                Some(b.rreg(s))
            } else {
                b.wreg(s)
            };
            let Some(r) = r else { return Ok(None) };
            let mut ins = ops::i_rm_r(&format!("{op}_rm{s}_r{s}"), rm, r)?;
            if rm.is_mem() && lock {
                ins.set_has_lock_prefix(true);
            }
            g.push(GOp::Ins(ins, None));
        }
        5 => {
            // XCHG r, rAX short form (90+r); not EAX,EAX, which is NOP.
            let s = size_no8(b);
            if !b.writable(gpr::RAX) {
                return Ok(None);
            }
            let Some(i) = b.wreg_index() else {
                return Ok(None);
            };
            if i == gpr::RAX {
                return Ok(None);
            }
            let acc = match s {
                16 => "AX",
                32 => "EAX",
                _ => "RAX",
            };
            let ins = ops::i_rm_r(
                &format!("Xchg_r{s}_{acc}"),
                Rm::Reg(reg(i, s)),
                reg(gpr::RAX, s),
            )?;
            g.push(GOp::Ins(ins, None));
        }
        _ => {
            // CMPXCHG8B / CMPXCHG16B (the latter needs 16-byte alignment, else #GP(0)).
            if !b.writable(gpr::RAX) || !b.writable(gpr::RDX) {
                return Ok(None);
            }
            let wide = b.rng.chance(1, 2);
            let target = crate::case::DATA_ADDR + 0x1000 + b.rng.below(0x6000);
            let target = if wide && !b.rng.chance(1, 8) {
                target & !15
            } else {
                target & !7
            };
            let disp = target as i64 - b.base_val as i64;
            let m = MemoryOperand::with_base_displ(reg(b.base, 64), disp);
            let name = if wide {
                "Cmpxchg16b_m128"
            } else {
                "Cmpxchg8b_m64"
            };
            let mut ins = ops::i_rm(name, Rm::Mem(m))?;
            ins.set_has_lock_prefix(lock);
            g.push(GOp::Ins(ins, None));
        }
    }
    Ok(Some(g))
}

/// MOVS/STOS/LODS/CMPS/SCAS in every width, with REP/REPE/REPNE and bounded counts; RSI
/// and RDI are pointed into the data area first. Needs RSI, RDI and RCX writable.
pub(crate) fn string(b: &mut Builder) -> Result<Group, OracleError> {
    if !b.writable(gpr::RSI) || !b.writable(gpr::RDI) || !b.writable(gpr::RCX) {
        return Ok(None);
    }
    let mut g = Vec::new();
    for r in [Register::RSI, Register::RDI] {
        let d = b.rng.range(-0x800, 0x800);
        let m = MemoryOperand::with_base_displ(reg(b.base, 64), d);
        g.push(GOp::Ins(ops::i_r_rm("Lea_r64_m", r, Rm::Mem(m))?, None));
    }
    let n = match b.rng.below(4) {
        0 => 0,
        1 => 1,
        2 => b.rng.below(8),
        _ => b.rng.below(65),
    };
    g.push(GOp::Ins(
        ops::i_rm_imm("Mov_r32_imm32", Rm::Reg(Register::ECX), n as i64)?,
        None,
    ));
    if b.rng.chance(1, 4) {
        g.push(GOp::Ins(
            ops::i0(if b.rng.chance(1, 2) { "Std" } else { "Cld" })?,
            None,
        ));
    }
    let asz = if b.rng.chance(1, 8) { 32 } else { 64 };
    let w = b.rng.below(4);
    let op = b.rng.below(5);
    if op == 2 && !b.writable(gpr::RAX) {
        return Ok(None);
    }
    let compare = op >= 3;
    let rep = match b.rng.below(4) {
        0 => RepPrefixKind::None,
        1 if compare => RepPrefixKind::Repne,
        _ => RepPrefixKind::Repe,
    };
    let seg = Register::None;
    let e = |r: Result<Instruction, iced_x86::IcedError>| {
        r.map_err(|e| OracleError::Encode(e.to_string()))
    };
    let ins = match (op, w) {
        (0, 0) => e(Instruction::with_movsb(asz, seg, rep))?,
        (0, 1) => e(Instruction::with_movsw(asz, seg, rep))?,
        (0, 2) => e(Instruction::with_movsd(asz, seg, rep))?,
        (0, _) => e(Instruction::with_movsq(asz, seg, rep))?,
        (1, 0) => e(Instruction::with_stosb(asz, rep))?,
        (1, 1) => e(Instruction::with_stosw(asz, rep))?,
        (1, 2) => e(Instruction::with_stosd(asz, rep))?,
        (1, _) => e(Instruction::with_stosq(asz, rep))?,
        (2, 0) => e(Instruction::with_lodsb(asz, seg, rep))?,
        (2, 1) => e(Instruction::with_lodsw(asz, seg, rep))?,
        (2, 2) => e(Instruction::with_lodsd(asz, seg, rep))?,
        (2, _) => e(Instruction::with_lodsq(asz, seg, rep))?,
        (3, 0) => e(Instruction::with_cmpsb(asz, seg, rep))?,
        (3, 1) => e(Instruction::with_cmpsw(asz, seg, rep))?,
        (3, 2) => e(Instruction::with_cmpsd(asz, seg, rep))?,
        (3, _) => e(Instruction::with_cmpsq(asz, seg, rep))?,
        (_, 0) => e(Instruction::with_scasb(asz, rep))?,
        (_, 1) => e(Instruction::with_scasw(asz, rep))?,
        (_, 2) => e(Instruction::with_scasd(asz, rep))?,
        (_, _) => e(Instruction::with_scasq(asz, rep))?,
    };
    let count = if rep == RepPrefixKind::None {
        None
    } else {
        Some(n)
    };
    g.push(GOp::Ins(ins, count));
    Ok(Some(g))
}
