//! PUSHA/PUSHAD, POPA/POPAD, MOVBE and BOUND (SDM vol. 2, the instruction
//! pages).

use crate::bus::Bus;
use crate::cpu::{reg, Mode};
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{mask, sext};
use iced_x86::Mnemonic;

/// PUSHA / PUSHAD (SDM vol. 2, PUSHA/PUSHAD "Operation"): pushes rAX, rCX,
/// rDX, rBX, the original rSP, rBP, rSI, rDI; #UD in 64-bit mode.
pub(super) fn pusha<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    if cx.mode == Mode::Long64 {
        return Err(Exception::ud().into());
    }
    let size = if m == Mnemonic::Pushad { 4 } else { 2 };
    let temp = cx.cpu.gpr[reg::RSP];
    for i in [
        reg::RAX,
        reg::RCX,
        reg::RDX,
        reg::RBX,
        reg::RSP,
        reg::RBP,
        reg::RSI,
        reg::RDI,
    ] {
        let v = if i == reg::RSP { temp } else { cx.cpu.gpr[i] };
        cx.push(v & mask(size), size)?;
    }
    Ok(())
}

/// POPA / POPAD (SDM vol. 2, POPA/POPAD "Operation"): pops rDI, rSI, rBP,
/// skips the saved rSP, then rBX, rDX, rCX, rAX; #UD in 64-bit mode.
pub(super) fn popa<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    if cx.mode == Mode::Long64 {
        return Err(Exception::ud().into());
    }
    let size = if m == Mnemonic::Popad { 4 } else { 2 };
    let mut vals = [0u64; 8];
    for v in vals.iter_mut() {
        *v = cx.pop(size)?;
    }
    // vals: DI, SI, BP, (SP), BX, DX, CX, AX.
    for (k, i) in [
        reg::RDI,
        reg::RSI,
        reg::RBP,
        reg::RSP,
        reg::RBX,
        reg::RDX,
        reg::RCX,
        reg::RAX,
    ]
    .into_iter()
    .enumerate()
    {
        if i != reg::RSP {
            cx.set_gpr(i, size, vals[k]);
        }
    }
    Ok(())
}

/// MOVBE r, m / MOVBE m, r (SDM vol. 2, MOVBE): a load or store with the
/// bytes of the operand reversed. A register operand is #UD (the decoder
/// accepts only memory forms).
pub(super) fn movbe<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if !cx.is_mem(0) && !cx.is_mem(1) {
        return Err(Exception::ud().into());
    }
    let size = cx.op_size(0);
    let v = cx.read_op(1)? & mask(size);
    let swapped = v.swap_bytes() >> (64 - u32::from(size) * 8);
    cx.write_op(0, swapped)
}

/// BOUND (SDM vol. 2, BOUND "Operation" and "Protected Mode Exceptions"):
/// the signed index in the register operand is compared with the lower and
/// upper bounds stored consecutively at the memory operand (two words or
/// two doublewords); an index outside `[lower, upper]` raises #BR (vector 5,
/// a fault, no error code). #UD in 64-bit mode and with a register second
/// operand (that encoding is EVEX there).
pub(super) fn bound<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    if cx.mode == Mode::Long64 || !cx.is_mem(1) {
        return Err(Exception::ud().into());
    }
    let size = cx.op_size(0);
    if size != 2 && size != 4 {
        return Err(Exception::ud().into());
    }
    let seg = cx.mseg();
    let ea = cx.ea();
    let lo = sext(cx.read_mem(seg, ea, size)?, size) as i64;
    let hi_addr = ea.wrapping_add(u64::from(size)) & mask(cx.asz);
    let hi = sext(cx.read_mem(seg, hi_addr, size)?, size) as i64;
    let idx = sext(cx.read_op(0)?, size) as i64;
    if idx < lo || idx > hi {
        return Err(Exception::new(vector::BR).into());
    }
    Ok(())
}
