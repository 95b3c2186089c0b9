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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

/// Nanoseconds since VM creation: the host's monotonic clock, or with
/// [`VirtualClock::counted`] an instruction-driven clock (one nanosecond per
/// retired guest instruction, plus the time skipped while every vCPU idles)
/// that makes runs on a software backend reproducible.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
    counted: Option<Arc<AtomicU64>>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            counted: None,
        }
    }
}

impl VirtualClock {
    /// An instruction-driven clock starting at 0.
    pub fn counted() -> Self {
        Self {
            start: Instant::now(),
            counted: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Now, in nanoseconds since the VM was created.
    pub fn now_ns(&self) -> u64 {
        match &self.counted {
            Some(c) => c.load(Ordering::Acquire),
            None => u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1),
        }
    }

    /// The counter engines add retired instructions to (instruction-driven
    /// clocks only).
    pub fn counter(&self) -> Option<Arc<AtomicU64>> {
        self.counted.clone()
    }

    /// Whether the clock follows retired instructions.
    pub fn is_counted(&self) -> bool {
        self.counted.is_some()
    }

    /// Moves an instruction-driven clock forward to `ns` (idle time skipped
    /// while every vCPU waits for a timer); no effect on the host clock.
    pub fn advance_to(&self, ns: u64) {
        if let Some(c) = &self.counted {
            c.fetch_max(ns, Ordering::AcqRel);
        }
    }
}

/// Something a timer fires into: a plugin device, a local APIC timer, ...
pub trait TimerSink: Send + Sync {
    /// Timer `id` is due.
    fn fire(&self, id: u32) -> Result<(), String>;
}

/// A device slot timers fire into: filled once the device exists (its host
/// services are created before it is).
pub type DeviceSlot = OnceLock<Arc<Mutex<PluginDevice>>>;

impl TimerSink for DeviceSlot {
    fn fire(&self, id: u32) -> Result<(), String> {
        match self.get() {
            Some(dev) => lock(dev).timer_fired(id),
            None => Ok(()),
        }
    }
}

/// A registered timer target.
pub type TimerTarget = Arc<dyn TimerSink>;

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

    /// With an instruction-driven clock the vCPU loop fires due timers
    /// itself ([`Timers::fire_due`]) at instruction boundaries; no thread
    /// fires them on the host's time.
    fn manual(&self) -> bool {
        self.inner.clock.is_counted()
    }

    /// Fires every timer whose deadline has passed, in deadline order
    /// (instruction-driven clocks); returns how many fired.
    pub fn fire_due(&self) -> usize {
        let mut n = 0;
        loop {
            let mut s = lock(&self.inner.state);
            let now = self.inner.clock.now_ns();
            let Some(Reverse((deadline, seq, index, id))) = s.heap.peek().copied() else {
                return n;
            };
            if deadline > now {
                return n;
            }
            s.heap.pop();
            if s.latest.get(&(index, id)) != Some(&seq) {
                continue;
            }
            s.latest.remove(&(index, id));
            let target = s.targets.get(index).cloned();
            drop(s);
            if let Some(t) = target {
                if let Err(e) = t.fire(id) {
                    (self.inner.on_failure)(e);
                }
            }
            n += 1;
        }
    }

    /// The earliest live deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut s = lock(&self.inner.state);
        while let Some(Reverse((deadline, seq, index, id))) = s.heap.peek().copied() {
            if s.latest.get(&(index, id)) == Some(&seq) {
                return Some(deadline);
            }
            s.heap.pop();
        }
        None
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
        if !self.manual() {
            self.ensure_thread();
        }
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
                let target = s.targets.get(index).cloned();
                drop(s);
                if let Some(t) = target {
                    if let Err(e) = t.fire(id) {
                        (inner.on_failure)(e);
                    }
                }
                s = lock(&inner.state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sink(Mutex<Vec<(u32, u64)>>, Arc<VirtualClock>);

    impl TimerSink for Sink {
        fn fire(&self, id: u32) -> Result<(), String> {
            lock(&self.0).push((id, self.1.now_ns()));
            if id == 99 {
                return Err("boom".into());
            }
            Ok(())
        }
    }

    fn wait_for(cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn timers_fire_in_deadline_order_rearm_and_disarm() {
        let clock = Arc::new(VirtualClock::default());
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let f2 = Arc::clone(&failures);
        let timers = Timers::new(Arc::clone(&clock), Arc::new(move |m| lock(&f2).push(m)));
        let sink = Arc::new(Sink(Mutex::new(Vec::new()), Arc::clone(&clock)));
        let idx = timers.register(sink.clone());
        let now = clock.now_ns();
        timers.set(idx, 1, now + 30_000_000);
        timers.set(idx, 2, now + 10_000_000);
        timers.set(idx, 3, now + 20_000_000);
        timers.set(idx, 3, TIMER_OFF); // disarmed
        timers.set(idx, 1, now + 40_000_000); // re-armed later: fires once
        timers.set(idx, 99, now + 50_000_000);
        wait_for(|| lock(&sink.0).len() >= 3 && !lock(&failures).is_empty());
        let fired = lock(&sink.0).clone();
        let ids: Vec<u32> = fired.iter().map(|f| f.0).collect();
        assert_eq!(ids, vec![2, 1, 99]);
        assert!(fired[0].1 >= now + 10_000_000, "not before its deadline");
        assert!(
            fired[1].1 >= now + 40_000_000,
            "the re-armed deadline counts"
        );
        assert_eq!(lock(&failures).as_slice(), &["boom".to_string()]);
    }
}
