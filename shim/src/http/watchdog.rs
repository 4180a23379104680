//! Request deadlines: a flag per request and one thread per server that
//! expires them, then bumps the engine's epoch so running guests check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

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

/// Expires request deadlines. A thread rather than a tokio timer: a guest
/// spinning in a loop holds its worker thread, and tokio can park the timer
/// task of that request on that very worker (its LIFO slot cannot be stolen),
/// or every worker may be spinning. The thread sleeps until the earliest
/// deadline, and without one until a request arrives: nothing ticks while
/// idle.
pub(super) struct Watchdog {
    state: Mutex<Deadlines>,
    wake: Condvar,
    engine: Engine,
}

#[derive(Default)]
struct Deadlines {
    next: u64,
    pending: BTreeMap<(Instant, u64), Arc<Deadline>>,
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
        self.watchdog.lock().pending.remove(&self.key);
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
        let mut state = self.lock();
        state.next += 1;
        let key = (at, state.next);
        state.pending.insert(key, deadline);
        // Only a deadline earlier than the thread's wake-up needs it now. With
        // one timeout for all requests that is rare: under load the thread
        // wakes about once per timeout, not once per request.
        if state.wake_at.is_none_or(|wake| at < wake) {
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
            while let Some(entry) = state.pending.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().expire();
                expired = true;
            }
            if expired {
                // Running guests check their flag at their next epoch check.
                self.engine.increment_epoch();
            }
            state.wake_at = state.pending.keys().next().map(|(at, _)| *at);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        watchdog.stop();
    }
}
