//! XGETBV / XSETBV: the extended control register XCR0 (SDM vol. 2, XGETBV
//! and XSETBV; vol. 1, 13.3 "Enabling the XSAVE Feature Set and
//! XSAVE-Enabled Features").

use crate::bus::Bus;
use crate::cpu::reg;
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::policy::{InsnIntercepts, InterceptKind};

/// CR4.OSXSAVE (SDM vol. 3, 2.5, Figure 2-8): bit 18.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 state components the model supports: x87 only (bit 0), since the
/// engine implements neither SSE (bit 1) nor AVX (bit 2) state.
pub const XCR0_SUPPORTED: u64 = 1;
/// XCR0.X87 (SDM vol. 1, 13.3): must always be 1.
const XCR0_X87: u64 = 1 << 0;
/// XCR0.SSE (SDM vol. 1, 13.3).
const XCR0_SSE: u64 = 1 << 1;
/// XCR0.AVX (SDM vol. 1, 13.3): may be set only together with SSE.
const XCR0_AVX: u64 = 1 << 2;

/// Whether `v` is a legal XCR0 value for a CPU supporting `supported`
/// (SDM vol. 2, XSETBV "Protected Mode Exceptions"): no unsupported or
/// reserved bit, bit 0 set, and not AVX without SSE.
pub fn xcr0_valid(v: u64, supported: u64) -> bool {
    v & !supported == 0 && v & XCR0_X87 != 0 && !(v & XCR0_AVX != 0 && v & XCR0_SSE == 0)
}

/// XGETBV (SDM vol. 2, XGETBV): EDX:EAX ← XCR[ECX]. #UD if CR4.OSXSAVE = 0;
/// #GP(0) for an ECX naming an unsupported XCR (only XCR0 here: ECX = 1
/// needs CPUID.(EAX=0DH,ECX=1):EAX[2], which the model does not advertise).
/// Allowed at any CPL.
pub(super) fn xgetbv<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.cpu.cr4 & CR4_OSXSAVE == 0 {
        return Err(Exception::ud().into());
    }
    if cx.cpu.gpr[reg::RCX] as u32 != 0 {
        return Err(Exception::gp(0).into());
    }
    let v = cx.cpu.xcr0;
    cx.set_gpr(reg::RAX, 4, v & 0xffff_ffff);
    cx.set_gpr(reg::RDX, 4, v >> 32);
    Ok(())
}

/// XSETBV (SDM vol. 2, XSETBV): XCR[ECX] ← EDX:EAX. #UD if CR4.OSXSAVE = 0;
/// #GP(0) if CPL > 0 (these two precede the intercept, SDM vol. 3, 26.1.1),
/// then the policy's XSETBV intercept, then #GP(0) for ECX ≠ 0 or an
/// illegal value (see [`xcr0_valid`]).
pub(super) fn xsetbv<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.cpu.cr4 & CR4_OSXSAVE == 0 {
        return Err(Exception::ud().into());
    }
    cx.require_cpl0()?;
    if cx.policy.insns.contains(InsnIntercepts::XSETBV) {
        return Err(cx.intercept(InterceptKind::Xsetbv));
    }
    if cx.cpu.gpr[reg::RCX] as u32 != 0 {
        return Err(Exception::gp(0).into());
    }
    let v = (cx.cpu.gpr[reg::RDX] << 32) | (cx.cpu.gpr[reg::RAX] & 0xffff_ffff);
    if !xcr0_valid(v, XCR0_SUPPORTED) {
        return Err(Exception::gp(0).into());
    }
    cx.cpu.xcr0 = v;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xcr0_rules() {
        // (value, supported, valid)
        let t: [(u64, u64, bool); 8] = [
            (1, 1, true),
            (0, 1, false),
            (3, 1, false),
            (3, 7, true),
            (7, 7, true),
            (5, 7, false),
            (2, 7, false),
            (1 << 63 | 1, 1, false),
        ];
        for (v, s, ok) in t {
            assert_eq!(xcr0_valid(v, s), ok, "{v:#x} / {s:#x}");
        }
    }
}
