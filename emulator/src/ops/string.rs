//! String instructions: MOVS, STOS, LODS, CMPS, SCAS with REP/REPE/REPNE and
//! every address size (SDM vol. 2, the instruction pages and "REP/REPE/
//! REPZ/REPNE/REPNZ").
//!
//! A REP instruction executes one iteration per engine step; while more
//! remain, RIP stays on the instruction (as after an interrupt between
//! iterations, SDM vol. 2, REP), so budget exhaustion, interrupts and
//! MMIO stops resume exactly.

use crate::bus::Bus;
use crate::cpu::{reg, SegReg};
use crate::exception::OpResult;
use crate::exec::Ctx;
use crate::flags::{self, mask, merge, STATUS};
use iced_x86::Mnemonic;

/// Element size of a string mnemonic.
fn elem_size(m: Mnemonic) -> u8 {
    use Mnemonic as M;
    match m {
        M::Movsb | M::Stosb | M::Lodsb | M::Cmpsb | M::Scasb | M::Insb | M::Outsb => 1,
        M::Movsw | M::Stosw | M::Lodsw | M::Cmpsw | M::Scasw | M::Insw | M::Outsw => 2,
        M::Movsd | M::Stosd | M::Lodsd | M::Cmpsd | M::Scasd | M::Insd | M::Outsd => 4,
        _ => 8,
    }
}

impl<B: Bus> Ctx<'_, B> {
    /// Element size of the current string instruction.
    pub(crate) fn string_elem(&self) -> u8 {
        elem_size(self.insn.mnemonic())
    }

    /// Whether a REP prefix applies (F3 or F2).
    pub(crate) fn rep(&self) -> bool {
        self.insn.has_rep_prefix() || self.insn.has_repe_prefix() || self.insn.has_repne_prefix()
    }

    /// The REP count (rCX by address size); `None` without a REP prefix.
    pub(crate) fn rep_count(&self) -> Option<u64> {
        self.rep().then(|| self.cpu.gpr[reg::RCX] & mask(self.asz))
    }

    /// Adds ±`size` to rSI/rDI (register `r`) by address size and DF.
    pub(crate) fn advance(&mut self, r: usize, size: u8) {
        let d = if self.cpu.rflags & flags::DF != 0 {
            0u64.wrapping_sub(u64::from(size))
        } else {
            u64::from(size)
        };
        let v = self.cpu.gpr[r].wrapping_add(d);
        self.set_gpr(r, self.asz, v);
    }

    /// Finishes one REP iteration: decrements rCX and decides whether to
    /// stay on the instruction (`stop` = the REPE/REPNE condition ended it).
    pub(crate) fn rep_done(&mut self, stop: bool) {
        if !self.rep() {
            return;
        }
        let c = self.cpu.gpr[reg::RCX].wrapping_sub(1) & mask(self.asz);
        self.set_gpr(reg::RCX, self.asz, c);
        self.rep_more = c != 0 && !stop;
    }

    fn si(&self) -> u64 {
        self.cpu.gpr[reg::RSI] & mask(self.asz)
    }

    fn di(&self) -> u64 {
        self.cpu.gpr[reg::RDI] & mask(self.asz)
    }
}

/// One iteration of a string instruction.
pub(super) fn string<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    use Mnemonic as M;
    if cx.rep_count() == Some(0) {
        return Ok(());
    }
    let size = elem_size(m);
    let src = cx.mseg();
    let mut stop = false;
    match m {
        M::Movsb | M::Movsw | M::Movsd | M::Movsq => {
            let v = cx.read_mem(src, cx.si(), size)?;
            cx.write_mem(SegReg::Es, cx.di(), size, v)?;
            cx.advance(reg::RSI, size);
            cx.advance(reg::RDI, size);
        }
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => {
            let v = cx.cpu.gpr[reg::RAX];
            cx.write_mem(SegReg::Es, cx.di(), size, v)?;
            cx.advance(reg::RDI, size);
        }
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => {
            let v = cx.read_mem(src, cx.si(), size)?;
            cx.set_gpr(reg::RAX, size, v);
            cx.advance(reg::RSI, size);
        }
        _ => {
            let cmps = matches!(m, M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq);
            let a = if cmps {
                cx.read_mem(src, cx.si(), size)?
            } else {
                cx.cpu.gpr[reg::RAX]
            };
            let b = cx.read_mem(SegReg::Es, cx.di(), size)?;
            let (_, f) = flags::sub(a, b, false, size);
            cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
            if cmps {
                cx.advance(reg::RSI, size);
            }
            cx.advance(reg::RDI, size);
            let zf = f & flags::ZF != 0;
            // REPE stops on ZF = 0, REPNE on ZF = 1.
            stop = if cx.insn.has_repne_prefix() { zf } else { !zf };
        }
    }
    cx.rep_done(stop);
    Ok(())
}
