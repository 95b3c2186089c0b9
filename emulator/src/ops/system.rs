//! System instructions: HLT, CPUID, RDTSC/RDTSCP, RDPID, NOP/PAUSE, UD2,
//! LGDT/LIDT/SGDT/SIDT, MOV to/from CRn and DRn, CLTS, SMSW/LMSW,
//! RDMSR/WRMSR, INVLPG, INVD/WBINVD, MONITOR/MWAIT, RDPMC (SDM vol. 2 and
//! vol. 3, 2.5 "Control Registers", 2.8 "System Instruction Summary").
//!
//! Intercepts are checked after the checks the SDM gives priority over VM
//! exits (#UD, CPL-based #GP; SDM vol. 3, 26.1.1) and before any effect.

use crate::bus::Bus;
use crate::cpu::{msr, reg, Mode, SegReg, CR0_PE, EFER_LMA};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::mem::is_canonical;
use crate::ops::gpr_loc;
use crate::policy::{DescTableInsn, InsnIntercepts, InterceptKind};
use iced_x86::{Mnemonic, Register};

/// CR0 bits (SDM vol. 3, 2.5, Figure 2-7).
const CR0_TS: u64 = 1 << 3;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
/// CR0 bits software may set: PE MP EM TS ET NE WP AM NW CD PG.
const CR0_VALID: u64 = 0xe005_003f;
/// CR4 bits the model supports: VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT.
const CR4_VALID: u64 = 0x7ff;
const CR4_PAE: u64 = 1 << 5;
const CR4_DE: u64 = 1 << 3;
const CR4_TSD: u64 = 1 << 2;
/// EFER bits software may set with this model: SCE, LME, NXE (LMA is read-only).
const EFER_WRITABLE: u64 = 1 | (1 << 8) | (1 << 11);
const EFER_LME: u64 = 1 << 8;

fn insn_intercept<B: Bus>(cx: &Ctx<'_, B>, flag: InsnIntercepts, kind: InterceptKind) -> OpResult {
    if cx.policy.insns.contains(flag) {
        return Err(cx.intercept(kind));
    }
    Ok(())
}

/// The instructions of this family (and #UD for anything unsupported).
pub(super) fn system<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    use Mnemonic as M;
    match m {
        M::Nop => Ok(()),
        M::Pause => insn_intercept(cx, InsnIntercepts::PAUSE, InterceptKind::Pause),
        M::Hlt => {
            cx.require_cpl0()?;
            insn_intercept(cx, InsnIntercepts::HLT, InterceptKind::Hlt)?;
            cx.cpu.halted = true;
            Ok(())
        }
        M::Cpuid => {
            let leaf = cx.cpu.gpr[reg::RAX] as u32;
            let sub = cx.cpu.gpr[reg::RCX] as u32;
            insn_intercept(
                cx,
                InsnIntercepts::CPUID,
                InterceptKind::Cpuid { leaf, subleaf: sub },
            )?;
            let r = cx.eng.model.lookup(leaf, sub);
            for (i, g) in [reg::RAX, reg::RBX, reg::RCX, reg::RDX]
                .into_iter()
                .enumerate()
            {
                cx.set_gpr(g, 4, u64::from(r[i]));
            }
            Ok(())
        }
        M::Rdtsc | M::Rdtscp => {
            if cx.cpu.cr4 & CR4_TSD != 0 && cx.cpl > 0 {
                return Err(Exception::gp(0).into());
            }
            if m == M::Rdtsc {
                insn_intercept(cx, InsnIntercepts::RDTSC, InterceptKind::Rdtsc)?;
            } else {
                insn_intercept(cx, InsnIntercepts::RDTSCP, InterceptKind::Rdtscp)?;
                let aux = cx.cpu.msrs.tsc_aux & 0xffff_ffff;
                cx.set_gpr(reg::RCX, 4, aux);
            }
            let t = cx.tsc_now();
            cx.set_gpr(reg::RAX, 4, t & 0xffff_ffff);
            cx.set_gpr(reg::RDX, 4, t >> 32);
            Ok(())
        }
        M::Rdpid => {
            // RDPID (SDM vol. 2, RDPID "Operation"): IA32_TSC_AUX into the
            // register, all 64 bits in 64-bit mode, else bits 31:0. Not
            // privileged and not affected by CR4.TSD.
            let aux = cx.cpu.msrs.tsc_aux;
            let r = cx.insn.op0_register();
            cx.set_reg(r, aux);
            Ok(())
        }
        M::Rdpmc => {
            insn_intercept(cx, InsnIntercepts::RDPMC, InterceptKind::Rdpmc)?;
            Err(Exception::gp(0).into())
        }
        M::Monitor | M::Mwait => {
            // Not in the CPU model: #UD, unless the policy asks to see it.
            let (flag, kind) = if m == M::Monitor {
                (InsnIntercepts::MONITOR, InterceptKind::Monitor)
            } else {
                (InsnIntercepts::MWAIT, InterceptKind::Mwait)
            };
            insn_intercept(cx, flag, kind)?;
            Err(Exception::ud().into())
        }
        M::Invd | M::Wbinvd => {
            cx.require_cpl0()?;
            if m == M::Invd {
                insn_intercept(cx, InsnIntercepts::INVD, InterceptKind::Invd)
            } else {
                insn_intercept(cx, InsnIntercepts::WBINVD, InterceptKind::Wbinvd)
            }
        }
        M::Invlpg => {
            cx.require_cpl0()?;
            if !cx.is_mem(0) {
                return Err(Exception::ud().into());
            }
            let seg = cx.mseg();
            let ea = cx.ea();
            let lin = if cx.mode == Mode::Long64 {
                let base = if matches!(seg, SegReg::Fs | SegReg::Gs) {
                    cx.cpu.seg[seg as usize].base
                } else {
                    0
                };
                base.wrapping_add(ea)
            } else {
                cx.cpu.seg[seg as usize].base.wrapping_add(ea) & 0xffff_ffff
            };
            insn_intercept(
                cx,
                InsnIntercepts::INVLPG,
                InterceptKind::Invlpg { linear: lin },
            )?;
            let ctx = cx.cpu.paging();
            cx.eng.tlb.invlpg(&ctx, lin);
            if let Some(sh) = cx.eng.shadow.as_mut() {
                sh.invlpg(&ctx, lin);
            }
            Ok(())
        }
        M::Lgdt | M::Lidt => load_dt(cx, m == M::Lgdt),
        M::Sgdt | M::Sidt => store_dt(cx, m == M::Sgdt),
        M::Clts => {
            cx.require_cpl0()?;
            if cx.policy.cr_write & 1 != 0 {
                let value = cx.cpu.cr0 & !CR0_TS;
                return Err(cx.intercept(InterceptKind::CrWrite {
                    cr: 0,
                    gpr: None,
                    value,
                    clts: true,
                    lmsw: false,
                }));
            }
            cx.cpu.cr0 &= !CR0_TS;
            Ok(())
        }
        M::Smsw => {
            let v = cx.cpu.cr0;
            cx.write_op(0, v)
        }
        M::Lmsw => {
            cx.require_cpl0()?;
            let src = cx.read_op(0)? & 0xf;
            // LMSW loads PE, MP, EM, TS and cannot clear PE.
            let value = (cx.cpu.cr0 & !0xe) | (src & 0xf) | (cx.cpu.cr0 & CR0_PE);
            if cx.policy.cr_write & 1 != 0 {
                return Err(cx.intercept(InterceptKind::CrWrite {
                    cr: 0,
                    gpr: None,
                    value,
                    clts: false,
                    lmsw: true,
                }));
            }
            cx.cpu.cr0 = value;
            Ok(())
        }
        M::Rdmsr => {
            cx.require_cpl0()?;
            let n = cx.cpu.gpr[reg::RCX] as u32;
            if cx.policy.msr_read.get(n) {
                return Err(cx.intercept(InterceptKind::MsrRead { msr: n }));
            }
            let v = if n == msr::TSC {
                cx.tsc_now()
            } else {
                cx.cpu.msr_raw(n).ok_or(Exception::gp(0))?
            };
            cx.set_gpr(reg::RAX, 4, v & 0xffff_ffff);
            cx.set_gpr(reg::RDX, 4, v >> 32);
            Ok(())
        }
        M::Wrmsr => wrmsr(cx),
        _ => Err(Exception::ud().into()),
    }
}

/// LGDT / LIDT (SDM vol. 2): 16-bit limit then a 24/32-bit (or 64-bit) base.
fn load_dt<B: Bus>(cx: &mut Ctx<'_, B>, gdt: bool) -> OpResult {
    if !cx.is_mem(0) {
        return Err(Exception::ud().into());
    }
    cx.require_cpl0()?;
    let which = if gdt {
        DescTableInsn::Lgdt
    } else {
        DescTableInsn::Lidt
    };
    insn_intercept(
        cx,
        InsnIntercepts::DESC_TABLE,
        InterceptKind::DescTable(which),
    )?;
    let (seg, ea) = (cx.mseg(), cx.ea());
    let limit = cx.read_mem(seg, ea, 2)? as u16;
    let a2 = ea.wrapping_add(2) & crate::flags::mask(cx.asz);
    let base = if cx.mode == Mode::Long64 {
        let b = cx.read_mem(seg, a2, 8)?;
        if !is_canonical(b, cx.cpu.cr4 & (1 << 12) != 0) {
            return Err(Exception::gp(0).into());
        }
        b
    } else {
        let b = cx.read_mem(seg, a2, 4)?;
        if cx.op_size_prefix16() {
            b & 0x00ff_ffff
        } else {
            b
        }
    };
    let dt = if gdt {
        &mut cx.cpu.gdtr
    } else {
        &mut cx.cpu.idtr
    };
    dt.limit = limit;
    dt.base = base;
    Ok(())
}

/// SGDT / SIDT: limit then base (4 bytes, or 8 in 64-bit mode).
fn store_dt<B: Bus>(cx: &mut Ctx<'_, B>, gdt: bool) -> OpResult {
    if !cx.is_mem(0) {
        return Err(Exception::ud().into());
    }
    let which = if gdt {
        DescTableInsn::Sgdt
    } else {
        DescTableInsn::Sidt
    };
    insn_intercept(
        cx,
        InsnIntercepts::DESC_TABLE,
        InterceptKind::DescTable(which),
    )?;
    let dt = if gdt { cx.cpu.gdtr } else { cx.cpu.idtr };
    let (seg, ea) = (cx.mseg(), cx.ea());
    cx.write_mem(seg, ea, 2, u64::from(dt.limit))?;
    let a2 = ea.wrapping_add(2) & crate::flags::mask(cx.asz);
    let bsize = if cx.mode == Mode::Long64 { 8 } else { 4 };
    cx.write_mem(seg, a2, bsize, dt.base)
}

impl<B: Bus> Ctx<'_, B> {
    /// Whether the operand size is 16 bits (for LGDT's 24-bit base).
    fn op_size_prefix16(&self) -> bool {
        let has66 = self.bytes[..self.insn.len()]
            .iter()
            .take_while(|b| {
                matches!(
                    b,
                    0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65
                )
            })
            .any(|&b| b == 0x66);
        (self.mode.bitness() == 16) != has66
    }
}

fn cr_num(r: Register) -> u8 {
    (r as usize - Register::CR0 as usize) as u8
}

fn dr_num(r: Register) -> u8 {
    (r as usize - Register::DR0 as usize) as u8
}

fn is_cr(r: Register) -> bool {
    (Register::CR0 as usize..=Register::CR15 as usize).contains(&(r as usize))
}

/// MOV CRn/DRn, r.
pub(super) fn mov_to_crdr<B: Bus>(cx: &mut Ctx<'_, B>, dst: Register, src: Register) -> OpResult {
    let gpr = gpr_loc(src).map_or(0, |l| l.0 as u8);
    let v = cx.reg(src);
    if is_cr(dst) {
        let n = cr_num(dst);
        if !matches!(n, 0 | 2 | 3 | 4 | 8) {
            return Err(Exception::ud().into());
        }
        cx.require_cpl0()?;
        if cx.policy.cr_write & (1 << n) != 0 {
            return Err(cx.intercept(InterceptKind::CrWrite {
                cr: n,
                gpr: Some(gpr),
                value: v,
                clts: false,
                lmsw: false,
            }));
        }
        return write_cr(cx, n, v);
    }
    let n = dr_num(dst);
    let n = dr_alias(cx, n)?;
    cx.require_cpl0()?;
    if cx.policy.dr_write & (1 << n) != 0 {
        return Err(cx.intercept(InterceptKind::DrWrite { dr: n, gpr }));
    }
    if matches!(n, 6 | 7) && v >> 32 != 0 {
        return Err(Exception::gp(0).into());
    }
    cx.cpu.dr[usize::from(n)] = match n {
        6 => (v & 0xf00f) | 0xffff_0ff0,
        7 => (v & !0xd800) | 0x400,
        _ => v,
    };
    Ok(())
}

/// DR4/DR5 alias DR6/DR7 unless CR4.DE = 1 (then #UD); DR8-15 are #UD.
fn dr_alias<B: Bus>(cx: &Ctx<'_, B>, n: u8) -> OpResult<u8> {
    match n {
        0..=3 | 6 | 7 => Ok(n),
        4 | 5 if cx.cpu.cr4 & CR4_DE == 0 => Ok(n + 2),
        _ => Err(Exception::ud().into()),
    }
}

/// MOV r, CRn/DRn.
pub(super) fn mov_from_crdr<B: Bus>(cx: &mut Ctx<'_, B>, dst: Register, src: Register) -> OpResult {
    let gpr = gpr_loc(dst).map_or(0, |l| l.0 as u8);
    let v = if is_cr(src) {
        let n = cr_num(src);
        if !matches!(n, 0 | 2 | 3 | 4 | 8) {
            return Err(Exception::ud().into());
        }
        cx.require_cpl0()?;
        if cx.policy.cr_read & (1 << n) != 0 {
            return Err(cx.intercept(InterceptKind::CrRead { cr: n, gpr }));
        }
        match n {
            0 => cx.cpu.cr0,
            2 => cx.cpu.cr2,
            3 => cx.cpu.cr3,
            4 => cx.cpu.cr4,
            _ => cx.cpu.cr8,
        }
    } else {
        let n = dr_alias(cx, dr_num(src))?;
        cx.require_cpl0()?;
        if cx.policy.dr_read & (1 << n) != 0 {
            return Err(cx.intercept(InterceptKind::DrRead { dr: n, gpr }));
        }
        cx.cpu.dr[usize::from(n)]
    };
    cx.set_reg(dst, v);
    Ok(())
}

/// Writes CRn with the reserved-bit and consistency checks of SDM vol. 3,
/// 2.5 and vol. 2, MOV—Move to/from Control Registers, and the TLB flushes
/// of vol. 3, 4.10.4.1.
fn write_cr<B: Bus>(cx: &mut Ctx<'_, B>, n: u8, v: u64) -> OpResult {
    let long = cx.mode == Mode::Long64;
    let v = if long { v } else { v & 0xffff_ffff };
    let gp = || Err(Exception::gp(0).into());
    match n {
        0 => {
            if v & !CR0_VALID != 0
                || (v & CR0_PG != 0 && v & CR0_PE == 0)
                || (v & CR0_NW != 0 && v & CR0_CD == 0)
            {
                return gp();
            }
            let mut new = v | CR0_ET;
            let old = cx.cpu.cr0;
            if new & CR0_PG != 0 && old & CR0_PG == 0 && cx.cpu.efer & EFER_LME != 0 {
                // Activating IA-32e mode (SDM vol. 3, 10.8.5).
                if cx.cpu.cr4 & CR4_PAE == 0 || cx.cpu.seg[SegReg::Cs as usize].l {
                    return gp();
                }
                cx.cpu.efer |= EFER_LMA;
            }
            if new & CR0_PG == 0 && old & CR0_PG != 0 && cx.cpu.efer & EFER_LMA != 0 {
                if long {
                    return gp();
                }
                cx.cpu.efer &= !EFER_LMA;
            }
            new &= !0u64 >> 32;
            cx.cpu.cr0 = new;
            cx.paging_changed(None);
        }
        2 => cx.cpu.cr2 = v,
        3 => {
            // Bit 63 is the PCID no-flush hint only with CR4.PCIDE = 1 and is
            // never stored; every other bit at or above MAXPHYADDR is
            // reserved (SDM vol. 3, 4.5 and 4.10.4.1; vol. 2, MOV CR).
            let pcide = cx.cpu.cr4 & (1 << 17) != 0;
            let addr = if pcide { v & !(1 << 63) } else { v };
            if long && addr >> cx.cpu.maxphyaddr != 0 {
                return gp();
            }
            cx.cpu.cr3 = addr;
            cx.paging_changed(Some(v));
        }
        4 => {
            if v & !CR4_VALID != 0 {
                return gp();
            }
            if cx.cpu.efer & EFER_LMA != 0 && v & CR4_PAE == 0 {
                return gp();
            }
            cx.cpu.cr4 = v;
            cx.paging_changed(None);
        }
        _ => {
            if v >> 4 != 0 {
                return gp();
            }
            cx.cpu.cr8 = v;
        }
    }
    Ok(())
}

/// WRMSR with the value checks of SDM vol. 4 for the MSRs the engine keeps.
fn wrmsr<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    cx.require_cpl0()?;
    let n = cx.cpu.gpr[reg::RCX] as u32;
    let v = (cx.cpu.gpr[reg::RDX] << 32) | (cx.cpu.gpr[reg::RAX] & 0xffff_ffff);
    if cx.policy.msr_write.get(n) {
        return Err(cx.intercept(InterceptKind::MsrWrite { msr: n, value: v }));
    }
    let la57 = cx.cpu.cr4 & (1 << 12) != 0;
    match n {
        msr::EFER => {
            if v & !(EFER_WRITABLE | EFER_LMA) != 0 {
                return Err(Exception::gp(0).into());
            }
            if cx.cpu.cr0 & CR0_PG != 0 && (v ^ cx.cpu.efer) & EFER_LME != 0 {
                return Err(Exception::gp(0).into());
            }
            cx.cpu.efer = (v & EFER_WRITABLE) | (cx.cpu.efer & EFER_LMA);
            cx.paging_changed(None);
            return Ok(());
        }
        msr::FS_BASE
        | msr::GS_BASE
        | msr::KERNEL_GS_BASE
        | msr::LSTAR
        | msr::CSTAR
        | msr::SYSENTER_ESP
        | msr::SYSENTER_EIP
            if !is_canonical(v, la57) =>
        {
            return Err(Exception::gp(0).into());
        }
        // Each PAT entry must be a valid memory type: 0, 1, 4, 5, 6, 7 (SDM vol. 3, 13.12.2).
        msr::PAT if (0..8).any(|i| matches!((v >> (i * 8)) & 0xff, 2 | 3 | 8..=0xff)) => {
            return Err(Exception::gp(0).into());
        }
        msr::TSC_AUX if v >> 32 != 0 => return Err(Exception::gp(0).into()),
        msr::TSC => {
            // The stored count excludes this run's instructions, which are
            // added when the run ends (see `Ctx::tsc_now`).
            cx.cpu.msrs.tsc = v.wrapping_sub(cx.eng.retired_in_run);
            return Ok(());
        }
        _ => {}
    }
    if !cx.cpu.set_msr_raw(n, v) {
        return Err(Exception::gp(0).into());
    }
    Ok(())
}
