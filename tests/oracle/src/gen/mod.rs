//! Random test-case generator: sequences of user-mode integer instructions from chosen
//! families, with random initial registers and data, deterministic from a seed.
//!
//! Invariants every generated case keeps, so it runs on any correct x86-64 without
//! touching memory outside the data area:
//! * one "base" GPR (RBX, RBP or R8..R15) points into the data area's lower half and is
//!   never written; all explicit memory operands are `[base + disp]`,
//!   `[base + bounded index*scale + disp]`, `[rip + disp]` or `[rsp + disp]`;
//! * RSP points into the data area's upper half and is changed only by stack
//!   instructions (bounded pushes/pops);
//! * branches go forward to a later group, or backward in a LOOP whose count is 1..=4;
//! * flag consumers (Jcc, SETcc, CMOVcc, ADC/SBB, RCL/RCR, PUSHF, LAHF, LOOPcc) never
//!   read a flag that may be undefined: a `cmp`/`clc`/`stc` is inserted first;
//! * no SYSCALL/SYSENTER/INT 80h (checked on the final bytes by [`contains_syscall`]).

mod alu;
mod bits;
mod builder;
mod control;
mod ops;
mod shift;
mod stack;

use crate::case::{gpr, rflags, Case, Regs, CODE_ADDR, DATA_ADDR, DATA_SIZE};
use crate::cpu::Features;
use crate::error::OracleError;
use crate::rng::Rng;
use builder::{Builder, GOp};
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};

/// Instruction families the generator draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// MOV (all forms), MOVZX/MOVSX/MOVSXD, MOV moffs.
    DataMove,
    /// ADD/ADC/SUB/SBB/CMP/INC/DEC/NEG.
    Arith,
    /// MUL/IMUL/DIV/IDIV (#DE allowed).
    MulDiv,
    /// AND/OR/XOR/TEST/NOT.
    Logic,
    /// ROL/ROR/RCL/RCR/SHL/SHR/SAR, SHLD/SHRD.
    ShiftRotate,
    /// BT/BTS/BTR/BTC, BSF/BSR, POPCNT/LZCNT/TZCNT, BMI1/BMI2, ADX.
    BitOps,
    /// CMOVcc, SETcc.
    CondMove,
    /// MOVS/STOS/LODS/CMPS/SCAS with REP prefixes.
    String,
    /// PUSH/POP (all forms), PUSHF/POPF, ENTER/LEAVE.
    Stack,
    /// LEA.
    Lea,
    /// XCHG, XADD, CMPXCHG, CMPXCHG8B/16B, LOCK.
    Exchange,
    /// BSWAP, MOVBE.
    ByteSwap,
    /// CBW, CWDE, CDQE, CWD, CDQ, CQO.
    Convert,
    /// CLC/STC/CMC/CLD/STD, LAHF/SAHF.
    FlagOps,
    /// Jcc/JMP/CALL/RET/LOOP/JRCXZ and indirect branches inside the snippet.
    Control,
    /// Instructions that fault at CPL 3 (#UD, #BP, #GP, #PF, #SS, #AC).
    Faults,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 16] = [
        Family::DataMove,
        Family::Arith,
        Family::MulDiv,
        Family::Logic,
        Family::ShiftRotate,
        Family::BitOps,
        Family::CondMove,
        Family::String,
        Family::Stack,
        Family::Lea,
        Family::Exchange,
        Family::ByteSwap,
        Family::Convert,
        Family::FlagOps,
        Family::Control,
        Family::Faults,
    ];

    /// Lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Family::DataMove => "move",
            Family::Arith => "arith",
            Family::MulDiv => "muldiv",
            Family::Logic => "logic",
            Family::ShiftRotate => "shift",
            Family::BitOps => "bits",
            Family::CondMove => "cond",
            Family::String => "string",
            Family::Stack => "stack",
            Family::Lea => "lea",
            Family::Exchange => "xchg",
            Family::ByteSwap => "bswap",
            Family::Convert => "convert",
            Family::FlagOps => "flags",
            Family::Control => "control",
            Family::Faults => "faults",
        }
    }

    /// Parses a name from [`Family::name`].
    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Relative weight when drawing a family for a group.
    fn weight(self) -> u32 {
        match self {
            Family::Faults => 1,
            Family::MulDiv => 3,
            Family::Control | Family::String | Family::Stack => 4,
            Family::Convert | Family::FlagOps | Family::ByteSwap => 3,
            _ => 5,
        }
    }
}

/// Generator settings.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Families to draw from (all if empty).
    pub families: Vec<Family>,
    /// Optional extensions the snippets may use.
    pub features: Features,
    /// Maximum number of instruction groups per snippet (1..=16 by default).
    pub max_groups: usize,
}

impl GenConfig {
    /// All families, the host's features, up to 16 groups.
    pub fn host_default() -> Self {
        GenConfig {
            families: Family::ALL.to_vec(),
            features: Features::host(),
            max_groups: 16,
        }
    }
}

/// One group of `fam`, or None if the family cannot be used right now.
fn family_group(b: &mut Builder, fam: Family) -> Result<Option<Vec<GOp>>, OracleError> {
    match fam {
        Family::DataMove => alu::data_move(b),
        Family::Arith => alu::arith(b),
        Family::MulDiv => alu::mul_div(b),
        Family::Logic => alu::logic(b),
        Family::ShiftRotate => shift::shift_rotate(b),
        Family::BitOps => bits::bit_ops(b),
        Family::CondMove => bits::cond_move(b),
        Family::String => stack::string(b),
        Family::Stack => stack::stack(b),
        Family::Lea => alu::lea(b),
        Family::Exchange => stack::exchange(b),
        Family::ByteSwap => bits::byte_swap(b),
        Family::Convert => alu::convert(b),
        Family::FlagOps => stack::flag_ops(b),
        Family::Control => control::control(b),
        Family::Faults => control::faults(b),
    }
}

/// Base registers for data-area addressing: never an implicit operand of any generated
/// instruction (RAX, RCX, RDX, RSI, RDI, RSP are).
const BASE_CANDIDATES: [usize; 10] = [3, 5, 8, 9, 10, 11, 12, 13, 14, 15];

/// Generates one case from `rng`.
pub fn gen_case(rng: &mut Rng, cfg: &GenConfig) -> Result<Case, OracleError> {
    let families: Vec<Family> = if cfg.families.is_empty() {
        Family::ALL.to_vec()
    } else {
        cfg.families.clone()
    };
    let weights: Vec<u32> = families.iter().map(|f| f.weight()).collect();

    let base = BASE_CANDIDATES[rng.below(BASE_CANDIDATES.len() as u64) as usize];
    let mut base_val = DATA_ADDR + 0x2000 + rng.below(0x4000);
    if rng.chance(3, 4) {
        base_val &= !7;
    }
    let mut rsp = (DATA_ADDR + 0xC000).wrapping_add_signed(rng.range(-0x100, 0x100));
    if rng.chance(7, 8) {
        rsp &= !7;
    }
    let mut regs = Regs::default();
    for v in regs.gpr.iter_mut() {
        *v = rng.edgy_u64();
    }
    regs.gpr[base] = base_val;
    regs.gpr[gpr::RSP] = rsp;
    regs.rip = CODE_ADDR;
    regs.rflags = rng.next_u64() & rflags::STATUS;
    if rng.chance(1, 4) {
        regs.rflags |= rflags::DF;
    }
    let data = random_data(rng);

    let mut b = Builder::new(rng, cfg.features, base, base_val);
    let n = 1 + b.rng.below(cfg.max_groups.max(1) as u64) as usize;
    b.n_groups = n;
    for g in 0..n {
        b.start_group(g)?;
        for _attempt in 0..8 {
            let fam = families[b.rng.weighted(&weights)];
            match family_group(&mut b, fam) {
                Ok(Some(group)) if !group.is_empty() => {
                    if b.push_group(group).is_ok() {
                        break;
                    }
                }
                Err(OracleError::Encode(m)) if m.starts_with("bug:") => {
                    return Err(OracleError::Encode(m))
                }
                Ok(_) | Err(OracleError::Encode(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if b.len() == 0 {
        b.push_group(vec![GOp::Ins(ops::i0("Nopd")?, None)])?;
    }
    let (code, undefined_flags) = b.finish()?;
    if contains_syscall(&code) {
        return Err(OracleError::Encode(
            "generated code contains a system call".into(),
        ));
    }
    if code.len() >= crate::case::CODE_SIZE {
        return Err(OracleError::Encode(format!(
            "snippet too long: {} bytes",
            code.len()
        )));
    }
    Ok(Case {
        code,
        regs,
        data,
        undefined_flags,
    })
}

/// Case `index` of run `seed` (independent of the other cases of the run).
pub fn case_for(seed: u64, index: u64, cfg: &GenConfig) -> Result<Case, OracleError> {
    gen_case(&mut Rng::for_case(seed, index), cfg)
}

/// Random data-area contents: random bytes with runs of edge values and zeros.
fn random_data(rng: &mut Rng) -> Vec<u8> {
    let mut data = vec![0u8; DATA_SIZE];
    for chunk in data.chunks_exact_mut(8) {
        let v = match rng.below(8) {
            0 => 0,
            1 | 2 => rng.edgy_u64(),
            _ => rng.next_u64(),
        };
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    data
}

/// Whether `code` decodes (linearly, from its start) to any instruction that enters the
/// kernel as a system call: SYSCALL, SYSENTER, or INT 80h. Generated branches only land
/// on instruction starts, so the linear decode sees every instruction that can run.
pub fn contains_syscall(code: &[u8]) -> bool {
    let mut d = Decoder::with_ip(64, code, CODE_ADDR, DecoderOptions::NONE);
    while d.can_decode() {
        let i = d.decode();
        match i.mnemonic() {
            Mnemonic::Syscall | Mnemonic::Sysenter => return true,
            Mnemonic::Int if i.op0_kind() == OpKind::Immediate8 && i.immediate8() == 0x80 => {
                return true
            }
            _ => {}
        }
    }
    false
}
