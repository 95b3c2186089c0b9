//! The new task's LDTR and segment registers, loaded and qualified after
//! the task switch's commit point (SDM vol. 3, 7.3 "Task Switching", step
//! 13, and Table 7-1 "Exception Conditions Checked During a Task Switch",
//! the checks after "Registers are loaded from the values in the TSS").
//!
//! A failed check does not undo the switch: it becomes an exception raised
//! in the new task before its first instruction. The register that failed
//! and those not yet qualified hold their new selector with an unusable
//! descriptor cache (the SDM: loaded "but not checked for validity and
//! therefore may not be usable", vol. 3, Interrupt 10 "#TS").

use super::TSS_SEGS;
use crate::bus::Bus;
use crate::cpu::{Seg, SegReg};
use crate::exception::{vector, Exception, Fault, OpResult};
use crate::exec::Ctx;
use crate::seg::{null_seg, parse};

/// A segment register holding `sel` with a descriptor cache that is unusable.
fn unqualified(sel: u16) -> Seg {
    null_seg(sel)
}

impl<B: Bus> Ctx<'_, B> {
    /// Loads the new task's LDTR and ES, CS, SS, DS, FS, GS (`sels`, TSS
    /// order) in the order of Table 7-1; V86 tasks (`vm`) get real-mode
    /// style segments. Returns the exception of the first failed check
    /// (`Ok(Some)`), or a fault the caller must treat as before the commit
    /// point (an event the engine must stop for).
    pub(super) fn load_task_segs(
        &mut self,
        ldt: u16,
        sels: &[u16; 6],
        vm: bool,
        ext: u32,
    ) -> OpResult<Option<Exception>> {
        for (i, sr) in TSS_SEGS.iter().enumerate() {
            self.cpu.seg[*sr as usize] = unqualified(sels[i]);
        }
        self.cpu.ldtr = unqualified(ldt);
        match self.task_ldt(ldt, ext) {
            Ok(l) => self.cpu.ldtr = l,
            Err(f) => return exception_of(f),
        }
        if vm {
            for (i, sr) in TSS_SEGS.iter().enumerate() {
                self.cpu.seg[*sr as usize] = Seg {
                    dpl: 3,
                    ..Seg::real(sels[i], *sr == SegReg::Cs)
                };
            }
            return Ok(None);
        }
        // CS, then SS, then ES, DS, FS, GS (Table 7-1 order).
        for i in [1usize, 2, 0, 3, 4, 5] {
            match self.task_seg(i, sels, ext) {
                Ok(s) => self.cpu.seg[TSS_SEGS[i] as usize] = s,
                Err(f) => return exception_of(f),
            }
        }
        Ok(None)
    }

    /// The new task's LDTR (SDM vol. 3, Table 7-1): null, or an LDT
    /// descriptor in the GDT that is present; else #TS(selector).
    fn task_ldt(&mut self, sel: u16, ext: u32) -> OpResult<Seg> {
        let ts = Exception::with_code(vector::TS, u32::from(sel & 0xfffc) | ext);
        if sel & 0xfffc == 0 {
            return Ok(null_seg(sel));
        }
        if sel & 4 != 0 {
            return Err(ts.into());
        }
        // Beyond the GDT limit: #TS; a fault reading the descriptor is that fault.
        let a = self.desc_addr(sel, 8, vector::TS).map_err(|_| ts)?;
        let lo = self.read_sys(a, 8)?;
        let d = parse(sel, lo, None);
        if d.s || d.typ != 2 || !d.present {
            return Err(ts.into());
        }
        Ok(d)
    }

    /// Qualifies segment register `i` (TSS order) of the new task; the
    /// new CPL is CS.RPL (SDM vol. 3, Table 7-1, and vol. 3, Interrupt 10
    /// "#TS", Table 6-6 for the code/data selector conditions).
    fn task_seg(&mut self, i: usize, sels: &[u16; 6], ext: u32) -> OpResult<Seg> {
        let e = |v: u8, s: u16| Exception::with_code(v, u32::from(s & 0xfffc) | ext);
        let s = sels[i];
        let cpl = (sels[1] & 3) as u8;
        let reg = TSS_SEGS[i];
        if s & 0xfffc == 0 {
            if matches!(reg, SegReg::Cs | SegReg::Ss) {
                return Err(e(vector::TS, s).into());
            }
            return Ok(null_seg(s));
        }
        let a = self
            .desc_addr(s, 8, vector::TS)
            .map_err(|_| e(vector::TS, s))?;
        let lo = self.read_sys(a, 8)?;
        let mut d = parse(s, lo, None);
        let not_present = match reg {
            SegReg::Cs => {
                let conforming = d.typ & 4 != 0;
                if !d.is_code() || (conforming && d.dpl > cpl) || (!conforming && d.dpl != cpl) {
                    return Err(e(vector::TS, s).into());
                }
                vector::NP
            }
            SegReg::Ss => {
                if (s & 3) as u8 != cpl || d.dpl != cpl || !d.is_writable() {
                    return Err(e(vector::TS, s).into());
                }
                vector::SS
            }
            _ => {
                let conf_code = d.is_code() && d.typ & 4 != 0;
                if !d.is_readable() || (!conf_code && (d.dpl < cpl || d.dpl < (s & 3) as u8)) {
                    return Err(e(vector::TS, s).into());
                }
                vector::NP
            }
        };
        if !d.present {
            return Err(e(not_present, s).into());
        }
        self.set_accessed(a, lo)?;
        d.typ |= 1;
        Ok(d)
    }
}

/// An exception becomes the new task's; any other stop propagates.
fn exception_of(f: Fault) -> OpResult<Option<Exception>> {
    match f {
        Fault::Exception(e) => Ok(Some(e)),
        Fault::Event(k) => Err(Fault::Event(k)),
    }
}
