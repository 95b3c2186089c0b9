//! ELF32 / ELF64 little-endian x86 executables: header validation and
//! PT_LOAD loading at each segment's physical address (p_paddr), as direct
//! kernel boot does. Field offsets follow the System V gABI (ELF header,
//! program header) and its x86 / x86-64 processor supplements.
//!
//! The entry point is e_entry, translated to a physical address when it lies
//! inside a PT_LOAD whose p_vaddr differs from its p_paddr (a higher-half
//! kernel), because the guest starts with paging off or identity-mapped.
//! ELF64 starts in long mode, ELF32 in protected mode.

use super::layout::{self, Chunk, Target};
use super::{x86_setup, BootSetup, ImageError, Mode};

/// e_ident[EI_CLASS] for 32-bit objects.
const ELFCLASS32: u8 = 1;
/// e_ident[EI_CLASS] for 64-bit objects.
const ELFCLASS64: u8 = 2;
/// e_ident[EI_DATA] for little-endian objects.
const ELFDATA2LSB: u8 = 1;
/// e_ident[EI_VERSION] / e_version: the current version.
const EV_CURRENT: u32 = 1;
/// e_type of an executable.
const ET_EXEC: u16 = 2;
/// e_machine for Intel 80386.
const EM_386: u16 = 3;
/// e_machine for AMD x86-64.
const EM_X86_64: u16 = 62;
/// p_type of a loadable segment.
const PT_LOAD: u32 = 1;
/// e_phnum value meaning "the real count is in section header 0".
const PN_XNUM: u16 = 0xffff;

/// A validated ELF image.
#[derive(Debug)]
pub struct ElfImage<'a> {
    /// ELF64 (true) or ELF32.
    pub is64: bool,
    /// Physical entry point.
    pub entry: u64,
    /// e_entry as written in the file.
    pub e_entry: u64,
    /// PT_LOAD segments with a non-zero memory size.
    pub chunks: Vec<Chunk<'a>>,
}

/// True if the file starts with the ELF magic "\x7fELF".
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// One program header's fields, widened to 64 bits.
struct Phdr {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

fn read_phdr(b: &[u8], is64: bool) -> Phdr {
    if is64 {
        Phdr {
            p_type: u32_at(b, 0),
            offset: u64_at(b, 8),
            vaddr: u64_at(b, 16),
            paddr: u64_at(b, 24),
            filesz: u64_at(b, 32),
            memsz: u64_at(b, 40),
        }
    } else {
        Phdr {
            p_type: u32_at(b, 0),
            offset: u64::from(u32_at(b, 4)),
            vaddr: u64::from(u32_at(b, 8)),
            paddr: u64::from(u32_at(b, 12)),
            filesz: u64::from(u32_at(b, 16)),
            memsz: u64::from(u32_at(b, 20)),
        }
    }
}

/// Validates the ELF headers against the file and returns its loadable segments.
pub fn parse<'a>(file: &str, bytes: &'a [u8]) -> Result<ElfImage<'a>, ImageError> {
    let bad = |reason: String| ImageError::BadElf {
        file: file.to_string(),
        reason,
    };
    if !has_magic(bytes) {
        return Err(bad("no ELF magic (7f 45 4c 46)".into()));
    }
    let class = bytes.get(4).copied().unwrap_or(0);
    let is64 = match class {
        ELFCLASS32 => false,
        ELFCLASS64 => true,
        c => return Err(bad(format!("EI_CLASS is {c}, not 1 (ELF32) or 2 (ELF64)"))),
    };
    let (ehsize, phentsize_want) = if is64 { (64usize, 56usize) } else { (52, 32) };
    if bytes.len() < ehsize {
        return Err(bad(format!(
            "the file is {} bytes, shorter than the {ehsize}-byte ELF{} header",
            bytes.len(),
            if is64 { 64 } else { 32 }
        )));
    }
    if bytes[5] != ELFDATA2LSB {
        return Err(bad(format!(
            "EI_DATA is {}, not 1 (little-endian)",
            bytes[5]
        )));
    }
    if u32::from(bytes[6]) != EV_CURRENT {
        return Err(bad(format!("EI_VERSION is {}, not 1", bytes[6])));
    }
    let e_type = u16_at(bytes, 16);
    if e_type != ET_EXEC {
        return Err(bad(format!(
            "e_type is {e_type}, not 2 (ET_EXEC, an executable)"
        )));
    }
    let machine = u16_at(bytes, 18);
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(bad(format!(
            "e_machine is {machine}, not 3 (EM_386) or 62 (EM_X86_64)"
        )));
    }
    let version = u32_at(bytes, 20);
    if version != EV_CURRENT {
        return Err(bad(format!("e_version is {version}, not 1")));
    }
    let (e_entry, phoff, phentsize, phnum) = if is64 {
        (
            u64_at(bytes, 24),
            u64_at(bytes, 32),
            u16_at(bytes, 54),
            u16_at(bytes, 56),
        )
    } else {
        (
            u64::from(u32_at(bytes, 24)),
            u64::from(u32_at(bytes, 28)),
            u16_at(bytes, 42),
            u16_at(bytes, 44),
        )
    };
    if usize::from(phentsize) != phentsize_want {
        return Err(bad(format!(
            "e_phentsize is {phentsize}, not {phentsize_want}"
        )));
    }
    if phnum == 0 {
        return Err(bad("no program headers (e_phnum is 0)".into()));
    }
    if phnum == PN_XNUM {
        return Err(bad(
            "e_phnum is PN_XNUM (extended numbering), which is not supported".into(),
        ));
    }
    let table_len = u64::from(phentsize) * u64::from(phnum);
    let file_len = bytes.len() as u64;
    if phoff
        .checked_add(table_len)
        .is_none_or(|end| end > file_len)
    {
        return Err(bad(format!(
            "program header table at offset {phoff:#x}+{table_len:#x} lies outside the {file_len}-byte file"
        )));
    }
    let mut chunks = Vec::new();
    let mut entry = e_entry;
    for i in 0..usize::from(phnum) {
        // In bounds: checked against the file above.
        let at = phoff as usize + i * usize::from(phentsize);
        let ph = read_phdr(&bytes[at..at + usize::from(phentsize)], is64);
        if ph.p_type != PT_LOAD {
            continue;
        }
        let what = format!("ELF program header {i}");
        let Some(data_end) = ph.offset.checked_add(ph.filesz).filter(|&e| e <= file_len) else {
            return Err(bad(format!(
                "program header {i}: file data at offset {:#x}+{:#x} lies outside the {file_len}-byte file",
                ph.offset, ph.filesz
            )));
        };
        if ph.filesz > ph.memsz {
            return Err(bad(format!(
                "program header {i}: p_filesz {:#x} exceeds p_memsz {:#x}",
                ph.filesz, ph.memsz
            )));
        }
        if !is64 && ph.paddr + ph.memsz > 1 << 32 {
            return Err(ImageError::Overflow {
                file: file.into(),
                what,
                addr: ph.paddr,
                len: ph.memsz,
                bits: 32,
            });
        }
        if ph.memsz == 0 {
            continue;
        }
        if ph.vaddr != ph.paddr && e_entry >= ph.vaddr && e_entry - ph.vaddr < ph.memsz {
            entry = ph.paddr.wrapping_add(e_entry - ph.vaddr);
        }
        let data = &bytes[ph.offset as usize..data_end as usize];
        chunks.push(Chunk {
            what,
            addr: ph.paddr,
            data,
            memsz: ph.memsz,
        });
    }
    if chunks.is_empty() {
        return Err(bad(
            "no loadable (PT_LOAD) program header with a non-zero size".into(),
        ));
    }
    Ok(ElfImage {
        is64,
        entry,
        e_entry,
        chunks,
    })
}

/// Loads an ELF image and prepares the protected-mode (ELF32) or long-mode (ELF64) state.
pub fn load(t: &Target<'_>, bytes: &[u8]) -> Result<BootSetup, ImageError> {
    let img = parse(t.file, bytes)?;
    let mode = if img.is64 {
        Mode::Long
    } else {
        Mode::Protected
    };
    let reserved = x86_setup::areas(mode);
    for c in &img.chunks {
        t.check_chunk(c, reserved)?;
    }
    let why = if img.is64 {
        "the identity-mapped first 4 GiB"
    } else {
        "32-bit protected mode"
    };
    t.check_entry(img.entry, 1 << 32, why)?;
    for c in &img.chunks {
        t.write_chunk(c)?;
    }
    let (regs, sregs) = x86_setup::setup(t, mode, img.entry)?;
    let translated = if img.entry != img.e_entry {
        format!(" (e_entry {:#x})", img.e_entry)
    } else {
        String::new()
    };
    let description = format!(
        "{}: ELF{}, {} segment(s) at {}, entry {:#x}{translated}, {mode} mode",
        t.file,
        if img.is64 { 64 } else { 32 },
        img.chunks.len(),
        layout::span(&img.chunks),
        img.entry
    );
    Ok(BootSetup {
        regs,
        sregs,
        description,
        entry: img.entry,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::{self, build_elf, Seg};
    use crate::image::{load_kernel_bytes, Mode};
    use hyperplug_plugin_api::state::cr;

    const RAM: u64 = 16 << 20;

    fn load_mem(bytes: &[u8]) -> (crate::memory::GuestMemory, Result<BootSetup, ImageError>) {
        let mem = testutil::memory(RAM);
        let r = load_kernel_bytes(&mem, RAM, "k.elf", bytes, "", &[]);
        (mem, r)
    }

    #[test]
    fn elf32_loads_at_paddr_with_bss_zeroed() {
        let code = [0xf4u8, 0xeb, 0xfd, 0x90];
        // vaddr differs from paddr: the loader must use paddr and translate the entry.
        let segs = [
            Seg {
                p_type: 1,
                paddr: 0x10_0000,
                vaddr: 0xc010_0000,
                data: code.to_vec(),
                memsz: 0x2000,
            },
            Seg {
                p_type: 4,
                paddr: 0,
                vaddr: 0,
                data: vec![9; 8],
                memsz: 8,
            }, // PT_NOTE: ignored
            Seg::load(0x20_0000, &[0x11; 0x10], 0x10),
        ];
        let (bytes, _) = build_elf(false, 0xc010_0001, &segs);
        let mem = testutil::memory(RAM);
        // Dirty the bss first: it must come back zero.
        let t = Target {
            file: "x",
            mem: &mem,
            ram_size: RAM,
        };
        assert!(t.write("dirt", 0x10_0000, &[0xaa; 0x3000]).is_ok());
        let setup = load_kernel_bytes(&mem, RAM, "k.elf", &bytes, "", &[]);
        let setup = setup.map_err(|e| e.to_string());
        let Ok(s) = setup else { panic!("{setup:?}") };
        assert_eq!(s.mode, Mode::Protected);
        assert_eq!(s.entry, 0x10_0001);
        assert_eq!(s.regs.rip, 0x10_0001);
        assert_eq!(s.sregs.cr0 & (cr::CR0_PE | cr::CR0_PG), cr::CR0_PE);
        let got = testutil::read(&mem, 0x10_0000, 0x3000);
        assert_eq!(&got[..4], &code);
        assert!(got[4..0x2000].iter().all(|&b| b == 0), "bss not zeroed");
        assert!(
            got[0x2000..].iter().all(|&b| b == 0xaa),
            "wrote past p_memsz"
        );
        assert_eq!(testutil::read(&mem, 0x20_0000, 0x10), vec![0x11; 0x10]);
        // The PT_NOTE's bytes went nowhere near address 0.
        assert_eq!(testutil::read(&mem, 0, 8), vec![0; 8]);
        // GDT written where GDTR points.
        assert_eq!(
            testutil::u64_at(&mem, s.sregs.gdt.base + 8),
            0x00cf_9b00_0000_ffff
        );
    }

    #[test]
    fn elf64_loads_in_long_mode() {
        let (bytes, _) = build_elf(
            true,
            0x40_0010,
            &[Seg::load(0x40_0000, &[0xcc; 0x20], 0x1000)],
        );
        let (mem, r) = load_mem(&bytes);
        let r = r.map_err(|e| e.to_string());
        let Ok(s) = r else { panic!("{r:?}") };
        assert_eq!(s.mode, Mode::Long);
        assert_eq!(s.regs.rip, 0x40_0010);
        assert_eq!(s.sregs.efer & cr::EFER_LMA, cr::EFER_LMA);
        assert_eq!(s.sregs.cs.l, 1);
        assert_eq!(testutil::read(&mem, 0x40_0000, 0x20), vec![0xcc; 0x20]);
        assert!(testutil::read(&mem, 0x40_0020, 0x1000 - 0x20)
            .iter()
            .all(|&b| b == 0));
        assert_eq!(
            testutil::walk(&mem, s.sregs.cr3, 0x40_0010),
            Some(0x40_0010)
        );
        assert!(s.description.contains("ELF64"), "{}", s.description);
    }

    /// Patches bytes of a valid ELF32 image.
    fn patched(f: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let (mut b, _) = build_elf(
            false,
            0x10_0000,
            &[Seg::load(0x10_0000, &[1, 2, 3, 4], 0x100)],
        );
        f(&mut b);
        b
    }

    /// Offset of the first ELF32 program header's field.
    const PH: usize = 52;

    #[test]
    fn malformed_elf_table() {
        let small = 16u64 << 20;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("truncated header", patched(|b| b.truncate(40)), "k.elf: bad ELF image: the file is 40 bytes, shorter than the 52-byte ELF32 header"),
            ("bad class", patched(|b| b[4] = 3), "k.elf: bad ELF image: EI_CLASS is 3, not 1 (ELF32) or 2 (ELF64)"),
            ("big endian", patched(|b| b[5] = 2), "k.elf: bad ELF image: EI_DATA is 2, not 1 (little-endian)"),
            ("bad type", patched(|b| b[16] = 3), "k.elf: bad ELF image: e_type is 3, not 2 (ET_EXEC, an executable)"),
            ("arm", patched(|b| b[18] = 40), "k.elf: bad ELF image: e_machine is 40, not 3 (EM_386) or 62 (EM_X86_64)"),
            ("phentsize", patched(|b| b[42] = 40), "k.elf: bad ELF image: e_phentsize is 40, not 32"),
            ("no phdrs", patched(|b| b[44] = 0), "k.elf: bad ELF image: no program headers (e_phnum is 0)"),
            (
                "phdr table out of bounds",
                patched(|b| b[44] = 200),
                "k.elf: bad ELF image: program header table at offset 0x34+0x1900 lies outside the 88-byte file",
            ),
            (
                "phoff overflow",
                patched(|b| b[28..32].copy_from_slice(&0xffff_fff0u32.to_le_bytes())),
                "k.elf: bad ELF image: program header table at offset 0xfffffff0+0x20 lies outside the 88-byte file",
            ),
            (
                "segment data out of bounds",
                patched(|b| b[PH + 16..PH + 20].copy_from_slice(&0x80u32.to_le_bytes())),
                "k.elf: bad ELF image: program header 0: file data at offset 0x54+0x80 lies outside the 88-byte file",
            ),
            (
                "filesz > memsz",
                patched(|b| b[PH + 20..PH + 24].copy_from_slice(&2u32.to_le_bytes())),
                "k.elf: bad ELF image: program header 0: p_filesz 0x4 exceeds p_memsz 0x2",
            ),
            (
                "segment beyond RAM",
                patched(|b| b[PH + 12..PH + 16].copy_from_slice(&0x00ff_ff80u32.to_le_bytes())),
                "k.elf: ELF program header 0 at 0xffff80+0x100 does not fit in 16 MiB of guest memory",
            ),
            (
                "32-bit wrap",
                patched(|b| b[PH + 12..PH + 16].copy_from_slice(&0xffff_ff80u32.to_le_bytes())),
                "k.elf: ELF program header 0 at 0xffffff80+0x100 wraps around the 32-bit address space",
            ),
            (
                "overlaps GDT",
                patched(|b| b[PH + 12..PH + 16].copy_from_slice(&0x1000u32.to_le_bytes())),
                "k.elf: ELF program header 0 at 0x1000+0x100 overlaps the host's GDT/TSS at 0x1000..0x2000",
            ),
            (
                "only non-load",
                patched(|b| b[PH] = 4),
                "k.elf: bad ELF image: no loadable (PT_LOAD) program header with a non-zero size",
            ),
            (
                "entry outside RAM",
                patched(|b| b[24..28].copy_from_slice(&0x2000_0000u32.to_le_bytes())),
                "k.elf: entry point 0x20000000 is outside the 16 MiB of guest memory",
            ),
        ];
        for (name, bytes, want) in cases {
            let mem = testutil::memory(small);
            let got = load_kernel_bytes(&mem, small, "k.elf", &bytes, "", &[])
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(want), "case {name}");
        }
    }

    #[test]
    fn elf64_overflow_and_entry_above_4g() {
        // p_paddr + p_memsz wraps the 64-bit space.
        let (b, _) = build_elf(
            true,
            0x10_0000,
            &[Seg::load(0xffff_ffff_ffff_f000, &[1], 0x2000)],
        );
        let (_, r) = load_mem(&b);
        assert_eq!(
            r.err().map(|e| e.to_string()).as_deref(),
            Some("k.elf: ELF program header 0 at 0xfffffffffffff000+0x2000 wraps around the 64-bit address space")
        );
        let (b, _) = build_elf(true, 0x1_0000_0000, &[Seg::load(0x10_0000, &[1], 0x10)]);
        let (_, r) = load_mem(&b);
        assert_eq!(
            r.err().map(|e| e.to_string()).as_deref(),
            Some("k.elf: entry point 0x100000000 is not below 0x100000000 (the identity-mapped first 4 GiB)")
        );
    }

    #[test]
    fn modules_need_multiboot() {
        let (b, _) = build_elf(false, 0x10_0000, &[Seg::load(0x10_0000, &[1], 0x10)]);
        let mem = testutil::memory(RAM);
        let m = crate::image::LoadedModule {
            name: "m".into(),
            args: String::new(),
            bytes: vec![1],
        };
        let r = crate::image::load_kernel_with_modules(&mem, RAM, "k.elf", &b, "", &[m]);
        assert!(r
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("modules need a multiboot kernel"));
    }
}
