//! Test helpers: guest memory, a 4-level page walk and a tiny ELF builder.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::memory::GuestMemory;

/// Guest memory of `size` bytes at guest-physical 0.
pub fn memory(size: u64) -> GuestMemory {
    match GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]) {
        Ok(m) => m,
        Err(e) => panic!("cannot create {size} bytes of test guest memory: {e}"),
    }
}

/// Guest memory laid out as the host lays out `ram` bytes (a 3-4 GiB hole).
pub fn memory_pc(ram: u64) -> GuestMemory {
    let ranges: Vec<(GuestAddress, usize)> = super::layout::ram_ranges(ram)
        .iter()
        .map(|&(s, e)| (GuestAddress(s), (e - s) as usize))
        .collect();
    match GuestMemoryMmap::from_ranges(&ranges) {
        Ok(m) => m,
        Err(e) => panic!("cannot create {ram} bytes of test guest memory: {e}"),
    }
}

/// Reads `len` bytes (zeros where unreadable, which the asserts then catch).
pub fn read(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if let Err(e) = mem.read_slice(&mut v, GuestAddress(addr)) {
        panic!("cannot read {len:#x} bytes at {addr:#x}: {e}");
    }
    v
}

/// Reads a little-endian u32.
pub fn u32_at(mem: &GuestMemory, addr: u64) -> u32 {
    mem.read_obj::<u32>(GuestAddress(addr))
        .unwrap_or_else(|e| panic!("read u32 at {addr:#x}: {e}"))
}

/// Reads a little-endian u64.
pub fn u64_at(mem: &GuestMemory, addr: u64) -> u64 {
    mem.read_obj::<u64>(GuestAddress(addr))
        .unwrap_or_else(|e| panic!("read u64 at {addr:#x}: {e}"))
}

/// Reads a NUL-terminated string.
pub fn cstr_at(mem: &GuestMemory, addr: u64) -> String {
    let mut out = Vec::new();
    let mut a = addr;
    loop {
        let b = read(mem, a, 1)[0];
        if b == 0 {
            break;
        }
        out.push(b);
        a += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Walks 4-level paging from `cr3` (SDM vol. 3, 4.5): returns the physical
/// address for `va`, or None if a level is not present.
pub fn walk(mem: &GuestMemory, cr3: u64, va: u64) -> Option<u64> {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let pml4e = u64_at(mem, (cr3 & ADDR) + ((va >> 39) & 0x1ff) * 8);
    if pml4e & 1 == 0 {
        return None;
    }
    let pdpte = u64_at(mem, (pml4e & ADDR) + ((va >> 30) & 0x1ff) * 8);
    if pdpte & 1 == 0 {
        return None;
    }
    assert_eq!(pdpte & 0x80, 0, "1 GiB pages are not expected");
    let pde = u64_at(mem, (pdpte & ADDR) + ((va >> 21) & 0x1ff) * 8);
    if pde & 1 == 0 {
        return None;
    }
    if pde & 0x80 != 0 {
        return Some((pde & 0x000f_ffff_ffe0_0000) | (va & 0x1f_ffff));
    }
    let pte = u64_at(mem, (pde & ADDR) + ((va >> 12) & 0x1ff) * 8);
    (pte & 1 != 0).then_some((pte & ADDR) | (va & 0xfff))
}

/// One PT_LOAD (or other) program header for [`build_elf`].
#[derive(Debug, Clone)]
pub struct Seg {
    pub p_type: u32,
    pub paddr: u64,
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
}

impl Seg {
    /// A PT_LOAD at `paddr` (= vaddr).
    pub fn load(paddr: u64, data: &[u8], memsz: u64) -> Seg {
        Seg {
            p_type: 1,
            paddr,
            vaddr: paddr,
            data: data.to_vec(),
            memsz,
        }
    }
}

/// Builds a little-endian x86 ELF executable: header, program headers, then
/// each segment's data in order. Returns the bytes and each segment's file offset.
pub fn build_elf(class64: bool, entry: u64, segs: &[Seg]) -> (Vec<u8>, Vec<u64>) {
    let (ehsize, phentsize) = if class64 {
        (64usize, 56usize)
    } else {
        (52, 32)
    };
    let mut data_off = (ehsize + phentsize * segs.len()) as u64;
    let mut offsets = Vec::new();
    for s in segs {
        offsets.push(data_off);
        data_off += s.data.len() as u64;
    }
    let mut f = Vec::new();
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', if class64 { 2 } else { 1 }, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&(if class64 { 62u16 } else { 3 }).to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    if class64 {
        f.extend_from_slice(&entry.to_le_bytes());
        f.extend_from_slice(&(ehsize as u64).to_le_bytes()); // e_phoff
        f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    } else {
        f.extend_from_slice(&(entry as u32).to_le_bytes());
        f.extend_from_slice(&(ehsize as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
    }
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(ehsize as u16).to_le_bytes());
    f.extend_from_slice(&(phentsize as u16).to_le_bytes());
    f.extend_from_slice(&(segs.len() as u16).to_le_bytes());
    f.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    assert_eq!(f.len(), ehsize);
    for (s, off) in segs.iter().zip(&offsets) {
        if class64 {
            f.extend_from_slice(&s.p_type.to_le_bytes());
            f.extend_from_slice(&7u32.to_le_bytes());
            for v in [*off, s.vaddr, s.paddr, s.data.len() as u64, s.memsz, 0x1000] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            f.extend_from_slice(&s.p_type.to_le_bytes());
            for v in [*off, s.vaddr, s.paddr, s.data.len() as u64, s.memsz] {
                f.extend_from_slice(&(v as u32).to_le_bytes());
            }
            f.extend_from_slice(&7u32.to_le_bytes());
            f.extend_from_slice(&0x1000u32.to_le_bytes());
        }
    }
    for s in segs {
        f.extend_from_slice(&s.data);
    }
    (f, offsets)
}
