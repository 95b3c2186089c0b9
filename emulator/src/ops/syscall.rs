//! Fast system calls: SYSCALL/SYSRET and SYSENTER/SYSEXIT (SDM vol. 2,
//! the instruction pages, "Operation"; vol. 3, 5.8.7 and 5.8.8). The CPU
//! model is Intel: SYSCALL/SYSRET exist only in 64-bit mode, SYSENTER and
//! SYSEXIT in every protected mode including IA-32e mode.
//!
//! Every check is made before any register changes, so a fault leaves the
//! state (including the segment registers, which the engine does not
//! snapshot) as before the instruction.

use crate::bus::Bus;
use crate::cpu::{reg, Mode, Seg, SegReg, CR0_PE, EFER_LMA};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{IF, RF, VM};
use crate::mem::is_canonical;
use iced_x86::Mnemonic;

/// EFER.SCE (SDM vol. 3, 2.2.1, Table 2-1).
const EFER_SCE: u64 = 1;

/// The fixed flat 4-GiB segment these instructions load: code (type 11,
/// L/D as given) or data (type 3, B = 1), DPL = `dpl`
/// (SDM vol. 2, SYSCALL "Operation", "Set rest of CS/SS to a fixed value").
fn flat(selector: u16, code: bool, long: bool, dpl: u8) -> Seg {
    Seg {
        selector,
        base: 0,
        limit: 0xffff_ffff,
        typ: if code { 11 } else { 3 },
        s: true,
        dpl,
        present: true,
        avl: false,
        l: code && long,
        db: !(code && long),
        g: true,
        unusable: false,
    }
}

impl<B: Bus> Ctx<'_, B> {
    fn la57(&self) -> bool {
        self.cpu.cr4 & (1 << 12) != 0
    }

    fn load_flat_pair(&mut self, cs: Seg, ss: Seg) {
        self.cpu.seg[SegReg::Cs as usize] = cs;
        self.cpu.seg[SegReg::Ss as usize] = ss;
    }
}

/// #UD unless in 64-bit mode with EFER.SCE = 1 (SDM vol. 2, SYSCALL and SYSRET).
fn syscall_ud<B: Bus>(cx: &Ctx<'_, B>) -> OpResult {
    if cx.mode != Mode::Long64 || cx.cpu.efer & EFER_LMA == 0 || cx.cpu.efer & EFER_SCE == 0 {
        return Err(Exception::ud().into());
    }
    Ok(())
}

/// SYSCALL: RCX = next RIP, RIP = IA32_LSTAR, R11 = RFLAGS, RFLAGS &=
/// ~IA32_FMASK (and RF cleared), CS = STAR[47:32] & FFFCh (64-bit code,
/// DPL 0), SS = STAR[47:32] + 8 (data, DPL 0); CPL becomes 0.
pub(super) fn syscall<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    syscall_ud(cx)?;
    let star = cx.cpu.msrs.star;
    let sel = ((star >> 32) & 0xffff) as u16;
    let next = cx.next_rip;
    let fl = cx.cpu.rflags;
    cx.cpu.gpr[reg::RCX] = next;
    cx.cpu.gpr[11] = fl;
    cx.cpu.rflags = (fl & !cx.cpu.msrs.sfmask & !RF) | 2;
    cx.cpu.rip = cx.cpu.msrs.lstar;
    let cs = flat(sel & 0xfffc, true, true, 0);
    let ss = flat(sel.wrapping_add(8), false, false, 0);
    cx.load_flat_pair(cs, ss);
    Ok(())
}

/// SYSRET / SYSRETQ: #GP(0) at CPL ≠ 0 or (64-bit return) a non-canonical
/// RCX; RIP = RCX (ECX for a 32-bit return), RFLAGS = (R11 & 3C7FD7h) | 2,
/// CS = STAR[63:48] (+16 for a 64-bit return) | 3, SS = STAR[63:48] + 8 | 3.
pub(super) fn sysret<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    syscall_ud(cx)?;
    cx.require_cpl0()?;
    let to64 = m == Mnemonic::Sysretq;
    let rcx = cx.cpu.gpr[reg::RCX];
    if to64 && !is_canonical(rcx, cx.la57()) {
        return Err(Exception::gp(0).into());
    }
    let base = ((cx.cpu.msrs.star >> 48) & 0xffff) as u16;
    let cs_sel = if to64 { base.wrapping_add(16) } else { base } | 3;
    let ss_sel = base.wrapping_add(8) | 3;
    cx.cpu.rip = if to64 { rcx } else { rcx & 0xffff_ffff };
    cx.cpu.rflags = (cx.cpu.gpr[11] & 0x3c_7fd7) | 2;
    let cs = flat(cs_sel, true, to64, 3);
    let ss = flat(ss_sel, false, false, 3);
    cx.load_flat_pair(cs, ss);
    Ok(())
}

/// SYSENTER: #GP(0) in real mode or with IA32_SYSENTER_CS[15:2] = 0;
/// clears VM, IF, RF; RSP/RIP from IA32_SYSENTER_ESP/EIP (32 bits outside
/// IA-32e mode); CS = SYSENTER_CS & FFFCh, SS = CS + 8, CPL 0.
pub(super) fn sysenter<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let cs_msr = cx.cpu.msrs.sysenter_cs as u16;
    if cx.cpu.cr0 & CR0_PE == 0 || cs_msr & 0xfffc == 0 {
        return Err(Exception::gp(0).into());
    }
    let ia32e = cx.cpu.efer & EFER_LMA != 0;
    let (esp, eip) = (cx.cpu.msrs.sysenter_esp, cx.cpu.msrs.sysenter_eip);
    cx.cpu.rflags &= !(VM | IF | RF);
    if ia32e {
        cx.cpu.gpr[reg::RSP] = esp;
        cx.cpu.rip = eip;
    } else {
        cx.cpu.gpr[reg::RSP] = esp & 0xffff_ffff;
        cx.cpu.rip = eip & 0xffff_ffff;
    }
    let sel = cs_msr & 0xfffc;
    let cs = flat(sel, true, ia32e, 0);
    let ss = flat(sel.wrapping_add(8), false, false, 0);
    cx.load_flat_pair(cs, ss);
    Ok(())
}

/// SYSEXIT / SYSEXITQ: #GP(0) in real mode, at CPL ≠ 0, with
/// IA32_SYSENTER_CS[15:2] = 0, or (64-bit return) non-canonical RCX/RDX;
/// RSP = rCX, RIP = rDX; CS = SYSENTER_CS + 16 (+32 for a 64-bit return)
/// | 3, SS = CS + 8; CPL 3.
pub(super) fn sysexit<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let cs_msr = cx.cpu.msrs.sysenter_cs as u16;
    if cx.cpu.cr0 & CR0_PE == 0 || cx.mode == Mode::V86 {
        return Err(Exception::gp(0).into());
    }
    if cs_msr & 0xfffc == 0 || cx.cpl != 0 {
        return Err(Exception::gp(0).into());
    }
    let to64 = m == Mnemonic::Sysexitq;
    let (rcx, rdx) = (cx.cpu.gpr[reg::RCX], cx.cpu.gpr[reg::RDX]);
    if to64 && (!is_canonical(rcx, cx.la57()) || !is_canonical(rdx, cx.la57())) {
        return Err(Exception::gp(0).into());
    }
    if to64 {
        cx.cpu.gpr[reg::RSP] = rcx;
        cx.cpu.rip = rdx;
    } else {
        cx.cpu.gpr[reg::RSP] = rcx & 0xffff_ffff;
        cx.cpu.rip = rdx & 0xffff_ffff;
    }
    let cs_sel = cs_msr.wrapping_add(if to64 { 32 } else { 16 }) | 3;
    let ss_sel = cs_msr.wrapping_add(if to64 { 40 } else { 24 }) | 3;
    let cs = flat(cs_sel, true, to64, 3);
    let ss = flat(ss_sel, false, false, 3);
    cx.load_flat_pair(cs, ss);
    Ok(())
}
