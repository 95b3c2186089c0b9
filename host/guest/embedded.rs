//! The embedded default guest: real mode -> protected mode -> long mode.
//!
//! Built by `host/build.rs` into `$OUT_DIR/embedded_guest.bin` and also
//! compiled by the `hyperplug-tests` library, which checks the image.
//! Expects [`crate::asm`] to be the sibling module `asm.rs`.
//!
//! Serial output (one line):
//! `Hyperplug embedded guest: real mode -> protected mode -> long mode on backend <name>\n`
//! where each part is printed by code running in that mode and `<name>` is
//! the NUL-terminated string the host wrote at [`BACKEND_NAME_ADDR`]. Then
//! the guest powers off through ACPI S5 and, if still running, halts forever.
//!
//! Image layout (guest-physical = [`LOAD_ADDR`] + offset):
//!
//! | offset  | address | contents                                   |
//! |---------|---------|--------------------------------------------|
//! | 0x000   | 0x8000  | 16-bit real-mode code (entry)              |
//! | 0x080   | 0x8080  | 32-bit protected-mode code                 |
//! | 0x180   | 0x8180  | 64-bit long-mode code                      |
//! | 0x200   | 0x8200  | GDT: null, code32 (0x08), data (0x10), code64 (0x18) |
//! | 0x220   | 0x8220  | GDTR pseudo-descriptor (limit, base)       |
//! | 0x230   | 0x8230  | NUL-terminated message strings             |
//!
//! Outside the image: stack top 0x7c00 (grows down), backend name at
//! 0x7e00..0x7e3f, page tables PML4 0x10000, PDPT 0x11000, PD 0x12000
//! (zeroed by the guest, identity-mapping 0..1 GiB with 2 MiB pages).

use crate::asm::{
    emit_call_print, emit_halt_forever, emit_power_off, emit_print_str, AsmError, AsmResult,
};
use iced_x86::code_asm::*;

/// Guest-physical address the image is loaded at (and the real-mode entry).
pub const LOAD_ADDR: u64 = 0x8000;
/// Guest-physical address of the backend name (NUL-terminated, <= 63 bytes).
pub const BACKEND_NAME_ADDR: u64 = 0x7e00;
/// Size of the backend-name slot including its NUL; the guest forces a NUL
/// at the last byte so a missing terminator cannot run past it.
pub const BACKEND_NAME_SLOT: u64 = 64;

/// Initial stack pointer in every mode (the stack grows down from here,
/// below the backend-name slot).
pub const STACK_TOP: u32 = 0x7c00;

/// Offset of the 16-bit real-mode code (the entry point).
pub const REAL16_OFF: usize = 0x000;
/// Offset of the 32-bit protected-mode code.
pub const PROT32_OFF: usize = 0x080;
/// Offset of the 64-bit long-mode code.
pub const LONG64_OFF: usize = 0x180;
/// Offset of the GDT (8-byte aligned; SDM vol. 3, 3.5.1).
pub const GDT_OFF: usize = 0x200;
/// Offset of the 6-byte GDTR pseudo-descriptor used by `lgdt`.
pub const GDTR_OFF: usize = 0x220;
/// Offset of the message strings.
pub const STR_OFF: usize = 0x230;

/// GDT selector of the flat 32-bit code segment.
pub const SEL_CODE32: u16 = 0x08;
/// GDT selector of the flat data segment.
pub const SEL_DATA: u16 = 0x10;
/// GDT selector of the 64-bit code segment.
pub const SEL_CODE64: u16 = 0x18;

/// Physical address of the PML4 table.
pub const PML4_ADDR: u32 = 0x10000;
/// Physical address of the page-directory-pointer table.
pub const PDPT_ADDR: u32 = 0x11000;
/// Physical address of the page directory (512 x 2 MiB = 1 GiB).
pub const PD_ADDR: u32 = 0x12000;

/// The messages, in print order; each part is printed from its mode.
pub const MSG_REAL: &str = "Hyperplug embedded guest: real mode";
/// Printed from 32-bit protected mode.
pub const MSG_PROT: &str = " -> protected mode";
/// Printed from 64-bit long mode.
pub const MSG_LONG: &str = " -> long mode";
/// Printed from long mode before the backend name.
pub const MSG_BACKEND: &str = " on backend ";
/// Printed after the backend name.
pub const MSG_END: &str = "\n";

/// GDT entries (SDM vol. 3, 3.4.5 "Segment Descriptors", Figure 3-8; 5.2.1
/// for the L bit). Access byte 0x9b = P, DPL 0, S, type 1011 (code,
/// execute/read, accessed); 0x93 = P, DPL 0, S, type 0011 (data, read/write,
/// accessed). Accessed is preset so the CPU never writes the GDT. Flags
/// nibble 0xc = G (4 KiB granularity) + D/B (32-bit); 0xa = G + L (64-bit
/// code, D must be 0).
pub const GDT: [u64; 4] = [
    0,
    seg_desc(0, 0xf_ffff, 0x9b, 0xc),
    seg_desc(0, 0xf_ffff, 0x93, 0xc),
    seg_desc(0, 0xf_ffff, 0x9b, 0xa),
];

/// Builds a legacy segment descriptor from base, 20-bit limit, access byte
/// and the 4-bit flags nibble (G, D/B, L, AVL) — SDM vol. 3, Figure 3-8.
pub const fn seg_desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((flags as u64) & 0xf) << 52)
        | (((base >> 24) & 0xff) << 56)
}

/// One code section of the image and the bitness it must be decoded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Human-readable name ("real16", "prot32", "long64").
    pub name: &'static str,
    /// Byte offset in the image.
    pub offset: usize,
    /// Length of the assembled code in bytes (padding excluded).
    pub len: usize,
    /// 16, 32 or 64.
    pub bitness: u32,
}

/// The assembled image plus where its code sections are.
#[derive(Debug, Clone)]
pub struct Image {
    /// The flat binary, loaded at [`LOAD_ADDR`].
    pub bytes: Vec<u8>,
    /// The three code sections in execution order.
    pub sections: Vec<Section>,
    /// Address of every message string, in [`messages`] order.
    pub string_addrs: Vec<u64>,
}

/// The message strings in image order.
pub fn messages() -> [&'static str; 5] {
    [MSG_REAL, MSG_PROT, MSG_LONG, MSG_BACKEND, MSG_END]
}

fn addr(off: usize) -> u64 {
    LOAD_ADDR + off as u64
}

/// 16-bit entry: flat real-mode segments, a stack, print, then enter
/// protected mode as SDM vol. 3, 9.9.1 "Switching to Protected Mode"
/// prescribes: interrupts off (step 1), LGDT (step 2), MOV CR0 with PE=1
/// (step 3), and immediately a far JMP that reloads CS and flushes the
/// prefetch queue (step 4). Paging stays off here (CR0.PG=0).
fn real16(print_msg: u64) -> AsmResult<Vec<u8>> {
    let mut a = CodeAssembler::new(16)?;
    let mut print = a.create_label();
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, STACK_TOP)?;
    emit_call_print(&mut a, print, print_msg)?;
    a.lgdt(ptr(addr(GDTR_OFF) as u32))?;
    a.mov(eax, cr0)?;
    a.or(eax, 1)?; // CR0.PE, bit 0 (SDM vol. 3, 2.5)
    a.mov(cr0, eax)?;
    a.jmp_far(SEL_CODE32, addr(PROT32_OFF) as u32)?;
    emit_print_str(&mut a, &mut print)?;
    Ok(a.assemble(addr(REAL16_OFF))?)
}

/// 32-bit protected mode: load flat data segments, print, build the
/// identity page tables and enter IA-32e mode as SDM vol. 3, 9.8.5
/// "Initializing IA-32e Mode" prescribes: (paging is off) set CR4.PAE,
/// load CR3 with the PML4 base, set IA32_EFER.LME (MSR 0xC0000080 bit 8),
/// then set CR0.PG, which activates IA-32e mode (EFER.LMA=1); the far JMP
/// to a code segment with L=1 then leaves compatibility mode for 64-bit
/// mode.
///
/// Paging-structure entries follow SDM vol. 3, 4.5 "4-Level Paging",
/// Tables 4-15 (PML4E), 4-17 (PDPTE referencing a PD) and 4-18 (PDE mapping
/// a 2 MiB page): bit 0 P, bit 1 R/W, bit 7 PS (2 MiB page in a PDE),
/// physical address in bits 51:12 (51:21 for a 2 MiB page).
fn prot32(print_msg: u64) -> AsmResult<Vec<u8>> {
    const P_RW: u32 = 0x3;
    const PDE_2M: u32 = 0x83; // P | R/W | PS
    const CR4_PAE: u32 = 1 << 5; // SDM vol. 3, 2.5
    const CR0_PG: u32 = 1 << 31; // SDM vol. 3, 2.5
    const IA32_EFER: u32 = 0xc000_0080; // SDM vol. 4, Table 2-2
    const EFER_LME: u32 = 1 << 8;

    let mut a = CodeAssembler::new(32)?;
    let mut print = a.create_label();
    let mut fill = a.create_label();
    a.mov(ax, SEL_DATA as u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(fs, ax)?;
    a.mov(gs, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, STACK_TOP)?;
    emit_call_print(&mut a, print, print_msg)?;
    // Zero PML4, PDPT and PD (3 pages = 3072 dwords).
    a.cld()?;
    a.mov(edi, PML4_ADDR)?;
    a.xor(eax, eax)?;
    a.mov(ecx, 3 * 1024u32)?;
    a.rep().stosd()?;
    a.mov(dword_ptr(PML4_ADDR), PDPT_ADDR | P_RW)?;
    a.mov(dword_ptr(PDPT_ADDR), PD_ADDR | P_RW)?;
    // PD[i] = i * 2 MiB | P | R/W | PS for i in 0..512 (high dwords stay 0).
    a.mov(edi, PD_ADDR)?;
    a.mov(eax, PDE_2M)?;
    a.mov(ecx, 512u32)?;
    a.set_label(&mut fill)?;
    a.mov(dword_ptr(edi), eax)?;
    a.add(eax, 0x20_0000u32)?;
    a.add(edi, 8u32)?;
    a.loop_(fill)?;
    a.mov(eax, cr4)?;
    a.or(eax, CR4_PAE)?;
    a.mov(cr4, eax)?;
    a.mov(eax, PML4_ADDR)?;
    a.mov(cr3, eax)?;
    a.mov(ecx, IA32_EFER)?;
    a.rdmsr()?;
    a.or(eax, EFER_LME)?;
    a.wrmsr()?;
    a.mov(eax, cr0)?;
    a.or(eax, CR0_PG)?;
    a.mov(cr0, eax)?;
    a.jmp_far(SEL_CODE64, addr(LONG64_OFF) as u32)?;
    emit_print_str(&mut a, &mut print)?;
    Ok(a.assemble(addr(PROT32_OFF))?)
}

/// 64-bit mode: print the rest of the line with the backend name, then
/// power off (ACPI S5) and halt forever if that did not end the VM.
fn long64(long_msg: u64, backend_msg: u64, end_msg: u64) -> AsmResult<Vec<u8>> {
    let mut a = CodeAssembler::new(64)?;
    let mut print = a.create_label();
    a.mov(ax, SEL_DATA as u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, STACK_TOP)?; // zero-extends into RSP
    emit_call_print(&mut a, print, long_msg)?;
    emit_call_print(&mut a, print, backend_msg)?;
    a.mov(byte_ptr(BACKEND_NAME_ADDR + BACKEND_NAME_SLOT - 1), 0u32)?;
    emit_call_print(&mut a, print, BACKEND_NAME_ADDR)?;
    emit_call_print(&mut a, print, end_msg)?;
    emit_power_off(&mut a)?;
    emit_halt_forever(&mut a)?;
    emit_print_str(&mut a, &mut print)?;
    Ok(a.assemble(addr(LONG64_OFF))?)
}

/// Copies `code` to `off`, failing if it would overrun `limit`.
fn place(image: &mut [u8], code: &[u8], off: usize, limit: usize, what: &str) -> AsmResult<()> {
    if off + code.len() > limit {
        return Err(AsmError(format!(
            "embedded guest: {what} is {} bytes, more than its {}-byte slot",
            code.len(),
            limit - off
        )));
    }
    image[off..off + code.len()].copy_from_slice(code);
    Ok(())
}

/// Assembles the whole image.
pub fn build() -> AsmResult<Image> {
    // Strings first: their addresses are immediates in the code.
    let mut strings = Vec::new();
    let mut string_addrs = Vec::new();
    for msg in messages() {
        string_addrs.push(addr(STR_OFF + strings.len()));
        strings.extend_from_slice(msg.as_bytes());
        strings.push(0);
    }
    let code16 = real16(string_addrs[0])?;
    let code32 = prot32(string_addrs[1])?;
    let code64 = long64(string_addrs[2], string_addrs[3], string_addrs[4])?;

    // Padding is int3 so that a stray jump traps instead of sliding.
    let mut image = vec![0xcc_u8; STR_OFF + strings.len()];
    place(
        &mut image,
        &code16,
        REAL16_OFF,
        PROT32_OFF,
        "real-mode code",
    )?;
    place(
        &mut image,
        &code32,
        PROT32_OFF,
        LONG64_OFF,
        "protected-mode code",
    )?;
    place(&mut image, &code64, LONG64_OFF, GDT_OFF, "long-mode code")?;
    let gdt: Vec<u8> = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    place(&mut image, &gdt, GDT_OFF, GDTR_OFF, "GDT")?;
    // GDTR: 16-bit limit (size - 1), then the 32-bit linear base (SDM vol. 3, 3.5.1).
    let mut gdtr = ((gdt.len() - 1) as u16).to_le_bytes().to_vec();
    gdtr.extend_from_slice(&(addr(GDT_OFF) as u32).to_le_bytes());
    place(&mut image, &gdtr, GDTR_OFF, STR_OFF, "GDTR")?;
    let end = image.len();
    place(&mut image, &strings, STR_OFF, end, "strings")?;

    let sections = vec![
        Section {
            name: "real16",
            offset: REAL16_OFF,
            len: code16.len(),
            bitness: 16,
        },
        Section {
            name: "prot32",
            offset: PROT32_OFF,
            len: code32.len(),
            bitness: 32,
        },
        Section {
            name: "long64",
            offset: LONG64_OFF,
            len: code64.len(),
            bitness: 64,
        },
    ];
    Ok(Image {
        bytes: image,
        sections,
        string_addrs,
    })
}
