//! Atomic read-modify-write instructions: XADD, CMPXCHG, CMPXCHG8B and
//! CMPXCHG16B (SDM vol. 2, the instruction pages). The engine runs one
//! instruction at a time per vCPU with buffered writes, so every one of
//! them is atomic with respect to the guest; LOCK is accepted on them.
//!
//! LOCK legality (SDM vol. 2, LOCK: #UD when the prefix is used with a
//! non-lockable instruction or a register destination) is enforced by the
//! decoder: iced-x86 reports such encodings as invalid and the engine
//! raises #UD for them; `tests/families.rs` checks this.

use crate::bus::Bus;
use crate::cpu::reg;
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{self, mask, merge, STATUS, ZF};
use hyperplug_mmu::AccessKind;
use iced_x86::Mnemonic;

/// XADD r/m, r (SDM vol. 2, XADD): TEMP = SRC + DEST; SRC = DEST;
/// DEST = TEMP. Flags as ADD. With both operands the same register the
/// sum is what remains.
pub(super) fn xadd<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.op_size(0);
    let dest = cx.read_rmw(0)?;
    let src = cx.read_op(1)?;
    let (sum, f) = flags::add(dest, src, false, size);
    if cx.is_mem(0) {
        // A memory destination's address may use the source register, which
        // must still hold its old value when the address is formed (writes
        // are buffered until the instruction completes, so a fault changes
        // nothing).
        cx.write_op(0, sum)?;
        cx.write_op(1, dest)?;
    } else {
        // Register pair: SRC := DEST, then DEST := TEMP, so `xadd r, r` keeps the sum.
        cx.write_op(1, dest)?;
        cx.write_op(0, sum)?;
    }
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}

/// CMPXCHG r/m, r (SDM vol. 2, CMPXCHG): flags as CMP accumulator, DEST.
/// Equal: DEST = SRC. Not equal: accumulator = DEST, and a memory DEST is
/// written back with its own value (the processor always produces a write
/// cycle); a register DEST is not written (the host leaves the upper half
/// of a 32-bit register destination intact, measured).
pub(super) fn cmpxchg<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.op_size(0);
    let dest = cx.read_rmw(0)? & mask(size);
    let src = cx.read_op(1)?;
    let acc = cx.cpu.gpr[reg::RAX] & mask(size);
    let (_, f) = flags::sub(acc, dest, false, size);
    if acc == dest {
        cx.write_op(0, src)?;
    } else {
        if cx.is_mem(0) {
            cx.write_op(0, dest)?;
        }
        cx.set_gpr(reg::RAX, size, dest);
    }
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}

/// CMPXCHG8B m64 / CMPXCHG16B m128 (SDM vol. 2, CMPXCHG8B/CMPXCHG16B):
/// compare EDX:EAX (RDX:RAX) with the memory operand; equal: ZF = 1 and
/// store ECX:EBX (RCX:RBX); else ZF = 0 and load it into EDX:EAX
/// (RDX:RAX), writing the memory back. Only ZF changes. A register operand
/// is #UD; CMPXCHG16B needs a 16-byte aligned operand, else #GP(0).
pub(super) fn cmpxchg_wide<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    if !cx.is_mem(0) {
        return Err(Exception::ud().into());
    }
    let half: u8 = if m == Mnemonic::Cmpxchg16b { 8 } else { 4 };
    let len = usize::from(half) * 2;
    let (seg, ea) = (cx.mseg(), cx.ea());
    let lin = cx.linear(seg, ea, len as u64, AccessKind::Write)?;
    if half == 8 && lin & 15 != 0 {
        return Err(Exception::gp(0).into());
    }
    let mut buf = [0u8; 16];
    // Probe the write first so a read-only page faults as a write.
    cx.probe_write(seg, ea, half * 2)?;
    cx.read_lin(lin, &mut buf[..len], false)?;
    let h = usize::from(half);
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let (mlo, mhi) = (word(&buf[..h]), word(&buf[h..len]));
    let hm = mask(half);
    let (a, d) = (cx.cpu.gpr[reg::RAX] & hm, cx.cpu.gpr[reg::RDX] & hm);
    let equal = a == mlo && d == mhi;
    let mut out = [0u8; 16];
    if equal {
        let (b, c) = (cx.cpu.gpr[reg::RBX], cx.cpu.gpr[reg::RCX]);
        out[..h].copy_from_slice(&b.to_le_bytes()[..h]);
        out[h..len].copy_from_slice(&c.to_le_bytes()[..h]);
    } else {
        out[..len].copy_from_slice(&buf[..len]);
    }
    cx.write_lin(lin, &out[..len], false)?;
    if !equal {
        cx.set_gpr(reg::RAX, half, mlo);
        cx.set_gpr(reg::RDX, half, mhi);
    }
    let z = if equal { ZF } else { 0 };
    cx.cpu.rflags = merge(cx.cpu.rflags, z, ZF);
    Ok(())
}
