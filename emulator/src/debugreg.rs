//! Debug-register breakpoints (SDM vol. 3, 17.2 "Debug Registers" and
//! 17.3.1 "Debug Exception (#DB)"): instruction breakpoints (faults) and
//! data write / read-write breakpoints (traps), and I/O breakpoints
//! (traps; R/W = 10b with CR4.DE = 1, SDM vol. 3, 17.2.4 and 17.3.1.2).

/// DR7 bits L0..L3/G0..G3 (SDM vol. 3, 17.2.4): any breakpoint enabled.
pub(crate) const DR7_ENABLES: u64 = 0xff;

/// Whether breakpoint `n` (0..4) is enabled locally or globally in `dr7`.
#[inline]
fn enabled(dr7: u64, n: usize) -> bool {
    dr7 >> (2 * n) & 3 != 0
}

/// R/Wn field of DR7 (bits 16 + 4n, 2 bits; SDM vol. 3, 17.2.4):
/// 00 execute, 01 write, 10 I/O, 11 read or write.
#[inline]
fn rw(dr7: u64, n: usize) -> u64 {
    dr7 >> (16 + 4 * n) & 3
}

/// LENn field of DR7 (bits 18 + 4n) as a byte count (SDM vol. 3, 17.2.5):
/// 00 → 1, 01 → 2, 10 → 8, 11 → 4.
#[inline]
fn len(dr7: u64, n: usize) -> u64 {
    match dr7 >> (18 + 4 * n) & 3 {
        0 => 1,
        1 => 2,
        2 => 8,
        _ => 4,
    }
}

/// Whether any data (R/W = 01 or 11) breakpoint is enabled.
pub(crate) fn data_armed(dr: &[u64; 8]) -> bool {
    (0..4).any(|n| enabled(dr[7], n) && rw(dr[7], n) & 1 == 1)
}

/// The DR6.Bn mask of enabled instruction breakpoints at linear `lin`.
pub(crate) fn insn_hits(dr: &[u64; 8], lin: u64) -> u64 {
    (0..4)
        .filter(|&n| enabled(dr[7], n) && rw(dr[7], n) == 0 && dr[n] == lin)
        .fold(0, |m, n| m | 1 << n)
}

/// The DR6.Bn mask of enabled data breakpoints that a `size`-byte access at
/// linear `lin` (a write if `write`) overlaps; the breakpoint address is
/// aligned down to its length (SDM vol. 3, 17.2.5).
pub(crate) fn data_hits(dr: &[u64; 8], lin: u64, size: u64, write: bool) -> u64 {
    let mut m = 0;
    for n in 0..4 {
        let kind = rw(dr[7], n);
        if !enabled(dr[7], n) || kind & 1 == 0 || (kind == 1 && !write) {
            continue;
        }
        let l = len(dr[7], n);
        let start = dr[n] & !(l - 1);
        let end = lin.wrapping_add(size.max(1) - 1);
        if lin <= start + (l - 1) && start <= end {
            m |= 1 << n;
        }
    }
    m
}

/// CR4.DE (bit 3): debugging extensions (SDM vol. 3, 2.5 "Control Registers").
const CR4_DE: u64 = 1 << 3;

/// The DR6.Bn mask of enabled I/O breakpoints that a `size`-byte access to
/// `port` overlaps (SDM vol. 3, 17.2.4, 17.2.5 and 17.3.1.2 "Data Memory
/// and I/O Breakpoint Exception Conditions"): R/W = 10b breaks on I/O reads
/// or writes only when CR4.DE = 1; the port in DRn is aligned down to LENn
/// as for data breakpoints. With CR4.DE = 0 the SDM leaves R/W = 10b
/// undefined (vol. 3, 22.23.2 "Differences in Debug Register DR7"); here
/// such a breakpoint never triggers.
pub(crate) fn io_hits(dr: &[u64; 8], cr4: u64, port: u16, size: u8) -> u64 {
    if cr4 & CR4_DE == 0 {
        return 0;
    }
    let first = u64::from(port);
    let last = first + u64::from(size.max(1)) - 1;
    (0..4)
        .filter(|&n| enabled(dr[7], n) && rw(dr[7], n) == 2)
        .filter(|&n| {
            let l = len(dr[7], n);
            let start = dr[n] & !(l - 1);
            first <= start + (l - 1) && start <= last
        })
        .fold(0, |m, n| m | 1 << n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn len_and_overlap_table() {
        // (dr0, dr7, access lin, size, write, hit)
        let rows: [(u64, u64, u64, u64, bool, bool); 7] = [
            (0x1002, 0x1 | 0b1101 << 16, 0x1000, 4, true, true),
            (0x1002, 0x1 | 0b1101 << 16, 0x1004, 4, true, false),
            (0x1002, 0x1 | 0b1101 << 16, 0x1000, 4, false, false),
            (0x1002, 0x1 | 0b1111 << 16, 0x0fff, 2, false, true),
            (0x1007, 0x1 | 0b1001 << 16, 0x1000, 1, true, true),
            (0x1001, 0x1 | 0b0001 << 16, 0x1001, 1, true, true),
            (0x1001, 0x1 | 0b0001 << 16, 0x1002, 1, true, false),
        ];
        for (i, &(a, d7, lin, sz, w, hit)) in rows.iter().enumerate() {
            let dr = [a, 0, 0, 0, 0, 0, 0, d7];
            assert_eq!(data_hits(&dr, lin, sz, w) == 1, hit, "row {i}");
        }
    }

    #[test]
    fn io_breakpoint_table() {
        // (dr0, R/W0, LEN0, CR4, port, size, hit)
        let rows: [(u64, u64, u64, u64, u16, u8, bool); 9] = [
            (0x60, 2, 0, CR4_DE, 0x60, 1, true),
            (0x60, 2, 0, 0, 0x60, 1, false),
            (0x60, 2, 0, CR4_DE, 0x61, 1, false),
            (0x61, 2, 0, CR4_DE, 0x60, 2, true),
            (0x63, 2, 3, CR4_DE, 0x60, 1, true),
            (0x63, 2, 3, CR4_DE, 0x64, 4, false),
            (0x3f8, 2, 1, CR4_DE, 0x3f7, 2, true),
            (0x60, 3, 0, CR4_DE, 0x60, 1, false),
            (0x60, 0, 0, CR4_DE, 0x60, 1, false),
        ];
        for (i, &(a, kind, l, cr4, port, size, hit)) in rows.iter().enumerate() {
            let dr = [a, 0, 0, 0, 0, 0, 0, 1 | kind << 16 | l << 18];
            assert_eq!(io_hits(&dr, cr4, port, size) == 1, hit, "row {i}");
        }
    }
}
