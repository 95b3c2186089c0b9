//! Logical operations: AND, OR, XOR, TEST, NOT (SDM vol. 2): CF = OF = 0,
//! SF/ZF/PF from the result, AF undefined (cleared); NOT changes no flag.

use crate::bus::Bus;
use crate::exception::OpResult;
use crate::exec::Ctx;
use crate::flags::{logic, mask, merge, STATUS};
use iced_x86::Mnemonic;

/// AND, OR, XOR, TEST.
pub(super) fn binop<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let size = cx.op_size(0);
    let a = if m == Mnemonic::Test {
        cx.read_op(0)?
    } else {
        cx.read_rmw(0)?
    };
    let b = cx.read_op(1)?;
    let res = match m {
        Mnemonic::Or => a | b,
        Mnemonic::Xor => a ^ b,
        _ => a & b,
    } & mask(size);
    if m != Mnemonic::Test {
        cx.write_op(0, res)?;
    }
    cx.cpu.rflags = merge(cx.cpu.rflags, logic(res, size), STATUS);
    Ok(())
}

/// NOT.
pub(super) fn not<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let a = cx.read_rmw(0)?;
    cx.write_op(0, !a)
}
