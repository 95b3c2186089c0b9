//! The VMCB as a 4-KiB page image (AMD APM vol. 2, appendix B: Table B-1
//! control area at 0x000, Table B-2 state save area at 0x400).

pub mod field;
mod seg;
mod state;

pub use seg::{attr, SegReg, VmcbSeg};
pub use state::{cpl_of, EFER_SVME, MSR_FIELDS};

use std::fmt::Write as _;

/// Size of the VMCB (one 4-KiB page, APM vol. 2, 15.5.1).
pub const VMCB_SIZE: usize = 4096;

/// One VMCB field: name as the APM spells it, byte offset, size in bytes (1,2,4,8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Name.
    pub name: &'static str,
    /// Byte offset in the VMCB.
    pub offset: usize,
    /// Size in bytes (1, 2, 4 or 8).
    pub size: usize,
}

/// A VMCB page image.
#[derive(Clone, PartialEq, Eq)]
pub struct Vmcb {
    page: Box<[u8; VMCB_SIZE]>,
}

impl Default for Vmcb {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Vmcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dump())
    }
}

impl Vmcb {
    /// An all-zero VMCB.
    pub fn new() -> Self {
        Self {
            page: Box::new([0; VMCB_SIZE]),
        }
    }

    /// The raw page.
    pub fn bytes(&self) -> &[u8; VMCB_SIZE] {
        &self.page
    }

    /// Reads `f` little-endian, zero-extended (0 for a field outside the page).
    pub fn get(&self, f: Field) -> u64 {
        self.read(f.offset, f.size)
    }

    /// Writes `v` truncated to `f.size` (ignored for a field outside the page).
    pub fn set(&mut self, f: Field, v: u64) {
        self.write(f.offset, f.size, v);
    }

    fn read(&self, offset: usize, size: usize) -> u64 {
        if size > 8 {
            return 0;
        }
        let Some(b) = offset
            .checked_add(size)
            .and_then(|end| self.page.get(offset..end))
        else {
            return 0;
        };
        b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    }

    fn write(&mut self, offset: usize, size: usize, v: u64) {
        if size > 8 {
            return;
        }
        let Some(b) = offset
            .checked_add(size)
            .and_then(|end| self.page.get_mut(offset..end))
        else {
            return;
        };
        for (i, x) in b.iter_mut().enumerate() {
            *x = (v >> (8 * i)) as u8;
        }
    }

    /// Reads a segment slot (Table B-2: selector +0, attrib +2, limit +4, base +8).
    pub fn seg(&self, s: SegReg) -> VmcbSeg {
        let o = s.offset();
        VmcbSeg {
            selector: self.read(o, 2) as u16,
            attrib: self.read(o + 2, 2) as u16,
            limit: self.read(o + 4, 4) as u32,
            base: self.read(o + 8, 8),
        }
    }

    /// Writes a segment slot.
    pub fn set_seg(&mut self, s: SegReg, v: VmcbSeg) {
        let o = s.offset();
        self.write(o, 2, u64::from(v.selector));
        self.write(o + 2, 2, u64::from(v.attrib));
        self.write(o + 4, 4, u64::from(v.limit));
        self.write(o + 8, 8, v.base);
    }

    /// The guest instruction bytes (Table B-1: count at 0x0D0, bytes 0x0D1-0x0DF).
    pub fn insn_bytes(&self) -> (u8, [u8; 15]) {
        let mut out = [0u8; 15];
        let o = field::GUEST_INSN_BYTES_OFFSET;
        out.copy_from_slice(&self.page[o..o + 15]);
        (self.get(field::GUEST_INSN_BYTES_COUNT) as u8, out)
    }

    /// Stores up to 15 instruction bytes and their count (the rest zeroed).
    pub fn set_insn_bytes(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(15);
        let o = field::GUEST_INSN_BYTES_OFFSET;
        self.page[o..o + 15].fill(0);
        self.page[o..o + n].copy_from_slice(&bytes[..n]);
        self.set(field::GUEST_INSN_BYTES_COUNT, n as u64);
    }

    /// Every field, one per line ("0x070 EXITCODE = 0x7b"): control area,
    /// then the save area (segments as selector/attrib/limit/base first).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for &f in field::CONTROL {
            let _ = writeln!(s, "{:#05x} {} = {:#x}", f.offset, f.name, self.get(f));
            if f == field::GUEST_INSN_BYTES_COUNT {
                let (_, b) = self.insn_bytes();
                let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
                let _ = writeln!(
                    s,
                    "{:#05x} GUEST_INSN_BYTES = {}",
                    field::GUEST_INSN_BYTES_OFFSET,
                    hex.join(" ")
                );
            }
        }
        for r in SegReg::ALL {
            let v = self.seg(r);
            let _ = writeln!(
                s,
                "{:#05x} {} = selector={:#x} attrib={:#x} limit={:#x} base={:#x}",
                r.offset(),
                r.name(),
                v.selector,
                v.attrib,
                v.limit,
                v.base
            );
        }
        for &f in field::SAVE {
            let _ = writeln!(s, "{:#05x} {} = {:#x}", f.offset, f.name, self.get(f));
        }
        s
    }
}
