//! Operand helpers: opcode lookup by iced-x86 `Code` name, register tables, and
//! instruction constructors over register-or-memory operands.

use crate::error::OracleError;
use iced_x86::{Code, Instruction, MemoryOperand, Register};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Looks up an iced-x86 [`Code`] by its name (e.g. `"Add_rm64_r64"`).
pub(crate) fn code(name: &str) -> Result<Code, OracleError> {
    static MAP: OnceLock<HashMap<String, Code>> = OnceLock::new();
    let map = MAP.get_or_init(|| Code::values().map(|c| (format!("{c:?}"), c)).collect());
    map.get(name)
        .copied()
        .ok_or_else(|| OracleError::Encode(format!("bug: no iced-x86 Code named {name}")))
}

/// [`code`], checking the operand count (iced-x86 only debug-asserts it).
pub(crate) fn code_n(name: &str, n: u32) -> Result<Code, OracleError> {
    let c = code(name)?;
    let have = c.op_code().op_count();
    if have != n {
        return Err(OracleError::Encode(format!(
            "bug: {name} has {have} operands, not {n}"
        )));
    }
    Ok(c)
}

/// 64-bit GPRs in encoding order (SDM vol. 2A table 2-2).
pub(crate) const R64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];
const R32: [Register; 16] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
    Register::R8D,
    Register::R9D,
    Register::R10D,
    Register::R11D,
    Register::R12D,
    Register::R13D,
    Register::R14D,
    Register::R15D,
];
const R16: [Register; 16] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BX,
    Register::SP,
    Register::BP,
    Register::SI,
    Register::DI,
    Register::R8W,
    Register::R9W,
    Register::R10W,
    Register::R11W,
    Register::R12W,
    Register::R13W,
    Register::R14W,
    Register::R15W,
];
const R8: [Register; 16] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::SPL,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R11L,
    Register::R12L,
    Register::R13L,
    Register::R14L,
    Register::R15L,
];
/// AH, CH, DH, BH: bits 15:8 of GPRs 0..3 (encodable only without REX).
pub(crate) const HIGH8: [Register; 4] = [Register::AH, Register::CH, Register::DH, Register::BH];

/// The register of GPR `index` (0..16) at `size` bits.
pub(crate) fn reg(index: usize, size: u32) -> Register {
    let i = index & 15;
    match size {
        8 => R8[i],
        16 => R16[i],
        32 => R32[i],
        _ => R64[i],
    }
}

/// A register-or-memory operand.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rm {
    /// A register.
    Reg(Register),
    /// A memory operand.
    Mem(MemoryOperand),
}

impl Rm {
    /// Whether this is a memory operand.
    pub(crate) fn is_mem(&self) -> bool {
        matches!(self, Rm::Mem(_))
    }
}

fn enc(r: Result<Instruction, iced_x86::IcedError>) -> Result<Instruction, OracleError> {
    r.map_err(|e| OracleError::Encode(e.to_string()))
}

/// `op` with no explicit operands.
pub(crate) fn i0(name: &str) -> Result<Instruction, OracleError> {
    Ok(Instruction::with(code_n(name, 0)?))
}

/// `op rm`.
pub(crate) fn i_rm(name: &str, rm: Rm) -> Result<Instruction, OracleError> {
    let c = code_n(name, 1)?;
    enc(match rm {
        Rm::Reg(r) => Instruction::with1(c, r),
        Rm::Mem(m) => Instruction::with1(c, m),
    })
}

/// `op rm, r`.
pub(crate) fn i_rm_r(name: &str, rm: Rm, r: Register) -> Result<Instruction, OracleError> {
    let c = code_n(name, 2)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with2(c, x, r),
        Rm::Mem(m) => Instruction::with2(c, m, r),
    })
}

/// `op r, rm`.
pub(crate) fn i_r_rm(name: &str, r: Register, rm: Rm) -> Result<Instruction, OracleError> {
    let c = code_n(name, 2)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with2(c, r, x),
        Rm::Mem(m) => Instruction::with2(c, r, m),
    })
}

/// `op rm, imm` (the immediate is given sign-extended; iced checks its range).
pub(crate) fn i_rm_imm(name: &str, rm: Rm, imm: i64) -> Result<Instruction, OracleError> {
    let c = code_n(name, 2)?;
    let imm32 = i32::try_from(imm).map_err(|_| OracleError::Encode(format!("imm {imm:#x}")))?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with2(c, x, imm32),
        Rm::Mem(m) => Instruction::with2(c, m, imm32),
    })
}

/// `op r, rm, imm`.
pub(crate) fn i_r_rm_imm(
    name: &str,
    r: Register,
    rm: Rm,
    imm: i32,
) -> Result<Instruction, OracleError> {
    let c = code_n(name, 3)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with3(c, r, x, imm),
        Rm::Mem(m) => Instruction::with3(c, r, m, imm),
    })
}

/// `op rm, r, imm` (SHLD/SHRD).
pub(crate) fn i_rm_r_imm(
    name: &str,
    rm: Rm,
    r: Register,
    imm: i32,
) -> Result<Instruction, OracleError> {
    let c = code_n(name, 3)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with3(c, x, r, imm),
        Rm::Mem(m) => Instruction::with3(c, m, r, imm),
    })
}

/// `op rm, r, r2` (SHLD/SHRD with CL).
pub(crate) fn i_rm_r_r(
    name: &str,
    rm: Rm,
    r: Register,
    r2: Register,
) -> Result<Instruction, OracleError> {
    let c = code_n(name, 3)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with3(c, x, r, r2),
        Rm::Mem(m) => Instruction::with3(c, m, r, r2),
    })
}

/// `op r, r2, rm` (ANDN, PDEP, PEXT, MULX).
pub(crate) fn i_r_r_rm(
    name: &str,
    r: Register,
    r2: Register,
    rm: Rm,
) -> Result<Instruction, OracleError> {
    let c = code_n(name, 3)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with3(c, r, r2, x),
        Rm::Mem(m) => Instruction::with3(c, r, r2, m),
    })
}

/// `op r, rm, r2` (BEXTR, BZHI, SARX, SHLX, SHRX).
pub(crate) fn i_r_rm_r(
    name: &str,
    r: Register,
    rm: Rm,
    r2: Register,
) -> Result<Instruction, OracleError> {
    let c = code_n(name, 3)?;
    enc(match rm {
        Rm::Reg(x) => Instruction::with3(c, r, x, r2),
        Rm::Mem(m) => Instruction::with3(c, r, m, r2),
    })
}

/// `op imm` (PUSH imm, INT imm8, RET imm16).
pub(crate) fn i_imm(name: &str, imm: i32) -> Result<Instruction, OracleError> {
    enc(Instruction::with1(code_n(name, 1)?, imm))
}

/// `op r, imm` with a full 64-bit immediate (MOV r64, imm64).
pub(crate) fn i_r_imm64(name: &str, r: Register, imm: u64) -> Result<Instruction, OracleError> {
    enc(Instruction::with2(code_n(name, 2)?, r, imm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lookup() {
        assert_eq!(code("Add_rm64_r64").ok(), Some(Code::Add_rm64_r64));
        assert_eq!(
            code("VEX_Andn_r32_r32_rm32").ok(),
            Some(Code::VEX_Andn_r32_r32_rm32)
        );
        assert!(code("Add_rm128_r128").is_err());
    }

    #[test]
    fn register_tables() {
        assert_eq!(reg(0, 64), Register::RAX);
        assert_eq!(reg(15, 8), Register::R15L);
        assert_eq!(reg(4, 8), Register::SPL);
        assert_eq!(reg(9, 16), Register::R9W);
        assert_eq!(reg(7, 32), Register::EDI);
    }
}
