//! Human-readable, reproducible printing of cases and outcomes.

use crate::case::{gpr, rflags, Case, Outcome, CODE_ADDR, DATA_ADDR};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use std::fmt::Write;

/// Disassembly of `code` at [`CODE_ADDR`], one instruction per line with offset, bytes
/// and the flags possibly undefined before it.
pub fn disassemble(case: &Case) -> String {
    let mut out = String::new();
    let mut fmt = IntelFormatter::new();
    fmt.options_mut().set_first_operand_char_index(8);
    let mut d = Decoder::with_ip(64, &case.code, CODE_ADDR, DecoderOptions::NONE);
    let mut text = String::new();
    while d.can_decode() {
        let i = d.decode();
        text.clear();
        fmt.format(&i, &mut text);
        let off = (i.ip() - CODE_ADDR) as usize;
        let bytes: String = case.code[off..off + i.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let undef = case.undefined_flags_at(i.ip());
        let note = if undef != 0 {
            format!("   ; undef before: {}", rflags::describe(undef))
        } else {
            String::new()
        };
        let _ = writeln!(out, "  {:#010x}  {bytes:<30} {text}{note}", i.ip());
    }
    let _ = writeln!(
        out,
        "  {:#010x}  cc                             int3 (terminator){}",
        case.end_rip(),
        match case.undefined_flags_at(case.end_rip()) {
            0 => String::new(),
            u => format!("   ; undef at end: {}", rflags::describe(u)),
        }
    );
    out
}

/// Registers as a 4-column table.
fn regs_table(gprs: &[u64; 16], rip: u64, rfl: u64) -> String {
    let mut out = String::new();
    for row in 0..4 {
        let _ = write!(out, " ");
        for col in 0..4 {
            let i = row * 4 + col;
            let _ = write!(out, " {:>3}={:016x}", gpr::NAMES[i], gprs[i]);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "  rip={rip:#x} rflags={rfl:#x} [{}]",
        rflags::describe(rfl)
    );
    out
}

/// Everything needed to reproduce and inspect a case (and its outcome, if given).
pub fn describe(case: &Case, outcome: Option<&Outcome>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "code ({} bytes): {}", case.code.len(), hex(&case.code));
    out.push_str(&disassemble(case));
    let _ = writeln!(out, "initial state:");
    out.push_str(&regs_table(&case.regs.gpr, case.regs.rip, case.regs.rflags));
    let Some(o) = outcome else {
        return out;
    };
    match &o.exception {
        None => {
            let _ = writeln!(out, "outcome: completed");
        }
        Some(e) => {
            let _ = writeln!(out, "outcome: {e} at rip {:#x}", o.regs.rip);
        }
    }
    out.push_str(&regs_table(&o.regs.gpr, o.regs.rip, o.regs.rflags));
    let undef = case.undefined_flags_at(o.regs.rip);
    if undef != 0 {
        let _ = writeln!(
            out,
            "  flags possibly undefined here: {}",
            rflags::describe(undef)
        );
    }
    let changed = changed_ranges(&case.data, &o.data);
    if changed.is_empty() {
        let _ = writeln!(out, "data area: unchanged");
    } else {
        let _ = writeln!(out, "data area changes:");
        for (start, end) in changed.iter().take(16) {
            let before = case.data.get(*start..*end).unwrap_or(&[]);
            let after = o.data.get(*start..*end).unwrap_or(&[]);
            let _ = writeln!(
                out,
                "  {:#x}: {} -> {}",
                DATA_ADDR + *start as u64,
                hex(before),
                hex(after)
            );
        }
        if changed.len() > 16 {
            let _ = writeln!(out, "  ... {} more ranges", changed.len() - 16);
        }
    }
    out
}

/// Byte ranges where `a` and `b` differ (a missing byte in `a` counts as zero).
pub fn changed_ranges(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, nb) in b.iter().enumerate() {
        let ob = a.get(i).copied().unwrap_or(0);
        match (ob != *nb, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, b.len()));
    }
    out
}

/// Lower-case hex without separators.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(changed_ranges(&[1, 2, 3, 4], &[1, 9, 9, 4]), vec![(1, 3)]);
        assert_eq!(changed_ranges(&[1, 2], &[0, 2, 5]), vec![(0, 1), (2, 3)]);
        assert!(changed_ranges(&[7; 4], &[7; 4]).is_empty());
    }
}
