//! Integer arithmetic: ADD/ADC/SUB/SBB/CMP, INC/DEC, NEG, MUL/IMUL, DIV/IDIV,
//! ADCX/ADOX
//! (SDM vol. 2, the instruction pages; flags per vol. 1, Appendix A).
//!
//! Undefined flags: MUL/IMUL leave SF, ZF, PF computed from the low half of
//! the result and AF cleared; DIV/IDIV leave all flags unchanged. The
//! differential oracle decides the final choice for the host CPU.

use crate::bus::Bus;
use crate::cpu::reg;
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{self, mask, merge, sext, szp, CF, OF, STATUS};
use iced_x86::Mnemonic;

/// ADD, ADC, SUB, SBB, CMP.
pub(super) fn addsub<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let size = cx.op_size(0);
    let a = if m == Mnemonic::Cmp {
        cx.read_op(0)?
    } else {
        cx.read_rmw(0)?
    };
    let b = cx.read_op(1)?;
    let c = cx.cpu.rflags & CF != 0;
    let (res, f) = match m {
        Mnemonic::Add => flags::add(a, b, false, size),
        Mnemonic::Adc => flags::add(a, b, c, size),
        Mnemonic::Sub | Mnemonic::Cmp => flags::sub(a, b, false, size),
        _ => flags::sub(a, b, c, size),
    };
    if m != Mnemonic::Cmp {
        cx.write_op(0, res)?;
    }
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}

/// INC / DEC: CF is not affected.
pub(super) fn incdec<B: Bus>(cx: &mut Ctx<'_, B>, inc: bool) -> OpResult {
    let size = cx.op_size(0);
    let a = cx.read_rmw(0)?;
    let (res, f) = if inc {
        flags::add(a, 1, false, size)
    } else {
        flags::sub(a, 1, false, size)
    };
    cx.write_op(0, res)?;
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS & !CF);
    Ok(())
}

/// NEG: 0 - x; CF = (x != 0).
pub(super) fn neg<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.op_size(0);
    let a = cx.read_rmw(0)?;
    let (res, f) = flags::sub(0, a, false, size);
    cx.write_op(0, res)?;
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}

/// The implicit accumulator pair for MUL/DIV of `size` (AX, DX:AX, EDX:EAX, RDX:RAX).
fn acc_lo_hi<B: Bus>(cx: &Ctx<'_, B>, size: u8) -> (u64, u64) {
    let ax = cx.cpu.gpr[reg::RAX];
    if size == 1 {
        (ax & 0xff, (ax >> 8) & 0xff)
    } else {
        (ax & mask(size), cx.cpu.gpr[reg::RDX] & mask(size))
    }
}

fn store_lo_hi<B: Bus>(cx: &mut Ctx<'_, B>, size: u8, lo: u64, hi: u64) {
    if size == 1 {
        cx.set_gpr(reg::RAX, 2, (lo & 0xff) | ((hi & 0xff) << 8));
    } else {
        cx.set_gpr(reg::RAX, size, lo);
        cx.set_gpr(reg::RDX, size, hi);
    }
}

fn mul_flags(rflags: u64, lo: u64, size: u8, overflow: bool) -> u64 {
    let mut f = szp(lo, size);
    if overflow {
        f |= CF | OF;
    }
    merge(rflags, f, STATUS)
}

/// MUL: unsigned rDX:rAX = rAX × src; CF = OF = (upper half ≠ 0).
pub(super) fn mul<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.op_size(0);
    let src = cx.read_op(0)? & mask(size);
    let (a, _) = acc_lo_hi(cx, size);
    let full = u128::from(a) * u128::from(src);
    let bits = u32::from(size) * 8;
    let lo = (full as u64) & mask(size);
    let hi = ((full >> bits) as u64) & mask(size);
    store_lo_hi(cx, size, lo, hi);
    cx.cpu.rflags = mul_flags(cx.cpu.rflags, lo, size, hi != 0);
    Ok(())
}

/// IMUL, one-, two- and three-operand forms: CF = OF = (the signed result
/// does not fit the destination).
pub(super) fn imul<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.op_size(0);
    let bits = u32::from(size) * 8;
    if cx.insn.op_count() == 1 {
        let src = sext(cx.read_op(0)?, size) as i64;
        let (a, _) = acc_lo_hi(cx, size);
        let full = i128::from(sext(a, size) as i64) * i128::from(src);
        let lo = (full as u64) & mask(size);
        let hi = ((full >> bits) as u64) & mask(size);
        store_lo_hi(cx, size, lo, hi);
        let fits = i128::from(sext(lo, size) as i64) == full;
        cx.cpu.rflags = mul_flags(cx.cpu.rflags, lo, size, !fits);
        return Ok(());
    }
    let (x, y) = if cx.insn.op_count() == 2 {
        (cx.read_op(0)?, cx.read_op(1)?)
    } else {
        (cx.read_op(1)?, cx.read_op(2)?)
    };
    let full = i128::from(sext(x, size) as i64) * i128::from(sext(y, size) as i64);
    let lo = (full as u64) & mask(size);
    let fits = i128::from(sext(lo, size) as i64) == full;
    cx.write_op(0, lo)?;
    cx.cpu.rflags = mul_flags(cx.cpu.rflags, lo, size, !fits);
    Ok(())
}

/// DIV / IDIV: #DE on a zero divisor or a quotient that does not fit
/// (SDM vol. 2, DIV/IDIV); flags are undefined and left unchanged.
pub(super) fn div<B: Bus>(cx: &mut Ctx<'_, B>, signed: bool) -> OpResult {
    let size = cx.op_size(0);
    let bits = u32::from(size) * 8;
    let src = cx.read_op(0)? & mask(size);
    if src == 0 {
        return Err(Exception::de().into());
    }
    let (lo, hi) = acc_lo_hi(cx, size);
    let dividend = (u128::from(hi) << bits) | u128::from(lo);
    let (q, r) = if signed {
        // Sign-extend the 2×size-bit dividend to i128.
        let sh = 128 - 2 * bits;
        let n = ((dividend << sh) as i128) >> sh;
        let d = i128::from(sext(src, size) as i64);
        let (Some(q), Some(r)) = (n.checked_div(d), n.checked_rem(d)) else {
            return Err(Exception::de().into());
        };
        let min = -(1i128 << (bits - 1));
        let max = (1i128 << (bits - 1)) - 1;
        if q < min || q > max {
            return Err(Exception::de().into());
        }
        (q as u64 & mask(size), r as u64 & mask(size))
    } else {
        let q = dividend / u128::from(src);
        if q > u128::from(mask(size)) {
            return Err(Exception::de().into());
        }
        (q as u64, (dividend % u128::from(src)) as u64)
    };
    store_lo_hi(cx, size, q, r);
    Ok(())
}

/// ADCX / ADOX: unsigned add with carry-in and carry-out through one flag
/// only (SDM vol. 2, ADCX and ADOX): ADCX uses and sets CF, ADOX uses and
/// sets OF; every other flag is unchanged. Operand size is 32 or 64 bits
/// (REX.W); a 32-bit destination is zero-extended.
pub(super) fn adx<B: Bus>(cx: &mut Ctx<'_, B>, ox: bool) -> OpResult {
    let size = cx.op_size(0);
    let a = cx.read_op(0)?;
    let b = cx.read_op(1)?;
    let flag = if ox { OF } else { CF };
    let cin = u64::from(cx.cpu.rflags & flag != 0);
    let wide = u128::from(a & mask(size)) + u128::from(b & mask(size)) + u128::from(cin);
    let bits = u32::from(size) * 8;
    let carry = (wide >> bits) & 1 != 0;
    cx.write_op(0, wide as u64 & mask(size))?;
    cx.cpu.rflags = merge(cx.cpu.rflags, if carry { flag } else { 0 }, flag);
    Ok(())
}
