//! Port I/O: IN, OUT, INS, OUTS (SDM vol. 2; vol. 1, 19.5 "Protection
//! and I/O"). In protected mode with CPL > IOPL, and always in
//! virtual-8086 mode, the TSS I/O permission bitmap decides (SDM vol. 1,
//! 19.5.2): every bit for the accessed ports must be clear, else #GP(0).
//! The intercept check follows the privilege check (SDM vol. 3, 26.1.1).
//! An access that completes reports the I/O breakpoints it hits, a trap
//! after the instruction or the REP iteration (SDM vol. 3, 17.3.1.2).

use crate::bus::{Bus, BusStop};
use crate::cpu::{reg, Mode, SegReg};
use crate::exception::{Exception, Fault, OpResult};
use crate::exec::Ctx;
use crate::flags::{mask, IOPL};
use crate::policy::{EventKind, InterceptKind};
use iced_x86::{Mnemonic, OpKind, Register};

fn io_fault(s: BusStop, port: u16, size: u8, write: Option<u32>) -> Fault {
    match s {
        BusStop::Nested(n) => Fault::Event(EventKind::Nested(n)),
        _ => Fault::Event(EventKind::Io { port, size, write }),
    }
}

/// The I/O permission bitmap check (SDM vol. 1, 19.5.2 "I/O Permission Bit
/// Map"): TR must hold a 32-bit (or 64-bit) TSS whose limit covers offset
/// 0x67; the 16-bit bitmap base is at TSS offset 0x66; the processor reads
/// the two bytes holding bit `port` and every bit for `port..port+size` must
/// be 0. Any part beyond the TSS limit, or a 16-bit TSS, gives #GP(0).
fn io_bitmap_check<B: Bus>(cx: &mut Ctx<'_, B>, port: u16, size: u8) -> OpResult {
    let tr = cx.cpu.tr;
    let gp = || Fault::from(Exception::gp(0));
    // Type 9/11 (32-bit or 64-bit TSS, available/busy): bit 3 set (SDM vol. 3, Table 3-2).
    if tr.unusable || !tr.present || tr.typ & 8 == 0 || tr.limit < 0x67 {
        return Err(gp());
    }
    let long = cx.cpu.efer & crate::cpu::EFER_LMA != 0;
    let lin = |off: u64| {
        let a = tr.base.wrapping_add(off);
        if long {
            a
        } else {
            a & 0xffff_ffff
        }
    };
    let base_addr = lin(0x66);
    let io_base = cx.read_sys(base_addr, 2)? & 0xffff;
    let off = io_base + u64::from(port >> 3);
    if off + 1 > u64::from(tr.limit) {
        return Err(gp());
    }
    let a = lin(off);
    let bits = cx.read_sys(a, 2)?;
    let need = ((1u64 << size) - 1) << (port & 7);
    if bits & need != 0 {
        return Err(gp());
    }
    Ok(())
}

/// IN/OUT/INS/OUTS.
pub(super) fn io<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    use Mnemonic as M;
    let input = matches!(m, M::In | M::Insb | M::Insw | M::Insd);
    let string = !matches!(m, M::In | M::Out);
    let (port, size, imm) = if string {
        (cx.cpu.gpr[reg::RDX] as u16, cx.string_elem(), false)
    } else {
        let (pop, rop) = if input { (1, 0) } else { (0, 1) };
        let size = cx.insn.op_register(rop).size() as u8;
        match cx.insn.op_kind(pop) {
            OpKind::Register => (cx.reg(Register::DX) as u16, size, false),
            _ => (cx.insn.immediate8() as u16, size, true),
        }
    };
    let iopl = ((cx.cpu.rflags & IOPL) >> 12) as u8;
    if cx.mode == Mode::V86 || (cx.mode.is_protected() && cx.cpl > iopl) {
        io_bitmap_check(cx, port, size)?;
    }
    if string && cx.rep_count() == Some(0) {
        return Ok(());
    }
    let value = if !input && !string {
        cx.cpu.gpr[reg::RAX] as u32 & mask(size) as u32
    } else {
        0
    };
    if cx.policy.io.any(port, size) {
        let seg = if input { SegReg::Es } else { cx.mseg() };
        return Err(cx.intercept(InterceptKind::Io {
            port,
            size,
            input,
            string,
            rep: string && cx.rep(),
            addr_size: cx.asz,
            seg: seg as u8,
            imm,
            value,
        }));
    }
    io_access(cx, port, size, input, string, value)?;
    if cx.cpu.dr[7] & crate::debugreg::DR7_ENABLES != 0 {
        cx.eng.dbp_hits |= crate::debugreg::io_hits(&cx.cpu.dr, cx.cpu.cr4, port, size);
    }
    Ok(())
}

/// The port access of IN/OUT/INS/OUTS (one iteration), after every check.
fn io_access<B: Bus>(
    cx: &mut Ctx<'_, B>,
    port: u16,
    size: u8,
    input: bool,
    string: bool,
    value: u32,
) -> OpResult {
    match (input, string) {
        (true, false) => {
            let v = cx
                .bus
                .io_in(port, size)
                .map_err(|s| io_fault(s, port, size, None))?;
            cx.set_gpr(reg::RAX, size, u64::from(v));
        }
        (false, false) => {
            cx.bus
                .io_out(port, size, value)
                .map_err(|s| io_fault(s, port, size, Some(value)))?;
        }
        (true, true) => {
            let di = cx.cpu.gpr[reg::RDI] & mask(cx.asz);
            // The destination is checked before the port is read.
            cx.probe_write(SegReg::Es, di, size)?;
            let v = cx
                .bus
                .io_in(port, size)
                .map_err(|s| io_fault(s, port, size, None))?;
            cx.write_mem(SegReg::Es, di, size, u64::from(v))?;
            cx.advance(reg::RDI, size);
            cx.rep_done(false);
        }
        (false, true) => {
            let si = cx.cpu.gpr[reg::RSI] & mask(cx.asz);
            let v = cx.read_mem(cx.mseg(), si, size)? as u32;
            cx.bus
                .io_out(port, size, v)
                .map_err(|s| io_fault(s, port, size, Some(v)))?;
            cx.advance(reg::RSI, size);
            cx.rep_done(false);
        }
    }
    Ok(())
}
