//! The native oracle: runs a case on the host CPU in a ptrace'd child process.

mod child;
mod frame;
mod sys;

use crate::case::{rflags, Case, Outcome, Regs, CODE_ADDR, CODE_SIZE, DATA_ADDR, DATA_SIZE};
use crate::error::OracleError;
use libc::{pid_t, user_regs_struct};
use std::cell::RefCell;
use std::marker::PhantomData;

/// Default CPU-time budget per case, in milliseconds.
pub const DEFAULT_BUDGET_MS: u64 = 50;

/// A reusable traced child that runs cases one after another.
///
/// Not `Send`: Linux only accepts ptrace requests from the thread that forked the tracee.
pub struct NativeOracle {
    child: Option<Child>,
    budget_ticks: u64,
    code_buf: Vec<u8>,
    data_buf: Vec<u8>,
    _not_send: PhantomData<*const ()>,
}

/// A live, stopped child.
struct Child {
    pid: pid_t,
    /// Registers read right after setup (segment selectors, FS/GS base).
    template: user_regs_struct,
}

impl Drop for Child {
    fn drop(&mut self) {
        sys::kill_and_reap(self.pid);
    }
}

thread_local! {
    static ORACLE: RefCell<Option<NativeOracle>> = const { RefCell::new(None) };
}

/// Runs `case` on this thread's shared [`NativeOracle`] (created on first use).
pub fn run_native(case: &Case) -> Result<Outcome, OracleError> {
    ORACLE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(NativeOracle::new()?);
        }
        match slot.as_mut() {
            Some(o) => o.run(case),
            None => Err(OracleError::UnexpectedStop("oracle missing".into())),
        }
    })
}

/// How a wait for the child ended.
enum Stop {
    Completed(user_regs_struct),
    Fault {
        regs: user_regs_struct,
        exception: crate::case::Exception,
    },
}

impl NativeOracle {
    /// Starts a child process and waits until it is ready.
    pub fn new() -> Result<Self, OracleError> {
        let mut o = NativeOracle {
            child: None,
            budget_ticks: DEFAULT_BUDGET_MS.div_ceil(child::TICK_MS),
            code_buf: vec![0xCC; CODE_SIZE],
            data_buf: vec![0; DATA_SIZE],
            _not_send: PhantomData,
        };
        o.child = Some(spawn()?);
        Ok(o)
    }

    /// Sets the per-case CPU-time budget (rounded up to the 10 ms timer tick, minimum 2
    /// ticks so a tick that lands in a short case never counts as a timeout).
    pub fn set_budget_ms(&mut self, ms: u64) {
        self.budget_ticks = ms.div_ceil(child::TICK_MS).max(2);
    }

    /// Process id of the current child (for diagnostics).
    pub fn child_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// Runs one case and returns what the CPU did.
    ///
    /// A syscall attempt or an unexpected child death kills the child; the next call
    /// starts a fresh one. A timeout leaves the child reusable.
    pub fn run(&mut self, case: &Case) -> Result<Outcome, OracleError> {
        validate(case)?;
        if self.child.is_none() {
            self.child = Some(spawn()?);
        }
        let result = self.run_inner(case);
        if let Err(e) = &result {
            if !matches!(e, OracleError::Timeout(_)) {
                // Unknown child state: start over next time (Drop kills it).
                self.child = None;
            }
        }
        result
    }

    fn run_inner(&mut self, case: &Case) -> Result<Outcome, OracleError> {
        let Some(child) = self.child.as_ref() else {
            return Err(OracleError::UnexpectedStop("no child".into()));
        };
        let pid = child.pid;
        self.code_buf.fill(0xCC);
        self.code_buf[..case.code.len()].copy_from_slice(&case.code);
        sys::write_mem(pid, CODE_ADDR, &self.code_buf)?;
        self.data_buf.fill(0);
        self.data_buf[..case.data.len()].copy_from_slice(&case.data);
        sys::write_mem(pid, DATA_ADDR, &self.data_buf)?;

        let mut regs = child.template;
        let g = &case.regs.gpr;
        regs.rax = g[0];
        regs.rcx = g[1];
        regs.rdx = g[2];
        regs.rbx = g[3];
        regs.rsp = g[4];
        regs.rbp = g[5];
        regs.rsi = g[6];
        regs.rdi = g[7];
        regs.r8 = g[8];
        regs.r9 = g[9];
        regs.r10 = g[10];
        regs.r11 = g[11];
        regs.r12 = g[12];
        regs.r13 = g[13];
        regs.r14 = g[14];
        regs.r15 = g[15];
        regs.rip = case.regs.rip;
        regs.eflags = (case.regs.rflags & rflags::SETTABLE) | rflags::IF | rflags::FIXED1;
        // Not inside a system call: no restart logic may touch RIP/RAX.
        regs.orig_rax = u64::MAX;
        sys::set_regs(pid, &regs)?;
        sys::resume(pid, 0)?;

        let stop = self.wait_for_end(pid, case.end_rip())?;
        let mut data = vec![0u8; DATA_SIZE];
        sys::read_mem(pid, DATA_ADDR, &mut data)?;
        Ok(match stop {
            Stop::Completed(mut r) => {
                r.rip = case.end_rip();
                Outcome {
                    regs: to_regs(&r),
                    data,
                    exception: None,
                }
            }
            Stop::Fault { regs, exception } => Outcome {
                regs: to_regs(&regs),
                data,
                exception: Some(exception),
            },
        })
    }

    /// Drives the child until the terminator, a fault (through the handler), a system
    /// call, or the budget.
    fn wait_for_end(&self, pid: pid_t, end_rip: u64) -> Result<Stop, OracleError> {
        let mut ticks = 0u64;
        // Registers and signal of a fault whose signal frame is being built.
        let mut pending: Option<(user_regs_struct, i32, sys::SigInfo)> = None;
        loop {
            let status = sys::wait(pid)?;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Err(OracleError::ChildDied(status));
            }
            if !libc::WIFSTOPPED(status) {
                continue;
            }
            let sig = libc::WSTOPSIG(status);
            if sig == libc::SIGTRAP | 0x80 {
                let r = sys::get_regs(pid)?;
                return Err(OracleError::SyscallAttempted { rip: r.rip });
            }
            if sig == libc::SIGPROF {
                ticks += 1;
                if ticks >= self.budget_ticks {
                    return Err(OracleError::Timeout(ticks * child::TICK_MS));
                }
                sys::resume(pid, 0)?;
                continue;
            }
            let is_fault_signal = child::FAULT_SIGNALS.contains(&sig);
            if !is_fault_signal {
                // Stray signal (SIGSTOP, SIGCHLD, ...): suppress it.
                sys::resume(pid, 0)?;
                continue;
            }
            let regs = sys::get_regs(pid)?;
            match pending {
                None if sig == libc::SIGTRAP && regs.rip == end_rip + 1 => {
                    return Ok(Stop::Completed(regs));
                }
                None => {
                    // Let the kernel deliver the signal to the int3 handler so it writes
                    // the signal frame with trapno/err/cr2.
                    let si = sys::get_siginfo(pid)?;
                    pending = Some((regs, sig, si));
                    sys::resume(pid, sig)?;
                }
                Some((fault_regs, fault_sig, si))
                    if sig == libc::SIGTRAP && regs.rip == child::HANDLER_ADDR + 1 =>
                {
                    let info = frame::read_frame(pid, regs.rdx)?;
                    let exception = frame::classify(fault_sig, si.addr, info)?;
                    return Ok(Stop::Fault {
                        regs: fault_regs,
                        exception,
                    });
                }
                Some((_, fault_sig, _)) => {
                    return Err(OracleError::UnexpectedStop(format!(
                        "signal {sig} at {:#x} while delivering signal {fault_sig}",
                        regs.rip
                    )));
                }
            }
        }
    }
}

/// Rejects cases the child cannot hold.
fn validate(case: &Case) -> Result<(), OracleError> {
    if case.code.len() >= CODE_SIZE {
        return Err(OracleError::BadCase(format!(
            "code is {} bytes; at most {} fit with the terminator",
            case.code.len(),
            CODE_SIZE - 1
        )));
    }
    if case.data.len() > DATA_SIZE {
        return Err(OracleError::BadCase(format!(
            "data is {} bytes; the data area holds {DATA_SIZE}",
            case.data.len()
        )));
    }
    if case.regs.rflags & rflags::TF != 0 {
        return Err(OracleError::BadCase("initial RFLAGS.TF must be 0".into()));
    }
    Ok(())
}

/// Forks and sets up a child; returns once it is stopped and ready.
fn spawn() -> Result<Child, OracleError> {
    // SAFETY: the child branch only runs `child_main`, which uses async-signal-safe
    // system calls and never returns; the parent branch continues normally.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(OracleError::last_os("fork"));
    }
    if pid == 0 {
        child::child_main();
    }
    let status = match sys::wait(pid) {
        Ok(s) => s,
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(e);
        }
    };
    if libc::WIFEXITED(status) {
        return Err(OracleError::ChildSetup {
            step: libc::WEXITSTATUS(status),
        });
    }
    // From here on the Child's Drop kills the process on any error.
    let mut c = Child {
        pid,
        template: empty_regs(),
    };
    if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGTRAP {
        return Err(OracleError::UnexpectedStop(format!(
            "child setup ended with wait status {status:#x}"
        )));
    }
    sys::set_options(pid, libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL)?;
    c.template = sys::get_regs(pid)?;
    Ok(c)
}

fn empty_regs() -> user_regs_struct {
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn to_regs(r: &user_regs_struct) -> Regs {
    Regs {
        gpr: [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ],
        rip: r.rip,
        rflags: r.eflags,
    }
}
