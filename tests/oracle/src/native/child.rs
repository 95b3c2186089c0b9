//! Setup of the traced child process (runs after `fork`, so only raw system calls).
//!
//! The child maps the code page, the data area, a one-byte `int3` signal handler and an
//! alternate signal stack at fixed addresses, installs that handler for the fault
//! signals (so the kernel writes a signal frame holding the x86 trap number, error code
//! and CR2), arms a CPU-time interval timer (the run budget), enters seccomp strict mode
//! and stops itself with `int3`. From then on it only ever runs snippets.

use crate::case::{CODE_ADDR, CODE_SIZE, DATA_ADDR, DATA_SIZE};
use libc::c_void;

/// Address of the child's signal handler: a page whose first byte is `int3`.
pub(crate) const HANDLER_ADDR: u64 = 0x0F00_0000;
/// Address of the child's alternate signal stack.
pub(crate) const ALTSTACK_ADDR: u64 = 0x0F10_0000;
/// Size of the alternate signal stack (room for an AVX-512 XSAVE frame).
pub(crate) const ALTSTACK_SIZE: usize = 0x1_0000;
/// Period of the child's ITIMER_PROF (CPU-time) ticks, in milliseconds.
pub(crate) const TICK_MS: u64 = 10;
/// Signals whose delivery goes through the `int3` handler to expose the signal frame.
pub(crate) const FAULT_SIGNALS: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
];

/// `MAP_FIXED_NOREPLACE` (Linux 4.17+, include/uapi/asm-generic/mman-common.h).
const MAP_FIXED_NOREPLACE: i32 = 0x10_0000;

/// Maps `len` bytes at exactly `addr` or exits with `step`.
///
/// # Safety
/// Only to be called in the freshly forked child.
unsafe fn map_fixed(addr: u64, len: usize, prot: i32, step: i32) {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            addr as *mut c_void,
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p as u64 != addr {
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(step) };
    }
}

/// Body of the forked child: sets everything up and stops; never returns.
///
/// Exit statuses 1..=12 name the setup step that failed.
pub(crate) fn child_main() -> ! {
    // SAFETY: this runs in the child right after fork; every call below is a plain system
    // call wrapper (async-signal-safe), touching only stack values and the fixed
    // mappings this function creates.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            libc::_exit(1);
        }
        if libc::ptrace(
            libc::PTRACE_TRACEME,
            0,
            std::ptr::null_mut::<c_void>(),
            std::ptr::null_mut::<c_void>(),
        ) != 0
        {
            libc::_exit(2);
        }
        let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        map_fixed(CODE_ADDR, CODE_SIZE, rwx, 3);
        map_fixed(DATA_ADDR, DATA_SIZE, rw, 4);
        map_fixed(HANDLER_ADDR, 0x1000, rw, 5);
        *(HANDLER_ADDR as *mut u8) = 0xCC;
        if libc::mprotect(
            HANDLER_ADDR as *mut c_void,
            0x1000,
            libc::PROT_READ | libc::PROT_EXEC,
        ) != 0
        {
            libc::_exit(6);
        }
        map_fixed(ALTSTACK_ADDR, ALTSTACK_SIZE, rw, 7);
        let ss = libc::stack_t {
            ss_sp: ALTSTACK_ADDR as *mut c_void,
            ss_flags: 0,
            ss_size: ALTSTACK_SIZE,
        };
        if libc::sigaltstack(&ss, std::ptr::null_mut()) != 0 {
            libc::_exit(8);
        }
        for sig in FAULT_SIGNALS {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = HANDLER_ADDR as usize;
            // SA_NODEFER: the handler never returns (no sigreturn), so the signal must not
            // stay blocked, or the next fault would kill the child.
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                libc::_exit(9);
            }
        }
        let tick = libc::timeval {
            tv_sec: 0,
            tv_usec: (TICK_MS * 1000) as libc::suseconds_t,
        };
        let it = libc::itimerval {
            it_interval: tick,
            it_value: tick,
        };
        if libc::setitimer(libc::ITIMER_PROF, &it, std::ptr::null_mut()) != 0 {
            libc::_exit(10);
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_STRICT as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            libc::_exit(11);
        }
        // Tell the parent we are ready; it never resumes execution here.
        loop {
            std::arch::asm!("int3");
        }
    }
}
