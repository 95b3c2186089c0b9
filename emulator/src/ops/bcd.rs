//! BCD adjustment: DAA, DAS, AAA, AAS, AAM, AAD (SDM vol. 2, the
//! instruction pages, "Operation"). All are #UD in 64-bit mode.
//!
//! Undefined flags (the oracle cannot run these natively in 64-bit user
//! mode, so the choice is ours and documented): DAA/DAS clear OF; AAA/AAS
//! set SF, ZF, PF from the final AL and clear OF; AAM/AAD clear OF, AF, CF.

use crate::bus::Bus;
use crate::cpu::{reg, Mode};
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::{merge, szp, AF, CF, STATUS};
use iced_x86::Mnemonic;

/// One BCD adjustment on AX and the status flags, as a pure function
/// (exposed to the unit tests): returns (new AX, new status flags), or
/// `None` for AAM with a zero base (#DE).
pub(crate) fn adjust(m: Mnemonic, ax: u16, rflags: u64, imm: u8) -> Option<(u16, u64)> {
    let al = ax as u8;
    let ah = (ax >> 8) as u8;
    let cf_in = rflags & CF != 0;
    let af_in = rflags & AF != 0;
    let low_adj = (al & 0x0f) > 9 || af_in;
    Some(match m {
        Mnemonic::Daa => {
            // SDM vol. 2, DAA "Operation".
            let mut nal = al;
            let mut f = 0;
            if low_adj {
                let (s, carry) = al.overflowing_add(6);
                nal = s;
                if cf_in || carry {
                    f |= CF;
                }
                f |= AF;
            }
            if al > 0x99 || cf_in {
                nal = nal.wrapping_add(0x60);
                f |= CF;
            } else {
                f &= !CF;
            }
            let f = f | szp(u64::from(nal), 1);
            ((ax & 0xff00) | u16::from(nal), f)
        }
        Mnemonic::Das => {
            // SDM vol. 2, DAS "Operation" (CF from the first step is kept
            // when the second does not apply).
            let mut nal = al;
            let mut f = 0;
            if low_adj {
                let (s, borrow) = al.overflowing_sub(6);
                nal = s;
                if cf_in || borrow {
                    f |= CF;
                }
                f |= AF;
            }
            if al > 0x99 || cf_in {
                nal = nal.wrapping_sub(0x60);
                f |= CF;
            }
            let f = f | szp(u64::from(nal), 1);
            ((ax & 0xff00) | u16::from(nal), f)
        }
        Mnemonic::Aaa | Mnemonic::Aas => {
            // SDM vol. 2, AAA / AAS "Operation": AX ± 106H / AX − 6, AH − 1.
            let (nax, f) = if low_adj {
                let v = if m == Mnemonic::Aaa {
                    ax.wrapping_add(0x106)
                } else {
                    let lo = ax.wrapping_sub(6);
                    lo.wrapping_sub(0x100)
                };
                (v, AF | CF)
            } else {
                (ax, 0)
            };
            let nax = nax & 0xff0f;
            (nax, f | szp(u64::from(nax & 0xff), 1))
        }
        Mnemonic::Aam => {
            // SDM vol. 2, AAM: AH = AL / imm8, AL = AL mod imm8; #DE on 0.
            if imm == 0 {
                return None;
            }
            let nal = al % imm;
            let nah = al / imm;
            (
                (u16::from(nah) << 8) | u16::from(nal),
                szp(u64::from(nal), 1),
            )
        }
        _ => {
            // SDM vol. 2, AAD: AL = (AL + AH × imm8) AND FFH, AH = 0.
            let nal = al.wrapping_add(ah.wrapping_mul(imm));
            (u16::from(nal), szp(u64::from(nal), 1))
        }
    })
}

/// DAA, DAS, AAA, AAS, AAM, AAD.
pub(super) fn bcd<B: Bus>(cx: &mut Ctx<'_, B>, m: Mnemonic) -> OpResult {
    if cx.mode == Mode::Long64 {
        return Err(Exception::ud().into());
    }
    let imm = if matches!(m, Mnemonic::Aam | Mnemonic::Aad) {
        cx.insn.immediate8()
    } else {
        0
    };
    let ax = cx.cpu.gpr[reg::RAX] as u16;
    let (nax, f) = adjust(m, ax, cx.cpu.rflags, imm).ok_or(Exception::de())?;
    cx.set_gpr(reg::RAX, 2, u64::from(nax));
    cx.cpu.rflags = merge(cx.cpu.rflags, f, STATUS);
    Ok(())
}
