//! Bit operations: BT/BTS/BTR/BTC, BSF/BSR, POPCNT, LZCNT/TZCNT, BMI1
//! (ANDN, BEXTR, BLSI, BLSMSK, BLSR) and BMI2 (BZHI, PDEP, PEXT, MULX,
//! RORX, SARX, SHLX, SHRX) (SDM vol. 2, the instruction pages).
//!
//! Undefined flags follow the AMD host the differential oracle runs on
//! (measured with a native probe): BT* leave OF/SF/AF/PF unchanged; BSF/BSR
//! clear CF/OF/SF/AF and set PF from the result (PF = 1 for a zero source,
//! whose destination is left unchanged, AMD APM vol. 3 BSF/BSR); LZCNT/TZCNT
//! clear SF/AF/PF and leave OF unchanged; ANDN/BLSI/BLSMSK/BLSR/BZHI set PF
//! from the result and clear AF; BEXTR sets AF, clears SF and sets PF from
//! the result.

use crate::bus::Bus;
use crate::cpu::{reg, Mode};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{mask, merge, sext, szp, AF, CF, PF, SF, STATUS, ZF};
use iced_x86::{Mnemonic, OpKind};

/// Which bit-test instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BtOp {
    Test,
    Set,
    Reset,
    Complement,
}

/// BT, BTS, BTR, BTC (SDM vol. 2, BT/BTS/BTR/BTC). With a memory bit base
/// and a register bit offset, the offset is signed and selects an operand
/// beyond the addressed one: EA + operand size × (offset SAR log2(bits)),
/// bit (offset mod bits) (SDM vol. 2, BT "Description", Table 3-2). An
/// immediate offset is taken modulo the operand size. CF = the selected
/// bit; ZF is unaffected; OF, SF, AF, PF are left unchanged.
pub(super) fn bt<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let op = match m {
        Mnemonic::Bt => BtOp::Test,
        Mnemonic::Bts => BtOp::Set,
        Mnemonic::Btr => BtOp::Reset,
        _ => BtOp::Complement,
    };
    let size = cx.op_size(0);
    let bits = u64::from(size) * 8;
    let raw = cx.read_op(1)?;
    let imm = cx.insn.op1_kind() != OpKind::Register;
    let (bit, cf_res) = if cx.is_mem(0) && !imm {
        // Signed bit offset of the operand size.
        let off = sext(raw & mask(size), size) as i64;
        let shift = bits.trailing_zeros();
        let disp = (off >> shift).wrapping_mul(i64::from(size)) as u64;
        let addr = cx.ea().wrapping_add(disp) & mask(cx.asz);
        let bit = (off as u64) & (bits - 1);
        let seg = cx.mseg();
        if op != BtOp::Test {
            cx.probe_write(seg, addr, size)?;
        }
        let v = cx.read_mem(seg, addr, size)?;
        if let Some(nv) = bt_apply(op, v, bit) {
            cx.write_mem(seg, addr, size, nv)?;
        }
        (bit, v)
    } else {
        let bit = raw & (bits - 1);
        let v = if op == BtOp::Test {
            cx.read_op(0)?
        } else {
            cx.read_rmw(0)?
        };
        if let Some(nv) = bt_apply(op, v, bit) {
            cx.write_op(0, nv)?;
        }
        (bit, v)
    };
    let cf = if (cf_res >> bit) & 1 != 0 { CF } else { 0 };
    cx.cpu.rflags = merge(cx.cpu.rflags, cf, CF);
    Ok(())
}

fn bt_apply(op: BtOp, v: u64, bit: u64) -> Option<u64> {
    let b = 1u64 << bit;
    match op {
        BtOp::Test => None,
        BtOp::Set => Some(v | b),
        BtOp::Reset => Some(v & !b),
        BtOp::Complement => Some(v ^ b),
    }
}

/// BSF / BSR (SDM vol. 2; AMD APM vol. 3): ZF = (source = 0), and then the
/// destination is not written (not even zero-extended); otherwise it gets
/// the index of the lowest / highest set bit.
pub(super) fn bsf_bsr<B: Bus>(cx: &mut Ctx<'_, B>, reverse: bool) -> OpResult {
    let size = cx.op_size(0);
    let src = cx.read_op(1)? & mask(size);
    let f = if src == 0 {
        ZF | PF
    } else {
        let idx = if reverse {
            63 - u64::from(src.leading_zeros())
        } else {
            u64::from(src.trailing_zeros())
        };
        cx.write_op(0, idx)?;
        szp(idx, size) & PF
    };
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}

/// POPCNT (SDM vol. 2): ZF = (source = 0); OF, SF, AF, CF, PF cleared.
pub(super) fn popcnt<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    let size = cx.op_size(0);
    let src = cx.read_op(1)? & mask(size);
    cx.write_op(0, u64::from(src.count_ones()))?;
    let f = if src == 0 { ZF } else { 0 };
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}

/// LZCNT / TZCNT (SDM vol. 2): CF = (source = 0, result = operand size in
/// bits), ZF = (result = 0).
pub(super) fn lzcnt_tzcnt<B: Bus>(cx: &mut Ctx<'_, B>, leading: bool) -> OpResult {
    let size = cx.op_size(0);
    let bits = u32::from(size) * 8;
    let src = cx.read_op(1)? & mask(size);
    let n = if src == 0 {
        bits
    } else if leading {
        src.leading_zeros() - (64 - bits)
    } else {
        src.trailing_zeros()
    };
    cx.write_op(0, u64::from(n))?;
    let mut f = 0;
    if src == 0 {
        f |= CF;
    }
    if n == 0 {
        f |= ZF;
    }
    cx.cpu.rflags = merge(cx.cpu.rflags, f, CF | ZF | SF | AF | PF);
    Ok(())
}

/// VEX-encoded instructions are #UD in real-address and virtual-8086 mode
/// (SDM vol. 2, the BMI1/BMI2 instruction pages, e.g. ANDN "Exceptions":
/// exception type 13, VEX not recognised in these modes).
fn vex_mode_check<B: Bus>(cx: &Ctx<'_, B>) -> OpResult {
    if matches!(cx.mode, Mode::Real | Mode::V86) {
        return Err(Exception::ud().into());
    }
    Ok(())
}

/// Flags of ANDN/BLSI/BLSMSK/BLSR/BZHI: SF, ZF from the result, PF from
/// the result (host behaviour), OF = AF = 0, CF as given.
fn bmi_flags(res: u64, size: u8, cf: bool) -> u64 {
    let mut f = szp(res, size);
    if cf {
        f |= CF;
    }
    f
}

/// BMI1/BMI2 general-purpose instructions (SDM vol. 2, ANDN, BEXTR, BLSI,
/// BLSMSK, BLSR, BZHI, PDEP, PEXT, MULX, RORX, SARX, SHLX, SHRX).
pub(super) fn bmi<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    use Mnemonic as M;
    vex_mode_check(cx)?;
    let size = cx.op_size(0);
    let bits = u64::from(size) * 8;
    let mk = mask(size);
    match m {
        M::Andn => {
            // ANDN dest, src1 (VEX.vvvv), src2 (r/m): dest = !src1 & src2.
            let a = cx.read_op(1)?;
            let b = cx.read_op(2)?;
            let r = !a & b & mk;
            cx.write_op(0, r)?;
            cx.cpu.rflags = merge(cx.cpu.rflags, bmi_flags(r, size, false), STATUS);
        }
        M::Bextr => {
            // BEXTR dest, src (r/m), control (VEX.vvvv): start = ctl[7:0], len = ctl[15:8].
            let src = cx.read_op(1)? & mk;
            let ctl = cx.read_op(2)?;
            let start = ctl & 0xff;
            let len = (ctl >> 8) & 0xff;
            let shifted = if start >= bits { 0 } else { src >> start };
            let r = if len >= 64 {
                shifted
            } else {
                shifted & ((1u64 << len) - 1)
            } & mk;
            cx.write_op(0, r)?;
            let f = (szp(r, size) & (ZF | PF)) | AF;
            cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
        }
        M::Blsi | M::Blsmsk | M::Blsr => {
            // dest (VEX.vvvv), src (r/m).
            let src = cx.read_op(1)? & mk;
            let (r, cf) = match m {
                M::Blsi => ((src.wrapping_neg()) & src & mk, src != 0),
                M::Blsmsk => ((src.wrapping_sub(1) ^ src) & mk, src == 0),
                _ => ((src.wrapping_sub(1) & src) & mk, src == 0),
            };
            cx.write_op(0, r)?;
            let mut f = bmi_flags(r, size, cf);
            if m == M::Blsmsk {
                // BLSMSK: ZF is cleared (the result is never 0).
                f &= !ZF;
            }
            cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
        }
        M::Bzhi => {
            // BZHI dest, src (r/m), index (VEX.vvvv): index = src2[7:0].
            let src = cx.read_op(1)? & mk;
            let n = cx.read_op(2)? & 0xff;
            let r = if n < bits {
                src & ((1u64 << n) - 1)
            } else {
                src
            };
            cx.write_op(0, r)?;
            let f = bmi_flags(r, size, n > bits - 1);
            cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
        }
        M::Pdep | M::Pext => {
            // dest, src (VEX.vvvv), mask (r/m); flags unaffected.
            let src = cx.read_op(1)? & mk;
            let msk = cx.read_op(2)? & mk;
            let r = if m == M::Pdep {
                pdep(src, msk)
            } else {
                pext(src, msk)
            };
            cx.write_op(0, r)?;
        }
        M::Mulx => {
            // MULX hi (ModRM.reg), lo (VEX.vvvv), src (r/m): rDX × src,
            // unsigned; flags unaffected. With hi = lo, hi is what remains.
            let src = cx.read_op(2)? & mk;
            let d = cx.cpu.gpr[reg::RDX] & mk;
            let full = u128::from(d) * u128::from(src);
            let lo = (full as u64) & mk;
            let hi = ((full >> bits) as u64) & mk;
            cx.write_op(1, lo)?;
            cx.write_op(0, hi)?;
        }
        M::Rorx => {
            let src = cx.read_op(1)? & mk;
            let n = (cx.insn.immediate8() as u64) & (bits - 1);
            let r = if n == 0 {
                src
            } else {
                ((src >> n) | (src << (bits - n))) & mk
            };
            cx.write_op(0, r)?;
        }
        M::Sarx | M::Shlx | M::Shrx => {
            // dest, src (r/m), count (VEX.vvvv) masked to 5 or 6 bits; flags unaffected.
            let src = cx.read_op(1)? & mk;
            let n = cx.read_op(2)? & (bits - 1);
            let r = match m {
                M::Sarx => ((sext(src, size) as i64) >> n) as u64 & mk,
                M::Shlx => (src << n) & mk,
                _ => src >> n,
            };
            cx.write_op(0, r)?;
        }
        _ => return Err(Exception::ud().into()),
    }
    Ok(())
}

/// Parallel bit deposit: the low bits of `src` go to the set bits of `m`.
fn pdep(src: u64, m: u64) -> u64 {
    let mut out = 0;
    let mut k = 0;
    for i in 0..64 {
        if m >> i & 1 != 0 {
            if src >> k & 1 != 0 {
                out |= 1 << i;
            }
            k += 1;
        }
    }
    out
}

/// Parallel bit extract: the bits of `src` under the set bits of `m`, packed low.
fn pext(src: u64, m: u64) -> u64 {
    let mut out = 0;
    let mut k = 0;
    for i in 0..64 {
        if m >> i & 1 != 0 {
            if src >> i & 1 != 0 {
                out |= 1 << k;
            }
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdep_pext_examples() {
        // Worked by hand: mask bits taken low to high.
        let t = [
            (
                0x1234_5678u64,
                0xff00_fff0u64,
                0x4500_6780u64,
                0x0001_2567u64,
            ),
            (u64::MAX, 0xf0f0, 0xf0f0, 0xff),
            (0, u64::MAX, 0, 0),
            (0b1011, 0b1_0101_0100, 0b1_0001_0100, 0),
            (0b1_0001_0100, 0b1_0101_0100, 0b0100_0000, 0b1011),
        ];
        for (s, m, dep, ext) in t {
            assert_eq!(pdep(s, m), dep, "pdep {s:#x} {m:#x}");
            assert_eq!(pext(s, m), ext, "pext {s:#x} {m:#x}");
        }
    }
}
