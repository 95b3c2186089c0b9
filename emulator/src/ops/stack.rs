//! Stack operations: PUSH/POP in all forms, PUSHF/POPF, ENTER/LEAVE
//! (SDM vol. 2, the instruction pages; vol. 1, 6.2 "Stacks").

use super::sreg_of;
use crate::bus::Bus;
use crate::cpu::{reg, Mode, SegReg, CR4_VME};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{self, mask};
use iced_x86::{Code, OpKind};

impl<B: Bus> Ctx<'_, B> {
    /// Stack-address size in bytes: 8 in 64-bit mode, else SS.B ? 4 : 2 (SDM vol. 1, 6.2.3).
    #[inline]
    pub(crate) fn stack_size(&self) -> u8 {
        if self.mode == Mode::Long64 {
            8
        } else if self.cpu.seg[SegReg::Ss as usize].db {
            4
        } else {
            2
        }
    }

    /// Sets rSP's low stack-size bytes.
    #[inline]
    pub(crate) fn set_sp(&mut self, v: u64) {
        let s = self.stack_size();
        self.set_gpr(reg::RSP, s, v);
    }

    /// Pushes the low `size` bytes of `v`.
    #[inline]
    pub(crate) fn push(&mut self, v: u64, size: u8) -> OpResult {
        let ss = self.stack_size();
        let sp = self.cpu.gpr[reg::RSP].wrapping_sub(u64::from(size)) & mask(ss);
        self.write_mem(SegReg::Ss, sp, size, v)?;
        self.set_sp(sp);
        Ok(())
    }

    /// Reads `size` bytes at rSP + `skip` without popping.
    #[inline]
    pub(crate) fn peek_stack(&mut self, skip: u64, size: u8) -> OpResult<u64> {
        let ss = self.stack_size();
        let sp = self.cpu.gpr[reg::RSP].wrapping_add(skip) & mask(ss);
        self.read_mem(SegReg::Ss, sp, size)
    }

    /// Pops `size` bytes.
    #[inline]
    pub(crate) fn pop(&mut self, size: u8) -> OpResult<u64> {
        let v = self.peek_stack(0, size)?;
        let sp = self.cpu.gpr[reg::RSP].wrapping_add(u64::from(size));
        self.set_sp(sp);
        Ok(v)
    }

    /// Operand size of an instruction with 16/32/64-bit variants `codes`.
    pub(crate) fn osz3(&self, codes: [Code; 3]) -> u8 {
        let c = self.insn.code();
        if c == codes[0] {
            2
        } else if c == codes[1] {
            4
        } else {
            8
        }
    }
}

/// PUSH r/m, imm, Sreg.
pub(super) fn push_op<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.insn.stack_pointer_increment().unsigned_abs() as u8;
    if cx.insn.op0_kind() == OpKind::Register {
        if let Some(s) = sreg_of(cx.insn.op0_register()) {
            // A segment register pushed with a 32/64-bit operand size is written
            // with a 16-bit move (recent Intel processors, SDM vol. 2, PUSH).
            let sel = u64::from(cx.cpu.seg[s as usize].selector);
            let ss = cx.stack_size();
            let sp = cx.cpu.gpr[reg::RSP].wrapping_sub(u64::from(size)) & mask(ss);
            cx.write_mem(SegReg::Ss, sp, 2, sel)?;
            cx.set_sp(sp);
            return Ok(());
        }
    }
    let v = cx.read_op(0)?;
    cx.push(v, size)
}

/// POP r/m, Sreg. A memory destination's address is computed after rSP is
/// incremented (SDM vol. 2, POP).
pub(super) fn pop_op<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.insn.stack_pointer_increment().unsigned_abs() as u8;
    if cx.insn.op0_kind() == OpKind::Register {
        if let Some(s) = sreg_of(cx.insn.op0_register()) {
            if s == SegReg::Cs {
                return Err(Exception::ud().into());
            }
            let v = cx.peek_stack(0, 2)?;
            cx.load_data_seg(s, v as u16)?;
            let sp = cx.cpu.gpr[reg::RSP].wrapping_add(u64::from(size));
            cx.set_sp(sp);
            if s == SegReg::Ss {
                cx.cpu.ss_shadow = true;
            }
            return Ok(());
        }
    }
    let v = cx.pop(size)?;
    cx.write_op(0, v)
}

/// PUSHF/PUSHFD/PUSHFQ: the image has VM and RF clear (SDM vol. 2, PUSHF).
/// In virtual-8086 mode with IOPL < 3, 16-bit PUSHF with CR4.VME = 1 pushes
/// FLAGS with VIF in the IF position and IOPL as 3; anything else is #GP(0)
/// (SDM vol. 2, PUSHF "Operation"; vol. 3, 20.3.2).
pub(super) fn pushf<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.osz3([Code::Pushfw, Code::Pushfd, Code::Pushfq]);
    if cx.mode == Mode::V86 && cx.cpu.rflags & flags::IOPL != flags::IOPL {
        if cx.cpu.cr4 & CR4_VME == 0 || size != 2 {
            return Err(Exception::gp(0).into());
        }
        let v = virtual_flags(cx.cpu.rflags);
        return cx.push(v, 2);
    }
    let v = cx.cpu.rflags & !(flags::VM | flags::RF);
    cx.push(v, size)
}

/// POPF/POPFD/POPFQ with the CPL/IOPL rules of SDM vol. 2, POPF "Operation".
pub(super) fn popf<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.osz3([Code::Popfw, Code::Popfd, Code::Popfq]);
    let iopl = ((cx.cpu.rflags & flags::IOPL) >> 12) as u8;
    let mut modifiable = flags::STATUS
        | flags::TF
        | flags::IF
        | flags::DF
        | flags::IOPL
        | flags::NT
        | flags::AC
        | flags::ID;
    if cx.mode == Mode::V86 {
        if iopl != 3 {
            return popf_vme(cx, size);
        }
        modifiable &= !flags::IOPL;
    } else if cx.mode.is_protected() {
        if cx.cpl > 0 {
            modifiable &= !flags::IOPL;
        }
        if cx.cpl > iopl {
            modifiable &= !flags::IF;
        }
    }
    if size == 2 {
        modifiable &= 0xffff;
    }
    let v = cx.pop(size)?;
    let mut f = (cx.cpu.rflags & !modifiable) | (v & modifiable) | flags::FIXED;
    if size > 2 {
        f &= !flags::RF;
    }
    cx.cpu.rflags = f;
    Ok(())
}

/// The 16-bit FLAGS image a virtual-8086 task sees with CR4.VME = 1 and
/// IOPL < 3: VIF in the IF position and IOPL as 3 (SDM vol. 3, 20.3.2).
pub(super) fn virtual_flags(rflags: u64) -> u64 {
    let vif = if rflags & flags::VIF != 0 {
        flags::IF
    } else {
        0
    };
    ((rflags & !flags::IF) | vif | flags::IOPL) & 0xffff
}

/// Loads a 16-bit FLAGS image `v` in virtual-8086 mode with CR4.VME = 1 and
/// IOPL < 3: #GP(0) if `v` has TF set, or IF set while VIP = 1; otherwise
/// IF and IOPL are kept and VIF takes the image's IF (SDM vol. 2, POPF and
/// IRET "Operation"; vol. 3, 20.3.2). Returns the new RFLAGS.
pub(super) fn load_virtual_flags(rflags: u64, v: u64) -> OpResult<u64> {
    if v & flags::TF != 0 || (v & flags::IF != 0 && rflags & flags::VIP != 0) {
        return Err(Exception::gp(0).into());
    }
    let modifiable = 0xffff & !(flags::IF | flags::IOPL);
    let vif = if v & flags::IF != 0 { flags::VIF } else { 0 };
    Ok((rflags & !modifiable & !flags::VIF) | (v & modifiable) | vif | flags::FIXED)
}

/// POPF in virtual-8086 mode at IOPL < 3: with CR4.VME = 1 a 16-bit POPF
/// goes through the virtual interrupt flag; else (or POPFD) #GP(0).
fn popf_vme<B: Bus>(cx: &mut Ctx<'_, B>, size: u8) -> OpResult {
    if cx.cpu.cr4 & CR4_VME == 0 || size != 2 {
        return Err(Exception::gp(0).into());
    }
    let v = cx.peek_stack(0, 2)? & 0xffff;
    let f = load_virtual_flags(cx.cpu.rflags, v)?;
    cx.pop(2)?;
    cx.cpu.rflags = f;
    Ok(())
}

/// ENTER imm16, imm8 (SDM vol. 2, ENTER "Operation").
pub(super) fn enter<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.osz3([
        Code::Enterw_imm16_imm8,
        Code::Enterd_imm16_imm8,
        Code::Enterq_imm16_imm8,
    ]);
    let alloc = cx.insn.immediate16() as u64;
    let level = u64::from(cx.insn.immediate8_2nd() % 32);
    let ss = cx.stack_size();
    let bp = cx.cpu.gpr[reg::RBP];
    cx.push(bp, size)?;
    let frame = cx.cpu.gpr[reg::RSP] & mask(ss);
    if level > 0 {
        let mut b = bp;
        for _ in 1..level {
            b = b.wrapping_sub(u64::from(size)) & mask(ss);
            let v = cx.read_mem(SegReg::Ss, b, size)?;
            cx.push(v, size)?;
        }
        cx.push(frame, size)?;
    }
    let sp = cx.cpu.gpr[reg::RSP].wrapping_sub(alloc) & mask(ss);
    cx.set_gpr(reg::RBP, size, frame);
    cx.set_sp(sp);
    Ok(())
}

/// LEAVE: rSP = rBP; rBP = pop.
pub(super) fn leave<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.osz3([Code::Leavew, Code::Leaved, Code::Leaveq]);
    let bp = cx.cpu.gpr[reg::RBP];
    cx.set_sp(bp);
    let v = cx.pop(size)?;
    cx.set_gpr(reg::RBP, size, v);
    Ok(())
}
