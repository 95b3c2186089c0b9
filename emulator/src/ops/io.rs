//! Port I/O: IN, OUT, INS, OUTS (SDM vol. 2; vol. 1, 19.5 "Protection
//! and I/O"). In protected mode CPL > IOPL raises #GP(0) (the TSS I/O
//! permission bitmap is not consulted yet), as does virtual-8086 mode.
//! The intercept check follows the privilege check (SDM vol. 3, 26.1.1).

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
        return Err(Exception::gp(0).into());
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
