//! Hardware task switches with 32-bit TSSs (SDM vol. 3, 7.3 "Task
//! Switching", Figure 7-2 "32-Bit Task-State Segment", Table 7-1
//! "Exception Conditions Checked During a Task Switch", 7.4 "Task
//! Linking"): JMP/CALL to a TSS descriptor or a task gate, INT n and
//! exceptions through a task gate, and IRET with EFLAGS.NT set.
//!
//! Every check of the new task (TSS descriptor, LDT, CS, SS, DS/ES/FS/GS)
//! is made before any state changes, so a fault leaves the old task
//! intact; the SDM raises the faults of the segment checks in the context
//! of the new task instead. 16-bit TSSs are not supported (#GP/#TS with
//! the selector).

use crate::bus::Bus;
use crate::cpu::{Seg, SegReg};
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;
use crate::flags;
use crate::seg::{null_seg, parse};

/// What caused a task switch (decides busy bits, the back link and NT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    /// JMP to a TSS or task gate: old task not busy, no link.
    Jmp,
    /// CALL, INT n or an exception/interrupt: link and NT set.
    Call,
    /// IRET with NT: back to the linked task (must be busy).
    Iret,
}

/// 32-bit TSS field offsets (SDM vol. 3, Figure 7-2).
mod off {
    pub const LINK: u64 = 0x00;
    pub const CR3: u64 = 0x1c;
    pub const EIP: u64 = 0x20;
    pub const EFLAGS: u64 = 0x24;
    pub const GPR: u64 = 0x28;
    pub const SEG: u64 = 0x48;
    pub const LDT: u64 = 0x60;
}

/// Segment registers in TSS order: ES, CS, SS, DS, FS, GS.
const TSS_SEGS: [SegReg; 6] = [
    SegReg::Es,
    SegReg::Cs,
    SegReg::Ss,
    SegReg::Ds,
    SegReg::Fs,
    SegReg::Gs,
];

const CR0_TS: u64 = 1 << 3;
const CR0_PG: u64 = 1 << 31;

impl<B: Bus> Ctx<'_, B> {
    /// Switches to the task whose TSS selector is `sel`; `ret` is the EIP
    /// saved in the old task, `ext` the EXT bit of error codes, `code` an
    /// error code pushed on the new task's stack (exceptions). Privilege
    /// checks on the gate or descriptor are the caller's.
    pub(crate) fn task_switch(
        &mut self,
        sel: u16,
        why: Switch,
        ret: u64,
        ext: u32,
        code: Option<u32>,
    ) -> OpResult {
        let saved = (
            self.cpu.seg,
            self.cpu.ldtr,
            self.cpu.tr,
            self.cpu.cr0,
            self.cpu.cr3,
            self.cpl,
            self.mode,
        );
        let r = self.task_switch_inner(sel, why, ret, ext, code);
        if r.is_err() {
            let cr3_changed = self.cpu.cr3 != saved.4;
            self.cpu.seg = saved.0;
            self.cpu.ldtr = saved.1;
            self.cpu.tr = saved.2;
            self.cpu.cr0 = saved.3;
            self.cpu.cr3 = saved.4;
            if cr3_changed {
                self.paging_changed(Some(saved.4));
            }
        }
        self.cpl = saved.5;
        self.mode = saved.6;
        r
    }

    fn task_switch_inner(
        &mut self,
        sel: u16,
        why: Switch,
        ret: u64,
        ext: u32,
        code: Option<u32>,
    ) -> OpResult {
        let e = |v: u8, s: u16| Exception::with_code(v, u32::from(s & 0xfffc) | ext);
        let bad = if why == Switch::Iret {
            vector::TS
        } else {
            vector::GP
        };
        // The new TSS descriptor: in the GDT, type available (busy for IRET), present, limit.
        if sel & 4 != 0 || sel & 0xfffc == 0 {
            return Err(e(bad, sel).into());
        }
        let (daddr, lo) = self.read_desc(sel, bad).map_err(|_| e(bad, sel))?;
        let d = parse(sel, lo, None);
        let want = if why == Switch::Iret { 0xb } else { 0x9 };
        if d.s || d.typ != want {
            return Err(e(bad, sel).into());
        }
        if !d.present {
            return Err(e(vector::NP, sel).into());
        }
        if d.limit < 0x67 {
            return Err(e(vector::TS, sel).into());
        }
        let old = self.cpu.tr;
        if old.unusable || old.typ & 8 == 0 || old.limit < 0x67 {
            return Err(e(vector::TS, old.selector).into());
        }
        // Read the new task's state (SDM 7.3, step 4 onwards).
        let nb = d.base & 0xffff_ffff;
        let rd = |cx: &mut Self, o: u64, n: usize| cx.read_sys((nb + o) & 0xffff_ffff, n);
        let n_cr3 = rd(self, off::CR3, 4)?;
        let n_eip = rd(self, off::EIP, 4)?;
        let mut n_fl = rd(self, off::EFLAGS, 4)?;
        let mut n_gpr = [0u64; 8];
        for (i, g) in n_gpr.iter_mut().enumerate() {
            *g = rd(self, off::GPR + 4 * i as u64, 4)?;
        }
        let mut n_sel = [0u16; 6];
        for (i, s) in n_sel.iter_mut().enumerate() {
            *s = rd(self, off::SEG + 4 * i as u64, 2)? as u16;
        }
        let n_ldt = rd(self, off::LDT, 2)? as u16;
        // Save the old task (SDM 7.3, step 8): IRET stores NT clear.
        let ob = old.base & 0xffff_ffff;
        let mut ofl = self.cpu.rflags & 0xffff_ffff;
        if why == Switch::Iret {
            ofl &= !flags::NT;
        }
        let wr = |cx: &mut Self, o: u64, v: u64, n: usize| {
            cx.write_lin((ob + o) & 0xffff_ffff, &v.to_le_bytes()[..n], true)
        };
        wr(self, off::EIP, ret & 0xffff_ffff, 4)?;
        wr(self, off::EFLAGS, ofl, 4)?;
        for i in 0..8 {
            let g = self.cpu.gpr[i] & 0xffff_ffff;
            wr(self, off::GPR + 4 * i as u64, g, 4)?;
        }
        for (i, sr) in TSS_SEGS.iter().enumerate() {
            let s = u64::from(self.cpu.seg[*sr as usize].selector);
            wr(self, off::SEG + 4 * i as u64, s, 2)?;
        }
        // Busy bits (SDM 7.3, steps 7 and 11) and the back link (7.4).
        if matches!(why, Switch::Jmp | Switch::Iret) {
            let oaddr = self.desc_addr(old.selector, 8, vector::TS)?;
            let b = self.read_sys(oaddr + 5, 1)? as u8;
            self.write_lin(oaddr + 5, &[b & !2], true)?;
        }
        if why == Switch::Call {
            n_fl |= flags::NT;
            let link = u64::from(old.selector);
            self.write_lin(nb + off::LINK, &link.to_le_bytes()[..2], true)?;
        }
        if why != Switch::Iret {
            self.write_lin(daddr + 5, &[((lo >> 40) as u8) | 2], true)?;
        }
        // The new task's segments, checked before anything is loaded.
        let vm = n_fl & flags::VM != 0;
        let ldtr = self.task_ldt(n_ldt, ext)?;
        self.cpu.ldtr = ldtr;
        let segs = if vm {
            let mut s = [Seg::default(); 6];
            for (i, v) in s.iter_mut().enumerate() {
                *v = Seg {
                    dpl: 3,
                    ..Seg::real(n_sel[i], TSS_SEGS[i] == SegReg::Cs)
                };
            }
            s
        } else {
            self.task_segs(&n_sel, ext)?
        };
        // Commit (SDM 7.3, steps 9-14).
        let mut tr = d;
        tr.typ |= 2;
        self.cpu.tr = tr;
        self.cpu.cr0 |= CR0_TS;
        for (i, sr) in TSS_SEGS.iter().enumerate() {
            self.cpu.seg[*sr as usize] = segs[i];
        }
        self.cpu.gpr[..8].copy_from_slice(&n_gpr);
        self.cpu.rflags = (n_fl & 0x3f_7fd7) | flags::FIXED;
        self.cpu.rip = n_eip;
        self.cpl = if vm { 3 } else { (n_sel[1] & 3) as u8 };
        self.mode = self.cpu.mode();
        if self.cpu.cr0 & CR0_PG != 0 && n_cr3 != self.cpu.cr3 {
            self.cpu.cr3 = n_cr3;
            self.paging_changed(Some(n_cr3));
        }
        if let Some(c) = code {
            let size = if self.cpu.seg[SegReg::Ss as usize].db {
                4
            } else {
                2
            };
            self.push(u64::from(c), size)?;
        }
        Ok(())
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
        let (_, lo) = self.read_desc(sel, vector::TS).map_err(|_| ts)?;
        let d = parse(sel, lo, None);
        if d.s || d.typ != 2 || !d.present {
            return Err(ts.into());
        }
        Ok(d)
    }

    /// Checks and parses the new task's ES, CS, SS, DS, FS, GS (SDM vol. 3,
    /// Table 7-1); the new CPL is CS.RPL. Descriptors come from the new LDT
    /// already in `self.cpu.ldtr`.
    fn task_segs(&mut self, sels: &[u16; 6], ext: u32) -> OpResult<[Seg; 6]> {
        let e = |v: u8, s: u16| Exception::with_code(v, u32::from(s & 0xfffc) | ext);
        let mut out = [Seg::default(); 6];
        let cs_sel = sels[1];
        let cpl = (cs_sel & 3) as u8;
        // CS.
        if cs_sel & 0xfffc == 0 {
            return Err(e(vector::TS, cs_sel).into());
        }
        let (a, lo) = self
            .read_desc(cs_sel, vector::TS)
            .map_err(|_| e(vector::TS, cs_sel))?;
        let mut cs = parse(cs_sel, lo, None);
        let conforming = cs.typ & 4 != 0;
        if !cs.is_code() || (conforming && cs.dpl > cpl) || (!conforming && cs.dpl != cpl) {
            return Err(e(vector::TS, cs_sel).into());
        }
        if !cs.present {
            return Err(e(vector::NP, cs_sel).into());
        }
        self.set_accessed(a, lo)?;
        cs.typ |= 1;
        out[1] = cs;
        // SS.
        let ss_sel = sels[2];
        if ss_sel & 0xfffc == 0 {
            return Err(e(vector::TS, ss_sel).into());
        }
        let (a, lo) = self
            .read_desc(ss_sel, vector::TS)
            .map_err(|_| e(vector::TS, ss_sel))?;
        let mut ss = parse(ss_sel, lo, None);
        if (ss_sel & 3) as u8 != cpl || ss.dpl != cpl || !ss.is_writable() {
            return Err(e(vector::TS, ss_sel).into());
        }
        if !ss.present {
            return Err(e(vector::SS, ss_sel).into());
        }
        self.set_accessed(a, lo)?;
        ss.typ |= 1;
        out[2] = ss;
        // ES, DS, FS, GS.
        for i in [0usize, 3, 4, 5] {
            let s = sels[i];
            if s & 0xfffc == 0 {
                out[i] = null_seg(s);
                continue;
            }
            let (a, lo) = self
                .read_desc(s, vector::TS)
                .map_err(|_| e(vector::TS, s))?;
            let mut d = parse(s, lo, None);
            let conf_code = d.is_code() && d.typ & 4 != 0;
            if !d.is_readable() || (!conf_code && (d.dpl < cpl || d.dpl < (s & 3) as u8)) {
                return Err(e(vector::TS, s).into());
            }
            if !d.present {
                return Err(e(vector::NP, s).into());
            }
            self.set_accessed(a, lo)?;
            d.typ |= 1;
            out[i] = d;
        }
        Ok(out)
    }
}
