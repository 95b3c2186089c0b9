//! The guest type and helpers to assemble code followed by its data.

use crate::asm::{AsmError, AsmResult};
use iced_x86::code_asm::*;
use std::ops::Range;
use std::path::PathBuf;

pub use hyperplug::image::Mode;

/// Initial stack pointer of every test guest: conventional memory at
/// 512 KiB, clear of the host's boot structures (below 0x10000) and of the
/// images at 1 MiB. Guests set it themselves (multiboot leaves ESP undefined).
pub const GUEST_STACK_TOP: u32 = 0x8_0000;

/// Where raw protected-mode and long-mode test guests are loaded (1 MiB).
pub const RAW_LOAD_ADDR: u64 = 0x10_0000;

/// A guest image and how to start it.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The file bytes (a flat binary, or for multiboot the whole kernel file).
    pub bytes: Vec<u8>,
    /// Guest-physical address of `bytes[0]`.
    pub load_addr: u64,
    /// Guest-physical (= linear, flat segments / identity map) entry point.
    pub entry: u64,
    /// CPU mode the guest expects at `entry`.
    pub mode: Mode,
    /// Byte range of `bytes` that holds instructions (for decoding checks).
    pub code: Range<usize>,
}

impl Guest {
    /// Code bitness for `mode`: 16, 32 or 64.
    pub fn bitness(&self) -> u32 {
        bitness_of(self.mode)
    }

    /// Writes the image to `<temp dir>/hyperplug-tests-<pid>/<name>` (for
    /// tests that pass it to the `hyperplug` binary) and returns the path.
    pub fn write_temp(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("hyperplug-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, &self.bytes)?;
        Ok(path)
    }

    /// Guest-physical address of `bytes[off]`.
    pub fn addr_of(&self, off: usize) -> u64 {
        self.load_addr + off as u64
    }
}

/// Code bitness of a start mode.
pub fn bitness_of(mode: Mode) -> u32 {
    match mode {
        Mode::Real => 16,
        Mode::Protected => 32,
        Mode::Long => 64,
    }
}

/// `s` as a NUL-terminated byte string.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Code assembled at some base address followed by its data items.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// Code bytes, then the data items, back to back.
    pub bytes: Vec<u8>,
    /// Length of the code part (the data follows at this offset).
    pub code_len: usize,
    /// Address of each data item, in the order given.
    pub data_addrs: Vec<u64>,
}

/// Assembles `emit` at `base` with `data` placed right after the code.
///
/// `emit` receives the address of every data item; since the code must be
/// emitted before its length (and so the data addresses) is known, this
/// assembles twice: once with placeholder addresses to measure, once for
/// real. Address immediates must therefore have a size that does not depend
/// on their value (as [`crate::asm::emit_load_si`] guarantees); if the two
/// passes disagree this returns an error rather than a wrong image.
pub fn assemble_with_data<F>(
    bitness: u32,
    base: u64,
    data: &[&[u8]],
    emit: F,
) -> AsmResult<Assembled>
where
    F: Fn(&mut CodeAssembler, &[u64]) -> AsmResult<()>,
{
    let pass = |addrs: &[u64]| -> AsmResult<Vec<u8>> {
        let mut a = CodeAssembler::new(bitness)?;
        emit(&mut a, addrs)?;
        Ok(a.assemble(base)?)
    };
    let placeholder = vec![base; data.len()];
    let code_len = pass(&placeholder)?.len();
    let mut addrs = Vec::with_capacity(data.len());
    let mut next = base + code_len as u64;
    for d in data {
        addrs.push(next);
        next += d.len() as u64;
    }
    let mut bytes = pass(&addrs)?;
    if bytes.len() != code_len {
        return Err(AsmError(format!(
            "code size changed between passes ({code_len} -> {} bytes)",
            bytes.len()
        )));
    }
    for d in data {
        bytes.extend_from_slice(d);
    }
    Ok(Assembled {
        bytes,
        code_len,
        data_addrs: addrs,
    })
}

/// Longest decimal string of a u32 ("4294967295") plus its NUL.
pub const DEC_BUF_LEN: usize = 11;

/// Emits, at `label`, a 32-bit subroutine that prints EAX as unsigned
/// decimal over COM1 (through the string routine `print`, see
/// [`crate::asm::emit_print_str`]) and returns.
///
/// `buf` is the address of a writable [`DEC_BUF_LEN`]-byte scratch buffer.
/// Digits are produced by repeated `div` by 10 (remainder = next digit from
/// the right) and stored backwards, then the buffer tail is printed.
/// Clobbers EAX, ECX, EDX, ESI, EDI.
pub fn emit_print_dec32(
    a: &mut CodeAssembler,
    label: &mut CodeLabel,
    print: CodeLabel,
    buf: u64,
) -> AsmResult<()> {
    if a.bitness() != 32 {
        return Err(AsmError("emit_print_dec32 needs a 32-bit assembler".into()));
    }
    let end = u32::try_from(buf + DEC_BUF_LEN as u64 - 1)
        .map_err(|_| AsmError(format!("decimal buffer {buf:#x} above 4 GiB")))?;
    let mut digit = a.create_label();
    a.set_label(label)?;
    a.mov(edi, end)?;
    a.mov(byte_ptr(edi), 0u32)?;
    a.mov(ecx, 10u32)?;
    a.set_label(&mut digit)?;
    a.xor(edx, edx)?;
    a.div(ecx)?;
    a.add(dl, b'0' as u32)?;
    a.dec(edi)?;
    a.mov(byte_ptr(edi), dl)?;
    a.test(eax, eax)?;
    a.jnz(digit)?;
    a.mov(esi, edi)?;
    a.jmp(print)?; // tail call: print's `ret` returns to our caller
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_all;

    #[test]
    fn data_follows_code_and_addresses_are_patched() {
        let data: [&[u8]; 2] = [b"ab\0", b"xyz\0"];
        let out = assemble_with_data(32, 0x1000, &data, |a, addrs| {
            a.mov(esi, addrs[0] as u32)?;
            a.mov(edi, addrs[1] as u32)?;
            a.hlt()?;
            Ok(())
        })
        .expect("assemble");
        assert_eq!(out.code_len, 11);
        assert_eq!(out.data_addrs, vec![0x100b, 0x100e]);
        assert_eq!(&out.bytes[11..], b"ab\0xyz\0");
        let ins = decode_all(&out.bytes[..out.code_len], 32, 0x1000).expect("decode");
        assert_eq!(ins[0].immediate32(), 0x100b);
        assert_eq!(ins[1].immediate32(), 0x100e);
    }

    #[test]
    fn print_dec_refuses_wrong_bitness() {
        let mut a = CodeAssembler::new(64).expect("asm");
        let mut l = a.create_label();
        let p = a.create_label();
        assert!(emit_print_dec32(&mut a, &mut l, p, 0x1000).is_err());
    }

    #[test]
    fn write_temp_round_trips() {
        let g = Guest {
            bytes: vec![1, 2, 3],
            load_addr: 0,
            entry: 0,
            mode: Mode::Real,
            code: 0..3,
        };
        let path = g.write_temp("round-trip.bin").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), vec![1, 2, 3]);
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn bitness_table() {
        for (mode, bits) in [(Mode::Real, 16), (Mode::Protected, 32), (Mode::Long, 64)] {
            assert_eq!(bitness_of(mode), bits);
        }
    }
}
