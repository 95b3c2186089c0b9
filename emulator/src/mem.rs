//! Guest memory access from instructions: segmentation (base, limit, type,
//! canonical checks) then paging through the MMU's TLB and walker, with
//! page-crossing accesses split and writes buffered until the instruction
//! commits.

use crate::bus::{Bus, BusStop};
use crate::cpu::{Mode, SegReg, CR0_AM};
use crate::exception::{Exception, Fault, OpResult};
use crate::exec::Ctx;
use crate::flags;
use crate::policy::EventKind;
use hyperplug_mmu::context::CR0_PG;
use hyperplug_mmu::{Access, AccessKind, PhysError, WalkError};

/// A write made by the current instruction, committed when it completes.
#[derive(Debug, Clone, Copy)]
pub struct PendingWrite {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length (1-16, never crossing a page).
    pub len: u8,
    /// Data.
    pub data: [u8; 16],
}

/// Whether `v` is canonical for 48-bit linear addresses (SDM vol. 1, 3.3.7.1).
#[inline]
pub fn is_canonical(v: u64, la57: bool) -> bool {
    let bits = if la57 { 57 } else { 48 };
    let sh = 64 - bits;
    (((v << sh) as i64) >> sh) as u64 == v
}

/// CR4.LA57.
const CR4_LA57: u64 = 1 << 12;

/// Maps an MMU walk failure to an exception or an event.
pub(crate) fn walk_fault(e: WalkError) -> Fault {
    match e {
        WalkError::PageFault(pf) => Exception::pf(pf.linear, pf.error_code.bits()).into(),
        WalkError::Phys(PhysError::Unbacked { gpa }) => Fault::Event(EventKind::TableUnbacked(gpa)),
        WalkError::Phys(PhysError::Nested(n)) => Fault::Event(EventKind::Nested(n)),
    }
}

/// Maps a bus stop on a data access to an event.
pub(crate) fn bus_fault(s: BusStop, gpa: u64, size: usize, write: Option<&[u8]>) -> Fault {
    match s {
        BusStop::Nested(n) => Fault::Event(EventKind::Nested(n)),
        BusStop::Mmio | BusStop::Io => {
            let write = write.map(|d| {
                let mut b = [0u8; 16];
                let n = d.len().min(16);
                b[..n].copy_from_slice(&d[..n]);
                b
            });
            Fault::Event(EventKind::Mmio {
                gpa,
                size: size as u8,
                write,
            })
        }
    }
}

impl<B: Bus> Ctx<'_, B> {
    /// The segment fault for `seg`: #SS(0) for SS, else #GP(0) (SDM vol. 3, 5.3, 6.15).
    fn seg_fault(seg: SegReg) -> Fault {
        if seg == SegReg::Ss {
            Exception::ss(0).into()
        } else {
            Exception::gp(0).into()
        }
    }

    /// Forms the linear address of `len` bytes at `seg:off` for `kind`,
    /// with the checks of SDM vol. 3, 5.3 "Limit Checking", 5.4 "Type
    /// Checking" (protected and compatibility mode), the real-mode 64-KiB
    /// limit (#GP/#SS, SDM vol. 3, 21.1.x "segment wraparound") and, in 64-bit
    /// mode, the canonical check (SDM vol. 3, 5.3.1: #SS(0) for stack
    /// references, else #GP(0)). A20M# applies to the physical address (see
    /// `translate`).
    pub(crate) fn linear(
        &self,
        seg: SegReg,
        off: u64,
        len: u64,
        kind: AccessKind,
    ) -> OpResult<u64> {
        let s = &self.cpu.seg[seg as usize];
        if self.mode == Mode::Long64 {
            let base = if matches!(seg, SegReg::Fs | SegReg::Gs) {
                s.base
            } else {
                0
            };
            let lin = base.wrapping_add(off);
            let la57 = self.cpu.cr4 & CR4_LA57 != 0;
            if !is_canonical(lin, la57) || !is_canonical(lin.wrapping_add(len - 1), la57) {
                return Err(Self::seg_fault(seg));
            }
            return Ok(lin);
        }
        if self.mode.is_protected() {
            if s.unusable || !s.present {
                return Err(Self::seg_fault(seg));
            }
            let ok_type = match kind {
                AccessKind::Read => s.is_readable(),
                AccessKind::Write => s.is_writable(),
                AccessKind::Execute => s.is_code(),
            };
            if !ok_type {
                return Err(Self::seg_fault(seg));
            }
        }
        let last = off.wrapping_add(len - 1);
        let limit = u64::from(s.limit);
        let ok = if self.mode.is_protected() && s.is_expand_down() {
            let upper = if s.db { 0xffff_ffff } else { 0xffff };
            off > limit && last <= upper && last >= off
        } else {
            last <= limit && last >= off
        };
        if !ok {
            return Err(Self::seg_fault(seg));
        }
        Ok(s.base.wrapping_add(off) & 0xffff_ffff)
    }

    /// #AC check (SDM vol. 3, 6.15 "Interrupt 17"): CR0.AM, RFLAGS.AC, CPL 3,
    /// and a misaligned operand of 2, 4, 8 or 16 bytes.
    #[inline]
    fn align_check(&self, lin: u64, len: u64) -> OpResult {
        if self.cpu.cr0 & CR0_AM != 0
            && self.cpu.rflags & flags::AC != 0
            && self.cpl == 3
            && len.is_power_of_two()
            && len > 1
            && lin & (len - 1) != 0
        {
            return Err(Exception::with_code(crate::exception::vector::AC, 0).into());
        }
        Ok(())
    }

    /// Translates `lin` for `access` to a guest-physical address.
    #[inline]
    pub(crate) fn translate(&mut self, lin: u64, access: Access) -> OpResult<u64> {
        if self.cpu.cr0 & CR0_PG == 0 {
            return Ok(self.a20(lin & 0xffff_ffff));
        }
        if self.cpu.a20_masked {
            // Rare (A20M# with paging on): no micro-TLB, mask the result.
            let gpa = self.translate_tlb(lin, access)?;
            return Ok(self.a20(gpa));
        }
        if self.utlb_ok {
            let (k, imp, cpl) = (access.kind, access.implicit_supervisor, access.cpl);
            if let Some(gpa) = self.eng.utlb.lookup(k, lin, imp, cpl) {
                return Ok(gpa);
            }
            let gpa = self.translate_tlb(lin, access)?;
            // The fast path relies on the micro-TLB holding canonical pages only.
            if is_canonical(lin, self.cpu.cr4 & CR4_LA57 != 0) {
                self.eng.utlb.fill(k, lin, imp, cpl, gpa);
            }
            return Ok(gpa);
        }
        self.translate_tlb(lin, access)
    }

    /// Applies A20M#: physical-address bit 20 forced to 0 while it is
    /// asserted (SDM vol. 3, 8.7.13.4).
    #[inline]
    pub(crate) fn a20(&self, gpa: u64) -> u64 {
        if self.cpu.a20_masked {
            gpa & !(1 << 20)
        } else {
            gpa
        }
    }

    /// Translates through the MMU's TLB (and walker).
    fn translate_tlb(&mut self, lin: u64, access: Access) -> OpResult<u64> {
        let ctx = self.cpu.paging();
        if self.eng.shadow.is_some() {
            return self.translate_shadow(&ctx, lin, access);
        }
        self.eng
            .tlb
            .translate(&*self.bus, &ctx, lin, access, |_| 0)
            .map(|h| h.gpa)
            .map_err(walk_fault)
    }

    fn access(&self, kind: AccessKind, implicit: bool) -> Access {
        if implicit {
            Access::implicit(kind)
        } else {
            Access::new(kind, self.cpl)
        }
    }

    /// Splits `[lin, lin+len)` at a page boundary and translates both parts:
    /// returns (gpa0, len0, gpa1) where the second part is `len - len0` bytes.
    fn translate_split(
        &mut self,
        lin: u64,
        len: usize,
        access: Access,
    ) -> OpResult<(u64, usize, u64)> {
        let first = (4096 - (lin & 0xfff) as usize).min(len);
        let g0 = self.translate(lin, access)?;
        let g1 = if first < len {
            let next = if self.mode == Mode::Long64 {
                lin.wrapping_add(first as u64)
            } else {
                lin.wrapping_add(first as u64) & 0xffff_ffff
            };
            self.translate(next, access)?
        } else {
            0
        };
        Ok((g0, first, g1))
    }

    fn read_phys_fwd(&mut self, gpa: u64, buf: &mut [u8]) -> OpResult {
        self.bus
            .read_phys(gpa, buf)
            .map_err(|s| bus_fault(s, gpa, buf.len(), None))?;
        if self.eng.locking && self.eng.locked_read.is_none() && buf.len() <= 8 {
            let mut v = [0u8; 8];
            v[..buf.len()].copy_from_slice(buf);
            self.eng.locked_read = Some((gpa, buf.len() as u8, v));
        }
        // Forward this instruction's own earlier writes.
        for w in &self.eng.wbuf {
            let (ws, we) = (w.gpa, w.gpa + u64::from(w.len));
            let (rs, re) = (gpa, gpa + buf.len() as u64);
            if ws < re && rs < we {
                for a in ws.max(rs)..we.min(re) {
                    buf[(a - rs) as usize] = w.data[(a - ws) as usize];
                }
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` (≤ 16) bytes at linear `lin`.
    pub(crate) fn read_lin(&mut self, lin: u64, buf: &mut [u8], implicit: bool) -> OpResult {
        let access = self.access(AccessKind::Read, implicit);
        if !implicit {
            self.align_check(lin, buf.len() as u64)?;
        }
        let (g0, n0, g1) = self.translate_split(lin, buf.len(), access)?;
        if self.eng.dbp_armed {
            self.eng.dbp_hits |=
                crate::debugreg::data_hits(&self.cpu.dr, lin, buf.len() as u64, false);
        }
        let (a, b) = buf.split_at_mut(n0);
        self.read_phys_fwd(g0, a)?;
        if !b.is_empty() {
            self.read_phys_fwd(g1, b)?;
        }
        Ok(())
    }

    /// Buffers a write of `data` (≤ 16 bytes) at linear `lin`.
    pub(crate) fn write_lin(&mut self, lin: u64, data: &[u8], implicit: bool) -> OpResult {
        let access = self.access(AccessKind::Write, implicit);
        if !implicit {
            self.align_check(lin, data.len() as u64)?;
        }
        let (g0, n0, g1) = self.translate_split(lin, data.len(), access)?;
        if self.eng.dbp_armed {
            self.eng.dbp_hits |=
                crate::debugreg::data_hits(&self.cpu.dr, lin, data.len() as u64, true);
        }
        self.buffer_write(g0, &data[..n0])?;
        if n0 < data.len() {
            self.buffer_write(g1, &data[n0..])?;
        }
        Ok(())
    }

    fn buffer_write(&mut self, gpa: u64, data: &[u8]) -> OpResult {
        self.bus
            .check_write(gpa, data.len())
            .map_err(|s| bus_fault(s, gpa, data.len(), Some(data)))?;
        let mut w = crate::mem::PendingWrite {
            gpa,
            len: data.len() as u8,
            data: [0; 16],
        };
        w.data[..data.len()].copy_from_slice(data);
        self.eng.wbuf.push(w);
        Ok(())
    }

    /// Reads a `size`-byte value at `seg:off`.
    pub(crate) fn read_mem(&mut self, seg: SegReg, off: u64, size: u8) -> OpResult<u64> {
        let lin = self.linear(seg, off, u64::from(size), AccessKind::Read)?;
        let mut b = [0u8; 8];
        self.read_lin(lin, &mut b[..usize::from(size)], false)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a `size`-byte value at `seg:off`.
    pub(crate) fn write_mem(&mut self, seg: SegReg, off: u64, size: u8, v: u64) -> OpResult {
        let lin = self.linear(seg, off, u64::from(size), AccessKind::Write)?;
        self.write_lin(lin, &v.to_le_bytes()[..usize::from(size)], false)
    }

    /// Checks that `size` bytes at `seg:off` can be written (segmentation and
    /// paging, setting A/D as the write will) without writing them: for
    /// read-modify-write operands, whose read must fault as a write would.
    pub(crate) fn probe_write(&mut self, seg: SegReg, off: u64, size: u8) -> OpResult<u64> {
        let lin = self.linear(seg, off, u64::from(size), AccessKind::Write)?;
        let access = self.access(AccessKind::Write, false);
        self.align_check(lin, u64::from(size))?;
        self.translate_split(lin, usize::from(size), access)?;
        Ok(lin)
    }

    /// Reads a value at linear `lin` with an implicit supervisor access
    /// (descriptor tables, TSS, IDT).
    pub(crate) fn read_sys(&mut self, lin: u64, size: usize) -> OpResult<u64> {
        let mut b = [0u8; 8];
        self.read_lin(lin, &mut b[..size], true)?;
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical() {
        let t = [
            (0, true),
            (0x0000_7fff_ffff_ffff, true),
            (0x0000_8000_0000_0000, false),
            (0xffff_8000_0000_0000, true),
            (0xfff0_0000_0000_0000, false),
        ];
        for (v, want) in t {
            assert_eq!(is_canonical(v, false), want, "{v:#x}");
        }
        assert!(is_canonical(0x00ff_ffff_ffff_ffff, true));
        assert!(!is_canonical(0x0100_0000_0000_0000, true));
    }
}
