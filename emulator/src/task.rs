//! Hardware task switches (SDM vol. 3, 7.3 "Task Switching", Table 7-1
//! "Exception Conditions Checked During a Task Switch", 7.4 "Task
//! Linking") with 32-bit TSSs (Figure 7-2) and 16-bit TSSs (7.6 "16-Bit
//! Task-State Segment (TSS)", Figure 7-10): JMP/CALL to a TSS descriptor
//! or a task gate, INT n and exceptions through a task gate, and IRET with
//! EFLAGS.NT set.
//!
//! Up to the commit point (the old task's state saved, TR loaded) every
//! fault leaves the old task intact. The new task's LDTR and segment
//! registers are qualified after it (`segs`): a failure there, and the
//! debug trap of a 32-bit TSS whose T flag is set (SDM vol. 3, 17.3.1.5
//! "Task-Switch Exception Condition"), are raised in the new task before
//! its first instruction (`Ctx::after_switch`).

mod segs;

use crate::bus::Bus;
use crate::cpu::SegReg;
use crate::exception::{vector, Exception, Fault, OpResult};
use crate::exec::Ctx;
use crate::flags;

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

/// Where one TSS format keeps the dynamic task state.
struct Layout {
    /// Size of EIP/EFLAGS/GPR fields and of the segment-selector slots.
    width: u64,
    /// The smallest TSS limit accepted (SDM vol. 3, Table 6-6 "Invalid
    /// TSS Conditions": #TS below 67H for 32-bit, below 2CH for 16-bit).
    min_limit: u32,
    eip: u64,
    eflags: u64,
    gpr: u64,
    seg: u64,
    /// Segment registers held (ES, CS, SS, DS, then FS, GS in 32-bit TSSs).
    nsegs: usize,
    ldt: u64,
}

/// The 32-bit TSS (SDM vol. 3, Figure 7-2).
const TSS32: Layout = Layout {
    width: 4,
    min_limit: 0x67,
    eip: 0x20,
    eflags: 0x24,
    gpr: 0x28,
    seg: 0x48,
    nsegs: 6,
    ldt: 0x60,
};

/// The 16-bit TSS (SDM vol. 3, Figure 7-10).
const TSS16: Layout = Layout {
    width: 2,
    min_limit: 0x2c,
    eip: 0x0e,
    eflags: 0x10,
    gpr: 0x12,
    seg: 0x22,
    nsegs: 4,
    ldt: 0x2a,
};

/// CR3 in a 32-bit TSS (16-bit TSSs have none: paging is kept).
const OFF_CR3: u64 = 0x1c;
/// The word holding the debug trap flag T (bit 0) in a 32-bit TSS.
const OFF_T: u64 = 0x64;

/// The layout of a TSS descriptor type (1/3: 16-bit, 9/11: 32-bit).
fn layout(typ: u8) -> &'static Layout {
    if typ & 8 != 0 {
        &TSS32
    } else {
        &TSS16
    }
}

/// Segment registers in TSS order: ES, CS, SS, DS, FS, GS.
pub(crate) const TSS_SEGS: [SegReg; 6] = [
    SegReg::Es,
    SegReg::Cs,
    SegReg::Ss,
    SegReg::Ds,
    SegReg::Fs,
    SegReg::Gs,
];

const CR0_TS: u64 = 1 << 3;
const CR0_PG: u64 = 1 << 31;
/// DR6.BT: the debug exception came from a TSS's T flag (SDM vol. 3, 17.2.3).
const DR6_BT: u64 = 1 << 15;

/// DR7.L0-L3 (bits 0, 2, 4, 6).
const DR7_LOCAL: u64 = 0x55;

/// The new task's state as read from its TSS.
struct NewTask {
    cr3: Option<u64>,
    eip: u64,
    eflags: u64,
    gpr: [u64; 8],
    sel: [u16; 6],
    ldt: u16,
    trap: bool,
}

impl<B: Bus> Ctx<'_, B> {
    /// Switches to the task whose TSS selector is `sel`; `ret` is the EIP
    /// saved in the old task, `ext` the EXT bit of error codes, `code` an
    /// error code pushed on the new task's stack (exceptions). Privilege
    /// checks on the gate or descriptor are the caller's. An exception the
    /// new task raises after the commit point is left in `after_switch`.
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
            self.cpl = saved.5;
            self.mode = saved.6;
        }
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
        // The new TSS descriptor: in the GDT, type available (busy for
        // IRET), 16- or 32-bit, present, limit (Table 7-1, checks 1-3).
        if sel & 4 != 0 || sel & 0xfffc == 0 {
            return Err(e(bad, sel).into());
        }
        // Beyond the GDT limit: the check's exception; a fault reading the
        // descriptor (a #PF, an intercept) is that fault.
        let daddr = self.desc_addr(sel, 8, bad).map_err(|_| e(bad, sel))?;
        let lo = self.read_sys(daddr, 8)?;
        let d = crate::seg::parse(sel, lo, None);
        let busy = if why == Switch::Iret { 2 } else { 0 };
        if d.s || !matches!(d.typ, 1 | 3 | 9 | 11) || d.typ & 2 != busy {
            return Err(e(bad, sel).into());
        }
        if !d.present {
            return Err(e(vector::NP, sel).into());
        }
        let nl = layout(d.typ);
        if d.limit < nl.min_limit {
            return Err(e(vector::TS, sel).into());
        }
        let old = self.cpu.tr;
        let ol = layout(old.typ);
        if old.unusable || !matches!(old.typ, 3 | 11) || old.limit < ol.min_limit {
            return Err(e(vector::TS, old.selector).into());
        }
        let nb = d.base & 0xffff_ffff;
        let mut n = self.read_task(nb, nl)?;
        // Save the old task (SDM 7.3, step 8): IRET stores NT clear. A
        // 16-bit TSS keeps the low words only (SDM 7.6).
        let mut ofl = self.cpu.rflags & 0xffff_ffff;
        if why == Switch::Iret {
            ofl &= !flags::NT;
        }
        self.save_task(old.base & 0xffff_ffff, ol, ret, ofl)?;
        // Busy bits (SDM 7.3, steps 7 and 11) and the back link (7.4).
        if matches!(why, Switch::Jmp | Switch::Iret) {
            let oaddr = self.desc_addr(old.selector, 8, vector::TS)?;
            let b = self.read_sys(oaddr + 5, 1)? as u8;
            self.write_lin(oaddr + 5, &[b & !2], true)?;
        }
        if why == Switch::Call {
            n.eflags |= flags::NT;
            let link = u64::from(old.selector);
            self.write_lin(nb, &link.to_le_bytes()[..2], true)?;
        }
        if why != Switch::Iret {
            self.write_lin(daddr + 5, &[((lo >> 40) as u8) | 2], true)?;
        }
        // Commit (SDM 7.3, steps 11-12): TR, CR0.TS, CR3, EFLAGS, EIP, GPRs.
        let mut tr = d;
        tr.typ |= 2;
        self.cpu.tr = tr;
        self.cpu.cr0 |= CR0_TS;
        // The local breakpoint enables L0-L3 are cleared on every task
        // switch (SDM vol. 3, 17.2.4).
        self.cpu.dr[7] &= !DR7_LOCAL;
        self.cpu.gpr[..8].copy_from_slice(&n.gpr);
        self.cpu.rflags = (n.eflags & 0x3f_7fd7) | flags::FIXED;
        self.cpu.rip = n.eip;
        if let Some(cr3) = n.cr3 {
            if self.cpu.cr0 & CR0_PG != 0 && cr3 != self.cpu.cr3 {
                self.cpu.cr3 = cr3;
                self.paging_changed(Some(cr3));
            }
        }
        // Step 13: descriptors, qualified in the new task's context.
        let vm = n.eflags & flags::VM != 0;
        let post = self.load_task_segs(n.ldt, &n.sel, vm, ext)?;
        self.cpl = if vm { 3 } else { (n.sel[1] & 3) as u8 };
        self.mode = self.cpu.mode();
        if post.is_some() {
            self.after_switch = post;
            return Ok(());
        }
        if let Some(c) = code {
            let size = if self.cpu.seg[SegReg::Ss as usize].db {
                4
            } else {
                2
            };
            match self.push(u64::from(c), size) {
                Ok(()) => {}
                Err(Fault::Exception(x)) => {
                    self.after_switch = Some(x);
                    return Ok(());
                }
                Err(f) => return Err(f),
            }
        }
        if n.trap {
            self.cpu.dr[6] |= DR6_BT;
            self.after_switch = Some(Exception::new(vector::DB));
        }
        Ok(())
    }

    /// Reads the new task's state from the TSS at linear `base` (SDM 7.3,
    /// step 4). Fields of a 16-bit TSS are zero-extended (SDM 7.6 leaves
    /// the upper halves of the registers undefined); such a task has no
    /// FS/GS fields and gets null FS and GS.
    fn read_task(&mut self, base: u64, l: &Layout) -> OpResult<NewTask> {
        let w = l.width as usize;
        let rd = |cx: &mut Self, o: u64, n: usize| cx.read_sys((base + o) & 0xffff_ffff, n);
        let cr3 = if l.width == 4 {
            Some(rd(self, OFF_CR3, 4)?)
        } else {
            None
        };
        let eip = rd(self, l.eip, w)?;
        let eflags = rd(self, l.eflags, w)?;
        let mut gpr = [0u64; 8];
        for (i, g) in gpr.iter_mut().enumerate() {
            *g = rd(self, l.gpr + l.width * i as u64, w)?;
        }
        let mut sel = [0u16; 6];
        for (i, s) in sel.iter_mut().take(l.nsegs).enumerate() {
            *s = rd(self, l.seg + l.width * i as u64, 2)? as u16;
        }
        let ldt = rd(self, l.ldt, 2)? as u16;
        let trap = l.width == 4 && rd(self, OFF_T, 2)? & 1 != 0;
        Ok(NewTask {
            cr3,
            eip,
            eflags,
            gpr,
            sel,
            ldt,
            trap,
        })
    }

    /// Saves EIP (`ret`), EFLAGS (`fl`), the GPRs and the segment
    /// selectors into the old TSS at linear `base` (SDM 7.3, step 8).
    fn save_task(&mut self, base: u64, l: &Layout, ret: u64, fl: u64) -> OpResult {
        let w = l.width as usize;
        let wr = |cx: &mut Self, o: u64, v: u64, n: usize| {
            cx.write_lin((base + o) & 0xffff_ffff, &v.to_le_bytes()[..n], true)
        };
        wr(self, l.eip, ret, w)?;
        wr(self, l.eflags, fl, w)?;
        for i in 0..8 {
            let g = self.cpu.gpr[i];
            wr(self, l.gpr + l.width * i as u64, g, w)?;
        }
        for (i, sr) in TSS_SEGS.iter().take(l.nsegs).enumerate() {
            let s = u64::from(self.cpu.seg[*sr as usize].selector);
            wr(self, l.seg + l.width * i as u64, s, 2)?;
        }
        Ok(())
    }
}
