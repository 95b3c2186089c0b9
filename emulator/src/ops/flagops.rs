//! Flag instructions: CLC, STC, CMC, CLD, STD, CLI, STI (SDM vol. 2).
//! CLI/STI: allowed when CPL ≤ IOPL in protected mode and IOPL = 3 in
//! virtual-8086 mode, else #GP(0) (no PVI/VME). STI opens an interrupt
//! shadow only when IF was 0 (SDM vol. 2, STI).

use crate::bus::Bus;
use crate::cpu::Mode;
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{CF, DF, IF, IOPL};
use iced_x86::Mnemonic;

/// One flag instruction.
pub(super) fn flagop<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    let f = &mut cx.cpu.rflags;
    match m {
        Mnemonic::Clc => *f &= !CF,
        Mnemonic::Stc => *f |= CF,
        Mnemonic::Cmc => *f ^= CF,
        Mnemonic::Cld => *f &= !DF,
        Mnemonic::Std => *f |= DF,
        _ => {
            let iopl = ((*f & IOPL) >> 12) as u8;
            let allowed = match cx.mode {
                Mode::Real => true,
                Mode::V86 => iopl == 3,
                _ => cx.cpl <= iopl,
            };
            if !allowed {
                return Err(Exception::gp(0).into());
            }
            if m == Mnemonic::Cli {
                *f &= !IF;
            } else {
                if *f & IF == 0 {
                    cx.cpu.sti_shadow = true;
                }
                cx.cpu.rflags |= IF;
            }
        }
    }
    Ok(())
}
