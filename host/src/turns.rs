//! Round-robin turns for the vCPUs of a deterministic VM (`--deterministic`):
//! one vCPU at a time runs guest code or waits, in vCPU order, each for one
//! backend `run` (a fixed instruction quantum on the software backends), so
//! the interleaving of vCPUs — and with the instruction-driven clock, of
//! timers — is the same on every run.

use crate::stop::StopHandle;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    /// Whose turn it is.
    current: usize,
    /// Consecutive turns in which nothing ran (every vCPU idle when it
    /// reaches the vCPU count).
    idle_streak: usize,
}

/// The turn order of `n` vCPUs.
#[derive(Debug)]
pub struct Turns {
    n: usize,
    state: Mutex<State>,
    cv: Condvar,
}

impl Turns {
    /// Turns for `n` vCPUs, vCPU 0 first.
    pub fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    /// Blocks until it is vCPU `id`'s turn; `false` when the VM is stopping.
    pub fn wait(&self, id: usize, stop: &StopHandle) -> bool {
        let mut s = self.lock();
        while s.current != id {
            if stop.requested() {
                return false;
            }
            s = match self.cv.wait_timeout(s, Duration::from_millis(20)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Notes that the vCPU holding the turn had nothing to run; returns
    /// whether every vCPU has now been idle for a whole round.
    pub fn note_idle(&self) -> bool {
        let mut s = self.lock();
        s.idle_streak += 1;
        s.idle_streak >= self.n
    }

    /// Something happened (an instruction ran, time was skipped): the idle
    /// round starts over.
    pub fn note_progress(&self) {
        self.lock().idle_streak = 0;
    }

    /// Hands the turn from `id` to the next vCPU.
    pub fn pass(&self, id: usize) {
        let mut s = self.lock();
        if s.current == id {
            s.current = (id + 1) % self.n;
        }
        drop(s);
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::VcpuWaker;
    use std::sync::Arc;

    #[test]
    fn turns_go_round_in_vcpu_order() {
        let t = Arc::new(Turns::new(3));
        let stop = StopHandle::new(Arc::new(VcpuWaker::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|sc| {
            for id in 0..3 {
                let (t, stop, log) = (Arc::clone(&t), stop.clone(), Arc::clone(&log));
                sc.spawn(move || {
                    for _ in 0..4 {
                        assert!(t.wait(id, &stop));
                        log.lock().unwrap().push(id);
                        t.pass(id);
                    }
                });
            }
        });
        let got = log.lock().unwrap().clone();
        assert_eq!(got, [0, 1, 2].repeat(4));
    }

    #[test]
    fn a_full_idle_round_is_reported_and_progress_resets_it() {
        let t = Turns::new(2);
        assert!(!t.note_idle());
        assert!(t.note_idle());
        t.note_progress();
        assert!(!t.note_idle());
    }
}
