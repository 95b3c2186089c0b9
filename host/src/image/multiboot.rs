//! Multiboot v1 kernels (Multiboot Specification 0.6.96): header search,
//! loading by the header's address fields (flag 16) or as ELF32, module
//! placement, and the machine state of section 3.2.
//!
//! Flag policy (section 3.1.2: bits 0-15 are requirements, 16-31 optional):
//! bit 0 (page-aligned modules) and bit 1 (memory information) are always
//! met; bit 2 (video mode table) is accepted but not met, as QEMU does: the
//! information structure leaves flags bits 11/12 clear so the OS can tell;
//! any other requirement bit (3-15) is refused.
//!
//! Entry state (section 3.2): EAX = 0x2BADB002, EBX = information address,
//! flat 32-bit protected mode from the host's GDT, CR0 = PE | ET (paging
//! off), EFLAGS = 0x2 (IF = VM = 0), ESP = 0x9000 (the spec leaves ESP
//! undefined; a valid stack is given anyway). A20 is always on here.

use super::layout::{self, Chunk, Target};
use super::multiboot_info::{self, ModuleEntry, EBDA_START, HIGH_START};
use super::{elf, x86_setup, BootSetup, ImageError, LoadedModule, Mode};

/// The header's magic (section 3.1.1).
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX at entry (section 3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie wholly in the image's first 8 KiB (section 3.1).
const HEADER_AREA: usize = 8192;
/// Like QEMU, the search for the magic stops where a full 48-byte header would
/// no longer fit in [`HEADER_AREA`].
const SEARCH_LEN: usize = HEADER_AREA - 48;
/// Requirement flags this loader accepts: page-aligned modules, memory info, video table.
const KNOWN_REQUIRED: u32 = 0b111;
/// Flag bit 2: video mode table requested.
const FLAG_VIDEO: u32 = 1 << 2;
/// Flag bit 16: the header's address fields are valid.
const FLAG_ADDRESSES: u32 = 1 << 16;
/// Modules are placed on 4 KiB boundaries (flag bit 0 asks for it; we always do it).
const PAGE: u64 = 4096;

/// The header's address fields (offsets 12-28), used when flag 16 is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressFields {
    /// Physical address of the header's magic.
    pub header_addr: u32,
    /// Physical address of the start of the text segment.
    pub load_addr: u32,
    /// End of the data to load (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of bss (0: no bss).
    pub bss_end_addr: u32,
    /// Where to jump.
    pub entry_addr: u32,
}

/// A valid multiboot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: usize,
    /// The flags word.
    pub flags: u32,
    /// The address fields if flag 16 is set.
    pub addresses: Option<AddressFields>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Finds the multiboot header: the first 4-byte-aligned magic in the first
/// 8 KiB whose checksum makes magic + flags + checksum = 0 (mod 2^32).
/// A magic with a bad checksum and no valid header is an error, not "absent".
pub fn find_header(file: &str, bytes: &[u8]) -> Result<Option<Header>, ImageError> {
    let bad = |reason: String| ImageError::BadMultiboot {
        file: file.to_string(),
        reason,
    };
    let mut bad_checksum = None;
    let mut off = 0;
    while off < SEARCH_LEN && off + 12 <= bytes.len() {
        if u32_at(bytes, off) == HEADER_MAGIC {
            let flags = u32_at(bytes, off + 4);
            let sum = HEADER_MAGIC
                .wrapping_add(flags)
                .wrapping_add(u32_at(bytes, off + 8));
            if sum == 0 {
                return header_at(file, bytes, off, flags).map(Some);
            }
            bad_checksum.get_or_insert((off, sum));
        }
        off += 4;
    }
    match bad_checksum {
        Some((off, sum)) => Err(bad(format!(
            "magic at offset {off:#x} has a bad checksum (magic + flags + checksum = {sum:#x}, must be 0)"
        ))),
        None => Ok(None),
    }
}

/// Validates the flags and reads the address fields of the header at `off`.
fn header_at(file: &str, bytes: &[u8], off: usize, flags: u32) -> Result<Header, ImageError> {
    let bad = |reason: String| ImageError::BadMultiboot {
        file: file.to_string(),
        reason,
    };
    let unknown = flags & 0xffff & !KNOWN_REQUIRED;
    if unknown != 0 {
        let bits: Vec<String> = (0..16)
            .filter(|b| unknown & (1 << b) != 0)
            .map(|b| b.to_string())
            .collect();
        return Err(bad(format!(
            "flags {flags:#x} require feature bit(s) {} that this loader does not provide",
            bits.join(", ")
        )));
    }
    if flags & FLAG_VIDEO != 0 {
        tracing::warn!("{file}: multiboot flag 2 asks for a video mode table; none is provided");
    }
    let addresses = if flags & FLAG_ADDRESSES != 0 {
        let end = off + 32;
        if end > bytes.len() {
            return Err(bad(format!(
                "flag 16 is set but the address fields of the header at offset {off:#x} run past {}",
                "the end of the file"
            )));
        }
        Some(AddressFields {
            header_addr: u32_at(bytes, off + 12),
            load_addr: u32_at(bytes, off + 16),
            load_end_addr: u32_at(bytes, off + 20),
            bss_end_addr: u32_at(bytes, off + 24),
            entry_addr: u32_at(bytes, off + 28),
        })
    } else {
        None
    };
    Ok(Header {
        offset: off,
        flags,
        addresses,
    })
}

/// The kernel image as chunks, from the address fields (section 3.1.3):
/// the file offset of load_addr is the header's offset minus (header_addr - load_addr).
fn address_chunk<'a>(
    file: &str,
    bytes: &'a [u8],
    off: usize,
    a: &AddressFields,
) -> Result<Chunk<'a>, ImageError> {
    let bad = |reason: String| ImageError::BadMultiboot {
        file: file.to_string(),
        reason,
    };
    let (header_addr, load_addr) = (u64::from(a.header_addr), u64::from(a.load_addr));
    let Some(delta) = header_addr.checked_sub(load_addr) else {
        return Err(bad(format!(
            "header_addr {header_addr:#x} is below load_addr {load_addr:#x}"
        )));
    };
    let Some(load_offset) = (off as u64).checked_sub(delta) else {
        return Err(bad(format!(
            "load_addr {load_addr:#x} is {delta:#x} bytes before header_addr, but the header is at file offset {off:#x}"
        )));
    };
    let file_len = bytes.len() as u64;
    let size = if a.load_end_addr == 0 {
        file_len - load_offset
    } else {
        let end = u64::from(a.load_end_addr);
        let Some(size) = end.checked_sub(load_addr) else {
            return Err(bad(format!(
                "load_end_addr {end:#x} is below load_addr {load_addr:#x}"
            )));
        };
        if load_offset + size > file_len {
            return Err(bad(format!(
                "load_end_addr {end:#x} asks for {size:#x} bytes from file offset {load_offset:#x}, past the end of the {file_len}-byte file"
            )));
        }
        size
    };
    let load_end = load_addr + size;
    let memsz = if a.bss_end_addr == 0 {
        size
    } else {
        let bss_end = u64::from(a.bss_end_addr);
        if bss_end < load_end {
            return Err(bad(format!(
                "bss_end_addr {bss_end:#x} is below the end of the loaded data {load_end:#x}"
            )));
        }
        bss_end - load_addr
    };
    let data = &bytes[load_offset as usize..(load_offset + size) as usize];
    Ok(Chunk {
        what: "multiboot image".into(),
        addr: load_addr,
        data,
        memsz,
    })
}

/// Places modules on page boundaries above the kernel and the info area,
/// skipping the reserved 0x9fc00..1 MiB range.
fn place_modules(
    t: &Target<'_>,
    kernel_end: u64,
    modules: &[LoadedModule],
) -> Result<Vec<ModuleEntry>, ImageError> {
    let mut cursor = kernel_end.max(layout::MB_INFO_END);
    let mut out = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        let len = m.bytes.len() as u64;
        let what = format!("module {i} ({}, {len:#x} bytes)", m.name);
        let overflow = || ImageError::Overflow {
            file: t.file.into(),
            what: what.clone(),
            addr: cursor,
            len,
            bits: 64,
        };
        let mut start = cursor.checked_next_multiple_of(PAGE).ok_or_else(overflow)?;
        if start < HIGH_START && start.checked_add(len).is_none_or(|e| e > EBDA_START) {
            start = HIGH_START;
        }
        t.check(&what, start, len, layout::MULTIBOOT_AREAS)?;
        let end = start + len;
        if end > 1 << 32 {
            return Err(ImageError::Overflow {
                file: t.file.into(),
                what,
                addr: start,
                len,
                bits: 32,
            });
        }
        let string = if m.args.is_empty() {
            m.name.clone()
        } else {
            format!("{} {}", m.name, m.args)
        };
        out.push(ModuleEntry { start, end, string });
        cursor = end;
    }
    Ok(out)
}

/// Loads a multiboot kernel and its modules, writes the information
/// structure and returns the section 3.2 entry state.
pub fn load(
    t: &Target<'_>,
    bytes: &[u8],
    h: &Header,
    cmdline: &str,
    modules: &[LoadedModule],
) -> Result<BootSetup, ImageError> {
    let bad = |reason: String| ImageError::BadMultiboot {
        file: t.file.to_string(),
        reason,
    };
    let (chunks, entry, kind) = match &h.addresses {
        Some(a) => (
            vec![address_chunk(t.file, bytes, h.offset, a)?],
            u64::from(a.entry_addr),
            "address fields",
        ),
        None => {
            if !elf::has_magic(bytes) {
                return Err(bad(
                    "flag 16 is clear, so the kernel must be ELF, but it has no ELF magic".into(),
                ));
            }
            let img = elf::parse(t.file, bytes)?;
            if img.is64 {
                return Err(bad("flag 16 is clear and the kernel is ELF64; a multiboot kernel must be ELF32 or give address fields".into()));
            }
            (img.chunks, img.entry, "ELF32")
        }
    };
    for c in &chunks {
        t.check_chunk(c, layout::MULTIBOOT_AREAS)?;
    }
    t.check_entry(entry, 1 << 32, "32-bit protected mode")?;
    let kernel_end = chunks.iter().map(Chunk::end).max().unwrap_or(0);
    let placed = place_modules(t, kernel_end, modules)?;
    // QEMU passes "<image> <cmdline>", keeping the space when the command line is empty.
    let full_cmdline = format!("{} {cmdline}", t.file);
    let info = multiboot_info::build(t, &full_cmdline, &placed)?;

    for c in &chunks {
        t.write_chunk(c)?;
    }
    for (m, p) in modules.iter().zip(&placed) {
        t.write(&format!("module {}", m.name), p.start, &m.bytes)?;
    }
    t.write("multiboot information", layout::MB_INFO_ADDR, &info)?;
    x86_setup::write_gdt(t)?;
    let (mut regs, sregs) = x86_setup::protected_mode(entry);
    regs.rax = u64::from(BOOTLOADER_MAGIC);
    regs.rbx = layout::MB_INFO_ADDR;
    let description = format!(
        "{}: multiboot ({kind}), kernel at {}, {} module(s), entry {entry:#x}, info at {:#x}",
        t.file,
        layout::span(&chunks),
        placed.len(),
        layout::MB_INFO_ADDR
    );
    Ok(BootSetup {
        regs,
        sregs,
        description,
        entry,
        mode: Mode::Protected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::multiboot_info::{
        off, BOOT_DEVICE, INFO_BOOT_DEVICE, INFO_CMDLINE, INFO_LOADER_NAME, INFO_MEM, INFO_MMAP,
        INFO_MODS,
    };
    use crate::image::testutil::{
        self, build_elf, cstr_at, u32_at as mem_u32, u64_at as mem_u64, Seg,
    };
    use crate::image::{load_kernel, load_kernel_bytes, load_kernel_with_modules, ModuleSpec};
    use hyperplug_plugin_api::state::cr;

    const RAM: u64 = 16 << 20;

    /// A multiboot header with a correct checksum and optional address fields.
    fn header(flags: u32, fields: Option<[u32; 5]>) -> Vec<u8> {
        let mut h = Vec::new();
        let checksum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags);
        for v in [HEADER_MAGIC, flags, checksum] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(fields) = fields {
            for v in fields {
                h.extend_from_slice(&v.to_le_bytes());
            }
        }
        h
    }

    /// An address-fields kernel: 0x40 bytes of prefix, the header, then code; loaded at 0x100000.
    fn aout_kernel(load_end: u32, bss_end: u32) -> Vec<u8> {
        let mut f = vec![0x90u8; 0x40];
        f.extend(header(
            FLAG_ADDRESSES | 0x3,
            Some([0x10_0040, 0x10_0000, load_end, bss_end, 0x10_0060]),
        ));
        f.extend(vec![0xf4u8; 0x40]);
        f
    }

    fn ok(r: Result<BootSetup, ImageError>) -> BootSetup {
        match r {
            Ok(s) => s,
            Err(e) => panic!("load failed: {e}"),
        }
    }

    #[test]
    fn address_fields_kernel_loads() {
        let f = aout_kernel(0, 0x10_3000);
        let mem = testutil::memory(RAM);
        let t = Target {
            file: "x",
            mem: &mem,
            ram_size: RAM,
        };
        assert!(t.write("dirt", 0x10_0000, &[0xaa; 0x4000]).is_ok());
        let s = ok(load_kernel_bytes(&mem, RAM, "mb.bin", &f, "", &[]));
        assert_eq!(s.entry, 0x10_0060);
        assert_eq!(s.regs.rip, 0x10_0060);
        assert_eq!(s.regs.rax, 0x2bad_b002);
        assert_eq!(s.regs.rbx, layout::MB_INFO_ADDR);
        assert_eq!(s.regs.rflags, 0x2);
        assert_eq!(s.sregs.cr0, cr::CR0_PE | cr::CR0_ET);
        assert_eq!(
            (
                s.sregs.cs.base,
                s.sregs.cs.limit,
                s.sregs.cs.db,
                s.sregs.cs.type_
            ),
            (0, 0xffff_ffff, 1, 0xb)
        );
        assert_eq!(
            (s.sregs.ss.base, s.sregs.ss.limit, s.sregs.ss.type_),
            (0, 0xffff_ffff, 3)
        );
        assert_eq!(testutil::read(&mem, 0x10_0000, f.len()), f);
        assert!(
            testutil::read(&mem, 0x10_0000 + f.len() as u64, 0x3000 - f.len())
                .iter()
                .all(|&b| b == 0)
        );
        assert!(testutil::read(&mem, 0x10_3000, 0x1000)
            .iter()
            .all(|&b| b == 0xaa));
        // The GDT that GDTR names describes the flat segments the caches hold.
        assert_eq!(
            mem_u64(&mem, s.sregs.gdt.base + 0x10),
            0x00cf_9300_0000_ffff
        );
    }

    #[test]
    fn address_fields_with_load_end_loads_only_that_much() {
        let f = aout_kernel(0x10_0050, 0);
        let mem = testutil::memory(RAM);
        let s = ok(load_kernel_bytes(&mem, RAM, "mb.bin", &f, "", &[]));
        assert_eq!(testutil::read(&mem, 0x10_0000, 0x50), f[..0x50].to_vec());
        assert_eq!(testutil::read(&mem, 0x10_0050, 0x30), vec![0; 0x30]);
        assert!(
            s.description.contains("address fields"),
            "{}",
            s.description
        );
    }

    /// An ELF32 kernel whose first segment starts with a multiboot header (flags 0x3).
    fn elf_kernel() -> Vec<u8> {
        let mut code = header(0x3, None);
        code.extend_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
        build_elf(
            false,
            0x10_000c,
            &[
                Seg::load(0x10_0000, &code, 0x5000),
                Seg::load(0x20_0000, &[7; 16], 0x800),
            ],
        )
        .0
    }

    #[test]
    fn elf_kernel_info_and_modules() {
        let f = elf_kernel();
        let mem = testutil::memory(RAM);
        let mods = [
            LoadedModule {
                name: "m1.bin".into(),
                args: "arg1 arg2".into(),
                bytes: vec![0x5a; 0x1234],
            },
            LoadedModule {
                name: "m2.bin".into(),
                args: String::new(),
                bytes: vec![0xa5; 0x10],
            },
        ];
        let s = ok(load_kernel_with_modules(
            &mem,
            RAM,
            "k.elf",
            &f,
            "console=ttyS0 x",
            &mods,
        ));
        assert_eq!(s.regs.rip, 0x10_000c);
        assert_eq!(s.mode, Mode::Protected);
        assert_eq!(testutil::read(&mem, 0x20_0000, 16), vec![7; 16]);

        let info = layout::MB_INFO_ADDR;
        let at = |o: usize| mem_u32(&mem, info + o as u64);
        let flags = at(off::FLAGS);
        for bit in [
            INFO_MEM,
            INFO_CMDLINE,
            INFO_MODS,
            INFO_MMAP,
            INFO_LOADER_NAME,
        ] {
            assert_ne!(flags & bit, 0, "flag {bit:#x} missing in {flags:#x}");
        }
        assert_eq!(flags & ((1 << 11) | (1 << 12)), 0, "no video info is given");
        assert_ne!(
            flags & INFO_BOOT_DEVICE,
            0,
            "boot device given, as QEMU does"
        );
        assert_eq!(
            mem_u32(&mem, layout::MB_INFO_ADDR + off::BOOT_DEVICE as u64),
            BOOT_DEVICE
        );
        assert_eq!(at(off::MEM_LOWER), 640);
        assert_eq!(at(off::MEM_UPPER), ((RAM - (1 << 20)) / 1024) as u32);
        assert_eq!(
            cstr_at(&mem, u64::from(at(off::CMDLINE))),
            "k.elf console=ttyS0 x"
        );
        assert_eq!(
            cstr_at(&mem, u64::from(at(off::BOOT_LOADER_NAME))),
            "hyperplug"
        );

        assert_eq!(at(off::MODS_COUNT), 2);
        let mods_addr = u64::from(at(off::MODS_ADDR));
        let kernel_end = 0x20_0800u64;
        let mut prev_end = kernel_end;
        for (i, m) in mods.iter().enumerate() {
            let e = mods_addr + 16 * i as u64;
            let (start, end, string) = (
                mem_u32(&mem, e) as u64,
                mem_u32(&mem, e + 4) as u64,
                mem_u32(&mem, e + 8),
            );
            assert_eq!(start % 4096, 0, "module {i} not page-aligned");
            assert!(
                start >= prev_end,
                "module {i} at {start:#x} overlaps what is below it ({prev_end:#x})"
            );
            assert_eq!(end - start, m.bytes.len() as u64);
            assert_eq!(testutil::read(&mem, start, m.bytes.len()), m.bytes);
            let want = if m.args.is_empty() {
                m.name.clone()
            } else {
                format!("{} {}", m.name, m.args)
            };
            assert_eq!(cstr_at(&mem, u64::from(string)), want);
            prev_end = end;
        }

        let mmap_addr = u64::from(at(off::MMAP_ADDR));
        let mmap_len = u64::from(at(off::MMAP_LENGTH));
        let mut entries = Vec::new();
        let mut p = mmap_addr;
        while p < mmap_addr + mmap_len {
            let size = mem_u32(&mem, p);
            entries.push((
                mem_u64(&mem, p + 4),
                mem_u64(&mem, p + 12),
                mem_u32(&mem, p + 20),
            ));
            p += u64::from(size) + 4;
        }
        assert_eq!(
            entries,
            vec![
                (0, 0x9fc00, 1),
                (0x9fc00, 0x400, 2),
                (0xf0000, 0x10000, 2),
                (0x10_0000, RAM - 0x10_0000, 1)
            ]
        );
        // Everything the guest is told about sits in low memory, below the EBDA.
        for a in [
            mmap_addr,
            mods_addr,
            u64::from(at(off::CMDLINE)),
            u64::from(at(off::BOOT_LOADER_NAME)),
        ] {
            assert!(
                (layout::MB_INFO_ADDR..layout::MB_INFO_END).contains(&a),
                "{a:#x}"
            );
        }
    }

    #[test]
    fn modules_from_files() {
        let dir = std::env::temp_dir().join(format!("hyperplug-image-test-{}", std::process::id()));
        assert!(std::fs::create_dir_all(&dir).is_ok());
        let kpath = dir.join("kernel.elf");
        let mpath = dir.join("initrd");
        assert!(std::fs::write(&kpath, elf_kernel()).is_ok());
        assert!(std::fs::write(&mpath, b"module!").is_ok());
        let spec = ModuleSpec::parse(&format!("{} a=1", mpath.display()));
        let mem = testutil::memory(RAM);
        let s = load_kernel(&mem, RAM, &kpath, "", std::slice::from_ref(&spec));
        let missing = ModuleSpec {
            path: dir.join("nope"),
            args: String::new(),
        };
        let e = load_kernel(&mem, RAM, &kpath, "", &[missing])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        std::fs::remove_dir_all(&dir).ok();
        let s = ok(s);
        let info = layout::MB_INFO_ADDR;
        assert_eq!(
            cstr_at(&mem, u64::from(mem_u32(&mem, info + off::CMDLINE as u64))),
            format!("{} ", kpath.display()),
            "QEMU passes \"<image> <cmdline>\", keeping the space when the command line is empty"
        );
        let mods_addr = u64::from(mem_u32(&mem, info + off::MODS_ADDR as u64));
        let start = u64::from(mem_u32(&mem, mods_addr));
        assert_eq!(testutil::read(&mem, start, 7), b"module!".to_vec());
        assert_eq!(
            cstr_at(&mem, u64::from(mem_u32(&mem, mods_addr + 8))),
            format!("{} a=1", mpath.display())
        );
        assert!(s.description.contains("1 module(s)"));
        assert!(e.contains("nope: cannot read:"), "{e}");
    }

    #[test]
    fn header_search_rules() {
        // Not 4-byte aligned: not found.
        let mut f = vec![0u8; 2];
        f.extend(header(0, None));
        assert_eq!(find_header("f", &f).ok(), Some(None));
        // Beyond the first 8 KiB: not found.
        let mut f = vec![0u8; SEARCH_LEN];
        f.extend(header(0, None));
        assert_eq!(find_header("f", &f).ok(), Some(None));
        // Optional flag bits (17-31) are ignored; bit 2 is accepted.
        let f = header(0xfffe_0007, None);
        let h = find_header("f", &f).ok().flatten();
        assert_eq!(h.map(|h| (h.offset, h.flags)), Some((0, 0xfffe_0007)));
    }

    #[test]
    fn malformed_multiboot_table() {
        let mut bad_sum = header(0, None);
        bad_sum[8] = bad_sum[8].wrapping_add(1);
        let mut bad_sum_elf = elf_kernel();
        // Two program headers: the first segment's data (and the header) starts at 52 + 2 * 32 = 0x74.
        bad_sum_elf[0x74 + 8] = bad_sum_elf[0x74 + 8].wrapping_add(1);
        let elf64 = {
            let mut code = header(0, None);
            code.extend_from_slice(&[0xf4; 4]);
            build_elf(true, 0x10_0000, &[Seg::load(0x10_0000, &code, 0x100)]).0
        };
        let mut cut = vec![0u8; 0x40];
        cut.extend(header(FLAG_ADDRESSES, None));
        let aout = |fields: [u32; 5]| {
            let mut f = vec![0u8; 0x40];
            f.extend(header(FLAG_ADDRESSES, Some(fields)));
            f.extend(vec![0xf4u8; 0x40]);
            f
        };
        let mut not_elf = header(0x3, None);
        not_elf.extend(vec![0u8; 32]);
        let big_mod = [LoadedModule {
            name: "huge".into(),
            args: String::new(),
            bytes: vec![0; 0x80_0000],
        }];
        let cases: Vec<(&str, Vec<u8>, &[LoadedModule], &str)> = vec![
            (
                "bad checksum",
                bad_sum,
                &[],
                "mb: bad multiboot header: magic at offset 0x0 has a bad checksum (magic + flags + checksum = 0x1, must be 0)",
            ),
            (
                "bad checksum in an ELF",
                bad_sum_elf,
                &[],
                "mb: bad multiboot header: magic at offset 0x74 has a bad checksum (magic + flags + checksum = 0x1, must be 0)",
            ),
            (
                "unknown required flag",
                header(0x3 | (1 << 3) | (1 << 15), None),
                &[],
                "mb: bad multiboot header: flags 0x800b require feature bit(s) 3, 15 that this loader does not provide",
            ),
            (
                "address fields cut off",
                cut,
                &[],
                "mb: bad multiboot header: flag 16 is set but the address fields of the header at offset 0x40 run past the end of the file",
            ),
            (
                "header_addr below load_addr",
                aout([0x10_0000, 0x10_0040, 0, 0, 0x10_0000]),
                &[],
                "mb: bad multiboot header: header_addr 0x100000 is below load_addr 0x100040",
            ),
            (
                "load_addr before file start",
                aout([0x10_0080, 0x10_0000, 0, 0, 0x10_0000]),
                &[],
                "mb: bad multiboot header: load_addr 0x100000 is 0x80 bytes before header_addr, but the header is at file offset 0x40",
            ),
            (
                "load_end past file",
                aout([0x10_0040, 0x10_0000, 0x10_1000, 0, 0x10_0000]),
                &[],
                "mb: bad multiboot header: load_end_addr 0x101000 asks for 0x1000 bytes from file offset 0x0, past the end of the 160-byte file",
            ),
            (
                "load_end below load_addr",
                aout([0x10_0040, 0x10_0000, 0xf_0000, 0, 0x10_0000]),
                &[],
                "mb: bad multiboot header: load_end_addr 0xf0000 is below load_addr 0x100000",
            ),
            (
                "bss_end below load_end",
                aout([0x10_0040, 0x10_0000, 0x10_0080, 0x10_0010, 0x10_0000]),
                &[],
                "mb: bad multiboot header: bss_end_addr 0x100010 is below the end of the loaded data 0x100080",
            ),
            (
                "kernel beyond RAM",
                aout([0xfff_0040, 0xfff_0000, 0, 0x1010_0000, 0xfff_0000]),
                &[],
                "mb: multiboot image at 0xfff0000+0x110000 does not fit in 256 MiB of guest memory",
            ),
            (
                "kernel over the info area",
                aout([0xa040, 0xa000, 0, 0, 0xa000]),
                &[],
                "mb: multiboot image at 0xa000+0xa0 overlaps the host's multiboot information at 0x9000..0x10000",
            ),
            (
                "entry outside RAM",
                aout([0x10_0040, 0x10_0000, 0, 0, 0x2000_0000]),
                &[],
                "mb: entry point 0x20000000 is outside the 256 MiB of guest memory",
            ),
            (
                "not ELF without flag 16",
                not_elf,
                &[],
                "mb: bad multiboot header: flag 16 is clear, so the kernel must be ELF, but it has no ELF magic",
            ),
            (
                "ELF64 without flag 16",
                elf64,
                &[],
                "mb: bad multiboot header: flag 16 is clear and the kernel is ELF64; a multiboot kernel must be ELF32 or give address fields",
            ),
            (
                "module beyond RAM",
                aout([0xfa0_0040, 0xfa0_0000, 0, 0, 0xfa0_0000]),
                &big_mod,
                "mb: module 0 (huge, 0x800000 bytes) at 0xfa01000+0x800000 does not fit in 256 MiB of guest memory",
            ),
        ];
        for (name, bytes, mods, want) in cases {
            let ram = 256 << 20;
            let mem = testutil::memory(ram);
            let got = load_kernel_with_modules(&mem, ram, "mb", &bytes, "", mods)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(want), "case {name}");
        }
    }
}
