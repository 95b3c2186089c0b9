//! Where the host puts its boot structures in low guest memory, and the
//! checks that keep an image inside RAM and off those structures.
//!
//! Memory map (guest-physical):
//!
//! | range             | contents                                              |
//! |-------------------|-------------------------------------------------------|
//! | 0x0000..0x1000    | untouched (real-mode IVT / BIOS data area)            |
//! | 0x1000..0x1030    | GDT: null, code32 0x08, data 0x10, code64 0x18, TSS 0x20 (16 bytes) |
//! | 0x1100..0x1168    | the 104-byte TSS that TR points at                    |
//! | 0x2000..0x3000    | PML4 (long mode)                                      |
//! | 0x3000..0x4000    | PDPT (long mode)                                      |
//! | 0x4000..0x8000    | four page directories of 2 MiB pages (long mode)      |
//! | 0x7c00 (down)     | real-mode SP only; nothing is reserved or written      |
//! | 0x8000..0x9000    | boot stack; ESP/RSP start at 0x9000                   |
//! | 0x9000..0x10000   | multiboot information, memory map, module list, strings |
//!
//! Each boot kind reserves only the areas it writes or runs on: raw real
//! mode nothing (the host writes no structures, so real-mode images such as
//! boot sectors or the embedded guest may use all of low memory); protected
//! mode and ELF32 the GDT page and stack; long mode and ELF64 also the page
//! tables; multiboot the GDT page, stack and information.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::{human_size, ImageError};
use crate::memory::{GuestMemory, HIGH_RAM_START, MMIO_HOLE_START};

/// Guest-physical address of the host's GDT.
pub const GDT_ADDR: u64 = 0x1000;
/// Guest-physical address of the TSS that TR describes.
pub const TSS_ADDR: u64 = 0x1100;
/// Guest-physical address of the PML4 (CR3 in long mode).
pub const PML4_ADDR: u64 = 0x2000;
/// Guest-physical address of the PDPT.
pub const PDPT_ADDR: u64 = 0x3000;
/// Guest-physical address of the first of four page directories.
pub const PD_ADDR: u64 = 0x4000;
/// Lowest byte of the boot stack.
pub const STACK_BOTTOM: u64 = 0x8000;
/// Initial stack pointer in protected and long mode (the stack grows down from here).
pub const STACK_TOP: u64 = 0x9000;
/// Initial SP in real mode (SS = 0): below the traditional 0x7c00 boot-sector address.
pub const REAL_MODE_SP: u64 = 0x7c00;
/// Guest-physical address of the multiboot information structure.
pub const MB_INFO_ADDR: u64 = 0x9000;
/// One past the last byte of the multiboot information area.
pub const MB_INFO_END: u64 = 0x10000;

/// A host boot structure's address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// What lives there.
    pub name: &'static str,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The GDT and TSS page.
pub const GDT_AREA: Area = Area {
    name: "GDT/TSS",
    start: GDT_ADDR,
    end: PML4_ADDR,
};
/// The long-mode page tables.
pub const PAGE_TABLE_AREA: Area = Area {
    name: "page tables",
    start: PML4_ADDR,
    end: STACK_BOTTOM,
};
/// The boot stack.
pub const STACK_AREA: Area = Area {
    name: "boot stack",
    start: STACK_BOTTOM,
    end: STACK_TOP,
};
/// The multiboot information area.
pub const MB_INFO_AREA: Area = Area {
    name: "multiboot information",
    start: MB_INFO_ADDR,
    end: MB_INFO_END,
};

/// Areas a real-mode boot writes: none.
pub const REAL_AREAS: &[Area] = &[];
/// Areas a protected-mode boot writes.
pub const PROTECTED_AREAS: &[Area] = &[GDT_AREA, STACK_AREA];
/// Areas a long-mode boot writes.
pub const LONG_AREAS: &[Area] = &[GDT_AREA, PAGE_TABLE_AREA, STACK_AREA];
/// Areas a multiboot boot writes.
pub const MULTIBOOT_AREAS: &[Area] = &[GDT_AREA, STACK_AREA, MB_INFO_AREA];

/// Guest RAM as `[start, end)` ranges for `ram_size` bytes, laid out as
/// [`crate::memory`] does: up to 3 GiB at 0, the rest from 4 GiB.
pub fn ram_ranges(ram_size: u64) -> Vec<(u64, u64)> {
    let low = ram_size.min(MMIO_HOLE_START);
    let mut v = vec![(0, low)];
    if ram_size > low {
        v.push((
            HIGH_RAM_START,
            HIGH_RAM_START.saturating_add(ram_size - low),
        ));
    }
    v
}

/// True if `[addr, end)` lies wholly inside one RAM range.
fn in_ram(ram_size: u64, addr: u64, end: u64) -> bool {
    ram_ranges(ram_size)
        .iter()
        .any(|&(s, e)| s <= addr && end <= e)
}

/// The guest an image is being loaded into, and the file it comes from.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The image's name, for messages.
    pub file: &'a str,
    /// Guest RAM.
    pub mem: &'a GuestMemory,
    /// Size of guest RAM (see [`ram_ranges`] for where it lies).
    pub ram_size: u64,
}

/// One piece of an image: `data` goes at `addr`, then zeros up to `memsz`.
#[derive(Debug, Clone)]
pub struct Chunk<'a> {
    /// Which part of the image, for messages ("ELF program header 2").
    pub what: String,
    /// Guest-physical load address.
    pub addr: u64,
    /// Bytes copied from the file.
    pub data: &'a [u8],
    /// Total size in memory (`>= data.len()`); the rest is zeroed.
    pub memsz: u64,
}

impl Chunk<'_> {
    /// One past the chunk's last byte (callers check it with [`Target::check`] first).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.memsz)
    }
}

impl Target<'_> {
    /// Checks that `addr..addr+len` does not wrap, lies inside RAM and misses every reserved area.
    pub fn check(
        &self,
        what: &str,
        addr: u64,
        len: u64,
        reserved: &[Area],
    ) -> Result<(), ImageError> {
        let Some(end) = addr.checked_add(len) else {
            return Err(ImageError::Overflow {
                file: self.file.into(),
                what: what.into(),
                addr,
                len,
                bits: 64,
            });
        };
        if len == 0 {
            return Ok(());
        }
        let in_slots =
            usize::try_from(len).is_ok_and(|l| self.mem.check_range(GuestAddress(addr), l));
        if !in_ram(self.ram_size, addr, end) || !in_slots {
            return Err(ImageError::DoesNotFit {
                file: self.file.into(),
                what: what.into(),
                addr,
                len,
                ram: human_size(self.ram_size),
            });
        }
        if let Some(a) = reserved.iter().find(|a| addr < a.end && a.start < end) {
            return Err(ImageError::OverlapsHost {
                file: self.file.into(),
                what: what.into(),
                addr,
                len,
                area: a.name,
                start: a.start,
                end: a.end,
            });
        }
        Ok(())
    }

    /// Checks a chunk: `data.len() <= memsz`, and the whole chunk as in [`Target::check`].
    pub fn check_chunk(&self, c: &Chunk<'_>, reserved: &[Area]) -> Result<(), ImageError> {
        if c.data.len() as u64 > c.memsz {
            return Err(ImageError::BadElf {
                file: self.file.into(),
                reason: format!(
                    "{}: {:#x} file bytes exceed its {:#x}-byte memory size",
                    c.what,
                    c.data.len(),
                    c.memsz
                ),
            });
        }
        self.check(&c.what, c.addr, c.memsz, reserved)
    }

    /// Checks that the entry point lies in RAM (and below `limit`).
    pub fn check_entry(&self, entry: u64, limit: u64, limit_name: &str) -> Result<(), ImageError> {
        if entry >= limit {
            return Err(ImageError::BadEntry {
                file: self.file.into(),
                entry,
                reason: format!("is not below {limit:#x} ({limit_name})"),
            });
        }
        if !in_ram(self.ram_size, entry, entry.saturating_add(1))
            || !self.mem.address_in_range(GuestAddress(entry))
        {
            return Err(ImageError::BadEntry {
                file: self.file.into(),
                entry,
                reason: format!(
                    "is outside the {} of guest memory",
                    human_size(self.ram_size)
                ),
            });
        }
        Ok(())
    }

    /// Writes bytes at `addr`.
    pub fn write(&self, what: &str, addr: u64, bytes: &[u8]) -> Result<(), ImageError> {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|e| ImageError::Memory {
                file: self.file.into(),
                what: what.into(),
                addr,
                reason: e.to_string(),
            })
    }

    /// Writes `len` zero bytes at `addr`.
    pub fn zero(&self, what: &str, addr: u64, len: u64) -> Result<(), ImageError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64);
            let at = addr.checked_add(done).ok_or_else(|| ImageError::Overflow {
                file: self.file.into(),
                what: what.into(),
                addr,
                len,
                bits: 64,
            })?;
            self.write(what, at, &ZEROS[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Writes a checked chunk: its data, then zeros to its memory size.
    pub fn write_chunk(&self, c: &Chunk<'_>) -> Result<(), ImageError> {
        self.write(&c.what, c.addr, c.data)?;
        let filesz = c.data.len() as u64;
        self.zero(
            &c.what,
            c.addr.saturating_add(filesz),
            c.memsz.saturating_sub(filesz),
        )
    }
}

/// Summarises loaded chunks for a log line: "0x100000..0x180000".
pub fn span(chunks: &[Chunk<'_>]) -> String {
    let lo = chunks.iter().map(|c| c.addr).min().unwrap_or(0);
    let hi = chunks.iter().map(Chunk::end).max().unwrap_or(0);
    format!("{lo:#x}..{hi:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil;

    #[test]
    fn areas_do_not_overlap_each_other() {
        let all = [GDT_AREA, PAGE_TABLE_AREA, STACK_AREA, MB_INFO_AREA];
        for (i, a) in all.iter().enumerate() {
            assert!(a.start < a.end);
            for b in &all[i + 1..] {
                assert!(a.end <= b.start || b.end <= a.start, "{a:?} overlaps {b:?}");
            }
        }
        // All of them sit in conventional memory below the EBDA.
        assert!(all.iter().all(|a| a.end <= 0x9fc00));
    }

    #[test]
    fn check_is_table_driven() {
        let mem = testutil::memory(1 << 20);
        let t = Target {
            file: "f",
            mem: &mem,
            ram_size: 1 << 20,
        };
        let cases: &[(u64, u64, Option<&str>)] = &[
            (0x10000, 0x1000, None),
            (0xff000, 0x1000, None),
            (
                0xff000,
                0x1001,
                Some("f: x at 0xff000+0x1001 does not fit in 1 MiB of guest memory"),
            ),
            (
                u64::MAX - 1,
                4,
                Some("f: x at 0xfffffffffffffffe+0x4 wraps around the 64-bit address space"),
            ),
            (
                0x8ff0,
                0x20,
                Some("f: x at 0x8ff0+0x20 overlaps the host's boot stack at 0x8000..0x9000"),
            ),
            (0x0, 0x1000, None),
            (
                0x0,
                0x1001,
                Some("f: x at 0x0+0x1001 overlaps the host's GDT/TSS at 0x1000..0x2000"),
            ),
            (0x2000, 0x6000, None),
            (0x200000, 0, None),
        ];
        for (addr, len, want) in cases {
            let got = t
                .check("x", *addr, *len, PROTECTED_AREAS)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), *want, "addr {addr:#x} len {len:#x}");
        }
    }

    #[test]
    fn ram_above_the_hole() {
        let ram = 4u64 << 30;
        assert_eq!(
            ram_ranges(ram),
            vec![(0, 0xc000_0000), (0x1_0000_0000, 0x1_4000_0000)]
        );
        assert_eq!(ram_ranges(16 << 20), vec![(0, 16 << 20)]);
        let mem = testutil::memory_pc(ram);
        let t = Target {
            file: "f",
            mem: &mem,
            ram_size: ram,
        };
        let cases: &[(u64, u64, bool)] = &[
            (0xbfff_f000, 0x1000, true),
            (0xbfff_f000, 0x2000, false),
            (0xd000_0000, 0x10, false),
            (0x1_0000_0000, 0x1000, true),
            (0x1_3fff_f000, 0x1000, true),
            (0x1_3fff_f000, 0x1001, false),
        ];
        for &(addr, len, fits) in cases {
            let r = t.check("x", addr, len, &[]);
            assert_eq!(r.is_ok(), fits, "{addr:#x}+{len:#x}: {r:?}");
        }
        assert!(t.check_entry(0x1_0000_0000, u64::MAX, "").is_ok());
        assert!(t.check_entry(0xc000_0000, u64::MAX, "").is_err());
    }

    #[test]
    fn chunk_write_zero_fills() {
        let mem = testutil::memory(1 << 20);
        let t = Target {
            file: "f",
            mem: &mem,
            ram_size: 1 << 20,
        };
        t.zero("dirt", 0x20000, 0x3000).ok();
        mem.write_slice(&[0xaa; 0x3000], GuestAddress(0x20000)).ok();
        let c = Chunk {
            what: "c".into(),
            addr: 0x20000,
            data: &[1, 2, 3],
            memsz: 0x2800,
        };
        assert!(t.check_chunk(&c, &[]).is_ok());
        assert!(t.write_chunk(&c).is_ok());
        let got = testutil::read(&mem, 0x20000, 0x3000);
        assert_eq!(&got[..3], &[1, 2, 3]);
        assert!(got[3..0x2800].iter().all(|&b| b == 0));
        assert!(got[0x2800..].iter().all(|&b| b == 0xaa));
    }
}
