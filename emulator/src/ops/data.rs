//! Data movement: MOV (all forms), MOVZX/MOVSX/MOVSXD, XCHG, LEA, CBW..CQO,
//! BSWAP, CMOVcc, SETcc, LAHF/SAHF, XLAT (SDM vol. 2, the instruction pages).

use super::{sreg_of, system};
use crate::bus::Bus;
use crate::cpu::{reg, Mode, SegReg};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{self, cond, mask, sext};
use iced_x86::{Mnemonic, OpKind, Register};

fn is_cr(r: Register) -> bool {
    (Register::CR0 as usize..=Register::CR15 as usize).contains(&(r as usize))
}

fn is_dr(r: Register) -> bool {
    (Register::DR0 as usize..=Register::DR15 as usize).contains(&(r as usize))
}

/// MOV.
pub(super) fn mov<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let i = cx.insn;
    if i.op0_kind() == OpKind::Register {
        let r = i.op0_register();
        if is_cr(r) || is_dr(r) {
            return system::mov_to_crdr(cx, r, i.op1_register());
        }
        if let Some(s) = sreg_of(r) {
            // MOV Sreg, r/m16 (SDM vol. 2, MOV): CS is not a valid destination.
            if s == SegReg::Cs {
                return Err(Exception::ud().into());
            }
            let v = if cx.is_mem(1) {
                cx.read_mem(cx.mseg(), cx.ea(), 2)?
            } else {
                cx.reg(i.op1_register())
            };
            cx.load_data_seg(s, v as u16)?;
            if s == SegReg::Ss {
                cx.cpu.ss_shadow = true;
            }
            return Ok(());
        }
    }
    if i.op1_kind() == OpKind::Register {
        let r = i.op1_register();
        if is_cr(r) || is_dr(r) {
            return system::mov_from_crdr(cx, i.op0_register(), r);
        }
        if let Some(s) = sreg_of(r) {
            let sel = u64::from(cx.cpu.seg[s as usize].selector);
            // A register destination of 32/64 bits is zero-extended; memory takes 16 bits.
            return cx.write_op(0, sel);
        }
    }
    let v = cx.read_op(1)?;
    cx.write_op(0, v)
}

/// MOVZX / MOVSX / MOVSXD.
pub(super) fn movx<B: Bus>(cx: &mut Ctx<'_, B>, signed: bool) -> OpResult {
    let src_size = cx.op_size(1);
    let v = cx.read_op(1)?;
    let v = if signed {
        sext(v, src_size)
    } else {
        v & mask(src_size)
    };
    cx.write_op(0, v)
}

/// XCHG (with memory: implicitly locked, SDM vol. 2, XCHG).
pub(super) fn xchg<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let a = cx.read_rmw(0)?;
    let b = cx.read_op(1)?;
    // Operand 0 first: its address may use the register operand 1 overwrites
    // (e.g. `xchg [r15+r12*8], r12`); memory writes are buffered until commit.
    cx.write_op(0, b)?;
    cx.write_op(1, a)
}

/// LEA: the effective address, truncated to the operand size.
pub(super) fn lea<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if !cx.is_mem(1) {
        return Err(Exception::ud().into());
    }
    let ea = cx.ea();
    cx.write_op(0, ea)
}

/// CBW / CWDE / CDQE: sign-extend the lower half of rAX.
pub(super) fn cbw<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = match cx.insn.mnemonic() {
        Mnemonic::Cbw => 2,
        Mnemonic::Cwde => 4,
        _ => 8,
    };
    let half = size / 2;
    let v = sext(cx.cpu.gpr[reg::RAX] & mask(half), half);
    cx.set_gpr(reg::RAX, size, v);
    Ok(())
}

/// CWD / CDQ / CQO: rDX = sign of rAX.
pub(super) fn cwd<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = match cx.insn.mnemonic() {
        Mnemonic::Cwd => 2,
        Mnemonic::Cdq => 4,
        _ => 8,
    };
    let neg = cx.cpu.gpr[reg::RAX] & flags::sign_bit(size) != 0;
    cx.set_gpr(reg::RDX, size, if neg { u64::MAX } else { 0 });
    Ok(())
}

/// BSWAP (16-bit operand: undefined; we clear the register's low word, as
/// Intel and AMD parts do).
pub(super) fn bswap<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let r = cx.insn.op0_register();
    let v = cx.reg(r);
    let out = match r.size() {
        8 => v.swap_bytes(),
        4 => u64::from((v as u32).swap_bytes()),
        _ => 0,
    };
    cx.set_reg(r, out);
    Ok(())
}

/// CMOVcc: a 32-bit destination is zero-extended even when the condition is false.
pub(super) fn cmov<B: Bus>(cx: &mut Ctx<'_, B>, cc: u8) -> OpResult {
    let v = cx.read_op(1)?;
    if cond(cx.cpu.rflags, cc) {
        cx.write_op(0, v)
    } else {
        let cur = cx.read_op(0)?;
        cx.write_op(0, cur)
    }
}

/// SETcc.
pub(super) fn setcc<B: Bus>(cx: &mut Ctx<'_, B>, cc: u8) -> OpResult {
    let v = u64::from(cond(cx.cpu.rflags, cc));
    cx.write_op(0, v)
}

/// Whether LAHF/SAHF are valid in 64-bit mode: CPUID.80000001H:ECX.LAHF-SAHF[bit 0]
/// of the CPU model (SDM vol. 2, LAHF and SAHF, "64-Bit Mode Exceptions").
fn lahf_sahf_ok<B: Bus>(cx: &Ctx<'_, B>) -> bool {
    cx.mode != Mode::Long64 || cx.eng.model.lookup(0x8000_0001, 0)[2] & 1 != 0
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF. In 64-bit mode #UD unless the CPU model
/// reports LAHF-SAHF (SDM vol. 2, LAHF).
pub(super) fn lahf<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if !lahf_sahf_ok(cx) {
        return Err(Exception::ud().into());
    }
    let f = (cx.cpu.rflags & 0xd5) | 2;
    cx.set_reg(Register::AH, f);
    Ok(())
}

/// SAHF: SF, ZF, AF, PF, CF from AH (64-bit mode: as LAHF).
pub(super) fn sahf<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if !lahf_sahf_ok(cx) {
        return Err(Exception::ud().into());
    }
    let ah = cx.reg(Register::AH);
    cx.cpu.rflags = (cx.cpu.rflags & !0xd5) | (ah & 0xd5) | 2;
    Ok(())
}

/// XLAT: AL = [seg:rBX + AL].
pub(super) fn xlat<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let off = cx.cpu.gpr[reg::RBX].wrapping_add(cx.cpu.gpr[reg::RAX] & 0xff) & mask(cx.asz);
    let v = cx.read_mem(cx.mseg(), off, 1)?;
    cx.set_reg(Register::AL, v);
    Ok(())
}
