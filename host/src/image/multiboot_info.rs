//! The Multiboot information structure (Multiboot Specification 0.6.96,
//! section 3.3) and the memory map it carries, built as one block of bytes
//! for the area at [`layout::MB_INFO_ADDR`].
//!
//! Block layout: the 116-byte information structure (padded to 120), the
//! memory map entries, the module list (16-byte aligned), then the strings:
//! boot loader name, command line, module strings.

use super::layout::{self, Target};
use super::ImageError;

/// flags bit 0: mem_lower / mem_upper are valid.
pub const INFO_MEM: u32 = 1 << 0;
/// flags bit 1: boot_device is valid.
pub const INFO_BOOT_DEVICE: u32 = 1 << 1;
/// The boot_device value QEMU passes: BIOS drive 0x80, no partition (0xff in
/// each partition byte), since a direct-boot kernel came from no disk.
pub const BOOT_DEVICE: u32 = 0x8000_ffff;
/// flags bit 2: cmdline is valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// flags bit 3: mods_count / mods_addr are valid.
pub const INFO_MODS: u32 = 1 << 3;
/// flags bit 6: mmap_length / mmap_addr are valid.
pub const INFO_MMAP: u32 = 1 << 6;
/// flags bit 9: boot_loader_name is valid.
pub const INFO_LOADER_NAME: u32 = 1 << 9;

/// Field offsets in the information structure (section 3.3).
pub mod off {
    /// u32 flags.
    pub const FLAGS: usize = 0;
    /// u32 KiB of lower memory.
    pub const MEM_LOWER: usize = 4;
    /// u32 KiB of upper memory from 1 MiB.
    pub const MEM_UPPER: usize = 8;
    /// u32 boot device (drive, part1, part2, part3).
    pub const BOOT_DEVICE: usize = 12;
    /// u32 address of the command line.
    pub const CMDLINE: usize = 16;
    /// u32 module count.
    pub const MODS_COUNT: usize = 20;
    /// u32 address of the module list.
    pub const MODS_ADDR: usize = 24;
    /// u32 length of the memory map in bytes.
    pub const MMAP_LENGTH: usize = 44;
    /// u32 address of the memory map.
    pub const MMAP_ADDR: usize = 48;
    /// u32 address of the boot loader's name.
    pub const BOOT_LOADER_NAME: usize = 64;
}

/// Size of the information structure up to and including the framebuffer fields.
const INFO_SIZE: usize = 116;
/// The name given in boot_loader_name.
pub const LOADER_NAME: &str = "hyperplug";
/// Memory map entry type: available RAM.
pub const MMAP_AVAILABLE: u32 = 1;
/// Memory map entry type: reserved.
pub const MMAP_RESERVED: u32 = 2;
/// Start of the extended BIOS data area, reported reserved up to 640 KiB.
pub const EBDA_START: u64 = 0x9_fc00;
/// 640 KiB, the end of conventional memory.
const CONVENTIONAL_END: u64 = 0xa_0000;
/// Start of the BIOS ROM area, reported reserved up to 1 MiB.
const BIOS_START: u64 = 0xf_0000;
/// 1 MiB, where upper memory starts.
pub const HIGH_START: u64 = 0x10_0000;

/// One loaded module as the information structure describes it.
#[derive(Debug, Clone)]
pub struct ModuleEntry {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// "file args" string.
    pub string: String,
}

/// One memory map entry: base, length, type.
pub type MmapEntry = (u64, u64, u32);

/// The memory map: RAM ([`layout::ram_ranges`]) as available except 0x9fc00..1 MiB, plus the EBDA (0x9fc00..0xa0000) and
/// the BIOS area (0xf0000..0x100000) as reserved; sorted, adjacent entries merged.
pub fn memory_map(t: &Target<'_>) -> Vec<MmapEntry> {
    let mut v: Vec<MmapEntry> = Vec::new();
    for (s, e) in layout::ram_ranges(t.ram_size) {
        if s >= e {
            continue;
        }
        if s < EBDA_START {
            v.push((s, e.min(EBDA_START) - s, MMAP_AVAILABLE));
        }
        if e > HIGH_START {
            let lo = s.max(HIGH_START);
            v.push((lo, e - lo, MMAP_AVAILABLE));
        }
    }
    v.push((EBDA_START, CONVENTIONAL_END - EBDA_START, MMAP_RESERVED));
    v.push((BIOS_START, HIGH_START - BIOS_START, MMAP_RESERVED));
    v.sort_unstable();
    let mut merged: Vec<MmapEntry> = Vec::new();
    for (b, l, ty) in v {
        match merged.last_mut() {
            Some(last) if last.2 == ty && last.0.saturating_add(last.1) == b => last.1 += l,
            _ => merged.push((b, l, ty)),
        }
    }
    merged
}

/// Bytes of the information block and the guest address they start at.
struct Block {
    base: u64,
    buf: Vec<u8>,
}

impl Block {
    /// Appends bytes at the next `align`-aligned offset; returns their guest address.
    fn put(&mut self, bytes: &[u8], align: usize) -> u64 {
        let pad = self.buf.len().next_multiple_of(align) - self.buf.len();
        self.buf.extend(std::iter::repeat_n(0, pad));
        let at = self.base + self.buf.len() as u64;
        self.buf.extend_from_slice(bytes);
        at
    }

    /// Appends a NUL-terminated string, refusing interior NULs.
    fn put_str(&mut self, t: &Target<'_>, what: &str, s: &str) -> Result<u32, ImageError> {
        if s.contains('\0') {
            return Err(ImageError::NulInString {
                file: t.file.into(),
                what: what.into(),
            });
        }
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        Ok(self.put(&b, 1) as u32)
    }

    fn set_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// Builds the information block for [`layout::MB_INFO_ADDR`]; `cmdline` is the
/// full command line (file name first). Fails if it outgrows the area.
pub fn build(
    t: &Target<'_>,
    cmdline: &str,
    modules: &[ModuleEntry],
) -> Result<Vec<u8>, ImageError> {
    let mut b = Block {
        base: layout::MB_INFO_ADDR,
        buf: vec![0; INFO_SIZE],
    };
    let mmap = memory_map(t);
    let mut mmap_bytes = Vec::new();
    for (base, len, ty) in &mmap {
        // Each entry: size (20, not counting itself), base_addr, length, type.
        mmap_bytes.extend_from_slice(&20u32.to_le_bytes());
        mmap_bytes.extend_from_slice(&base.to_le_bytes());
        mmap_bytes.extend_from_slice(&len.to_le_bytes());
        mmap_bytes.extend_from_slice(&ty.to_le_bytes());
    }
    let mmap_addr = b.put(&mmap_bytes, 8);
    let mods_addr = b.put(&vec![0u8; 16 * modules.len()], 16);
    let name_addr = b.put_str(t, "boot loader name", LOADER_NAME)?;
    let cmdline_addr = b.put_str(t, "command line", cmdline)?;
    for (i, m) in modules.iter().enumerate() {
        let s = b.put_str(t, &format!("module {i} string"), &m.string)?;
        let at = (mods_addr - b.base) as usize + 16 * i;
        // mod_start, mod_end, string, reserved (section 3.3); addresses are below 4 GiB (checked by the caller).
        b.set_u32(at, m.start as u32);
        b.set_u32(at + 4, m.end as u32);
        b.set_u32(at + 8, s);
    }
    let available = layout::MB_INFO_END - layout::MB_INFO_ADDR;
    if b.buf.len() as u64 > available {
        return Err(ImageError::BootInfoTooLarge {
            file: t.file.into(),
            needed: b.buf.len() as u64,
            available,
            addr: layout::MB_INFO_ADDR,
        });
    }
    let mem_lower = (t.ram_size.min(CONVENTIONAL_END) / 1024) as u32;
    let mem_upper = mmap
        .iter()
        .find(|e| e.0 == HIGH_START && e.2 == MMAP_AVAILABLE)
        .map_or(0, |e| (e.1 / 1024).min(u64::from(u32::MAX)) as u32);
    b.set_u32(
        off::FLAGS,
        INFO_MEM | INFO_BOOT_DEVICE | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME,
    );
    b.set_u32(off::BOOT_DEVICE, BOOT_DEVICE);
    b.set_u32(off::MEM_LOWER, mem_lower);
    b.set_u32(off::MEM_UPPER, mem_upper);
    b.set_u32(off::CMDLINE, cmdline_addr);
    b.set_u32(off::MODS_COUNT, modules.len() as u32);
    b.set_u32(off::MODS_ADDR, mods_addr as u32);
    b.set_u32(off::MMAP_LENGTH, mmap_bytes.len() as u32);
    b.set_u32(off::MMAP_ADDR, mmap_addr as u32);
    b.set_u32(off::BOOT_LOADER_NAME, name_addr);
    Ok(b.buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil;

    #[test]
    fn memory_map_table() {
        let cases: &[(u64, &[MmapEntry])] = &[
            (
                16 << 20,
                &[
                    (0, 0x9fc00, 1),
                    (0x9fc00, 0x400, 2),
                    (0xf0000, 0x10000, 2),
                    (0x10_0000, 15 << 20, 1),
                ],
            ),
            (
                4 << 30,
                &[
                    (0, 0x9fc00, 1),
                    (0x9fc00, 0x400, 2),
                    (0xf0000, 0x10000, 2),
                    (0x10_0000, 0xc000_0000 - 0x10_0000, 1),
                    (0x1_0000_0000, 1 << 30, 1),
                ],
            ),
            // RAM smaller than 640 KiB: no upper memory.
            (
                512 << 10,
                &[
                    (0, 512 << 10, 1),
                    (0x9fc00, 0x400, 2),
                    (0xf0000, 0x10000, 2),
                ],
            ),
        ];
        for (ram, want) in cases {
            let mem = testutil::memory_pc(*ram);
            let t = Target {
                file: "k",
                mem: &mem,
                ram_size: *ram,
            };
            assert_eq!(memory_map(&t), *want, "ram {ram:#x}");
            let info = build(&t, "k", &[]).unwrap_or_default();
            let mem_upper = u32::from_le_bytes([info[8], info[9], info[10], info[11]]);
            let want_upper = want
                .iter()
                .find(|e| e.0 == HIGH_START)
                .map_or(0, |e| e.1 / 1024);
            assert_eq!(
                u64::from(mem_upper),
                want_upper,
                "mem_upper for ram {ram:#x}"
            );
        }
    }

    #[test]
    fn info_too_large_is_refused() {
        let mem = testutil::memory(16 << 20);
        let t = Target {
            file: "k",
            mem: &mem,
            ram_size: 16 << 20,
        };
        let long = "x".repeat(0x8000);
        let e = build(&t, &long, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("k: the multiboot information needs "), "{e}");
        assert!(
            e.ends_with("more than the 28672-byte area at 0x9000"),
            "{e}"
        );
        let e = build(&t, "a\0b", &[]).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("k: command line contains a NUL byte"));
    }
}
