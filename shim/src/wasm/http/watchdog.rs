//! Request deadlines and time slices: a flag per request and one thread per
//! server that expires them, then bumps the engine's epoch so running guests
//! check; while a request runs longer than a slice, the thread bumps the epoch
//! once per slice so that running guests yield their worker thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Notify;
use wasmtime::Engine;

/// How a request's deadline reaches it: a flag the epoch callback reads
/// (guest running code) and a wake-up for a guest waiting in a host call.
#[derive(Default)]
pub(super) struct Deadline {
    expired: AtomicBool,
    notify: Notify,
}

impl Deadline {
    fn expire(&self) {
        self.expired.store(true, Ordering::SeqCst);
        // Stores a permit if nobody waits yet: the wake-up is not lost.
        self.notify.notify_one();
    }

    pub(super) fn is_expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    pub(super) async fn expired(&self) {
        while !self.is_expired() {
            self.notify.notified().await;
        }
    }
}

/// How long a guest may run on a worker thread before it yields it to the
/// other tasks there. A guest in a long loop otherwise holds its worker until
/// its deadline, and tasks tokio placed on that worker (a request's handler in
/// its LIFO slot, which other workers cannot steal) wait as long.
pub(super) const SLICE: Duration = Duration::from_millis(10);

/// Expires request deadlines and marks time slices. A thread rather than a
/// tokio timer: a guest spinning in a loop holds its worker thread, and tokio
/// can park the timer task of that request on that very worker, or every
/// worker may be spinning. The thread sleeps until the earliest deadline or
/// the end of the oldest request's current slice, and without a request in
/// flight until one arrives: nothing ticks while idle, and while requests
/// finish within a slice (most) the epoch does not move.
pub(super) struct Watchdog {
    state: Mutex<Deadlines>,
    wake: Condvar,
    engine: Engine,
}

#[derive(Default)]
struct Deadlines {
    next: u64,
    /// By deadline: the request's flag and when it arrived.
    pending: BTreeMap<(Instant, u64), (Arc<Deadline>, Instant)>,
    /// The same requests by arrival, for time slices.
    arrivals: BTreeSet<(Instant, u64)>,
    /// When the thread wakes by itself; `None`: only when woken.
    wake_at: Option<Instant>,
    stopped: bool,
}

/// Keeps a deadline registered; dropping it (the request ended) removes it.
pub(super) struct Watched {
    watchdog: Arc<Watchdog>,
    key: (Instant, u64),
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watchdog.lock().forget(self.key);
    }
}

impl Watchdog {
    pub(super) fn start(engine: Engine, id: &str) -> Result<Arc<Self>> {
        let watchdog = Arc::new(Self { state: Mutex::default(), wake: Condvar::new(), engine });
        let w = watchdog.clone();
        std::thread::Builder::new()
            .name(format!("http-{}", id.chars().take(10).collect::<String>()))
            .spawn(move || w.run())
            .context("spawn the request watchdog thread")?;
        Ok(watchdog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        // The map stays consistent whatever a panicking holder was doing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn watch(self: &Arc<Self>, at: Instant, deadline: Arc<Deadline>) -> Watched {
        let arrived = Instant::now();
        let mut state = self.lock();
        state.next += 1;
        let key = (at, state.next);
        state.pending.insert(key, (deadline, arrived));
        state.arrivals.insert((arrived, key.1));
        // Only a deadline or slice end earlier than the thread's wake-up
        // needs it now: the first request after a quiet spell. Under load the
        // thread wakes about once per slice, not once per request.
        if state.wake_at.is_none_or(|wake| at.min(arrived + SLICE) < wake) {
            self.wake.notify_one();
        }
        Watched { watchdog: self.clone(), key }
    }

    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let now = Instant::now();
            let mut expired = false;
            while let Some(key) = state.pending.first_key_value().map(|(k, _)| *k) {
                if key.0 > now {
                    break;
                }
                if let Some(deadline) = state.forget(key) {
                    deadline.expire();
                }
                expired = true;
            }
            let oldest = state.pending.keys().next().map(|(at, _)| *at);
            let slices = state.arrivals.first().map(|(arrived, _)| slice_marks(now, *arrived));
            if expired || slices.is_some_and(|(over, _)| over) {
                // Running guests check their flag at their next epoch check,
                // and yield if it is not theirs.
                self.engine.increment_epoch();
            }
            state.wake_at = match (oldest, slices) {
                (Some(deadline), Some((_, slice_end))) => Some(deadline.min(slice_end)),
                _ => None,
            };
            state = match state.wake_at {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.wake.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0
                }
                None => self.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

impl Deadlines {
    /// Drops a request (done, or its deadline passed); its flag if it was there.
    fn forget(&mut self, key: (Instant, u64)) -> Option<Arc<Deadline>> {
        let (deadline, arrived) = self.pending.remove(&key)?;
        self.arrivals.remove(&(arrived, key.1));
        Some(deadline)
    }
}

/// For the oldest request in flight, arrived at `arrived`: whether it has run
/// past a slice by `now` (the epoch should move), and when to look again.
fn slice_marks(now: Instant, arrived: Instant) -> (bool, Instant) {
    let first_end = arrived + SLICE;
    if now < first_end {
        (false, first_end)
    } else {
        (true, now + SLICE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_move_the_epoch_only_for_requests_past_one() {
        let t0 = Instant::now();
        assert_eq!(slice_marks(t0, t0), (false, t0 + SLICE));
        assert_eq!(slice_marks(t0 + SLICE / 2, t0), (false, t0 + SLICE));
        assert_eq!(slice_marks(t0 + SLICE, t0), (true, t0 + 2 * SLICE));
        assert_eq!(slice_marks(t0 + 5 * SLICE, t0), (true, t0 + 6 * SLICE));
    }

    #[tokio::test]
    async fn watchdog_expires_only_due_deadlines() {
        let watchdog = Watchdog::start(Engine::default(), "test").unwrap();
        let soon = Arc::new(Deadline::default());
        let later = Arc::new(Deadline::default());
        let _a = watchdog.watch(Instant::now() + Duration::from_millis(20), soon.clone());
        let _b = watchdog.watch(Instant::now() + Duration::from_secs(3600), later.clone());
        tokio::time::timeout(Duration::from_secs(10), soon.expired()).await.expect("deadline not expired");
        assert!(!later.is_expired());
        // A finished request's deadline is forgotten.
        let done = Arc::new(Deadline::default());
        drop(watchdog.watch(Instant::now() + Duration::from_millis(1), done.clone()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!done.is_expired());
        assert_eq!(watchdog.lock().pending.len(), 1);
        assert_eq!(watchdog.lock().arrivals.len(), 1);
        watchdog.stop();
    }
}
