//! Test support (hidden from the docs, public so the TLB, shadow-paging and
//! nested-paging tests and the benchmarks can reuse it): [`PageTableBuilder`]
//! writes guest page tables of any paging mode into a [`FlatMemory`].
//!
//! ```
//! use hyperplug_mmu::paging::testutil::{PageSize, PageTableBuilder};
//! use hyperplug_mmu::paging::entry::{P, RW};
//! use hyperplug_mmu::testmem::FlatMemory;
//! use hyperplug_mmu::{walk, Access, AccessKind, AdUpdate, PagingMode};
//!
//! let mem = FlatMemory::new(1 << 20);
//! let mut b = PageTableBuilder::new(&mem, PagingMode::Level4, 0x1000..0x10000).unwrap();
//! b.map(0x40_0000, 0x8_0000, PageSize::Size4K, P | RW).unwrap();
//! let t = walk(&mem, &b.context(), 0x40_0123, Access::new(AccessKind::Read, 0), AdUpdate::Set).unwrap();
//! assert_eq!(t.gpa, 0x8_0123);
//! ```

use super::entry::{P, PS, RW, US};
use crate::context::{
    PagingContext, PagingMode, CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME,
};
use crate::phys::{PhysError, PhysMemory};
use crate::testmem::FlatMemory;
use std::ops::Range;

/// CR0.PE (protected mode), which CR0.PG requires (SDM vol. 3, 2.5).
const CR0_PE: u64 = 1;

/// A page size the builder can map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB (every mode).
    Size4K,
    /// 2 MiB (PAE, 4/5-level).
    Size2M,
    /// 4 MiB (32-bit paging with CR4.PSE).
    Size4M,
    /// 1 GiB (4/5-level).
    Size1G,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size4M => 1 << 22,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The page sizes `mode` supports, smallest first.
    pub fn for_mode(mode: PagingMode) -> &'static [PageSize] {
        match mode {
            PagingMode::None => &[],
            PagingMode::Bits32 => &[PageSize::Size4K, PageSize::Size4M],
            PagingMode::Pae => &[PageSize::Size4K, PageSize::Size2M],
            PagingMode::Level4 | PagingMode::Level5 => {
                &[PageSize::Size4K, PageSize::Size2M, PageSize::Size1G]
            }
        }
    }
}

/// Why the builder could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The mode has no page tables (paging off).
    #[error("paging mode {0:?} has no page tables")]
    NoTables(PagingMode),
    /// The mode cannot map pages of this size.
    #[error("{0:?} pages do not exist in {1:?}")]
    Size(PageSize, PagingMode),
    /// Linear or physical address not aligned to the page size, or out of range.
    #[error("address {0:#x} is misaligned or out of range for this mapping")]
    Address(u64),
    /// The table area is full.
    #[error("out of page-table space")]
    OutOfTables,
    /// A large page already covers part of the path.
    #[error("a large page already maps {0:#x}")]
    Conflict(u64),
    /// Memory access failed.
    #[error("physical memory: {0:?}")]
    Phys(PhysError),
}

impl From<PhysError> for BuildError {
    fn from(e: PhysError) -> Self {
        BuildError::Phys(e)
    }
}

/// One paging-structure entry: where it is and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRef {
    /// Guest-physical address of the entry.
    pub gpa: u64,
    /// 8-byte entry (else 4-byte).
    pub wide: bool,
}

/// The entries on the path to a linear address, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPath {
    entries: [EntryRef; 5],
    len: usize,
}

impl EntryPath {
    /// The entries, outermost first.
    pub fn as_slice(&self) -> &[EntryRef] {
        &self.entries[..self.len]
    }

    /// The final (leaf) entry.
    pub fn leaf(&self) -> EntryRef {
        self.entries[self.len.saturating_sub(1)]
    }
}

/// One level of a format: linear-address shift, index width, entry size.
#[derive(Debug, Clone, Copy)]
struct Level {
    shift: u32,
    bits: u32,
    wide: bool,
}

const fn lv(shift: u32, bits: u32, wide: bool) -> Level {
    Level { shift, bits, wide }
}

const L32: [Level; 2] = [lv(22, 10, false), lv(12, 10, false)];
const LPAE: [Level; 3] = [lv(30, 2, true), lv(21, 9, true), lv(12, 9, true)];
const L4: [Level; 4] = [
    lv(39, 9, true),
    lv(30, 9, true),
    lv(21, 9, true),
    lv(12, 9, true),
];
const L5: [Level; 5] = [
    lv(48, 9, true),
    lv(39, 9, true),
    lv(30, 9, true),
    lv(21, 9, true),
    lv(12, 9, true),
];

fn levels(mode: PagingMode) -> &'static [Level] {
    match mode {
        PagingMode::None => &[],
        PagingMode::Bits32 => &L32,
        PagingMode::Pae => &LPAE,
        PagingMode::Level4 => &L4,
        PagingMode::Level5 => &L5,
    }
}

/// Builds page tables for one paging mode in a [`FlatMemory`], taking table
/// pages from a given range. New intermediate entries get `table_flags`
/// (default P | R/W | U/S; the PAE PDPTE gets P only, its other bits being reserved).
pub struct PageTableBuilder<'m> {
    mem: &'m FlatMemory,
    mode: PagingMode,
    root: u64,
    next: u64,
    end: u64,
    table_flags: u64,
}

impl<'m> PageTableBuilder<'m> {
    /// A builder whose root table is the first page of `tables` (4-KiB aligned range).
    pub fn new(
        mem: &'m FlatMemory,
        mode: PagingMode,
        tables: Range<u64>,
    ) -> Result<Self, BuildError> {
        if mode == PagingMode::None {
            return Err(BuildError::NoTables(mode));
        }
        if tables.start & 0xfff != 0 {
            return Err(BuildError::Address(tables.start));
        }
        let mut b = PageTableBuilder {
            mem,
            mode,
            root: 0,
            next: tables.start,
            end: tables.end.min(mem.size()),
            table_flags: P | RW | US,
        };
        b.root = b.alloc()?;
        Ok(b)
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    /// Guest-physical address of the root table (PD, PDPT, PML4 or PML5), the CR3 value.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Flags for intermediate entries created from now on.
    pub fn set_table_flags(&mut self, flags: u64) {
        self.table_flags = flags;
    }

    /// A context that selects this mode with CR3 = [`Self::root`]: CR0 = PE | PG,
    /// CR4.PSE (32-bit), CR4.PAE (+LA57), EFER.LME | LMA (4/5-level), MAXPHYADDR 52;
    /// WP, NXE, SMEP, SMAP, PGE, PKE are left clear for the test to set.
    pub fn context(&self) -> PagingContext {
        let (cr4, efer) = match self.mode {
            PagingMode::None => (0, 0),
            PagingMode::Bits32 => (CR4_PSE, 0),
            PagingMode::Pae => (CR4_PAE, 0),
            PagingMode::Level4 => (CR4_PAE, EFER_LME | EFER_LMA),
            PagingMode::Level5 => (CR4_PAE | CR4_LA57, EFER_LME | EFER_LMA),
        };
        PagingContext {
            cr0: CR0_PE | CR0_PG,
            cr3: self.root,
            cr4,
            efer,
            maxphyaddr: 52,
            ..Default::default()
        }
    }

    fn alloc(&mut self) -> Result<u64, BuildError> {
        let page = self.next;
        if page.checked_add(4096).is_none_or(|e| e > self.end) {
            return Err(BuildError::OutOfTables);
        }
        for off in (0..4096).step_by(8) {
            self.mem.write_u64(page + off, 0)?;
        }
        self.next = page + 4096;
        Ok(page)
    }

    fn leaf_index(&self, size: PageSize) -> Result<usize, BuildError> {
        let shift = size.bytes().trailing_zeros();
        if !PageSize::for_mode(self.mode).contains(&size) {
            return Err(BuildError::Size(size, self.mode));
        }
        levels(self.mode)
            .iter()
            .position(|l| l.shift == shift)
            .ok_or(BuildError::Size(size, self.mode))
    }

    /// Whether PS = 1 at level index `i` (outermost 0) maps a page: not the
    /// last level, not the PAE PDPT (and for 4/5-level not PML4/PML5, where PS
    /// is reserved; the builder never sets it there, so treating it as a
    /// leaf marker is harmless).
    fn large_ok(&self, i: usize) -> bool {
        i + 1 < levels(self.mode).len() && !(self.mode == PagingMode::Pae && i == 0)
    }

    fn entry_at(table: u64, l: Level, linear: u64) -> EntryRef {
        let idx = (linear >> l.shift) & ((1 << l.bits) - 1);
        EntryRef {
            gpa: table + idx * if l.wide { 8 } else { 4 },
            wide: l.wide,
        }
    }

    /// Reads an entry.
    pub fn read(&self, e: EntryRef) -> Result<u64, BuildError> {
        Ok(if e.wide {
            self.mem.read_u64(e.gpa)?
        } else {
            u64::from(self.mem.read_u32(e.gpa)?)
        })
    }

    /// Writes an entry.
    pub fn write(&self, e: EntryRef, v: u64) -> Result<(), BuildError> {
        if e.wide {
            self.mem.write_u64(e.gpa, v)?;
        } else {
            self.mem.write_u32(e.gpa, v as u32)?;
        }
        Ok(())
    }

    /// Maps the `size` page at `linear` to `gpa` with `leaf_flags` (P, R/W,
    /// U/S, G, XD, pkey...; PS is added for large pages, PSE-36 bits for
    /// 4-MiB pages above 4 GiB). Returns the entries on the path.
    pub fn map(
        &mut self,
        linear: u64,
        gpa: u64,
        size: PageSize,
        leaf_flags: u64,
    ) -> Result<EntryPath, BuildError> {
        let leaf = self.leaf_index(size)?;
        let mask = size.bytes() - 1;
        if linear & mask != 0 {
            return Err(BuildError::Address(linear));
        }
        let max_gpa: u64 = match (self.mode, size) {
            (PagingMode::Bits32, PageSize::Size4M) => 1 << 40,
            (PagingMode::Bits32, _) => 1 << 32,
            _ => 1 << 52,
        };
        if gpa & mask != 0 || gpa >= max_gpa {
            return Err(BuildError::Address(gpa));
        }
        let lvls = levels(self.mode);
        let mut path = EntryPath {
            entries: [EntryRef {
                gpa: 0,
                wide: false,
            }; 5],
            len: 0,
        };
        let mut table = self.root;
        for (i, &l) in lvls.iter().enumerate().take(leaf + 1) {
            let e = Self::entry_at(table, l, linear);
            path.entries[i] = e;
            path.len = i + 1;
            if i == leaf {
                let v = match size {
                    PageSize::Size4K => leaf_flags | gpa,
                    // PSE-36: physical bits 39:32 go to PDE bits 20:13 (SDM Table 4-4).
                    PageSize::Size4M => {
                        leaf_flags | PS | (gpa & 0xffc0_0000) | (((gpa >> 32) & 0xff) << 13)
                    }
                    PageSize::Size2M | PageSize::Size1G => leaf_flags | PS | gpa,
                };
                self.write(e, v)?;
                break;
            }
            let cur = self.read(e)?;
            if cur & P != 0 {
                if self.large_ok(i) && cur & PS != 0 {
                    return Err(BuildError::Conflict(linear));
                }
                table = cur & 0x000f_ffff_ffff_f000 & if l.wide { u64::MAX } else { 0xffff_f000 };
                continue;
            }
            let t = self.alloc()?;
            let flags = if self.mode == PagingMode::Pae && i == 0 {
                P
            } else {
                self.table_flags
            };
            self.write(e, t | flags)?;
            table = t;
        }
        Ok(path)
    }

    /// The entries the current tables use for `linear`, down to the leaf or the
    /// first non-present entry (a PS = 1 entry above the last level is a leaf).
    pub fn path(&self, linear: u64) -> Result<EntryPath, BuildError> {
        let lvls = levels(self.mode);
        let mut path = EntryPath {
            entries: [EntryRef {
                gpa: 0,
                wide: false,
            }; 5],
            len: 0,
        };
        let mut table = self.root;
        for (i, &l) in lvls.iter().enumerate() {
            let e = Self::entry_at(table, l, linear);
            path.entries[i] = e;
            path.len = i + 1;
            let v = self.read(e)?;
            if v & P == 0 || (self.large_ok(i) && v & PS != 0) {
                break;
            }
            table = v & 0x000f_ffff_ffff_f000 & if l.wide { u64::MAX } else { 0xffff_f000 };
        }
        Ok(path)
    }
}
