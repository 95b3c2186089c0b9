//! INVPCID: invalidate TLB entries by process-context identifier (SDM
//! vol. 2, INVPCID; vol. 3, 4.10.4.1 "Operations that Invalidate TLBs and
//! Paging-Structure Caches").

use crate::bus::Bus;
use crate::cpu::Mode;
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::mask;
use crate::mem::is_canonical;
use crate::policy::{InsnIntercepts, InterceptKind};
use hyperplug_mmu::tlb::InvpcidKind;

/// CR4.PCIDE (SDM vol. 3, 2.5, Figure 2-8): bit 17.
const CR4_PCIDE: u64 = 1 << 17;
/// CR4.LA57 (SDM vol. 3, 2.5): bit 12.
const CR4_LA57: u64 = 1 << 12;

/// INVPCID r32/r64, m128 (SDM vol. 2, INVPCID "Operation" and
/// "Exceptions"). The register holds the type (64 bits in 64-bit mode,
/// else 32); the 16-byte descriptor holds the PCID in bits 11:0, zeros in
/// bits 63:12 and a linear address in bits 127:64.
///
/// #UD in virtual-8086 mode (and for a register second operand); #GP(0) if
/// CPL > 0, type > 3, descriptor bits 63:12 non-zero, a non-zero PCID for
/// type 0 or 1 while CR4.PCIDE = 0, or a non-canonical address for type 0.
/// The descriptor is read (with its own segment/paging faults) after the
/// CPL check and before the type checks, as the "Operation" section reads
/// both operands first.
pub(super) fn invpcid<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.mode == Mode::V86 || !cx.is_mem(1) {
        return Err(Exception::ud().into());
    }
    cx.require_cpl0()?;
    if cx.policy.insns.contains(InsnIntercepts::INVPCID) {
        return Err(cx.intercept(InterceptKind::Invpcid));
    }
    let rsize = if cx.mode == Mode::Long64 { 8 } else { 4 };
    let typ = cx.reg(cx.insn.op0_register()) & mask(rsize);
    let seg = cx.mseg();
    let ea = cx.ea();
    let lo = cx.read_mem(seg, ea, 8)?;
    let hi_ea = ea.wrapping_add(8) & mask(cx.asz);
    let linear = cx.read_mem(seg, hi_ea, 8)?;
    let kind = InvpcidKind::try_from(typ).map_err(|_| Exception::gp(0))?;
    if lo >> 12 != 0 {
        return Err(Exception::gp(0).into());
    }
    let pcid = (lo & 0xfff) as u16;
    let per_pcid = matches!(
        kind,
        InvpcidKind::IndividualAddress | InvpcidKind::SingleContext
    );
    if per_pcid && pcid != 0 && cx.cpu.cr4 & CR4_PCIDE == 0 {
        return Err(Exception::gp(0).into());
    }
    if kind == InvpcidKind::IndividualAddress && !is_canonical(linear, cx.cpu.cr4 & CR4_LA57 != 0) {
        return Err(Exception::gp(0).into());
    }
    cx.eng.tlb.invpcid(kind, pcid, linear);
    if let Some(sh) = cx.eng.shadow.as_mut() {
        sh.invpcid(kind, pcid, linear);
    }
    Ok(())
}
