//! Flag instructions: CLC, STC, CMC, CLD, STD, CLI, STI (SDM vol. 2).
//! CLI/STI: allowed when CPL ≤ IOPL in protected mode and IOPL = 3 in
//! virtual-8086 mode. Otherwise, with CR4.VME = 1 in virtual-8086 mode or
//! CR4.PVI = 1 at CPL 3 in protected mode, they clear/set VIF instead (STI
//! with VIP = 1 is #GP(0)); else #GP(0) (SDM vol. 2, CLI and STI
//! "Operation"; vol. 3, 20.3.2 and 20.4). STI opens an interrupt shadow
//! only when IF was 0 (SDM vol. 2, STI).

use crate::bus::Bus;
use crate::cpu::Mode;
use crate::cpu::{CR4_PVI, CR4_VME};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{CF, DF, IF, IOPL, VIF, VIP};
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
                let cr4 = cx.cpu.cr4;
                let virt = match cx.mode {
                    Mode::V86 => cr4 & CR4_VME != 0,
                    _ => cx.cpl == 3 && cr4 & CR4_PVI != 0,
                };
                if !virt {
                    return Err(Exception::gp(0).into());
                }
                // Virtual interrupt flag: no IF change, no interrupt shadow.
                if m == Mnemonic::Cli {
                    *f &= !VIF;
                } else if *f & VIP != 0 {
                    return Err(Exception::gp(0).into());
                } else {
                    *f |= VIF;
                }
                return Ok(());
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
