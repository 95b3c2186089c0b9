//! Decoding helpers for checking assembled guests.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Register};

/// Decodes all of `code` (at address `ip`) with `bitness`; fails on the
/// first invalid instruction or one that runs past the end of `code`.
pub fn decode_all(code: &[u8], bitness: u32, ip: u64) -> Result<Vec<Instruction>, String> {
    let mut decoder = Decoder::with_ip(bitness, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let offset = decoder.position();
        let ins = decoder.decode();
        if ins.is_invalid() {
            return Err(format!(
                "invalid {bitness}-bit instruction at offset {offset:#x} (address {:#x})",
                ip + offset as u64
            ));
        }
        out.push(ins);
    }
    Ok(out)
}

/// The port of each `out dx, <acc>` whose DX was last set by `mov dx, imm16`
/// in straight-line order, with the access width in bytes.
pub fn port_writes(instrs: &[Instruction]) -> Vec<(u16, u32)> {
    port_accesses(instrs, true)
}

/// The port of each `in <acc>, dx` whose DX was last set by `mov dx, imm16`.
pub fn port_reads(instrs: &[Instruction]) -> Vec<(u16, u32)> {
    port_accesses(instrs, false)
}

fn port_accesses(instrs: &[Instruction], writes: bool) -> Vec<(u16, u32)> {
    let mut dx: Option<u16> = None;
    let mut out = Vec::new();
    for ins in instrs {
        let width = match (writes, ins.code()) {
            (true, Code::Out_DX_AL) | (false, Code::In_AL_DX) => Some(1),
            (true, Code::Out_DX_AX) | (false, Code::In_AX_DX) => Some(2),
            (true, Code::Out_DX_EAX) | (false, Code::In_EAX_DX) => Some(4),
            _ => None,
        };
        if let (Some(w), Some(port)) = (width, dx) {
            out.push((port, w));
        }
        if ins.code() == Code::Mov_r16_imm16 && ins.op0_register() == Register::DX {
            dx = Some(ins.immediate16());
        }
    }
    out
}

/// The immediate of the last `mov <reg32/16>, imm` to `reg` before index `i`.
pub fn last_imm_before(instrs: &[Instruction], i: usize, reg: Register) -> Option<u64> {
    instrs[..i.min(instrs.len())].iter().rev().find_map(|ins| {
        let is_mov_imm = matches!(
            ins.code(),
            Code::Mov_r16_imm16
                | Code::Mov_r32_imm32
                | Code::Mov_rm32_imm32
                | Code::Mov_r64_imm64
                | Code::Mov_rm64_imm32
        );
        (is_mov_imm && ins.op0_register() == reg).then(|| ins.immediate(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_are_reported() {
        // 0f 0b = ud2 (valid); 0f 04 is an undefined opcode.
        assert!(decode_all(&[0x0f, 0x0b], 32, 0).is_ok());
        let err = decode_all(&[0x90, 0x0f, 0x04], 32, 0x100).expect_err("0f 04 is invalid");
        assert!(err.contains("offset 0x1"), "{err}");
    }

    #[test]
    fn truncated_instruction_is_invalid() {
        // b8 = mov eax, imm32 with only two immediate bytes.
        assert!(decode_all(&[0xb8, 0x01, 0x02], 32, 0).is_err());
    }

    #[test]
    fn port_tracking_follows_dx() {
        // mov dx,0x3f8; out dx,al; mov dx,0x604; out dx,ax; in al,dx
        let code = [
            0x66, 0xba, 0xf8, 0x03, 0xee, 0x66, 0xba, 0x04, 0x06, 0x66, 0xef, 0xec,
        ];
        let ins = decode_all(&code, 32, 0).expect("decode");
        assert_eq!(port_writes(&ins), vec![(0x3f8, 1), (0x604, 2)]);
        assert_eq!(port_reads(&ins), vec![(0x604, 1)]);
    }
}
