//! The test guests. Each builder returns a [`Guest`] or a one-line
//! assembler error; all of them set up their own stack at
//! [`GUEST_STACK_TOP`] and never rely on register values other than the ones
//! their boot protocol defines.

use crate::asm::{
    emit_call_print, emit_debug_exit, emit_halt_forever, emit_power_off, emit_print_str,
    emit_serial_read_al, emit_serial_write_ah, AsmResult,
};
use crate::kit::{
    assemble_with_data, cstr, emit_print_dec32, Guest, Mode, DEC_BUF_LEN, GUEST_STACK_TOP,
    RAW_LOAD_ADDR,
};
use crate::multiboot::{
    Header, BOOTLOADER_MAGIC, FLAG_ADDRESS, FLAG_MEMORY_INFO, HEADER_LEN, INFO_CMDLINE,
    INFO_CMDLINE_OFF, INFO_FLAGS_OFF, INFO_MEM, INFO_MEM_LOWER_OFF, INFO_MEM_UPPER_OFF,
};
use iced_x86::code_asm::*;

/// The byte that ends the echo loop of [`uart_echo_guest`].
pub const ECHO_QUIT: u8 = b'q';
/// The debug-exit value [`long_mode_hello_guest`] writes (status 0x21 = 33).
pub const LONG_MODE_EXIT_VALUE: u32 = 0x10;
/// Where multiboot kernels are loaded (1 MiB).
pub const MULTIBOOT_LOAD_ADDR: u64 = 0x10_0000;

/// 32-bit protected-mode UART echo guest, loaded at 1 MiB and entered with
/// flat segments and paging off (as a raw protected image or a multiboot
/// kernel is). Prints `ready\n`, then echoes every byte received on COM1
/// until it reads `q`, which it does not echo: it prints `\nbye\n` and
/// powers off through ACPI S5.
///
/// Cost: ~90 instructions to start, ~17 per echoed byte (plus 3 per
/// empty LSR poll while waiting for input), ~70 to finish.
pub fn uart_echo_guest() -> AsmResult<Guest> {
    let data = [cstr("ready\n"), cstr("\nbye\n")];
    let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let out = assemble_with_data(32, RAW_LOAD_ADDR, &data, |a, addrs| {
        let mut print = a.create_label();
        let mut next = a.create_label();
        let mut bye = a.create_label();
        a.cli()?;
        a.mov(esp, GUEST_STACK_TOP)?;
        emit_call_print(a, print, addrs[0])?;
        a.set_label(&mut next)?;
        emit_serial_read_al(a)?;
        a.cmp(al, ECHO_QUIT as u32)?;
        a.je(bye)?;
        a.mov(ah, al)?;
        emit_serial_write_ah(a)?;
        a.jmp(next)?;
        a.set_label(&mut bye)?;
        emit_call_print(a, print, addrs[1])?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: RAW_LOAD_ADDR,
        entry: RAW_LOAD_ADDR,
        mode: Mode::Protected,
        code: 0..out.code_len,
    })
}

/// 32-bit protected-mode guest (loaded at 1 MiB, flat segments) that
/// prints `triple fault next\n`, loads an IDT with limit 0 and divides by
/// zero. Delivering #DE needs IDT bytes 0..7, beyond the limit, so the CPU
/// raises #GP; that vector is beyond the limit too, so it raises #DF, whose
/// delivery fails the same way: the processor enters shutdown (SDM vol. 3,
/// 6.10 "Interrupt Descriptor Table" on the limit check, 6.15 "Exception 8
/// — Double Fault" on shutdown). The VM must end with a triple fault.
///
/// Cost: about 230 instructions.
pub fn triple_fault_guest() -> AsmResult<Guest> {
    let msg = cstr("triple fault next\n");
    // IDTR pseudo-descriptor: limit 0, base 0 (SDM vol. 3, 6.10).
    let idtr = [0u8; 6];
    let out = assemble_with_data(32, RAW_LOAD_ADDR, &[&msg, &idtr], |a, addrs| {
        let mut print = a.create_label();
        a.cli()?;
        a.mov(esp, GUEST_STACK_TOP)?;
        emit_call_print(a, print, addrs[0])?;
        a.lidt(ptr(addrs[1] as u32))?;
        a.xor(ecx, ecx)?;
        a.div(ecx)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: RAW_LOAD_ADDR,
        entry: RAW_LOAD_ADDR,
        mode: Mode::Protected,
        code: 0..out.code_len,
    })
}

/// A multiboot v1 kernel (flat image with the flag-16 address header at
/// file offset 0, loaded at 1 MiB) that reports what the loader passed:
///
/// ```text
/// magic ok                      (or "bad magic", then power off)
/// mem_lower=<n>K mem_upper=<n>K (or "no mem info" if info flag 0 is clear)
/// cmdline=<string>              (or "no cmdline" if info flag 2 is clear)
/// ```
///
/// then powers off through ACPI S5. EAX must hold 0x2BADB002 and EBX the
/// info structure (multiboot spec 3.2, 3.3).
///
/// Cost: about 12 instructions per printed byte plus ~13 per decimal digit;
/// roughly 600 + 12 x len(cmdline) instructions in all.
pub fn multiboot_info_guest() -> AsmResult<Guest> {
    let base = MULTIBOOT_LOAD_ADDR + HEADER_LEN as u64;
    let strings = [
        cstr("magic ok\n"),
        cstr("bad magic\n"),
        cstr("mem_lower="),
        cstr("K mem_upper="),
        cstr("K\n"),
        cstr("no mem info\n"),
        cstr("cmdline="),
        cstr("\n"),
        cstr("no cmdline\n"),
        vec![0u8; DEC_BUF_LEN],
    ];
    let data: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
    let out = assemble_with_data(32, base, &data, |a, s| {
        let mut print = a.create_label();
        let mut print_dec = a.create_label();
        let mut good = a.create_label();
        let mut no_mem = a.create_label();
        let mut cmdline = a.create_label();
        let mut no_cmdline = a.create_label();
        let mut done = a.create_label();
        a.cli()?;
        a.mov(esp, GUEST_STACK_TOP)?;
        a.cmp(eax, BOOTLOADER_MAGIC)?;
        a.je(good)?;
        emit_call_print(a, print, s[1])?;
        a.jmp(done)?; // EBX is meaningless without the magic
        a.set_label(&mut good)?;
        emit_call_print(a, print, s[0])?;
        a.test(dword_ptr(ebx + INFO_FLAGS_OFF), INFO_MEM)?;
        a.jz(no_mem)?;
        emit_call_print(a, print, s[2])?;
        a.mov(eax, dword_ptr(ebx + INFO_MEM_LOWER_OFF))?;
        a.call(print_dec)?;
        emit_call_print(a, print, s[3])?;
        a.mov(eax, dword_ptr(ebx + INFO_MEM_UPPER_OFF))?;
        a.call(print_dec)?;
        emit_call_print(a, print, s[4])?;
        a.jmp(cmdline)?;
        a.set_label(&mut no_mem)?;
        emit_call_print(a, print, s[5])?;
        a.set_label(&mut cmdline)?;
        a.test(dword_ptr(ebx + INFO_FLAGS_OFF), INFO_CMDLINE)?;
        a.jz(no_cmdline)?;
        emit_call_print(a, print, s[6])?;
        a.mov(esi, dword_ptr(ebx + INFO_CMDLINE_OFF))?;
        a.call(print)?;
        emit_call_print(a, print, s[7])?;
        a.jmp(done)?;
        a.set_label(&mut no_cmdline)?;
        emit_call_print(a, print, s[8])?;
        a.set_label(&mut done)?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)?;
        emit_print_dec32(a, &mut print_dec, print, s[9])
    })?;
    let load_end = MULTIBOOT_LOAD_ADDR + (HEADER_LEN + out.bytes.len()) as u64;
    let header = Header {
        flags: FLAG_ADDRESS | FLAG_MEMORY_INFO,
        header_addr: MULTIBOOT_LOAD_ADDR as u32,
        load_addr: MULTIBOOT_LOAD_ADDR as u32,
        load_end_addr: load_end as u32,
        bss_end_addr: 0,
        entry_addr: base as u32,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&out.bytes);
    Ok(Guest {
        bytes,
        load_addr: MULTIBOOT_LOAD_ADDR,
        entry: base,
        mode: Mode::Protected,
        code: HEADER_LEN..HEADER_LEN + out.code_len,
    })
}

/// Raw 64-bit guest for `--image --mode long` (loaded at 1 MiB, entered in
/// 64-bit mode with the low memory identity-mapped): prints
/// `long mode ok\n` and ends through isa-debug-exit with value
/// [`LONG_MODE_EXIT_VALUE`] (VM exit status 33).
///
/// Cost: about 170 instructions.
pub fn long_mode_hello_guest() -> AsmResult<Guest> {
    let msg = cstr("long mode ok\n");
    let out = assemble_with_data(64, RAW_LOAD_ADDR, &[&msg], |a, addrs| {
        let mut print = a.create_label();
        a.cli()?;
        a.mov(esp, GUEST_STACK_TOP)?; // zero-extends into RSP
        emit_call_print(a, print, addrs[0])?;
        emit_debug_exit(a, LONG_MODE_EXIT_VALUE)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: RAW_LOAD_ADDR,
        entry: RAW_LOAD_ADDR,
        mode: Mode::Long,
        code: 0..out.code_len,
    })
}
