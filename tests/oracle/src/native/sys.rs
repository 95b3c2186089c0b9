//! Thin checked wrappers around the ptrace, wait and process_vm_* system calls.

use crate::error::OracleError;
use libc::{c_void, pid_t, user_regs_struct};

/// Reads the tracee's user registers (PTRACE_GETREGS).
pub(crate) fn get_regs(pid: pid_t) -> Result<user_regs_struct, OracleError> {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    let mut regs: user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes exactly one user_regs_struct to `data`, which points
    // to a live, writable one.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            pid,
            std::ptr::null_mut::<c_void>(),
            &mut regs as *mut user_regs_struct as *mut c_void,
        )
    };
    if r < 0 {
        return Err(OracleError::last_os("PTRACE_GETREGS"));
    }
    Ok(regs)
}

/// Writes the tracee's user registers (PTRACE_SETREGS).
pub(crate) fn set_regs(pid: pid_t, regs: &user_regs_struct) -> Result<(), OracleError> {
    // SAFETY: PTRACE_SETREGS only reads one user_regs_struct from `data`.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGS,
            pid,
            std::ptr::null_mut::<c_void>(),
            regs as *const user_regs_struct as *mut c_void,
        )
    };
    if r < 0 {
        return Err(OracleError::last_os("PTRACE_SETREGS"));
    }
    Ok(())
}

/// The part of the pending signal's siginfo the oracle needs (PTRACE_GETSIGINFO).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SigInfo {
    /// si_addr (meaningful for SIGSEGV/SIGBUS/SIGFPE/SIGILL).
    pub addr: u64,
}

/// Reads the siginfo of the signal the tracee is stopped for.
pub(crate) fn get_siginfo(pid: pid_t) -> Result<SigInfo, OracleError> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETSIGINFO writes one siginfo_t to `data`, which points to one.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            pid,
            std::ptr::null_mut::<c_void>(),
            &mut si as *mut libc::siginfo_t as *mut c_void,
        )
    };
    if r < 0 {
        return Err(OracleError::last_os("PTRACE_GETSIGINFO"));
    }
    // SAFETY: si was filled in by the kernel; si_addr reads the sigfault union member,
    // which is a plain pointer value for every signal (garbage-but-valid for others).
    let addr = unsafe { si.si_addr() } as u64;
    Ok(SigInfo { addr })
}

/// Sets the ptrace options (PTRACE_SETOPTIONS).
pub(crate) fn set_options(pid: pid_t, options: i32) -> Result<(), OracleError> {
    // SAFETY: PTRACE_SETOPTIONS takes the option bits by value in `data`.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            std::ptr::null_mut::<c_void>(),
            options as usize as *mut c_void,
        )
    };
    if r < 0 {
        return Err(OracleError::last_os("PTRACE_SETOPTIONS"));
    }
    Ok(())
}

/// Resumes the tracee, stopping at the next system call (PTRACE_SYSCALL), delivering `sig`.
pub(crate) fn resume(pid: pid_t, sig: i32) -> Result<(), OracleError> {
    // SAFETY: PTRACE_SYSCALL takes the signal number by value in `data`.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SYSCALL,
            pid,
            std::ptr::null_mut::<c_void>(),
            sig as usize as *mut c_void,
        )
    };
    if r < 0 {
        return Err(OracleError::last_os("PTRACE_SYSCALL"));
    }
    Ok(())
}

/// Waits for the tracee to stop or end; returns the raw wait status.
pub(crate) fn wait(pid: pid_t) -> Result<i32, OracleError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live i32.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return Ok(status);
        }
        let err = OracleError::last_os("waitpid");
        if !matches!(err, OracleError::Sys { errno, .. } if errno == libc::EINTR) {
            return Err(err);
        }
    }
}

/// Copies `buf` into the tracee at `addr` (process_vm_writev).
pub(crate) fn write_mem(pid: pid_t, addr: u64, buf: &[u8]) -> Result<(), OracleError> {
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers `buf`, which the kernel only reads; the remote one is
    // an address in the tracee, which the kernel checks.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(OracleError::last_os("process_vm_writev"));
    }
    if n as usize != buf.len() {
        return Err(OracleError::Sys {
            what: "process_vm_writev (short write)",
            errno: libc::EFAULT,
        });
    }
    Ok(())
}

/// Copies tracee memory at `addr` into `buf` (process_vm_readv).
pub(crate) fn read_mem(pid: pid_t, addr: u64, buf: &mut [u8]) -> Result<(), OracleError> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers `buf`, which is writable for its whole length; the
    // remote one is an address in the tracee, which the kernel checks.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(OracleError::last_os("process_vm_readv"));
    }
    if n as usize != buf.len() {
        return Err(OracleError::Sys {
            what: "process_vm_readv (short read)",
            errno: libc::EFAULT,
        });
    }
    Ok(())
}

/// Kills the tracee and reaps it; errors are ignored (it may already be gone).
pub(crate) fn kill_and_reap(pid: pid_t) {
    // SAFETY: sending SIGKILL to our own child process; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live i32.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            return;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}
