//! The RPCs being served. containerd may send Shutdown, after deleting the
//! last task, while another of its calls is still being served — a Kill
//! whose `runc kill` has not returned when the killed pause container's exit
//! has already been handled — and that call would fail with `ttrpc: closed`
//! if the shim exited at once. So Shutdown first lets such calls answer.
//! Every RPC also counts as activity for the idle trim.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::busy::{Busy, BusyGuard};

pub struct InFlight {
    busy: Busy,
    /// Signalled by every RPC; the shim trims itself once they stop.
    activity: Arc<Notify>,
}

impl InFlight {
    pub fn new(activity: Arc<Notify>) -> Self {
        Self { busy: Busy::default(), activity }
    }

    /// An RPC starts; it ends when the guard is dropped.
    pub fn serve(&self) -> BusyGuard {
        self.touch();
        self.busy.enter()
    }

    /// Activity without an RPC to wait for (Shutdown itself).
    pub fn touch(&self) {
        self.activity.notify_one();
    }

    /// Waits until no RPC is being served, at most `limit`; false if some
    /// still were then.
    pub async fn drained(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.busy.idle()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_the_rpcs_being_served() {
        let rpcs = Arc::new(InFlight::new(Arc::new(Notify::new())));
        assert!(rpcs.drained(Duration::from_millis(10)).await, "nothing in flight");
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let call = tokio::spawn({
            let (rpcs, started, release) = (rpcs.clone(), started.clone(), release.clone());
            async move {
                let _serving = rpcs.serve();
                started.notify_one();
                release.notified().await;
            }
        });
        started.notified().await;
        assert!(!rpcs.drained(Duration::from_millis(50)).await, "drained while a call was served");
        let waiter = tokio::spawn({
            let rpcs = rpcs.clone();
            async move { rpcs.drained(Duration::from_secs(10)).await }
        });
        release.notify_one();
        call.await.unwrap();
        assert!(waiter.await.unwrap(), "not drained after the call ended");
    }
}
