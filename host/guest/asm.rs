//! Shared guest-assembly helpers: serial output/input, power-off and
//! debug-exit sequences, for 16-, 32- and 64-bit code.
//!
//! This file is compiled twice: by `host/build.rs` (to build the embedded
//! guest) and by the `hyperplug-tests` library (to build test guests), so it
//! depends on nothing but `iced-x86`'s code assembler.
//!
//! Register conventions of the emitted routines: the string pointer is in
//! SI/ESI/RSI; the routines clobber AX/EAX/RAX and DX/EDX/RDX (all bits in
//! 64-bit mode) and advance the string pointer; every other register is kept.
//! The emitted code never relies on EFLAGS.DF (no string instructions).

use iced_x86::code_asm::*;
use iced_x86::IcedError;
use std::fmt;

/// Error from building a guest: an assembler error or a layout problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmError(pub String);

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AsmError {}

impl From<IcedError> for AsmError {
    fn from(e: IcedError) -> Self {
        AsmError(format!("assembler: {e}"))
    }
}

/// Result of the guest-building helpers.
pub type AsmResult<T> = Result<T, AsmError>;

/// COM1 base port: receiver buffer (read) / transmitter holding register
/// (write) of the 16550A UART.
pub const COM1_DATA: u16 = 0x3f8;
/// COM1 line status register (base + 5).
pub const COM1_LSR: u16 = 0x3fd;
/// LSR bit 0: data ready (a received byte waits in RBR).
pub const LSR_DATA_READY: u32 = 0x01;
/// LSR bit 5: transmitter holding register empty (THR may be written).
pub const LSR_THR_EMPTY: u32 = 0x20;
/// ACPI PM1a control register port (as on QEMU's PC machine).
pub const PM1A_CNT: u16 = 0x604;
/// PM1a control value for S5: SLP_EN (bit 13) set, SLP_TYP = 0.
pub const PM1A_S5: u32 = 0x2000;
/// isa-debug-exit port: a 32-bit write of V ends the VM with status (V<<1)|1.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Emits `mov (e/r)si, addr`: point the string register at `addr`.
///
/// In 64-bit mode this is `mov esi, imm32`, which zero-extends into RSI, so
/// `addr` must lie below 4 GiB; the encoding always has a full-width
/// immediate, so its size does not depend on `addr`.
pub fn emit_load_si(a: &mut CodeAssembler, addr: u64) -> AsmResult<()> {
    match a.bitness() {
        16 => {
            let v = u16::try_from(addr)
                .map_err(|_| AsmError(format!("16-bit string address {addr:#x} above 64 KiB")))?;
            a.mov(si, u32::from(v))?;
        }
        _ => {
            let v = u32::try_from(addr)
                .map_err(|_| AsmError(format!("string address {addr:#x} above 4 GiB")))?;
            a.mov(esi, v)?;
        }
    }
    Ok(())
}

/// Emits the inline sequence "wait for THR empty, then write AH to THR".
/// Clobbers AL and DX.
pub fn emit_serial_write_ah(a: &mut CodeAssembler) -> AsmResult<()> {
    let mut wait = a.create_label();
    a.mov(dx, COM1_LSR as u32)?;
    a.set_label(&mut wait)?;
    a.in_(al, dx)?;
    a.test(al, LSR_THR_EMPTY)?;
    a.jz(wait)?;
    a.mov(dx, COM1_DATA as u32)?;
    a.mov(al, ah)?;
    a.out(dx, al)?;
    Ok(())
}

/// Emits the inline sequence "wait for LSR data-ready, then read RBR into AL".
/// Clobbers DX.
pub fn emit_serial_read_al(a: &mut CodeAssembler) -> AsmResult<()> {
    let mut wait = a.create_label();
    a.mov(dx, COM1_LSR as u32)?;
    a.set_label(&mut wait)?;
    a.in_(al, dx)?;
    a.test(al, LSR_DATA_READY)?;
    a.jz(wait)?;
    a.mov(dx, COM1_DATA as u32)?;
    a.in_(al, dx)?;
    Ok(())
}

/// Emits, at `label`, a subroutine that prints the NUL-terminated string at
/// (E/R)SI over COM1 and returns with `ret`. Works for 16-, 32- and 64-bit
/// assemblers. About 12 instructions per byte when THR is always empty.
pub fn emit_print_str(a: &mut CodeAssembler, label: &mut CodeLabel) -> AsmResult<()> {
    let mut done = a.create_label();
    a.set_label(label)?;
    match a.bitness() {
        16 => a.mov(ah, byte_ptr(si))?,
        32 => a.mov(ah, byte_ptr(esi))?,
        _ => a.mov(ah, byte_ptr(rsi))?,
    }
    a.test(ah, ah)?;
    a.jz(done)?;
    emit_serial_write_ah(a)?;
    match a.bitness() {
        16 => a.inc(si)?,
        32 => a.inc(esi)?,
        _ => a.inc(rsi)?,
    }
    a.jmp(*label)?;
    a.set_label(&mut done)?;
    a.ret()?;
    Ok(())
}

/// Emits `mov (e/r)si, addr; call print` for a routine made by
/// [`emit_print_str`].
pub fn emit_call_print(a: &mut CodeAssembler, print: CodeLabel, addr: u64) -> AsmResult<()> {
    emit_load_si(a, addr)?;
    a.call(print)?;
    Ok(())
}

/// Emits the ACPI S5 power-off: a 16-bit write of [`PM1A_S5`] to
/// [`PM1A_CNT`] (ACPI spec 4.8.3.2.1, PM1 control register: SLP_TYP bits
/// 10-12, SLP_EN bit 13). Clobbers AX and DX.
pub fn emit_power_off(a: &mut CodeAssembler) -> AsmResult<()> {
    a.mov(dx, PM1A_CNT as u32)?;
    a.mov(ax, PM1A_S5)?;
    a.out(dx, ax)?;
    Ok(())
}

/// Emits the isa-debug-exit sequence: a 32-bit write of `value` to
/// [`DEBUG_EXIT_PORT`], which ends the VM with status `(value << 1) | 1`.
/// Clobbers EAX and DX.
pub fn emit_debug_exit(a: &mut CodeAssembler, value: u32) -> AsmResult<()> {
    a.mov(dx, DEBUG_EXIT_PORT as u32)?;
    a.mov(eax, value)?;
    a.out(dx, eax)?;
    Ok(())
}

/// Emits `cli; 1: hlt; jmp 1b`: park the vCPU if the VM did not end.
pub fn emit_halt_forever(a: &mut CodeAssembler) -> AsmResult<()> {
    let mut again = a.create_label();
    a.cli()?;
    a.set_label(&mut again)?;
    a.hlt()?;
    a.jmp(again)?;
    Ok(())
}
