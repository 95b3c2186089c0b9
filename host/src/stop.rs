//! Stop requests and vCPU wake-ups shared between the vCPU thread, device
//! threads and the timer thread.

use crate::outcome::Outcome;
use hyperplug_plugin_api::backend::VcpuKicker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

/// Wakes a vCPU: kicks it out of guest mode and wakes it from a host-side
/// wait (HLT, wait-for-SIPI). A waker can have children (one per vCPU under
/// the VM's root waker): waking a parent wakes them all.
#[derive(Default)]
pub struct VcpuWaker {
    kicker: Mutex<Option<VcpuKicker>>,
    children: Mutex<Vec<Arc<VcpuWaker>>>,
    generation: Mutex<u64>,
    cv: Condvar,
}

impl VcpuWaker {
    /// Installs the backend's kick handle (once the vCPU exists).
    pub fn set_kicker(&self, k: VcpuKicker) {
        *lock(&self.kicker) = Some(k);
    }

    /// A new waker that this one wakes too.
    pub fn child(&self) -> Arc<VcpuWaker> {
        let c = Arc::new(VcpuWaker::default());
        lock(&self.children).push(Arc::clone(&c));
        c
    }

    /// Kicks the vCPU(s) and wakes any waiter.
    pub fn wake(&self) {
        if let Some(k) = lock(&self.kicker).as_ref() {
            k.kick();
        }
        *lock(&self.generation) += 1;
        self.cv.notify_all();
        let children: Vec<Arc<VcpuWaker>> = lock(&self.children).clone();
        for c in children {
            c.wake();
        }
    }

    /// The current wake generation; pass it to [`VcpuWaker::wait`].
    pub fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    /// Blocks until a wake after `seen`, or `timeout`.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let g = lock(&self.generation);
        let _ = self.cv.wait_timeout_while(g, timeout, |g| *g == seen);
    }
}

#[derive(Default)]
struct StopState {
    flag: AtomicBool,
    reason: Mutex<Option<Outcome>>,
}

/// Shared "stop the VM" request; the first request wins and wakes the vCPU.
#[derive(Clone, Default)]
pub struct StopHandle {
    state: Arc<StopState>,
    waker: Arc<VcpuWaker>,
}

impl StopHandle {
    /// A stop handle that wakes through `waker`.
    pub fn new(waker: Arc<VcpuWaker>) -> Self {
        Self {
            state: Arc::default(),
            waker,
        }
    }

    fn set(&self, o: Outcome) {
        {
            let mut r = lock(&self.state.reason);
            if r.is_none() {
                *r = Some(o);
            }
        }
        self.state.flag.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Ends the VM with `o` (if nothing ended it first).
    pub fn finish(&self, o: Outcome) {
        self.set(o);
    }

    /// ACPI S5.
    pub fn power_off(&self) {
        self.set(Outcome::PowerOff);
    }

    /// A device-requested exit.
    pub fn request_exit(&self, status: i32, reason: String) {
        self.set(Outcome::DeviceExit { status, reason });
    }

    /// A machine reset.
    pub fn request_reset(&self, reason: String) {
        self.set(Outcome::Reset { reason });
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.state.flag.load(Ordering::SeqCst)
    }

    /// Takes the stop reason, if a stop was requested.
    pub fn take(&self) -> Option<Outcome> {
        lock(&self.state.reason).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_stop_wins_and_wakes() {
        let w = Arc::new(VcpuWaker::default());
        let s = StopHandle::new(Arc::clone(&w));
        let g = w.generation();
        s.power_off();
        s.request_exit(3, "later".into());
        assert!(s.requested());
        assert_ne!(w.generation(), g);
        assert_eq!(s.take(), Some(Outcome::PowerOff));
    }

    #[test]
    fn wait_returns_on_wake_from_another_thread() {
        let w = Arc::new(VcpuWaker::default());
        let g = w.generation();
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w2.wake();
        });
        let start = std::time::Instant::now();
        w.wait(g, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(10));
        t.join().unwrap();
    }
}
