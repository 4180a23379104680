//! Work in flight, counted so that a drain can wait for the last of it: a
//! wasi:http server's connections and requests, the task service's RPCs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts work in flight; a drain waits for zero.
#[derive(Clone, Default)]
pub struct Busy(Arc<BusyState>);

#[derive(Default)]
struct BusyState {
    count: AtomicUsize,
    idle: Notify,
}

pub struct BusyGuard(Arc<BusyState>);

impl Busy {
    pub fn enter(&self) -> BusyGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.0.clone())
    }

    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a last guard dropped in
            // between still wakes us.
            notified.as_mut().enable();
            if self.0.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn busy_idles_when_the_last_guard_goes() {
        let busy = Busy::default();
        busy.idle().await;
        let guard = busy.enter();
        let waiter = tokio::spawn({
            let busy = busy.clone();
            async move { busy.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    }
}
