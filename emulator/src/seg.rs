//! Segment descriptors: reading them from the GDT/LDT, parsing them into
//! descriptor caches, and the checks of segment-register loads
//! (SDM vol. 3, 3.4.5 "Segment Descriptors"; vol. 2, MOV/POP "Operation").

use crate::bus::Bus;
use crate::cpu::{Mode, Seg, SegReg};
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;

/// Parses an 8-byte code/data or system descriptor (SDM vol. 3, Figure 3-8);
/// `hi` supplies base bits 63:32 of a 16-byte system descriptor in IA-32e mode.
pub fn parse(selector: u16, lo: u64, hi: Option<u64>) -> Seg {
    let mut limit = ((lo & 0xffff) | ((lo >> 32) & 0xf_0000)) as u32;
    let g = lo >> 55 & 1 != 0;
    if g {
        limit = (limit << 12) | 0xfff;
    }
    let mut base = ((lo >> 16) & 0xff_ffff) | ((lo >> 32) & 0xff00_0000);
    if let Some(h) = hi {
        base |= (h & 0xffff_ffff) << 32;
    }
    Seg {
        selector,
        base,
        limit,
        typ: (lo >> 40 & 0xf) as u8,
        s: lo >> 44 & 1 != 0,
        dpl: (lo >> 45 & 3) as u8,
        present: lo >> 47 & 1 != 0,
        avl: lo >> 52 & 1 != 0,
        l: lo >> 53 & 1 != 0,
        db: lo >> 54 & 1 != 0,
        g,
        unusable: false,
    }
}

/// A null selector loaded into a data segment register (unusable).
pub fn null_seg(selector: u16) -> Seg {
    Seg {
        selector,
        unusable: true,
        ..Seg::default()
    }
}

impl<B: Bus> Ctx<'_, B> {
    /// Linear address of the descriptor for `sel`, or the fault: #GP(sel) by
    /// default, or `vec` (e.g. #TS) with the selector's error code.
    pub(crate) fn desc_addr(&self, sel: u16, size: u64, vec: u8) -> OpResult<u64> {
        let err = Exception::with_code(vec, u32::from(sel & 0xfffc));
        let (base, limit) = if sel & 4 != 0 {
            let l = &self.cpu.ldtr;
            if l.unusable || !l.present {
                return Err(err.into());
            }
            (l.base, u64::from(l.limit))
        } else {
            (self.cpu.gdtr.base, u64::from(self.cpu.gdtr.limit))
        };
        let off = u64::from(sel & 0xfff8);
        if off + size - 1 > limit {
            return Err(err.into());
        }
        Ok(
            if self.mode == Mode::Long64 || self.cpu.efer & crate::cpu::EFER_LMA != 0 {
                base.wrapping_add(off)
            } else {
                base.wrapping_add(off) & 0xffff_ffff
            },
        )
    }

    /// Reads the 8-byte descriptor for `sel` (faults as [`Ctx::desc_addr`]).
    pub(crate) fn read_desc(&mut self, sel: u16, vec: u8) -> OpResult<(u64, u64)> {
        let a = self.desc_addr(sel, 8, vec)?;
        let lo = self.read_sys(a, 8)?;
        Ok((a, lo))
    }

    /// Sets the accessed bit of a code/data descriptor at `addr` (SDM vol. 3, 3.4.5.1).
    pub(crate) fn set_accessed(&mut self, addr: u64, lo: u64) -> OpResult {
        if lo & (1 << 40) == 0 {
            let b = ((lo >> 40) as u8) | 1;
            self.write_lin(addr + 5, &[b], true)?;
        }
        Ok(())
    }

    /// Loads data segment register `sr` (DS, ES, FS, GS or SS) with `sel`,
    /// with the protected-mode checks of MOV/POP to a segment register
    /// (SDM vol. 2, MOV "Operation"); in real and virtual-8086 mode only the
    /// selector and base change. The register is written only on success.
    pub(crate) fn load_data_seg(&mut self, sr: SegReg, sel: u16) -> OpResult {
        if !self.mode.is_protected() {
            let s = &mut self.cpu.seg[sr as usize];
            s.selector = sel;
            s.base = u64::from(sel) << 4;
            if self.mode == Mode::V86 {
                *s = Seg {
                    dpl: 3,
                    ..Seg::real(sel, false)
                };
            }
            return Ok(());
        }
        let rpl = sel & 3;
        let gp = Exception::gp(u32::from(sel & 0xfffc));
        if sel & 0xfffc == 0 {
            if sr == SegReg::Ss {
                // 64-bit mode allows a null SS at CPL < 3 with RPL = CPL.
                if !(self.mode == Mode::Long64 && self.cpl < 3 && (rpl as u8) == self.cpl) {
                    return Err(Exception::gp(0).into());
                }
                let mut s = null_seg(sel);
                s.dpl = self.cpl;
                s.db = false;
                self.cpu.seg[sr as usize] = s;
                return Ok(());
            }
            let mut s = null_seg(sel);
            if self.mode == Mode::Long64 && matches!(sr, SegReg::Fs | SegReg::Gs) {
                // The base of FS/GS is kept in 64-bit mode for a null selector (AMD/Intel differ; Intel keeps it).
                s.base = self.cpu.seg[sr as usize].base;
            }
            self.cpu.seg[sr as usize] = s;
            return Ok(());
        }
        let (addr, lo) = self.read_desc(sel, vector::GP)?;
        let d = parse(sel, lo, None);
        if sr == SegReg::Ss {
            if (rpl as u8) != self.cpl || d.dpl != self.cpl || !d.is_writable() {
                return Err(gp.into());
            }
            if !d.present {
                return Err(Exception::ss(u32::from(sel & 0xfffc)).into());
            }
        } else {
            if !d.is_readable() {
                return Err(gp.into());
            }
            let conforming_code = d.is_code() && d.typ & 4 != 0;
            if !conforming_code && (rpl as u8 > d.dpl || self.cpl > d.dpl) {
                return Err(gp.into());
            }
            if !d.present {
                return Err(Exception::with_code(vector::NP, u32::from(sel & 0xfffc)).into());
            }
        }
        self.set_accessed(addr, lo)?;
        let mut d = d;
        d.typ |= 1;
        self.cpu.seg[sr as usize] = d;
        Ok(())
    }

    /// Checks and parses the code-segment descriptor `sel` for a far JMP/CALL
    /// (`ret_rpl = None`: same privilege, RPL becomes CPL) or a far RET/IRET
    /// to privilege `Some(rpl)` ≥ CPL (SDM vol. 2, JMP, CALL, RET and IRET
    /// "Operation", protected mode, conforming / nonconforming code segment).
    /// Call gates and task switches are not supported (#GP(sel)).
    pub(crate) fn far_code_target(&mut self, sel: u16, ret_rpl: Option<u8>) -> OpResult<Seg> {
        let gp = Exception::gp(u32::from(sel & 0xfffc));
        if sel & 0xfffc == 0 {
            return Err(Exception::gp(0).into());
        }
        let (addr, lo) = self.read_desc(sel, vector::GP)?;
        let d = parse(sel, lo, None);
        if !d.is_code() {
            return Err(gp.into());
        }
        let rpl = (sel & 3) as u8;
        let conforming = d.typ & 4 != 0;
        let new_cpl = match ret_rpl {
            Some(r) => {
                if r < self.cpl || (conforming && d.dpl > r) || (!conforming && d.dpl != r) {
                    return Err(gp.into());
                }
                r
            }
            None => {
                if conforming {
                    if d.dpl > self.cpl {
                        return Err(gp.into());
                    }
                } else if rpl > self.cpl || d.dpl != self.cpl {
                    return Err(gp.into());
                }
                self.cpl
            }
        };
        if !d.present {
            return Err(Exception::with_code(vector::NP, u32::from(sel & 0xfffc)).into());
        }
        if self.cpu.efer & crate::cpu::EFER_LMA != 0 && d.l && d.db {
            return Err(gp.into());
        }
        self.set_accessed(addr, lo)?;
        let mut d = d;
        d.typ |= 1;
        d.selector = (sel & 0xfffc) | u16::from(new_cpl);
        if !conforming {
            d.dpl = new_cpl;
        }
        Ok(d)
    }

    /// Checks the SS selector popped by a return to privilege `new_cpl`
    /// (SDM vol. 2, RET/IRET "RETURN-TO-OUTER-PRIVILEGE-LEVEL"); a null SS is
    /// allowed when returning to 64-bit code at CPL < 3.
    pub(crate) fn return_ss(&mut self, sel: u16, new_cpl: u8, to64: bool) -> OpResult<Seg> {
        if sel & 0xfffc == 0 {
            if to64 && new_cpl < 3 {
                let mut s = null_seg(sel);
                s.dpl = new_cpl;
                return Ok(s);
            }
            return Err(Exception::gp(0).into());
        }
        let gp = Exception::gp(u32::from(sel & 0xfffc));
        let (addr, lo) = self.read_desc(sel, vector::GP)?;
        let d = parse(sel, lo, None);
        if (sel & 3) as u8 != new_cpl || d.dpl != new_cpl || !d.is_writable() {
            return Err(gp.into());
        }
        if !d.present {
            return Err(Exception::ss(u32::from(sel & 0xfffc)).into());
        }
        self.set_accessed(addr, lo)?;
        let mut d = d;
        d.typ |= 1;
        Ok(d)
    }

    /// After a return to an outer level: ES, DS, FS, GS holding a data or
    /// nonconforming code segment with DPL < new CPL become null.
    pub(crate) fn null_inaccessible_segs(&mut self, new_cpl: u8) {
        for sr in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
            let s = &mut self.cpu.seg[sr as usize];
            let conforming_code = s.is_code() && s.typ & 4 != 0;
            if !s.unusable && !conforming_code && s.dpl < new_cpl {
                *s = null_seg(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_flat_descriptors() {
        // (raw, base, limit, type, s, dpl, p, l, db, g)
        let t = [
            (
                0x00cf_9a00_0000_ffffu64,
                0u64,
                0xffff_ffffu32,
                0xa,
                true,
                0,
                true,
                false,
                true,
                true,
            ),
            (
                0x00af_9b00_0000_ffff,
                0,
                0xffff_ffff,
                0xb,
                true,
                0,
                true,
                true,
                false,
                true,
            ),
            (
                0x00cf_f300_0000_ffff,
                0,
                0xffff_ffff,
                0x3,
                true,
                3,
                true,
                false,
                true,
                true,
            ),
            (
                0x1240_9612_3456_0fff,
                0x1212_3456,
                0xfff,
                0x6,
                true,
                0,
                true,
                false,
                true,
                false,
            ),
            (
                0x0000_8900_1000_0067,
                0x1000,
                0x67,
                0x9,
                false,
                0,
                true,
                false,
                false,
                false,
            ),
        ];
        for (raw, base, limit, typ, s, dpl, p, l, db, g) in t {
            let d = parse(0x10, raw, None);
            assert_eq!(
                (d.base, d.limit, d.typ, d.s, d.dpl),
                (base, limit, typ, s, dpl),
                "{raw:#x}"
            );
            assert_eq!((d.present, d.l, d.db, d.g), (p, l, db, g), "{raw:#x}");
        }
        let d = parse(0x28, 0x0000_8900_1000_0067, Some(0xffff_ffff));
        assert_eq!(d.base, 0xffff_ffff_0000_1000);
    }
}
