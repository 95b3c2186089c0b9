//! The VM's virtual clock and the device timers that run on it.
//!
//! The clock counts nanoseconds since the VM was created, following the
//! host's monotonic clock (a deterministic, instruction-driven clock for the
//! software backends comes with them). Timers are one-shot deadlines that
//! devices arm through their host services; a timer thread fires them by
//! calling the device's `timer_fired` outside every host lock.

use crate::platform::PluginDevice;
use hyperplug_plugin_api::device::TIMER_OFF;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

/// Nanoseconds since VM creation.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl VirtualClock {
    /// Now, in nanoseconds since the VM was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

/// A device slot timers fire into: filled once the device exists (its host
/// services are created before it is).
pub type TimerTarget = Arc<OnceLock<Arc<Mutex<PluginDevice>>>>;

/// What the timer thread does when a device fails in `timer_fired`.
pub type FailureHook = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Default)]
struct TimerState {
    /// (deadline, sequence, target index, timer id), earliest first.
    heap: BinaryHeap<Reverse<(u64, u64, usize, u32)>>,
    /// The live sequence number of each (target, id); older heap entries are stale.
    latest: HashMap<(usize, u32), u64>,
    seq: u64,
    targets: Vec<TimerTarget>,
    shutdown: bool,
}

struct Inner {
    state: Mutex<TimerState>,
    cv: Condvar,
    clock: Arc<VirtualClock>,
    on_failure: FailureHook,
}

/// The device timers of one VM.
pub struct Timers {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Timers {
    /// Timers on `clock`; `on_failure` is told when a device's timer handler fails.
    pub fn new(clock: Arc<VirtualClock>, on_failure: FailureHook) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(TimerState::default()),
                cv: Condvar::new(),
                clock,
                on_failure,
            }),
            thread: Mutex::new(None),
        }
    }

    /// Registers a device slot; returns its index for [`Timers::set`].
    pub fn register(&self, target: TimerTarget) -> usize {
        let mut s = lock(&self.inner.state);
        s.targets.push(target);
        s.targets.len() - 1
    }

    /// Arms (or with [`TIMER_OFF`] disarms) timer `id` of target `index`.
    pub fn set(&self, index: usize, id: u32, deadline_ns: u64) {
        {
            let mut s = lock(&self.inner.state);
            s.seq += 1;
            let seq = s.seq;
            if deadline_ns == TIMER_OFF {
                s.latest.remove(&(index, id));
            } else {
                s.latest.insert((index, id), seq);
                s.heap.push(Reverse((deadline_ns, seq, index, id)));
            }
        }
        self.inner.cv.notify_all();
        self.ensure_thread();
    }

    fn ensure_thread(&self) {
        let mut t = lock(&self.thread);
        if t.is_none() {
            let inner = Arc::clone(&self.inner);
            match std::thread::Builder::new()
                .name("hyperplug-timers".into())
                .spawn(move || run(inner))
            {
                Ok(h) => *t = Some(h),
                Err(e) => (self.inner.on_failure)(format!("cannot start the timer thread: {e}")),
            }
        }
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        lock(&self.inner.state).shutdown = true;
        self.inner.cv.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }
}

fn run(inner: Arc<Inner>) {
    let mut s = lock(&inner.state);
    loop {
        if s.shutdown {
            return;
        }
        let now = inner.clock.now_ns();
        let next = s.heap.peek().map(|Reverse(e)| *e);
        match next {
            None => {
                s = match inner.cv.wait(s) {
                    Ok(g) => g,
                    Err(e) => e.into_inner(),
                };
            }
            Some((deadline, _, _, _)) if deadline > now => {
                let wait = Duration::from_nanos(deadline - now);
                s = match inner.cv.wait_timeout(s, wait) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
            Some((_, seq, index, id)) => {
                s.heap.pop();
                if s.latest.get(&(index, id)) != Some(&seq) {
                    continue; // re-armed or disarmed since
                }
                s.latest.remove(&(index, id));
                let target = s.targets.get(index).and_then(|t| t.get().cloned());
                drop(s);
                if let Some(dev) = target {
                    let r = lock(&dev).timer_fired(id);
                    if let Err(e) = r {
                        (inner.on_failure)(e);
                    }
                }
                s = lock(&inner.state);
            }
        }
    }
}
