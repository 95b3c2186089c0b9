//! Segment-descriptor instructions: LLDT/SLDT, LTR/STR, LAR/LSL,
//! VERR/VERW, ARPL and SWAPGS (SDM vol. 2, the instruction pages;
//! vol. 3, 3.5 "System Descriptor Types", 7.2.4 "Task Register").
//!
//! Every check and memory access is made before LDTR/TR/GS change, so a
//! fault leaves them as before (the engine snapshots only GPRs, RIP and
//! RFLAGS).

use crate::bus::Bus;
use crate::cpu::{Mode, SegReg, EFER_LMA};
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{merge, ZF};
use crate::mem::is_canonical;
use crate::policy::{DescTableInsn, InsnIntercepts, InterceptKind};
use crate::seg::{null_seg, parse};
use iced_x86::Mnemonic;

/// System-descriptor types (SDM vol. 3, 3.5, Table 3-2).
mod ty {
    pub const TSS16_AVAIL: u8 = 1;
    pub const LDT: u8 = 2;
    pub const TSS16_BUSY: u8 = 3;
    pub const CALL16: u8 = 4;
    pub const TASK: u8 = 5;
    pub const TSS_AVAIL: u8 = 9;
    pub const TSS_BUSY: u8 = 11;
    pub const CALL: u8 = 12;
}

impl<B: Bus> Ctx<'_, B> {
    fn ia32e(&self) -> bool {
        self.cpu.efer & EFER_LMA != 0
    }

    /// #UD in real-address and virtual-8086 mode (these instructions are
    /// "not recognized" there, SDM vol. 2, e.g. LLDT "Real-Address Mode Exceptions").
    fn protected_only(&self) -> OpResult {
        if !self.mode.is_protected() {
            return Err(Exception::ud().into());
        }
        Ok(())
    }

    fn desc_intercept(&self, which: DescTableInsn) -> OpResult {
        if self.policy.insns.contains(InsnIntercepts::DESC_TABLE) {
            return Err(self.intercept(InterceptKind::DescTable(which)));
        }
        Ok(())
    }

    /// The selector operand (16 bits of a register or memory).
    fn selector_operand(&mut self) -> OpResult<u16> {
        let v = if self.is_mem(0) {
            self.read_mem(self.mseg(), self.ea(), 2)?
        } else {
            self.read_op(0)?
        };
        Ok(v as u16)
    }

    /// Reads the GDT system descriptor for LLDT/LTR: (address, low, high),
    /// 16 bytes in IA-32e mode (SDM vol. 3, 7.2.3 "TSS Descriptor in 64-bit Mode").
    /// #GP(sel) beyond the GDT limit.
    fn read_system_desc(&mut self, sel: u16) -> OpResult<(u64, u64, Option<u64>)> {
        let size = if self.ia32e() { 16 } else { 8 };
        let addr = self.desc_addr(sel, size, vector::GP)?;
        let lo = self.read_sys(addr, 8)?;
        let hi = if self.ia32e() {
            Some(self.read_sys(addr.wrapping_add(8), 8)?)
        } else {
            None
        };
        Ok((addr, lo, hi))
    }

    /// The checks shared by LLDT and LTR on a 16-byte descriptor in IA-32e
    /// mode: the upper type field must be 0 and the base canonical (#GP(sel)).
    fn check_upper(&self, sel: u16, base: u64, hi: Option<u64>) -> OpResult {
        if let Some(h) = hi {
            let la57 = self.cpu.cr4 & (1 << 12) != 0;
            if (h >> 40) & 0x1f != 0 || !is_canonical(base, la57) {
                return Err(Exception::gp(u32::from(sel & 0xfffc)).into());
            }
        }
        Ok(())
    }

    /// Reads the descriptor for `sel` for LAR/LSL/VERR/VERW: `None` for a
    /// null selector or one beyond its table's limit (no fault; SDM vol. 2,
    /// LAR "Operation"). Page faults on the table are still raised.
    fn probe_desc(&mut self, sel: u16) -> OpResult<Option<u64>> {
        if sel & 0xfffc == 0 {
            return Ok(None);
        }
        let Ok(addr) = self.desc_addr(sel, 8, vector::GP) else {
            return Ok(None);
        };
        Ok(Some(self.read_sys(addr, 8)?))
    }

    fn set_zf(&mut self, z: bool) {
        self.cpu.rflags = merge(self.cpu.rflags, if z { ZF } else { 0 }, ZF);
    }
}

/// The instructions of this family.
pub(super) fn desc<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    use Mnemonic as M;
    match m {
        M::Lldt => lldt(cx),
        M::Ltr => ltr(cx),
        M::Sldt | M::Str => {
            cx.protected_only()?;
            let (which, sel) = if m == M::Sldt {
                (DescTableInsn::Sldt, cx.cpu.ldtr.selector)
            } else {
                (DescTableInsn::Str, cx.cpu.tr.selector)
            };
            cx.desc_intercept(which)?;
            // A memory destination takes 16 bits; a 32/64-bit register is
            // zero-extended (SDM vol. 2, SLDT/STR).
            if cx.is_mem(0) {
                cx.write_mem(cx.mseg(), cx.ea(), 2, u64::from(sel))
            } else {
                cx.write_op(0, u64::from(sel))
            }
        }
        M::Lar | M::Lsl => lar_lsl(cx, m == M::Lar),
        M::Verr | M::Verw => verr_verw(cx, m == M::Verw),
        M::Arpl => arpl(cx),
        _ => swapgs(cx),
    }
}

/// LLDT r/m16 (SDM vol. 2, LLDT "Operation"): a null selector makes LDTR
/// unusable; otherwise the selector must index the GDT (#GP(sel)) and name
/// a present LDT descriptor (#GP(sel) / #NP(sel)).
fn lldt<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    cx.protected_only()?;
    cx.require_cpl0()?;
    cx.desc_intercept(DescTableInsn::Lldt)?;
    let sel = cx.selector_operand()?;
    let gp = Exception::gp(u32::from(sel & 0xfffc));
    if sel & 0xfffc == 0 {
        cx.cpu.ldtr = null_seg(sel);
        return Ok(());
    }
    if sel & 4 != 0 {
        return Err(gp.into());
    }
    let (_, lo, hi) = cx.read_system_desc(sel)?;
    let d = parse(sel, lo, hi);
    if d.s || d.typ != ty::LDT {
        return Err(gp.into());
    }
    cx.check_upper(sel, d.base, hi)?;
    if !d.present {
        return Err(Exception::with_code(vector::NP, u32::from(sel & 0xfffc)).into());
    }
    cx.cpu.ldtr = d;
    Ok(())
}

/// LTR r/m16 (SDM vol. 2, LTR "Operation"): the selector must be non-null
/// (#GP(0)), index the GDT and name a present available TSS (only the
/// 32/64-bit type in IA-32e mode) (#GP(sel) / #NP(sel)); the descriptor is
/// marked busy and TR loaded.
fn ltr<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    cx.protected_only()?;
    cx.require_cpl0()?;
    cx.desc_intercept(DescTableInsn::Ltr)?;
    let sel = cx.selector_operand()?;
    let gp = Exception::gp(u32::from(sel & 0xfffc));
    if sel & 0xfffc == 0 {
        return Err(Exception::gp(0).into());
    }
    if sel & 4 != 0 {
        return Err(gp.into());
    }
    let (addr, lo, hi) = cx.read_system_desc(sel)?;
    let d = parse(sel, lo, hi);
    let ok = !d.s
        && if cx.ia32e() {
            d.typ == ty::TSS_AVAIL
        } else {
            matches!(d.typ, ty::TSS_AVAIL | ty::TSS16_AVAIL)
        };
    if !ok {
        return Err(gp.into());
    }
    cx.check_upper(sel, d.base, hi)?;
    if !d.present {
        return Err(Exception::with_code(vector::NP, u32::from(sel & 0xfffc)).into());
    }
    // Busy bit: type bit 1, in byte 5 of the descriptor (SDM vol. 3, 7.2.2).
    let b5 = ((lo >> 40) as u8) | 2;
    cx.write_lin(addr.wrapping_add(5), &[b5], true)?;
    let mut t = d;
    t.typ |= 2;
    cx.cpu.tr = t;
    Ok(())
}

/// LAR / LSL (SDM vol. 2, LAR and LSL "Operation"): ZF = 1 and the access
/// rights (dword 2 AND 00FFFF00h — the AMD host returns limit bits 19:16
/// too, where Intel leaves them undefined) or the byte-granular limit
/// when the descriptor is visible at CPL/RPL and of an allowed type;
/// otherwise ZF = 0 and the destination is unchanged.
fn lar_lsl<B: Bus>(cx: &mut Ctx<'_, B>, lar: bool) -> OpResult {
    cx.protected_only()?;
    let sel = if cx.is_mem(1) {
        cx.read_mem(cx.mseg(), cx.ea(), 2)?
    } else {
        cx.read_op(1)?
    } as u16;
    let Some(lo) = cx.probe_desc(sel)? else {
        cx.set_zf(false);
        return Ok(());
    };
    let d = parse(sel, lo, None);
    let type_ok = if d.s {
        true
    } else if cx.ia32e() {
        matches!(d.typ, ty::LDT | ty::TSS_AVAIL | ty::TSS_BUSY) || (lar && d.typ == ty::CALL)
    } else {
        matches!(
            d.typ,
            ty::TSS16_AVAIL | ty::LDT | ty::TSS16_BUSY | ty::TSS_AVAIL | ty::TSS_BUSY
        ) || (lar && matches!(d.typ, ty::CALL16 | ty::TASK | ty::CALL))
    };
    let conforming = d.is_code() && d.typ & 4 != 0;
    let rpl = (sel & 3) as u8;
    let visible = conforming || (cx.cpl <= d.dpl && rpl <= d.dpl);
    if !type_ok || !visible {
        cx.set_zf(false);
        return Ok(());
    }
    let v = if lar {
        (lo >> 32) & 0x00ff_ff00
    } else {
        u64::from(d.limit)
    };
    cx.write_op(0, v)?;
    cx.set_zf(true);
    Ok(())
}

/// VERR / VERW (SDM vol. 2, VERR/VERW "Operation"): ZF = 1 when the segment
/// is a code/data segment visible at CPL and RPL (conforming code: always)
/// that is readable (VERR) or a writable data segment (VERW).
fn verr_verw<B: Bus>(cx: &mut Ctx<'_, B>, write: bool) -> OpResult {
    cx.protected_only()?;
    let sel = cx.selector_operand()?;
    let Some(lo) = cx.probe_desc(sel)? else {
        cx.set_zf(false);
        return Ok(());
    };
    let d = parse(sel, lo, None);
    let conforming = d.is_code() && d.typ & 4 != 0;
    let rpl = (sel & 3) as u8;
    let visible = if write {
        cx.cpl <= d.dpl && rpl <= d.dpl
    } else {
        conforming || (cx.cpl <= d.dpl && rpl <= d.dpl)
    };
    let kind_ok = if write {
        d.is_writable()
    } else {
        d.is_readable()
    };
    cx.set_zf(d.s && visible && kind_ok);
    Ok(())
}

/// ARPL r/m16, r16 (SDM vol. 2, ARPL): if DEST.RPL < SRC.RPL, ZF = 1 and
/// DEST.RPL = SRC.RPL, else ZF = 0. Protected mode only (#UD in real and
/// virtual-8086 mode); opcode 63h is MOVSXD in 64-bit mode.
fn arpl<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if !cx.mode.is_protected() || cx.mode == Mode::Long64 {
        return Err(Exception::ud().into());
    }
    let dest = cx.read_rmw(0)? as u16;
    let src = cx.read_op(1)? as u16;
    if dest & 3 < src & 3 {
        cx.write_op(0, u64::from((dest & !3) | (src & 3)))?;
        cx.set_zf(true);
    } else {
        cx.set_zf(false);
    }
    Ok(())
}

/// SWAPGS (SDM vol. 2, SWAPGS): #UD outside 64-bit mode, #GP(0) at CPL ≠ 0;
/// exchanges GS.base with IA32_KERNEL_GS_BASE.
fn swapgs<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.mode != Mode::Long64 {
        return Err(Exception::ud().into());
    }
    cx.require_cpl0()?;
    let gs = &mut cx.cpu.seg[SegReg::Gs as usize].base;
    std::mem::swap(gs, &mut cx.cpu.msrs.kernel_gs_base);
    Ok(())
}
