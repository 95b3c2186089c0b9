//! Interrupt and exception delivery: the real-mode IVT (SDM vol. 3, 21.1.4)
//! and the protected-mode / IA-32e IDT with interrupt and trap gates, at the
//! same privilege or with a stack switch through the TSS (IST in IA-32e
//! mode) (SDM vol. 3, 6.12 "Exception and Interrupt Handling", 6.14
//! "Exception and Interrupt Handling in 64-bit Mode").
//!
//! Task gates switch tasks (SDM vol. 3, 6.12.2 "Interrupt Tasks"; see
//! `task`). From virtual-8086 mode an interrupt or exception goes to a
//! ring-0 handler with GS, FS, DS, ES saved on its stack (SDM vol. 3,
//! 20.3.1.1 "Handling an Interrupt or Exception Through a Protected-Mode
//! Trap or Interrupt Gate").

use crate::bus::Bus;
use crate::cpu::{reg, Mode, Seg, SegReg};
use crate::exception::{vector, Exception, OpResult};
use crate::exec::Ctx;
use crate::flags;
use crate::seg::{null_seg, parse};
use crate::task::Switch;

/// What is being delivered (decides the EXT bit and the gate-DPL check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A processor exception (EXT = 1).
    Exception,
    /// An external interrupt or NMI (EXT = 1).
    External,
    /// INT n, INT3, INTO (EXT = 0, gate DPL ≥ CPL required).
    Software,
}

impl<B: Bus> Ctx<'_, B> {
    /// Delivers vector `v` (with `code` pushed if `Some`); the return address
    /// is `self.cpu.rip`.
    /// On failure the segment registers are as before (GPRs, RIP and RFLAGS
    /// are restored by the caller's snapshot).
    pub(crate) fn deliver(&mut self, v: u8, code: Option<u32>, src: Source) -> OpResult {
        let saved = (self.cpu.seg, self.cpl, self.mode);
        let r = match self.mode {
            Mode::Real => self.deliver_real(v),
            Mode::Long64 | Mode::Compat16 | Mode::Compat32 => self.deliver_long(v, code, src),
            _ => self.deliver_protected(v, code, src),
        };
        if r.is_err() {
            self.cpu.seg = saved.0;
        }
        self.cpl = saved.1;
        self.mode = saved.2;
        r
    }

    fn deliver_real(&mut self, v: u8) -> OpResult {
        let off = u64::from(v) * 4;
        if off + 3 > u64::from(self.cpu.idtr.limit) {
            return Err(Exception::gp(0).into());
        }
        let base = self.cpu.idtr.base;
        let entry = self.read_sys((base + off) & 0xffff_ffff, 4)?;
        let fl = self.cpu.rflags;
        self.push(fl & 0xffff, 2)?;
        let cs = self.cpu.seg[SegReg::Cs as usize].selector;
        self.push(u64::from(cs), 2)?;
        self.push(self.cpu.rip & 0xffff, 2)?;
        self.cpu.rflags &= !(flags::IF | flags::TF | flags::AC | flags::RF);
        let sel = (entry >> 16) as u16;
        let c = &mut self.cpu.seg[SegReg::Cs as usize];
        c.selector = sel;
        c.base = u64::from(sel) << 4;
        self.cpu.rip = entry & 0xffff;
        Ok(())
    }

    fn idt_code(v: u8, src: Source) -> u32 {
        (u32::from(v) << 3) | 2 | u32::from(src != Source::Software)
    }

    /// Reads the gate for `v` (8 or 16 bytes) with the IDT limit, type,
    /// DPL and present checks; returns (lo, hi).
    fn read_gate(&mut self, v: u8, src: Source, long: bool) -> OpResult<(u64, u64)> {
        let size = if long { 16 } else { 8 };
        let off = u64::from(v) * size;
        let ec = Self::idt_code(v, src);
        if off + size - 1 > u64::from(self.cpu.idtr.limit) {
            return Err(Exception::gp(ec).into());
        }
        let mut base = self.cpu.idtr.base.wrapping_add(off);
        if !long {
            base &= 0xffff_ffff;
        }
        let lo = self.read_sys(base, 8)?;
        let hi = if long { self.read_sys(base + 8, 8)? } else { 0 };
        let typ = (lo >> 40) & 0x1f;
        let ok = if long {
            matches!(typ, 0x0e | 0x0f)
        } else {
            matches!(typ, 0x05 | 0x06 | 0x07 | 0x0e | 0x0f)
        };
        if !ok {
            return Err(Exception::gp(ec).into());
        }
        let dpl = ((lo >> 45) & 3) as u8;
        if src == Source::Software && dpl < self.cpl {
            return Err(Exception::gp(ec).into());
        }
        if lo >> 47 & 1 == 0 {
            return Err(Exception::with_code(vector::NP, ec).into());
        }
        Ok((lo, hi))
    }

    /// Loads and checks the handler's code segment (SDM vol. 3, 6.12.1.1).
    fn handler_cs(&mut self, sel: u16, src: Source, long: bool) -> OpResult<Seg> {
        let ext = u32::from(src != Source::Software);
        if sel & 0xfffc == 0 {
            return Err(Exception::gp(ext).into());
        }
        let ec = u32::from(sel & 0xfffc) | ext;
        // Beyond the descriptor table's limit: #GP(selector | EXT). A fault
        // reading the descriptor (a #PF, an intercept) is that fault.
        let addr = self
            .desc_addr(sel, 8, vector::GP)
            .map_err(|_| Exception::gp(ec))?;
        let lo = self.read_sys(addr, 8)?;
        let d = parse(sel, lo, None);
        if !d.is_code() || d.dpl > self.cpl || (long && (!d.l || d.db)) {
            return Err(Exception::gp(ec).into());
        }
        if !d.present {
            return Err(Exception::with_code(vector::NP, ec).into());
        }
        self.set_accessed(addr, lo)?;
        Ok(d)
    }

    /// Reads `size` bytes at `off` in the current TSS, #TS(TR) beyond its limit.
    pub(crate) fn read_tss(&mut self, off: u64, size: usize) -> OpResult<u64> {
        let tr = self.cpu.tr;
        if off + size as u64 - 1 > u64::from(tr.limit) || tr.unusable {
            return Err(Exception::with_code(vector::TS, u32::from(tr.selector & 0xfffc)).into());
        }
        self.read_sys(tr.base.wrapping_add(off), size)
    }

    fn deliver_protected(&mut self, v: u8, code: Option<u32>, src: Source) -> OpResult {
        let (lo, _) = self.read_gate(v, src, false)?;
        let typ = (lo >> 40) & 0x1f;
        if typ == 0x05 {
            // Task gate: a task switch, the error code pushed on the new stack (SDM 6.12.2).
            let ext = u32::from(src != Source::Software);
            let ret = self.cpu.rip;
            return self.task_switch((lo >> 16) as u16, Switch::Call, ret, ext, code);
        }
        let gate32 = typ & 8 != 0;
        let interrupt_gate = typ & 1 == 0;
        let sel = (lo >> 16) as u16;
        let offset = if gate32 {
            (lo & 0xffff) | ((lo >> 32) & 0xffff_0000)
        } else {
            lo & 0xffff
        };
        let mut cs = self.handler_cs(sel, src, false)?;
        let conforming = cs.typ & 4 != 0;
        let v86 = self.mode == Mode::V86;
        if v86 && (conforming || cs.dpl != 0) {
            // From virtual-8086 mode only a ring-0 nonconforming handler (SDM vol. 3, 20.3.1.1).
            return Err(Exception::gp(u32::from(sel & 0xfffc)).into());
        }
        let new_cpl = if conforming { self.cpl } else { cs.dpl };
        let size = if gate32 { 4 } else { 2 };
        let old_ss = self.cpu.seg[SegReg::Ss as usize].selector;
        let old_sp = self.cpu.gpr[reg::RSP];
        if new_cpl < self.cpl {
            let tr = self.cpu.tr;
            let (sp, ss_sel) = if tr.typ & 8 != 0 {
                let o = 4 + 8 * u64::from(new_cpl);
                (self.read_tss(o, 4)?, self.read_tss(o + 4, 2)? as u16)
            } else {
                let o = 2 + 4 * u64::from(new_cpl);
                (self.read_tss(o, 2)?, self.read_tss(o + 2, 2)? as u16)
            };
            let ts = Exception::with_code(vector::TS, u32::from(ss_sel & 0xfffc));
            if ss_sel & 0xfffc == 0 {
                return Err(Exception::with_code(vector::TS, 1).into());
            }
            let (addr, dlo) = self.read_desc(ss_sel, vector::TS)?;
            let d = parse(ss_sel, dlo, None);
            if (ss_sel & 3) as u8 != new_cpl || d.dpl != new_cpl || !d.is_writable() {
                return Err(ts.into());
            }
            if !d.present {
                return Err(Exception::ss(u32::from(ss_sel & 0xfffc)).into());
            }
            self.set_accessed(addr, dlo)?;
            let mut d = d;
            d.typ |= 1;
            self.cpu.seg[SegReg::Ss as usize] = d;
            self.cpu.gpr[reg::RSP] = sp;
            self.cpl = new_cpl;
            if v86 {
                // The V86 data segments go on the ring-0 stack, then become null
                // (SDM vol. 3, 20.3.1.1, Figure 20-5).
                self.mode = Mode::Protected32;
                for sr in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                    let s = u64::from(self.cpu.seg[sr as usize].selector);
                    self.push(s, size)?;
                    self.cpu.seg[sr as usize] = null_seg(0);
                }
            }
            self.push(u64::from(old_ss), size)?;
            self.push(old_sp, size)?;
        } else if !conforming && cs.dpl != self.cpl {
            return Err(Exception::gp(u32::from(sel & 0xfffc)).into());
        }
        let fl = self.cpu.rflags;
        self.push(fl, size)?;
        let old_cs = self.cpu.seg[SegReg::Cs as usize].selector;
        self.push(u64::from(old_cs), size)?;
        self.push(self.cpu.rip, size)?;
        if let Some(c) = code {
            self.push(u64::from(c), size)?;
        }
        if offset > u64::from(cs.limit) {
            return Err(Exception::gp(0).into());
        }
        cs.typ |= 1;
        cs.selector = (sel & 0xfffc) | u16::from(new_cpl);
        cs.dpl = new_cpl;
        self.cpu.seg[SegReg::Cs as usize] = cs;
        self.cpu.rflags &= !(flags::TF | flags::NT | flags::RF | flags::VM);
        if interrupt_gate {
            self.cpu.rflags &= !flags::IF;
        }
        self.cpu.rip = offset;
        Ok(())
    }

    fn deliver_long(&mut self, v: u8, code: Option<u32>, src: Source) -> OpResult {
        let (lo, hi) = self.read_gate(v, src, true)?;
        let interrupt_gate = (lo >> 40) & 1 == 0;
        let sel = (lo >> 16) as u16;
        let offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | ((hi & 0xffff_ffff) << 32);
        let ist = (lo >> 32) & 7;
        let mut cs = self.handler_cs(sel, src, true)?;
        let conforming = cs.typ & 4 != 0;
        let new_cpl = if conforming { self.cpl } else { cs.dpl };
        if !conforming && new_cpl > self.cpl {
            return Err(Exception::gp(u32::from(sel & 0xfffc)).into());
        }
        let old_ss = self.cpu.seg[SegReg::Ss as usize].selector;
        let old_sp = self.cpu.gpr[reg::RSP];
        let mut rsp = old_sp;
        if ist != 0 {
            rsp = self.read_tss(36 + 8 * (ist - 1), 8)?;
        } else if new_cpl < self.cpl {
            rsp = self.read_tss(4 + 8 * u64::from(new_cpl), 8)?;
        }
        if new_cpl < self.cpl {
            let mut ss = null_seg(u16::from(new_cpl));
            ss.dpl = new_cpl;
            self.cpu.seg[SegReg::Ss as usize] = ss;
        }
        self.cpl = new_cpl;
        // In IA-32e mode the stack is 64-bit and aligned to 16 bytes (SDM 6.14.2).
        self.mode = Mode::Long64;
        self.cpu.gpr[reg::RSP] = rsp & !0xf;
        let fl = self.cpu.rflags;
        let old_cs = self.cpu.seg[SegReg::Cs as usize].selector;
        let rip = self.cpu.rip;
        for val in [u64::from(old_ss), old_sp, fl, u64::from(old_cs), rip] {
            self.push(val, 8)?;
        }
        if let Some(c) = code {
            self.push(u64::from(c), 8)?;
        }
        if !crate::mem::is_canonical(offset, self.cpu.cr4 & (1 << 12) != 0) {
            return Err(Exception::gp(0).into());
        }
        cs.typ |= 1;
        cs.selector = (sel & 0xfffc) | u16::from(new_cpl);
        cs.dpl = new_cpl;
        self.cpu.seg[SegReg::Cs as usize] = cs;
        self.cpu.rflags &= !(flags::TF | flags::NT | flags::RF | flags::VM);
        if interrupt_gate {
            self.cpu.rflags &= !flags::IF;
        }
        self.cpu.rip = offset;
        Ok(())
    }
}
