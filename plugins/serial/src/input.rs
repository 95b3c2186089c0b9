//! Host-side receive queue and the stdin reader thread that fills it.
//!
//! Bytes wait here until the UART's receive FIFO has room. The device drains
//! the queue into vm-superio's FIFO whenever the guest reads a UART register,
//! and a *waker* registered by the device drains it as soon as bytes arrive,
//! so interrupt-driven guests get their receive interrupt without polling.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes the queue holds before the producer waits for the guest to read.
pub const QUEUE_CAPACITY: usize = 4096;

/// A callback run (without any queue lock held) after bytes were queued.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A bounded byte queue between a producer thread and the UART.
#[derive(Default)]
pub struct InputQueue {
    bytes: Mutex<VecDeque<u8>>,
    space: Condvar,
    waker: Mutex<Option<Waker>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl InputQueue {
    /// An empty queue.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Appends `input`, waiting while the queue is full; runs the waker after
    /// each batch.
    pub fn push(&self, mut input: &[u8]) {
        while !input.is_empty() {
            {
                let mut q = lock(&self.bytes);
                while q.len() >= QUEUE_CAPACITY {
                    q = match self.space.wait(q) {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                }
                let n = input.len().min(QUEUE_CAPACITY - q.len());
                q.extend(&input[..n]);
                input = &input[n..];
            }
            self.wake();
        }
    }

    /// Removes and returns up to `max` bytes, oldest first.
    pub fn take(&self, max: usize) -> Vec<u8> {
        let mut q = lock(&self.bytes);
        let n = max.min(q.len());
        let out: Vec<u8> = q.drain(..n).collect();
        if n > 0 {
            self.space.notify_all();
        }
        out
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        lock(&self.bytes).len()
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Installs (or removes) the callback run after bytes are queued.
    pub fn set_waker(&self, waker: Option<Waker>) {
        *lock(&self.waker) = waker;
    }

    fn wake(&self) {
        let waker = lock(&self.waker).clone();
        if let Some(w) = waker {
            w();
        }
    }
}

/// The process-wide stdin queue; its reader thread starts on first use.
static STDIN_QUEUE: Mutex<Option<Arc<InputQueue>>> = Mutex::new(None);
/// Whether a serial device currently owns stdin.
static STDIN_CLAIMED: AtomicBool = AtomicBool::new(false);

/// Exclusive use of host stdin by one serial device; released on drop.
pub struct StdinClaim {
    queue: Arc<InputQueue>,
}

impl StdinClaim {
    /// Claims stdin, starting the reader thread the first time.
    pub fn acquire() -> Result<Self, String> {
        if STDIN_CLAIMED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(
                "input=stdin is already used by another serial device (give this one input=none)"
                    .to_string(),
            );
        }
        let mut slot = lock(&STDIN_QUEUE);
        if let Some(q) = slot.as_ref() {
            return Ok(Self { queue: q.clone() });
        }
        let queue = InputQueue::new();
        let producer = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("serial-stdin".into())
            .spawn(move || read_stdin(&producer));
        match spawned {
            Ok(_) => {
                *slot = Some(queue.clone());
                Ok(Self { queue })
            }
            Err(e) => {
                STDIN_CLAIMED.store(false, Ordering::Release);
                Err(format!("cannot start the serial stdin reader thread: {e}"))
            }
        }
    }

    /// The queue the reader thread fills.
    pub fn queue(&self) -> Arc<InputQueue> {
        self.queue.clone()
    }
}

impl Drop for StdinClaim {
    fn drop(&mut self) {
        self.queue.set_waker(None);
        STDIN_CLAIMED.store(false, Ordering::Release);
    }
}

/// Copies stdin into `queue` until EOF or a read error, then returns.
///
/// The thread is detached: it may sit in `read` until the process exits.
/// abi_stable never unloads a loaded library, so its code stays mapped.
fn read_stdin(queue: &InputQueue) {
    let mut buf = [0u8; 256];
    let stdin = std::io::stdin();
    loop {
        match stdin.lock().read(&mut buf) {
            Ok(0) => return,
            Ok(n) => queue.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn fifo_order_and_partial_take() {
        let q = InputQueue::new();
        q.push(b"abcdef");
        assert_eq!(q.take(4), b"abcd");
        assert_eq!(q.len(), 2);
        assert_eq!(q.take(10), b"ef");
        assert!(q.is_empty());
        assert!(q.take(3).is_empty());
    }

    #[test]
    fn waker_runs_after_push() {
        let q = InputQueue::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        q.set_waker(Some(Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        })));
        q.push(b"x");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        q.set_waker(None);
        q.push(b"y");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn full_queue_blocks_producer_until_consumer_takes() {
        let q = InputQueue::new();
        let producer = q.clone();
        let data = vec![7u8; QUEUE_CAPACITY + 10];
        let t = std::thread::spawn(move || producer.push(&data));
        let mut got = 0;
        while got < QUEUE_CAPACITY + 10 {
            let chunk = q.take(100);
            assert!(q.len() <= QUEUE_CAPACITY);
            got += chunk.len();
            std::thread::yield_now();
        }
        t.join().unwrap();
        assert!(q.is_empty());
    }
}
