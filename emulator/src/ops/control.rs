//! Control transfer: JMP/CALL/RET near and far, Jcc, LOOP/LOOPcc, JrCXZ,
//! INT n/INT3/INTO and IRET (SDM vol. 2, the instruction pages).
//!
//! Far transfers: real and virtual-8086 mode, and protected/IA-32e mode to
//! a code segment at the same privilege (JMP/CALL) or the same or an outer
//! privilege (RET/IRET). Far JMP/CALL through call gates, task gates and
//! to TSSs are in `gates`; IRET with NT returns to the linked task.

use crate::bus::Bus;
use crate::cpu::{reg, Mode, Seg, SegReg, CR4_VME};
use crate::deliver::Source;
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{self, cond, mask};
use crate::mem::is_canonical;
use crate::policy::{InsnIntercepts, InterceptKind};
use iced_x86::{Code, Mnemonic, OpKind};

impl<B: Bus> Ctx<'_, B> {
    /// Checks a new RIP for the current CS (limit, or canonical in 64-bit
    /// mode) and sets it (SDM vol. 2, JMP: #GP(0) if beyond the limit).
    pub(crate) fn branch_to(&mut self, target: u64) -> OpResult {
        if self.mode == Mode::Long64 {
            if !is_canonical(target, self.cpu.cr4 & (1 << 12) != 0) {
                return Err(Exception::gp(0).into());
            }
        } else if target > u64::from(self.cpu.seg[SegReg::Cs as usize].limit) {
            return Err(Exception::gp(0).into());
        }
        self.cpu.rip = target;
        Ok(())
    }

    /// Target of a relative branch, wrapped to its operand size.
    fn rel_target(&self) -> u64 {
        let t = self.rip.wrapping_add(self.insn.near_branch_target());
        match self.insn.op0_kind() {
            OpKind::NearBranch16 => t & 0xffff,
            OpKind::NearBranch32 => t & 0xffff_ffff,
            _ => t,
        }
    }

    fn near_size(&self) -> u8 {
        match self.insn.op0_kind() {
            OpKind::NearBranch16 => 2,
            OpKind::NearBranch32 => 4,
            OpKind::NearBranch64 => 8,
            _ => self.op_size(0),
        }
    }

    /// The new CS cache of a far transfer to `sel:off` (checked, not yet loaded).
    fn far_load(&mut self, sel: u16, off: u64, ret_rpl: Option<u8>) -> OpResult<Seg> {
        if !self.mode.is_protected() {
            let mut cs = self.cpu.seg[SegReg::Cs as usize];
            if off > u64::from(cs.limit) {
                return Err(Exception::gp(0).into());
            }
            cs.selector = sel;
            cs.base = u64::from(sel) << 4;
            return Ok(cs);
        }
        let cs = self.far_code_target(sel, ret_rpl)?;
        let to64 = self.cpu.efer & crate::cpu::EFER_LMA != 0 && cs.l;
        if to64 {
            if !is_canonical(off, self.cpu.cr4 & (1 << 12) != 0) {
                return Err(Exception::gp(0).into());
            }
        } else if off > u64::from(cs.limit) {
            return Err(Exception::gp(0).into());
        }
        Ok(cs)
    }

    /// The far pointer operand: (selector, offset, operand size).
    fn far_operand(&mut self) -> OpResult<(u16, u64, u8)> {
        match self.insn.op0_kind() {
            OpKind::FarBranch16 => Ok((
                self.insn.far_branch_selector(),
                u64::from(self.insn.far_branch16()),
                2,
            )),
            OpKind::FarBranch32 => Ok((
                self.insn.far_branch_selector(),
                u64::from(self.insn.far_branch32()),
                4,
            )),
            OpKind::Memory => {
                let size = match self.insn.code() {
                    Code::Call_m1616 | Code::Jmp_m1616 => 2,
                    Code::Call_m1632 | Code::Jmp_m1632 => 4,
                    _ => 8,
                };
                let (seg, ea) = (self.mseg(), self.ea());
                let off = self.read_mem(seg, ea, size)?;
                let sel =
                    self.read_mem(seg, ea.wrapping_add(u64::from(size)) & mask(self.asz), 2)?;
                Ok((sel as u16, off, size))
            }
            _ => Err(Exception::ud().into()),
        }
    }
}

/// JMP near (relative or indirect) and far.
pub(super) fn jmp<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    match cx.insn.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            let t = cx.rel_target();
            cx.branch_to(t)
        }
        OpKind::Register | OpKind::Memory if !cx.insn.is_jmp_far_indirect() => {
            let t = cx.read_op(0)?;
            cx.branch_to(t)
        }
        _ => {
            let (sel, off, _) = cx.far_operand()?;
            if let Some(r) = cx.far_via_system(sel, cx.next_rip, false) {
                return r;
            }
            let cs = cx.far_load(sel, off, None)?;
            cx.cpu.seg[SegReg::Cs as usize] = cs;
            cx.cpu.rip = off;
            Ok(())
        }
    }
}

/// CALL near (relative or indirect) and far.
pub(super) fn call<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    match cx.insn.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            let t = cx.rel_target();
            let size = cx.near_size();
            let ret = cx.next_rip;
            cx.push(ret, size)?;
            cx.branch_to(t)
        }
        OpKind::Register | OpKind::Memory if !cx.insn.is_call_far_indirect() => {
            let t = cx.read_op(0)?;
            let size = cx.op_size(0);
            let ret = cx.next_rip;
            cx.push(ret, size)?;
            cx.branch_to(t)
        }
        _ => {
            let (sel, off, size) = cx.far_operand()?;
            let old_cs = u64::from(cx.cpu.seg[SegReg::Cs as usize].selector);
            let ret = cx.next_rip;
            if let Some(r) = cx.far_via_system(sel, ret, true) {
                return r;
            }
            let cs = cx.far_load(sel, off, None)?;
            cx.push(old_cs, size)?;
            cx.push(ret, size)?;
            cx.cpu.seg[SegReg::Cs as usize] = cs;
            cx.cpu.rip = off;
            Ok(())
        }
    }
}

/// RET near (optionally releasing imm16 bytes).
pub(super) fn ret<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = match cx.insn.code() {
        Code::Retnw | Code::Retnw_imm16 => 2,
        Code::Retnd | Code::Retnd_imm16 => 4,
        _ => 8,
    };
    let t = cx.pop(size)?;
    if cx.insn.op_count() == 1 {
        let sp = cx.cpu.gpr[reg::RSP].wrapping_add(u64::from(cx.insn.immediate16()));
        cx.set_sp(sp);
    }
    cx.branch_to(t)
}

/// RET far, to the same or an outer privilege level.
pub(super) fn retf<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = match cx.insn.code() {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfd | Code::Retfd_imm16 => 4,
        _ => 8,
    };
    let imm = if cx.insn.op_count() == 1 {
        u64::from(cx.insn.immediate16())
    } else {
        0
    };
    let off = cx.peek_stack(0, size)? & mask(size);
    let sel = cx.peek_stack(u64::from(size), 2)? as u16;
    let rpl = (sel & 3) as u8;
    if !cx.mode.is_protected() || rpl == cx.cpl {
        let cs = cx.far_load(sel, off, Some(cx.cpl))?;
        let sp = cx.cpu.gpr[reg::RSP].wrapping_add(2 * u64::from(size) + imm);
        cx.set_sp(sp);
        cx.cpu.seg[SegReg::Cs as usize] = cs;
        cx.cpu.rip = off;
        return Ok(());
    }
    // Outer privilege: SS:rSP follow the return address and the released bytes.
    let skip = 2 * u64::from(size) + imm;
    let new_sp = cx.peek_stack(skip, size)?;
    let ss_sel = cx.peek_stack(skip + u64::from(size), 2)? as u16;
    let cs = cx.far_load(sel, off, Some(rpl))?;
    let to64 = cs.l && cx.cpu.efer & crate::cpu::EFER_LMA != 0;
    let ss = cx.return_ss(ss_sel, rpl, to64)?;
    cx.cpu.seg[SegReg::Cs as usize] = cs;
    cx.cpu.seg[SegReg::Ss as usize] = ss;
    let ssz = if to64 {
        8
    } else if ss.db {
        4
    } else {
        2
    };
    cx.set_gpr(reg::RSP, ssz, new_sp.wrapping_add(imm));
    cx.cpu.rip = off;
    cx.null_inaccessible_segs(rpl);
    Ok(())
}

/// Jcc.
pub(super) fn jcc<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let cc = (cx.insn.condition_code() as u8).wrapping_sub(1);
    if cond(cx.cpu.rflags, cc) {
        let t = cx.rel_target();
        cx.branch_to(t)?;
    }
    Ok(())
}

/// LOOP / LOOPE / LOOPNE: the counter is CX, ECX or RCX by address size.
pub(super) fn loop_<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let a = cx.asz;
    let c = cx.cpu.gpr[reg::RCX].wrapping_sub(1) & mask(a);
    let zf = cx.cpu.rflags & flags::ZF != 0;
    let taken = c != 0
        && match m {
            Mnemonic::Loope => zf,
            Mnemonic::Loopne => !zf,
            _ => true,
        };
    if taken {
        let t = cx.rel_target();
        cx.branch_to(t)?;
    }
    cx.set_gpr(reg::RCX, a, c);
    Ok(())
}

/// JCXZ / JECXZ / JRCXZ.
pub(super) fn jcxz<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.cpu.gpr[reg::RCX] & mask(cx.asz) == 0 {
        let t = cx.rel_target();
        cx.branch_to(t)?;
    }
    Ok(())
}

/// INT n, INT3, INTO: software interrupts through the IVT/IDT with the
/// return address after the instruction. INT n in virtual-8086 mode follows
/// SDM vol. 3, Table 20-2: without CR4.VME, IOPL < 3 is #GP(0) and IOPL = 3
/// goes to the protected-mode handler; with CR4.VME, a clear bit n in the
/// TSS interrupt-redirection bitmap sends it through the task's own IVT at
/// linear 0 (methods 5 and 6), a set bit behaves as without VME (methods 3
/// and 4). INT3 and INTO are never redirected (SDM vol. 3, 20.3.3).
pub(super) fn int<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let v = match m {
        Mnemonic::Int3 => vector::BP,
        Mnemonic::Into => {
            if cx.mode == Mode::Long64 {
                return Err(Exception::ud().into());
            }
            if cx.cpu.rflags & flags::OF == 0 {
                return Ok(());
            }
            vector::OF
        }
        _ => cx.insn.immediate8(),
    };
    let mut redirect = false;
    if m == Mnemonic::Int && cx.mode == Mode::V86 {
        let iopl3 = cx.cpu.rflags & flags::IOPL == flags::IOPL;
        if cx.cpu.cr4 & CR4_VME != 0 {
            redirect = !redirection_bit(cx, v)?;
        }
        if !redirect && !iopl3 {
            return Err(Exception::gp(0).into());
        }
    }
    if m != Mnemonic::Int && cx.policy.exceptions & (1 << v) != 0 {
        return Err(cx.intercept(InterceptKind::Exception {
            vector: v,
            error_code: None,
            address: None,
            access: None,
        }));
    }
    if cx.policy.insns.contains(InsnIntercepts::INTN) {
        return Err(cx.intercept(InterceptKind::IntN { vector: v }));
    }
    if redirect {
        return int_v86_ivt(cx, v);
    }
    cx.deliver(v, None, Source::Software)
}

/// Bit `v` of the software interrupt-redirection bitmap: the 32 bytes just
/// below the I/O permission bitmap base (TSS offset 0x66) of the 32-bit TSS
/// (SDM vol. 3, 20.3.3 and Figure 20-5). A set bit sends INT `v` to the
/// protected-mode handler. A bitmap byte outside the TSS (beyond its limit,
/// or below offset 0) gives #GP(0), as for the I/O permission bitmap.
fn redirection_bit<B: Bus>(cx: &mut Ctx<'_, B>, v: u8) -> OpResult<bool> {
    let tr = cx.cpu.tr;
    let gp = || Err(Exception::gp(0).into());
    if tr.unusable || !tr.present || tr.typ & 8 == 0 || tr.limit < 0x67 {
        return gp();
    }
    let io_base = cx.read_sys(tr.base.wrapping_add(0x66) & 0xffff_ffff, 2)? & 0xffff;
    let off = match (io_base + u64::from(v >> 3)).checked_sub(32) {
        Some(off) if off <= u64::from(tr.limit) => off,
        _ => return gp(),
    };
    let byte = cx.read_sys(tr.base.wrapping_add(off) & 0xffff_ffff, 1)?;
    Ok(byte & (1 << (v & 7)) != 0)
}

/// INT n redirected to the virtual-8086 task's real-mode IVT at linear 0
/// (SDM vol. 3, 20.3.3.5 and 20.3.3.6; vol. 2, INT n "Operation"): pushes
/// FLAGS (with IOPL < 3: VIF in the IF position and IOPL as 3), CS and IP
/// on the V86 stack, clears TF and IF (IOPL = 3) or VIF (IOPL < 3), and
/// jumps to the vector's segment:offset.
fn int_v86_ivt<B: Bus>(cx: &mut Ctx<'_, B>, v: u8) -> OpResult {
    let mut buf = [0u8; 4];
    cx.read_lin(u64::from(v) * 4, &mut buf, false)?;
    let entry = u32::from_le_bytes(buf);
    let fl = cx.cpu.rflags;
    let iopl3 = fl & flags::IOPL == flags::IOPL;
    let image = if iopl3 {
        fl & 0xffff
    } else {
        super::stack::virtual_flags(fl)
    };
    cx.push(image, 2)?;
    let cs = cx.cpu.seg[SegReg::Cs as usize].selector;
    cx.push(u64::from(cs), 2)?;
    cx.push(cx.cpu.rip & 0xffff, 2)?;
    let cleared = if iopl3 { flags::IF } else { flags::VIF };
    cx.cpu.rflags &= !(cleared | flags::TF);
    let sel = (entry >> 16) as u16;
    cx.cpu.seg[SegReg::Cs as usize] = Seg {
        dpl: 3,
        ..Seg::real(sel, true)
    };
    cx.cpu.rip = u64::from(entry & 0xffff);
    Ok(())
}

/// IRETD at CPL 0 with VM set in the popped EFLAGS: RETURN-TO-VIRTUAL-8086-MODE
/// (SDM vol. 2, IRET "Operation"; vol. 3, 20.3.1.3): pops EIP, CS, EFLAGS,
/// ESP, SS, ES, DS, FS, GS (32 bits each) and loads the segment registers
/// the real-mode way (base = selector × 16, limit 0xFFFF, DPL 3); CPL 3.
fn iret_to_v86<B: Bus>(cx: &mut Ctx<'_, B>, off: u64, cs_sel: u16, fl: u64) -> OpResult {
    let mut vals = [0u64; 6];
    for (i, v) in vals.iter_mut().enumerate() {
        *v = cx.peek_stack(12 + 4 * i as u64, 4)?;
    }
    let [esp, ss, es, ds, fs, gs] = vals;
    let eip = off & 0xffff_ffff;
    if eip > 0xffff {
        return Err(Exception::gp(0).into());
    }
    for (sr, sel) in [
        (SegReg::Cs, u64::from(cs_sel)),
        (SegReg::Ss, ss),
        (SegReg::Es, es),
        (SegReg::Ds, ds),
        (SegReg::Fs, fs),
        (SegReg::Gs, gs),
    ] {
        cx.cpu.seg[sr as usize] = Seg {
            dpl: 3,
            ..Seg::real(sel as u16, sr == SegReg::Cs)
        };
    }
    cx.cpu.rflags = (fl & 0x3f_7fd5) | flags::FIXED;
    cx.cpu.gpr[reg::RSP] = esp & 0xffff_ffff;
    cx.cpu.rip = eip;
    Ok(())
}

/// IRET / IRETD / IRETQ.
pub(super) fn iret<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.policy.insns.contains(InsnIntercepts::IRET) {
        return Err(cx.intercept(InterceptKind::Iret));
    }
    // IRET ends NMI blocking (SDM vol. 3, 6.7.1); this model unblocks at
    // the start of IRET, also when the IRET then faults.
    cx.cpu.nmi_blocked = false;
    if cx.mode.is_protected() && cx.cpu.rflags & flags::NT != 0 {
        // Task return (SDM vol. 2, IRET "TASK-RETURN"; vol. 3, 7.3); #GP(0) in IA-32e mode.
        if cx.cpu.efer & crate::cpu::EFER_LMA != 0 {
            return Err(Exception::gp(0).into());
        }
        let link = cx.read_tss(0, 2)? as u16;
        let ret = cx.next_rip;
        return cx.task_switch(link, crate::task::Switch::Iret, ret, 0, None);
    }
    let size = cx.osz3([Code::Iretw, Code::Iretd, Code::Iretq]);
    let off = cx.peek_stack(0, size)? & mask(size);
    let sel = cx.peek_stack(u64::from(size), 2)? as u16;
    let fl = cx.peek_stack(2 * u64::from(size), size)? & mask(size);
    if !cx.mode.is_protected() {
        if cx.mode == Mode::V86 && cx.cpu.rflags & flags::IOPL != flags::IOPL {
            // Virtual-8086 mode, IOPL < 3: only a 16-bit IRET with CR4.VME
            // runs, through VIF (SDM vol. 2, IRET "Operation"; vol. 3, 20.3.2).
            if cx.cpu.cr4 & CR4_VME == 0 || size != 2 {
                return Err(Exception::gp(0).into());
            }
            let f = super::stack::load_virtual_flags(cx.cpu.rflags, fl)?;
            let cs = cx.far_load(sel, off, None)?;
            cx.cpu.seg[SegReg::Cs as usize] = cs;
            cx.cpu.rip = off;
            let sp = cx.cpu.gpr[reg::RSP].wrapping_add(6);
            cx.set_sp(sp);
            cx.cpu.rflags = f;
            return Ok(());
        }
        let cs = cx.far_load(sel, off, None)?;
        cx.cpu.seg[SegReg::Cs as usize] = cs;
        cx.cpu.rip = off;
        let sp = cx.cpu.gpr[reg::RSP].wrapping_add(3 * u64::from(size));
        cx.set_sp(sp);
        // Real mode: VM, VIF, VIP and (in V86) IOPL are kept (SDM vol. 2, IRET).
        let mut keep = flags::VM | flags::VIF | flags::VIP;
        if cx.mode == Mode::V86 {
            keep |= flags::IOPL;
        }
        let mut modifiable = !keep & 0x3f_7fd5;
        if size == 2 {
            modifiable &= 0xffff;
        }
        cx.cpu.rflags = (cx.cpu.rflags & !modifiable) | (fl & modifiable) | flags::FIXED;
        return Ok(());
    }
    let long = cx.mode == Mode::Long64;
    if fl & flags::VM != 0 && cx.cpl == 0 && !long && size == 4 {
        return iret_to_v86(cx, off, sel, fl);
    }
    let rpl = (sel & 3) as u8;
    let outer = rpl > cx.cpl;
    let cs = cx.far_load(sel, off, Some(rpl))?;
    let to64 = cs.l && cx.cpu.efer & crate::cpu::EFER_LMA != 0;
    let pops_stack = outer || long;
    let mut new_ss = None;
    if pops_stack {
        let sp = cx.peek_stack(3 * u64::from(size), size)?;
        let ss_sel = cx.peek_stack(4 * u64::from(size), 2)? as u16;
        let ss = cx.return_ss(ss_sel, rpl, to64)?;
        new_ss = Some((ss, sp));
    }
    // Flags (SDM vol. 2, IRET "Operation", EFLAGS restore rules).
    let iopl = ((cx.cpu.rflags & flags::IOPL) >> 12) as u8;
    let mut modifiable =
        flags::STATUS | flags::TF | flags::DF | flags::NT | flags::RF | flags::AC | flags::ID;
    if cx.cpl <= iopl {
        modifiable |= flags::IF;
    }
    if cx.cpl == 0 {
        modifiable |= flags::IOPL | flags::VIF | flags::VIP;
    }
    if size == 2 {
        modifiable &= 0xffff;
    }
    let sp_after = cx.cpu.gpr[reg::RSP].wrapping_add(3 * u64::from(size));
    cx.cpu.seg[SegReg::Cs as usize] = cs;
    cx.cpu.rip = off;
    cx.cpu.rflags = (cx.cpu.rflags & !modifiable) | (fl & modifiable) | flags::FIXED;
    match new_ss {
        Some((ss, sp)) => {
            cx.cpu.seg[SegReg::Ss as usize] = ss;
            let ssz = if to64 {
                8
            } else if ss.db {
                4
            } else {
                2
            };
            cx.set_gpr(reg::RSP, ssz, sp);
            if outer {
                cx.null_inaccessible_segs(rpl);
            }
        }
        None => cx.set_sp(sp_after),
    }
    Ok(())
}
