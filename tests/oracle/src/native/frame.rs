//! Turning a delivered fault signal into an x86 exception.
//!
//! Linux records the hardware trap number, the error code and CR2 of the fault in the
//! signal frame's `sigcontext` (`trapno`, `err`, `cr2`); the child's handler stops on
//! `int3` with RDX pointing at the `ucontext_t`, and the parent reads those fields. The
//! signal number and `si_code` are cross-checked against the trap number.

use crate::case::{vector_has_error_code, Exception};
use crate::error::OracleError;
use crate::native::sys;
use libc::pid_t;

/// The fields of the kernel's `sigcontext` the oracle reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameInfo {
    /// Hardware exception vector (`trapno`).
    pub trapno: u64,
    /// Error code pushed by the CPU (`err`), as sanitised by the kernel.
    pub err: u64,
    /// CR2 at the fault (`cr2`).
    pub cr2: u64,
}

/// Reads `trapno`, `err` and `cr2` from the `ucontext_t` at `uc_addr` in the child.
pub(crate) fn read_frame(pid: pid_t, uc_addr: u64) -> Result<FrameInfo, OracleError> {
    let gregs_off = std::mem::offset_of!(libc::ucontext_t, uc_mcontext)
        + std::mem::offset_of!(libc::mcontext_t, gregs);
    let mut buf = [0u8; 23 * 8];
    sys::read_mem(pid, uc_addr + gregs_off as u64, &mut buf)?;
    let greg = |i: i32| -> u64 {
        let i = i as usize * 8;
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Ok(FrameInfo {
        trapno: greg(libc::REG_TRAPNO),
        err: greg(libc::REG_ERR),
        cr2: greg(libc::REG_CR2),
    })
}

/// The signal Linux sends for a user-mode exception vector (arch/x86/kernel/traps.c),
/// used to cross-check the frame's `trapno`.
pub(crate) fn signal_for_vector(vector: u8) -> Option<i32> {
    Some(match vector {
        0 => libc::SIGFPE,           // #DE
        1 | 3 => libc::SIGTRAP,      // #DB, #BP
        4 | 5 | 13 => libc::SIGSEGV, // #OF, #BR, #GP
        11 | 12 => libc::SIGBUS,     // #NP, #SS
        6 => libc::SIGILL,           // #UD
        14 => libc::SIGSEGV,         // #PF (SIGBUS for some file-backed cases)
        17 => libc::SIGBUS,          // #AC
        _ => return None,
    })
}

/// Builds the exception from the delivered signal, its `si_addr` and the frame. For #PF
/// the frame's CR2 and `si_addr` must agree.
pub(crate) fn classify(
    signo: i32,
    si_addr: u64,
    info: FrameInfo,
) -> Result<Exception, OracleError> {
    let vector = u8::try_from(info.trapno)
        .ok()
        .filter(|v| *v < 32)
        .ok_or_else(|| {
            OracleError::UnexpectedStop(format!(
                "signal {signo} with implausible trap number {}",
                info.trapno
            ))
        })?;
    let expected = signal_for_vector(vector);
    let consistent = expected == Some(signo) || (vector == 14 && signo == libc::SIGBUS);
    if !consistent {
        return Err(OracleError::UnexpectedStop(format!(
            "signal {signo} does not match trap number {vector}"
        )));
    }
    if vector == 14 && si_addr != info.cr2 {
        return Err(OracleError::UnexpectedStop(format!(
            "#PF with cr2 {:#x} but si_addr {si_addr:#x}",
            info.cr2
        )));
    }
    let error_code_known = vector_has_error_code(vector);
    Ok(Exception {
        vector,
        error_code_known,
        error_code: if error_code_known { info.err } else { 0 },
        fault_addr: if vector == 14 { info.cr2 } else { 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(trapno: u64, err: u64, cr2: u64) -> FrameInfo {
        FrameInfo { trapno, err, cr2 }
    }

    #[test]
    fn classify_table() {
        // (signal, trapno, err, cr2) -> (vector, error code known, error code, addr)
        type Row = (i32, u64, u64, u64, u8, bool, u64, u64);
        let table: &[Row] = &[
            (libc::SIGFPE, 0, 0, 0, 0, false, 0, 0),
            (libc::SIGTRAP, 3, 0, 0, 3, false, 0, 0),
            (libc::SIGTRAP, 1, 0, 0, 1, false, 0, 0),
            (libc::SIGILL, 6, 0, 0, 6, false, 0, 0),
            (libc::SIGSEGV, 13, 0x1a, 0, 13, true, 0x1a, 0),
            (libc::SIGBUS, 12, 0, 0, 12, true, 0, 0),
            (libc::SIGSEGV, 14, 6, 0x3000_0000, 14, true, 6, 0x3000_0000),
            (libc::SIGBUS, 17, 0, 0, 17, true, 0, 0),
            (libc::SIGFPE, 0, 99, 0, 0, false, 0, 0),
        ];
        for &(sig, t, e, c, v, k, ec, a) in table {
            let x = classify(sig, c, frame(t, e, c)).expect("consistent");
            assert_eq!(
                (x.vector, x.error_code_known, x.error_code, x.fault_addr),
                (v, k, ec, a),
                "sig {sig} trapno {t}"
            );
        }
    }

    #[test]
    fn classify_rejects_inconsistent() {
        assert!(classify(libc::SIGFPE, 0, frame(13, 0, 0)).is_err());
        assert!(classify(libc::SIGSEGV, 0x1000, frame(14, 4, 0x2000)).is_err());
        assert!(classify(libc::SIGSEGV, 0, frame(0, 0, 0)).is_err());
        assert!(classify(libc::SIGSEGV, 0, frame(300, 0, 0)).is_err());
    }
}
