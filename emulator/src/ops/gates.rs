//! Far CALL and JMP through call gates (SDM vol. 3, 5.8.3 "Call Gates",
//! 5.8.4 "Accessing a Code Segment Through a Call Gate", 5.8.5 "Stack
//! Switching", 5.8.6 "Returning from a Called Procedure"; vol. 2, CALL and
//! JMP "Operation", CALL-GATE): 16- and 32-bit gates in protected mode,
//! 64-bit gates in IA-32e mode (SDM vol. 3, 5.8.3.1). A TSS descriptor or
//! a task gate as the target switches tasks (SDM vol. 3, 7.3; vol. 2, JMP
//! and CALL "TASK-GATE" / "TASK-STATE-SEGMENT"); IA-32e mode has no task
//! switching (#GP(selector)).

use crate::bus::Bus;
use crate::cpu::{reg, Mode, Seg, SegReg};
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::mask;
use crate::mem::is_canonical;
use crate::seg::{null_seg, parse};
use crate::task::Switch;

/// Call gate types (SDM vol. 3, Table 3-2): 16-bit, and 32-bit (64-bit in IA-32e mode).
const GATE16: u8 = 0x4;
const GATE32: u8 = 0xc;

impl<B: Bus> Ctx<'_, B> {
    /// A far JMP/CALL in protected or IA-32e mode whose selector names a
    /// system descriptor: returns `None` for a code segment (the caller's
    /// ordinary path), else the outcome of the transfer through the gate.
    /// `ret` is the return address and `call` distinguishes CALL from JMP.
    pub(crate) fn far_via_system(&mut self, sel: u16, ret: u64, call: bool) -> Option<OpResult> {
        if !self.mode.is_protected() || sel & 0xfffc == 0 {
            return None;
        }
        let (_, lo) = match self.read_desc(sel, vector::GP) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        if lo >> 44 & 1 != 0 {
            return None;
        }
        let long = self.cpu.efer & crate::cpu::EFER_LMA != 0;
        let typ = (lo >> 40 & 0xf) as u8;
        if !long && matches!(typ, 0x1 | 0x3 | 0x5 | 0x9 | 0xb) {
            return Some(self.far_to_task(sel, lo, ret, call));
        }
        let saved = (self.cpu.seg, self.cpl, self.mode);
        let r = self.through_call_gate(sel, lo, ret, call);
        if r.is_err() {
            self.cpu.seg = saved.0;
        }
        self.cpl = saved.1;
        self.mode = saved.2;
        Some(r)
    }

    /// JMP/CALL to a TSS descriptor or a task gate: DPL ≥ CPL and ≥ RPL,
    /// the gate present (SDM vol. 2, JMP/CALL "TASK-GATE",
    /// "TASK-STATE-SEGMENT"); the rest is the task switch's.
    fn far_to_task(&mut self, sel: u16, lo: u64, ret: u64, call: bool) -> OpResult {
        let dpl = (lo >> 45 & 3) as u8;
        let rpl = (sel & 3) as u8;
        if dpl < self.cpl || dpl < rpl {
            return Err(Exception::gp(u32::from(sel & 0xfffc)).into());
        }
        let tss = if (lo >> 40 & 0xf) == 0x5 {
            if lo >> 47 & 1 == 0 {
                return Err(Exception::with_code(vector::NP, u32::from(sel & 0xfffc)).into());
            }
            (lo >> 16) as u16
        } else {
            sel
        };
        let why = if call { Switch::Call } else { Switch::Jmp };
        self.task_switch(tss, why, ret, 0, None)
    }

    fn through_call_gate(&mut self, gsel: u16, lo: u64, ret: u64, call: bool) -> OpResult {
        let ggp = Exception::gp(u32::from(gsel & 0xfffc));
        let long = self.cpu.efer & crate::cpu::EFER_LMA != 0;
        // (A task gate or TSS in IA-32e mode lands here and fails the type check.)
        let typ = (lo >> 40 & 0xf) as u8;
        // Only call gates are handled; in IA-32e mode only the 64-bit type (SDM 5.8.3.1).
        if !(typ == GATE32 || (!long && typ == GATE16)) {
            return Err(ggp.into());
        }
        let gdpl = (lo >> 45 & 3) as u8;
        let rpl = (gsel & 3) as u8;
        if gdpl < self.cpl || rpl > gdpl {
            return Err(ggp.into());
        }
        if lo >> 47 & 1 == 0 {
            return Err(Exception::with_code(vector::NP, u32::from(gsel & 0xfffc)).into());
        }
        let mut offset = (lo & 0xffff) | (lo >> 32 & 0xffff_0000);
        if long {
            // The upper half: offset 63:32, and a type field that must be 0.
            let a = match self.desc_addr(gsel, 16, vector::GP) {
                Ok(a) => a,
                Err(_) => return Err(ggp.into()),
            };
            let hi = self.read_sys(a + 8, 8)?;
            if hi >> 40 & 0x1f != 0 {
                return Err(ggp.into());
            }
            offset |= (hi & 0xffff_ffff) << 32;
        } else if typ == GATE16 {
            offset &= 0xffff;
        }
        let params = (lo >> 32 & 0x1f) as usize;
        let size: u8 = if long {
            8
        } else if typ == GATE32 {
            4
        } else {
            2
        };
        // The code segment named by the gate.
        let csel = (lo >> 16) as u16;
        if csel & 0xfffc == 0 {
            return Err(Exception::gp(0).into());
        }
        let cgp = Exception::gp(u32::from(csel & 0xfffc));
        let (caddr, clo) = self.read_desc(csel, vector::GP)?;
        let mut cs = parse(csel, clo, None);
        if !cs.is_code() || cs.dpl > self.cpl || (long && (!cs.l || cs.db)) {
            return Err(cgp.into());
        }
        let conforming = cs.typ & 4 != 0;
        if !call && !conforming && cs.dpl != self.cpl {
            return Err(cgp.into());
        }
        if !cs.present {
            return Err(Exception::with_code(vector::NP, u32::from(csel & 0xfffc)).into());
        }
        let new_cpl = if conforming { self.cpl } else { cs.dpl };
        let old_cs = u64::from(self.cpu.seg[SegReg::Cs as usize].selector);
        let old_ss = self.cpu.seg[SegReg::Ss as usize].selector;
        let old_sp = self.cpu.gpr[reg::RSP];
        if call && new_cpl < self.cpl {
            // MORE-PRIVILEGE: the new stack from the TSS (SDM 5.8.5).
            let old_ssz = self.stack_size();
            let mut copied = [0u64; 31];
            for (i, p) in copied.iter_mut().enumerate().take(params) {
                *p = self.peek_stack(i as u64 * u64::from(size), size)?;
            }
            if long {
                let sp = self.read_tss(4 + 8 * u64::from(new_cpl), 8)?;
                let mut ss = null_seg(u16::from(new_cpl));
                ss.dpl = new_cpl;
                self.cpu.seg[SegReg::Ss as usize] = ss;
                self.mode = Mode::Long64;
                self.cpu.gpr[reg::RSP] = sp;
            } else {
                let ss = self.tss_stack(new_cpl)?;
                self.cpu.seg[SegReg::Ss as usize] = ss.0;
                let ssz = if ss.0.db { 4 } else { 2 };
                self.cpu.gpr[reg::RSP] = ss.1 & mask(ssz);
            }
            self.cpl = new_cpl;
            self.push(u64::from(old_ss), size)?;
            self.push(old_sp & mask(old_ssz), size)?;
            for i in (0..params).rev() {
                self.push(copied[i], size)?;
            }
        } else if long {
            self.mode = Mode::Long64;
        }
        if long {
            if !is_canonical(offset, self.cpu.cr4 & (1 << 12) != 0) {
                return Err(Exception::gp(0).into());
            }
        } else if offset > u64::from(cs.limit) {
            return Err(Exception::gp(0).into());
        }
        if call {
            self.push(old_cs, size)?;
            self.push(ret, size)?;
        }
        self.set_accessed(caddr, clo)?;
        cs.typ |= 1;
        cs.selector = (csel & 0xfffc) | u16::from(new_cpl);
        if !conforming {
            cs.dpl = new_cpl;
        }
        self.cpu.seg[SegReg::Cs as usize] = cs;
        self.cpu.rip = offset;
        Ok(())
    }

    /// SS:ESP for privilege `cpl` from a 32- or 16-bit TSS, with the checks
    /// of a stack switch (SDM vol. 2, CALL "Operation", MORE-PRIVILEGE).
    fn tss_stack(&mut self, cpl: u8) -> OpResult<(Seg, u64)> {
        let (sp, sel) = if self.cpu.tr.typ & 8 != 0 {
            let o = 4 + 8 * u64::from(cpl);
            (self.read_tss(o, 4)?, self.read_tss(o + 4, 2)? as u16)
        } else {
            let o = 2 + 4 * u64::from(cpl);
            (self.read_tss(o, 2)?, self.read_tss(o + 2, 2)? as u16)
        };
        let ts = Exception::with_code(vector::TS, u32::from(sel & 0xfffc));
        if sel & 0xfffc == 0 {
            return Err(ts.into());
        }
        let (addr, lo) = self.read_desc(sel, vector::TS)?;
        let d = parse(sel, lo, None);
        if (sel & 3) as u8 != cpl || d.dpl != cpl || !d.is_writable() {
            return Err(ts.into());
        }
        if !d.present {
            return Err(Exception::ss(u32::from(sel & 0xfffc)).into());
        }
        self.set_accessed(addr, lo)?;
        let mut d = d;
        d.typ |= 1;
        Ok((d, sp))
    }
}
