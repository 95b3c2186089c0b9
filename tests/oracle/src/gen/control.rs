//! Generators for control flow inside the snippet (forward Jcc/JMP/CALL, CALL/RET
//! subroutines, bounded LOOP/LOOPcc, JRCXZ, indirect JMP/CALL) and for instructions that
//! fault in user mode (#UD, #BP, #DB, #GP, #PF, #SS, #AC).

use crate::case::{gpr, rflags, DATA_ADDR, UNMAPPED_ADDR};
use crate::error::OracleError;
use crate::flags::flag_effect;
use crate::gen::alu::{size, Group};
use crate::gen::bits::CC;
use crate::gen::builder::{operand_size, Builder, GOp};
use crate::gen::ops::{self, code, reg, Rm};
use crate::gen::Family;
use iced_x86::{Instruction, MemoryOperand, Register};

/// Families allowed inside CALL/RET subroutines and loop bodies (no control flow, no
/// stack changes, no implicit RCX/RSI/RDI writes).
const SIMPLE: [Family; 9] = [
    Family::DataMove,
    Family::Arith,
    Family::Logic,
    Family::ShiftRotate,
    Family::BitOps,
    Family::CondMove,
    Family::Lea,
    Family::ByteSwap,
    Family::FlagOps,
];

/// One to `max` simple groups concatenated.
fn body(b: &mut Builder, max: u64) -> Result<Vec<GOp>, OracleError> {
    let mut out = Vec::new();
    let n = 1 + b.rng.below(max);
    for _ in 0..n {
        let fam = SIMPLE[b.rng.below(SIMPLE.len() as u64) as usize];
        if let Some(g) = super::family_group(b, fam)? {
            out.extend(g);
        }
    }
    Ok(out)
}

/// Union of the flags the instructions of `ops` may leave undefined.
fn undefined_union(ops: &[GOp]) -> u64 {
    ops.iter()
        .map(|op| match op {
            GOp::Ins(i, c) => flag_effect(i.mnemonic(), operand_size(i), *c).undefined,
            _ => 0,
        })
        .fold(0, |a, u| a | u)
}

/// Forward branches, subroutine calls, bounded loops, JRCXZ and indirect branches.
pub(crate) fn control(b: &mut Builder) -> Result<Group, OracleError> {
    let mut g = Vec::new();
    match b.rng.below(9) {
        0 | 1 => {
            let cc = CC[b.rng.below(16) as usize];
            let l = b.fwd_label(4);
            g.push(GOp::Branch(code(&format!("J{cc}_rel32_64"))?, l));
        }
        2 => {
            let l = b.fwd_label(3);
            g.push(GOp::Branch(code("Jmp_rel32_64")?, l));
        }
        3 => {
            // CALL forward: the return address stays on the (data-area) stack.
            let l = b.fwd_label(3);
            g.push(GOp::Branch(code("Call_rel32_64")?, l));
        }
        4 | 5 => {
            // call sub; jmp over; sub: body; ret [imm16]; over:
            let sub = b.label();
            let over = b.label();
            g.push(GOp::Branch(code("Call_rel32_64")?, sub));
            g.push(GOp::Branch(code("Jmp_rel32_64")?, over));
            g.push(GOp::Bind(sub));
            g.extend(body(b, 2)?);
            let ret = if b.rng.chance(1, 3) {
                ops::i_imm("Retnq_imm16", (b.rng.below(3) * 8) as i32)?
            } else {
                ops::i0("Retnq")?
            };
            g.push(GOp::Ins(ret, None));
            g.push(GOp::Bind(over));
        }
        6 => {
            // mov ecx, k; head: body; loop/loope/loopne head  (k >= 1, so it terminates)
            if !b.writable(gpr::RCX) {
                return Ok(None);
            }
            let k = 1 + b.rng.below(4) as i64;
            let ecx_form = b.rng.chance(1, 6);
            g.push(GOp::Ins(
                ops::i_rm_imm("Mov_r32_imm32", Rm::Reg(Register::ECX), k)?,
                None,
            ));
            let head = b.label();
            let saved = b.forbid(gpr::RCX);
            let body_ops = body(b, 2);
            b.restore_forbid(saved);
            let body_ops = body_ops?;
            g.push(GOp::BindLoopHead(head, undefined_union(&body_ops)));
            g.extend(body_ops);
            let kind = ["Loop", "Loope", "Loopne"][b.rng.below(3) as usize];
            let reg_name = if ecx_form { "ECX" } else { "RCX" };
            g.push(GOp::Branch(
                code(&format!("{kind}_rel8_64_{reg_name}"))?,
                head,
            ));
        }
        7 => {
            let l = b.fwd_label(2);
            g.push(GOp::Branch(code("Jrcxz_rel8_64")?, l));
        }
        _ => {
            // Indirect JMP/CALL through a register or a data-area slot.
            let Some(r) = b.wreg_index() else {
                return Ok(None);
            };
            let r = reg(r, 64);
            let l = b.fwd_label(3);
            g.push(GOp::LeaLabel(r, l));
            let call = b.rng.chance(1, 3);
            let name = if call { "Call_rm64" } else { "Jmp_rm64" };
            if b.rng.chance(1, 2) {
                g.push(GOp::Ins(ops::i_rm(name, Rm::Reg(r))?, None));
            } else {
                let disp = b.rng.range(-0x800, 0x800) & !7;
                let m = MemoryOperand::with_base_displ(reg(b.base, 64), disp);
                g.push(GOp::Ins(ops::i_rm_r("Mov_rm64_r64", Rm::Mem(m), r)?, None));
                g.push(GOp::Ins(ops::i_rm(name, Rm::Mem(m))?, None));
            }
        }
    }
    Ok(Some(g))
}

/// Instructions that raise exceptions at CPL 3 (Linux user mode, IOPL 0, CR0.AM = 1).
pub(crate) fn faults(b: &mut Builder) -> Result<Group, OracleError> {
    let mut g = Vec::new();
    let e = |r: Result<Instruction, iced_x86::IcedError>| {
        r.map_err(|e| OracleError::Encode(e.to_string()))
    };
    match b.rng.below(12) {
        // #UD, #BP (trap), #DB from INT1 (trap).
        0 => {
            let name = *b
                .rng
                .pick(&["Ud2", "Int3", "Int1", "Ud0"])
                .unwrap_or(&"Ud2");
            g.push(GOp::Ins(ops::i0(name)?, None));
        }
        // Privileged instructions: #GP(0).
        1 | 2 => {
            let name = *b
                .rng
                .pick(&[
                    "Hlt", "Cli", "Sti", "Rdmsr", "Wrmsr", "Clts", "Invd", "Wbinvd", "Swapgs",
                ])
                .unwrap_or(&"Hlt");
            g.push(GOp::Ins(ops::i0(name)?, None));
        }
        // INT n through a DPL-0 gate: #GP(n*8+2) (never 3, 4 or 0x80).
        3 => {
            let mut n = b.rng.below(256) as i32;
            if matches!(n, 3 | 4 | 0x80) {
                n = 0x21;
            }
            g.push(GOp::Ins(ops::i_imm("Int_imm8", n)?, None));
        }
        // Port I/O without permission: #GP(0).
        4 => {
            if !b.writable(gpr::RAX) {
                return Ok(None);
            }
            let ins = match b.rng.below(4) {
                0 => e(Instruction::with2(
                    ops::code_n("In_AL_imm8", 2)?,
                    Register::AL,
                    0x60,
                ))?,
                1 => e(Instruction::with2(
                    ops::code_n("Out_imm8_AL", 2)?,
                    0x80,
                    Register::AL,
                ))?,
                2 => e(Instruction::with2(
                    ops::code_n("In_AL_DX", 2)?,
                    Register::AL,
                    Register::DX,
                ))?,
                _ => e(Instruction::with2(
                    ops::code_n("Out_DX_AL", 2)?,
                    Register::DX,
                    Register::AL,
                ))?,
            };
            g.push(GOp::Ins(ins, None));
        }
        // MOV from CR0 / to DR7 and LGDT: #GP(0).
        5 => {
            let Some(r) = b.wreg_index() else {
                return Ok(None);
            };
            let ins = match b.rng.below(3) {
                0 => e(Instruction::with2(
                    ops::code_n("Mov_r64_cr", 2)?,
                    reg(r, 64),
                    Register::CR0,
                ))?,
                1 => e(Instruction::with2(
                    ops::code_n("Mov_dr_r64", 2)?,
                    Register::DR7,
                    reg(r, 64),
                ))?,
                _ => {
                    let m = MemoryOperand::with_base_displ(reg(b.base, 64), 0);
                    ops::i_rm("Lgdt_m1664", Rm::Mem(m))?
                }
            };
            g.push(GOp::Ins(ins, None));
        }
        // Load/store at an unmapped address: #PF with CR2 and a user read/write code.
        6 | 7 => {
            let Some(p) = b.wreg_index() else {
                return Ok(None);
            };
            let addr = UNMAPPED_ADDR + b.rng.below(0x1000);
            g.push(GOp::Ins(
                ops::i_r_imm64("Mov_r64_imm64", reg(p, 64), addr)?,
                None,
            ));
            let s = size(b);
            let m = Rm::Mem(MemoryOperand::with_base(reg(p, 64)));
            let ins = if b.rng.chance(1, 2) {
                ops::i_rm_r(&format!("Mov_rm{s}_r{s}"), m, b.rreg(s))?
            } else {
                let Some(d) = b.wreg(s) else { return Ok(None) };
                ops::i_r_rm(&format!("Mov_r{s}_rm{s}"), d, m)?
            };
            g.push(GOp::Ins(ins, None));
        }
        // Non-canonical address: #GP(0), or #SS(0) with an RBP/RSP base.
        8 | 9 => {
            let Some(p) = b.wreg_index() else {
                return Ok(None);
            };
            let addr = 0x8000_0000_0000_0000u64 | (b.rng.next_u64() & 0x00FF_FFFF_FFFF_FFF0);
            g.push(GOp::Ins(
                ops::i_r_imm64("Mov_r64_imm64", reg(p, 64), addr)?,
                None,
            ));
            let m = Rm::Mem(MemoryOperand::with_base(reg(p, 64)));
            let Some(d) = b.wreg(64) else { return Ok(None) };
            g.push(GOp::Ins(ops::i_r_rm("Mov_r64_rm64", d, m)?, None));
        }
        // Misaligned access with RFLAGS.AC set: #AC(0) (Linux sets CR0.AM).
        10 => {
            let flags = (b.rng.next_u64() & rflags::SETTABLE) | rflags::AC;
            g.push(GOp::Ins(ops::i_imm("Pushq_imm32", flags as i32)?, None));
            g.push(GOp::Ins(ops::i0("Popfq")?, None));
            let Some(d) = b.wreg(32) else { return Ok(None) };
            let disp = (b.rng.range(-0x400, 0x400) & !3) | 1;
            let addr = b.base_val as i64 + disp;
            let disp = if addr & 3 == 0 { disp + 1 } else { disp };
            let m = Rm::Mem(MemoryOperand::with_base_displ(reg(b.base, 64), disp));
            g.push(GOp::Ins(ops::i_r_rm("Mov_r32_rm32", d, m)?, None));
        }
        _ => {
            // Data-area store that runs off the end of the mapping: #PF on the next page.
            let Some(p) = b.wreg_index() else {
                return Ok(None);
            };
            let addr = DATA_ADDR + crate::case::DATA_SIZE as u64 - 4;
            g.push(GOp::Ins(
                ops::i_r_imm64("Mov_r64_imm64", reg(p, 64), addr)?,
                None,
            ));
            let m = Rm::Mem(MemoryOperand::with_base(reg(p, 64)));
            g.push(GOp::Ins(ops::i_rm_r("Mov_rm64_r64", m, b.rreg(64))?, None));
        }
    }
    Ok(Some(g))
}
