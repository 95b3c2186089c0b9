//! Which status flags each integer instruction writes and which it leaves undefined.
//!
//! Source: Intel SDM vol. 1 Appendix A ("EFLAGS Cross-Reference", table A-2) and the
//! "Flags Affected" section of each instruction in SDM vol. 2. Count-dependent rules
//! (shifts, rotates, double shifts) follow the instructions' "Operation" sections: the
//! count is masked to 5 bits, or 6 bits with a 64-bit operand, before anything else.
//!
//! The table is keyed by mnemonic, so MOV to/from CR/DR (all status flags undefined, SDM
//! vol. 2B "MOV—Move to/from Control/Debug Registers") is not distinguished from plain
//! MOV; both of those #GP at CPL 3. Undefined *results* are not flags and are not listed:
//! BSF/BSR with a zero source (Intel: destination undefined; AMD APM vol. 3: unchanged)
//! and 16-bit SHLD/SHRD with a masked count above 16 (destination undefined).

use crate::case::rflags::{AF, CF, DF, OF, PF, SF, STATUS, ZF};
use iced_x86::{Mnemonic, RflagsBits};

/// What an instruction does to the status flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlagEffect {
    /// Flags certainly overwritten (with a defined or an undefined value).
    pub written: u64,
    /// Flags possibly left with an architecturally undefined value.
    pub undefined: u64,
}

impl FlagEffect {
    const NONE: FlagEffect = FlagEffect {
        written: 0,
        undefined: 0,
    };

    fn new(written: u64, undefined: u64) -> Self {
        FlagEffect { written, undefined }
    }

    /// Applies the effect to a set of possibly-undefined flags.
    pub fn apply(self, undefined_before: u64) -> u64 {
        (undefined_before & !self.written) | self.undefined
    }
}

/// Flags the instruction leaves undefined (SDM vol. 1 appendix A; vol. 2 "Flags Affected").
///
/// `operand_size` is in bits (8, 16, 32, 64). `count` is the shift/rotate count operand
/// before masking (immediate or CL), or `None` when unknown, in which case the union
/// over all counts is returned.
pub fn undefined_flags(mnemonic: Mnemonic, operand_size: u32, count: Option<u64>) -> u64 {
    flag_effect(mnemonic, operand_size, count).undefined
}

/// Written and undefined status flags of an instruction (see [`undefined_flags`]).
///
/// With `count == None` the effect is conservative: `written` holds only flags written
/// for every count, `undefined` the union over all counts.
pub fn flag_effect(mnemonic: Mnemonic, operand_size: u32, count: Option<u64>) -> FlagEffect {
    use Mnemonic as M;
    match mnemonic {
        // Arithmetic with every status flag defined.
        M::Add
        | M::Adc
        | M::Sub
        | M::Sbb
        | M::Cmp
        | M::Neg
        | M::Xadd
        | M::Cmpxchg
        | M::Cmpsb
        | M::Cmpsw
        | M::Cmpsd
        | M::Cmpsq
        | M::Scasb
        | M::Scasw
        | M::Scasd
        | M::Scasq
        | M::Popcnt => FlagEffect::new(STATUS, 0),
        // INC/DEC: "The CF flag is not affected."
        M::Inc | M::Dec => FlagEffect::new(STATUS & !CF, 0),
        // Logic: "The OF and CF flags are cleared; ... The state of the AF flag is undefined."
        M::And | M::Or | M::Xor | M::Test => FlagEffect::new(STATUS, AF),
        // MUL/IMUL: "The SF, ZF, AF, and PF flags are undefined."
        M::Mul | M::Imul => FlagEffect::new(STATUS, SF | ZF | AF | PF),
        // DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
        M::Div | M::Idiv => FlagEffect::new(STATUS, STATUS),
        // BT*: "The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined."
        M::Bt | M::Bts | M::Btr | M::Btc => {
            FlagEffect::new(CF | OF | SF | AF | PF, OF | SF | AF | PF)
        }
        // BSF/BSR: "The CF, OF, SF, AF, and PF flags are undefined."
        M::Bsf | M::Bsr => FlagEffect::new(STATUS, CF | OF | SF | AF | PF),
        // LZCNT/TZCNT: "The OF, SF, PF and AF flags are undefined."
        M::Lzcnt | M::Tzcnt => FlagEffect::new(STATUS, OF | SF | PF | AF),
        // BMI1/BMI2 (SDM vol. 2 ANDN, BEXTR, BLSI, BLSMSK, BLSR, BZHI).
        M::Andn | M::Blsi | M::Blsmsk | M::Blsr | M::Bzhi => FlagEffect::new(STATUS, AF | PF),
        M::Bextr => FlagEffect::new(STATUS, AF | SF | PF),
        // ADX: only CF / only OF.
        M::Adcx => FlagEffect::new(CF, 0),
        M::Adox => FlagEffect::new(OF, 0),
        // CMPXCHG8B/16B: "The ZF flag is set ...; other flags are unaffected."
        M::Cmpxchg8b | M::Cmpxchg16b => FlagEffect::new(ZF, 0),
        M::Clc | M::Stc | M::Cmc => FlagEffect::new(CF, 0),
        M::Cld | M::Std => FlagEffect::new(DF, 0),
        // SAHF loads SF, ZF, AF, PF, CF from AH.
        M::Sahf => FlagEffect::new(SF | ZF | AF | PF | CF, 0),
        M::Popf | M::Popfd | M::Popfq | M::Iret | M::Iretd | M::Iretq => {
            FlagEffect::new(STATUS | DF, 0)
        }
        // BCD (legacy modes only).
        M::Aaa | M::Aas => FlagEffect::new(STATUS, OF | SF | ZF | PF),
        M::Daa | M::Das => FlagEffect::new(STATUS, OF),
        M::Aam | M::Aad => FlagEffect::new(STATUS, OF | AF | CF),
        M::Shl | M::Sal | M::Shr | M::Sar => shift(mnemonic, operand_size, count),
        M::Rol | M::Ror => rotate(operand_size, count),
        M::Rcl | M::Rcr => rotate_through_carry(operand_size, count),
        M::Shld | M::Shrd => double_shift(operand_size, count),
        _ => FlagEffect::NONE,
    }
}

/// The count mask: 0x3F for 64-bit operands, else 0x1F (SDM vol. 2B SAL/SAR/SHL/SHR).
fn count_mask(operand_size: u32) -> u64 {
    if operand_size == 64 {
        0x3F
    } else {
        0x1F
    }
}

/// SAL/SAR/SHL/SHR "Flags Affected": CF is the last bit shifted out, undefined for SHL and
/// SHR when the count is >= the operand size; OF only for 1-bit shifts; AF undefined for a
/// non-zero count; a zero count affects no flags.
fn shift(mnemonic: Mnemonic, size: u32, count: Option<u64>) -> FlagEffect {
    let logical = matches!(mnemonic, Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr);
    match count.map(|c| c & count_mask(size)) {
        Some(0) => FlagEffect::NONE,
        Some(m) => {
            let mut u = AF;
            if m != 1 {
                u |= OF;
            }
            if logical && m >= u64::from(size) {
                u |= CF;
            }
            FlagEffect::new(STATUS, u)
        }
        None => {
            let mut u = AF | OF;
            if logical && size < 32 {
                u |= CF;
            }
            FlagEffect::new(0, u)
        }
    }
}

/// ROL/ROR: CF gets the bit rotated into it when the masked count is non-zero; "The OF flag
/// is defined only for the 1-bit rotates; it is undefined in all other cases (except RCL
/// and RCR instructions only: a zero-bit rotate does nothing, that is affects no flags)."
fn rotate(size: u32, count: Option<u64>) -> FlagEffect {
    match count.map(|c| c & count_mask(size)) {
        Some(0) | None => FlagEffect::new(0, OF),
        Some(1) => FlagEffect::new(CF | OF, 0),
        Some(_) => FlagEffect::new(CF | OF, OF),
    }
}

/// RCL/RCR: the masked count is taken modulo 9 (8-bit) or 17 (16-bit) for the rotation;
/// CF changes only if that is non-zero; OF is defined for a masked count of 1, undefined
/// for other non-zero counts; a zero masked count affects no flags.
fn rotate_through_carry(size: u32, count: Option<u64>) -> FlagEffect {
    let Some(m) = count.map(|c| c & count_mask(size)) else {
        return FlagEffect::new(0, OF);
    };
    if m == 0 {
        return FlagEffect::NONE;
    }
    let rotated = match size {
        8 => m % 9,
        16 => m % 17,
        _ => m,
    };
    let written = if rotated != 0 { CF | OF } else { OF };
    FlagEffect::new(written, if m == 1 { 0 } else { OF })
}

/// SHLD/SHRD: a zero count affects no flags; a count greater than the operand size (only
/// possible with 16-bit operands) leaves every flag undefined; otherwise AF is undefined
/// and OF is defined only for a 1-bit shift.
fn double_shift(size: u32, count: Option<u64>) -> FlagEffect {
    match count.map(|c| c & count_mask(size)) {
        Some(0) => FlagEffect::NONE,
        Some(m) if m > u64::from(size) => FlagEffect::new(STATUS, STATUS),
        Some(1) => FlagEffect::new(STATUS, AF),
        Some(_) => FlagEffect::new(STATUS, AF | OF),
        None if size == 16 => FlagEffect::new(0, STATUS),
        None => FlagEffect::new(0, AF | OF),
    }
}

/// Converts iced-x86 [`RflagsBits`] to RFLAGS bit positions (status flags and DF only).
pub fn from_iced(bits: u32) -> u64 {
    let map = [
        (RflagsBits::OF, OF),
        (RflagsBits::SF, SF),
        (RflagsBits::ZF, ZF),
        (RflagsBits::AF, AF),
        (RflagsBits::CF, CF),
        (RflagsBits::PF, PF),
        (RflagsBits::DF, DF),
    ];
    map.iter()
        .filter(|(i, _)| bits & i != 0)
        .fold(0, |acc, (_, f)| acc | f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mnemonic as M;

    #[test]
    fn fixed_table() {
        let table: &[(Mnemonic, u64, u64)] = &[
            (M::Add, STATUS, 0),
            (M::Inc, STATUS & !CF, 0),
            (M::And, STATUS, AF),
            (M::Test, STATUS, AF),
            (M::Mul, STATUS, SF | ZF | AF | PF),
            (M::Imul, STATUS, SF | ZF | AF | PF),
            (M::Div, STATUS, STATUS),
            (M::Idiv, STATUS, STATUS),
            (M::Bt, CF | OF | SF | AF | PF, OF | SF | AF | PF),
            (M::Bsf, STATUS, CF | OF | SF | AF | PF),
            (M::Popcnt, STATUS, 0),
            (M::Lzcnt, STATUS, OF | SF | PF | AF),
            (M::Andn, STATUS, AF | PF),
            (M::Bextr, STATUS, AF | SF | PF),
            (M::Mov, 0, 0),
            (M::Mulx, 0, 0),
            (M::Sahf, STATUS & !OF, 0),
            (M::Cmpxchg8b, ZF, 0),
        ];
        for &(m, w, u) in table {
            assert_eq!(flag_effect(m, 32, None), FlagEffect::new(w, u), "{m:?}");
        }
    }

    #[test]
    fn shift_counts() {
        // (mnemonic, size, count) -> (written, undefined)
        let table: &[(Mnemonic, u32, u64, u64, u64)] = &[
            (M::Shl, 32, 0, 0, 0),
            (M::Shl, 32, 32, 0, 0), // masked to 0
            (M::Shl, 32, 1, STATUS, AF),
            (M::Shl, 32, 5, STATUS, AF | OF),
            (M::Shl, 8, 8, STATUS, AF | OF | CF),
            (M::Shr, 16, 20, STATUS, AF | OF | CF),
            (M::Sar, 8, 20, STATUS, AF | OF),
            (M::Shl, 64, 32, STATUS, AF | OF),
            (M::Shl, 64, 64, 0, 0),
            (M::Rol, 32, 0, 0, OF),
            (M::Rol, 32, 1, CF | OF, 0),
            (M::Ror, 8, 8, CF | OF, OF),
            (M::Rcl, 32, 0, 0, 0),
            (M::Rcl, 32, 1, CF | OF, 0),
            (M::Rcr, 8, 9, OF, OF),
            (M::Rcr, 8, 10, CF | OF, OF),
            (M::Rcl, 16, 17, OF, OF),
            (M::Shld, 32, 0, 0, 0),
            (M::Shld, 32, 1, STATUS, AF),
            (M::Shrd, 32, 31, STATUS, AF | OF),
            (M::Shld, 16, 16, STATUS, AF | OF),
            (M::Shrd, 16, 17, STATUS, STATUS),
        ];
        for &(m, s, c, w, u) in table {
            assert_eq!(
                flag_effect(m, s, Some(c)),
                FlagEffect::new(w, u),
                "{m:?} size {s} count {c}"
            );
        }
    }

    #[test]
    fn unknown_count_is_union_over_counts() {
        for m in [
            M::Shl,
            M::Shr,
            M::Sar,
            M::Rol,
            M::Ror,
            M::Rcl,
            M::Rcr,
            M::Shld,
            M::Shrd,
        ] {
            for size in [8u32, 16, 32, 64] {
                if matches!(m, M::Shld | M::Shrd) && size == 8 {
                    continue;
                }
                let unknown = flag_effect(m, size, None);
                for c in 0..=255u64 {
                    let known = flag_effect(m, size, Some(c));
                    assert_eq!(
                        known.undefined & !unknown.undefined,
                        0,
                        "{m:?}/{size} count {c}: undefined not covered"
                    );
                    assert_eq!(
                        unknown.written & !known.written,
                        0,
                        "{m:?}/{size} count {c}: written over-claimed"
                    );
                }
            }
        }
    }

    #[test]
    fn apply_clears_written_and_adds_undefined() {
        let e = FlagEffect::new(STATUS, AF);
        assert_eq!(e.apply(CF | ZF), AF);
        assert_eq!(FlagEffect::new(0, OF).apply(CF), CF | OF);
    }

    #[test]
    fn iced_bits_convert() {
        assert_eq!(from_iced(RflagsBits::CF | RflagsBits::ZF), CF | ZF);
        assert_eq!(from_iced(RflagsBits::DF | RflagsBits::OF), DF | OF);
        assert_eq!(from_iced(0), 0);
    }
}
