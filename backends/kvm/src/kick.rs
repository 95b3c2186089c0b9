//! Kicking a vCPU out of `KVM_RUN` from another thread, and the vCPU's own
//! mapping of its `kvm_run` area.
//!
//! A kick sets a pending flag and, if the vCPU thread is inside `KVM_RUN`,
//! sends it [`kick_signal`]. The signal handler runs *on the vCPU thread* and
//! sets `kvm_run.immediate_exit`, so only the vCPU thread ever writes the run
//! area; the handler is installed without `SA_RESTART`, so an ioctl that is in
//! the guest returns `EINTR`. The vCPU checks the pending flag after it has
//! published its thread id and before it enters, so no kick is lost.

use hyperplug_plugin_api::backend::Kick;
use kvm_bindings::kvm_run;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

/// The real-time signal used for kicks (SIGRTMIN + 6, clear of the ones glibc reserves).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

thread_local! {
    /// While this thread is inside KVM_RUN: its `immediate_exit` byte, else null.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick_signal(_: libc::c_int) {
    // Only a const-initialised thread-local Cell read and a byte store:
    // async-signal-safe.
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: the pointer is set by this thread around its own KVM_RUN and
        // points into the live kvm_run mapping it owns.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// Installs the handler for [`kick_signal`] once per process.
pub fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the
        // handler only touches async-signal-safe state (see on_kick_signal).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick_signal as *const () as usize;
            sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// The vCPU's `kvm_run` area, mapped by us (`mmap` of the vCPU fd) so that a
/// raw pointer with provenance over the whole area, PIO data page included,
/// is available.
pub struct RunMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all access goes through the
// owning vCPU (one thread at a time, `&mut self`).
unsafe impl Send for RunMapping {}

impl RunMapping {
    /// Maps `len` bytes of the vCPU fd's run area.
    pub fn new(vcpu_fd: libc::c_int, len: usize) -> std::io::Result<Self> {
        // SAFETY: mapping a KVM vCPU fd at offset 0 with the size KVM reported
        // (KVM_GET_VCPU_MMAP_SIZE) is how the run area is obtained; the result is
        // checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu_fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p as *mut u8)
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }

    /// Start of the area.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The area as `kvm_run` (its first bytes).
    pub fn run(&self) -> *mut kvm_run {
        self.ptr.as_ptr() as *mut kvm_run
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a real vCPU).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for RunMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// State shared between a vCPU and its kick handles.
#[derive(Default)]
pub struct KickShared {
    /// A kick is waiting to be consumed by the vCPU.
    pending: AtomicBool,
    /// pthread_t of the thread inside KVM_RUN, 0 when none.
    thread: AtomicU64,
}

impl KickShared {
    /// Called by the vCPU thread before KVM_RUN with its run area; returns
    /// false (and leaves) if a kick is already pending, so the run must not start.
    pub fn enter(&self, run: &RunMapping) -> bool {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as u64;
        // SAFETY: immediate_exit is a u8 inside the live run area.
        let ie = unsafe { std::ptr::addr_of_mut!((*run.run()).immediate_exit) };
        IMMEDIATE_EXIT.with(|c| c.set(ie));
        self.thread.store(me, Ordering::SeqCst);
        if self.pending.swap(false, Ordering::SeqCst) {
            self.leave(run);
            return false;
        }
        true
    }

    /// Called by the vCPU thread after KVM_RUN: forgets the thread and clears
    /// any kick it consumed.
    pub fn leave(&self, run: &RunMapping) {
        self.thread.store(0, Ordering::SeqCst);
        IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
        self.pending.store(false, Ordering::SeqCst);
        // SAFETY: this thread owns the run area; no reference into it is live.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*run.run()).immediate_exit), 0) };
    }
}

/// A kick handle (see the module docs).
pub struct KvmKicker(pub std::sync::Arc<KickShared>);

impl Kick for KvmKicker {
    fn kick(&self) {
        self.0.pending.store(true, Ordering::SeqCst);
        let t = self.0.thread.load(Ordering::SeqCst);
        if t != 0 {
            // SAFETY: `t` was published by a live vCPU thread that is inside (or
            // just leaving) KVM_RUN; signalling a thread that has since left is
            // harmless (the handler sees a null target).
            unsafe { libc::pthread_kill(t as libc::pthread_t, kick_signal()) };
        }
    }
}
