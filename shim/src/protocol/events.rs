//! Task events published to containerd, each forwarded and acknowledged
//! before `publish` returns; a failed publish is logged, never fatal.
//!
//! containerd-shim's `RemotePublisher` queues events and forwards them from
//! a task of its own. containerd calls Shutdown right after the last Delete,
//! and a shim exiting then took the queued TaskDelete with it (seen as a
//! missing `/tasks/delete` and "reserve channel capacity failed: channel
//! closed" in containerd's log). Forwarded inline, an event reaches
//! containerd before the RPC that caused it answers, and events keep their
//! order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use containerd_shim::event::Event;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Client, EventsClient};
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::ttrpc::context::Context;
use tokio::sync::Mutex;

/// How long containerd may take to acknowledge one event.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    /// containerd's ttrpc socket, to reconnect after it restarted.
    address: String,
    namespace: String,
    /// Held while forwarding: one event at a time, in order.
    client: Mutex<EventsClient>,
}

impl Events {
    /// Connects to containerd's ttrpc socket (`TTRPC_ADDRESS`).
    pub async fn connect(address: &str, namespace: String) -> anyhow::Result<Self> {
        let client = connect(address).await?;
        Ok(Self { inner: Arc::new(Inner { address: address.to_string(), namespace, client: Mutex::new(client) }) })
    }

    pub async fn publish<E: Event>(&self, topic: &str, event: E) {
        let request = match self.request(topic, event) {
            Ok(r) => r,
            Err(e) => return log::warn!("publish {topic}: {e:#}"),
        };
        let mut client = self.inner.client.lock().await;
        for attempt in 0..2 {
            match tokio::time::timeout(FORWARD_TIMEOUT, client.forward(Context::default(), &request)).await {
                Ok(Ok(_)) => return,
                // containerd restarted: once more on a new connection.
                Ok(Err(ttrpc::error::Error::RemoteClosed | ttrpc::error::Error::LocalClosed)) if attempt == 0 => {
                    match connect(&self.inner.address).await {
                        Ok(c) => *client = c,
                        Err(e) => return log::warn!("publish {topic}: {e:#}"),
                    }
                }
                Ok(Err(e)) => return log::warn!("publish {topic}: {e}"),
                Err(_) => return log::warn!("publish {topic}: containerd did not acknowledge it within {FORWARD_TIMEOUT:?}"),
            }
        }
    }

    fn request<E: Event>(&self, topic: &str, event: E) -> anyhow::Result<ForwardRequest> {
        let mut envelope = Envelope::new();
        envelope.set_topic(topic.to_string());
        envelope.set_namespace(self.inner.namespace.clone());
        envelope.set_timestamp(containerd_shim::util::timestamp().context("timestamp")?);
        envelope.set_event(containerd_shim::util::convert_to_any(Box::new(event)).context("encode the event")?);
        let mut request = ForwardRequest::new();
        request.set_envelope(envelope);
        Ok(request)
    }
}

async fn connect(address: &str) -> anyhow::Result<EventsClient> {
    let target = address.to_string();
    let fd = tokio::task::spawn_blocking(move || containerd_shim::util::connect(target))
        .await
        .context("connect to containerd's events socket")?
        .with_context(|| format!("connect to containerd's events socket {address}"))?;
    // SAFETY: `fd` is a connected Unix socket that nothing else owns; the
    // client takes it over and closes it.
    let client = unsafe { Client::from_raw_unix_socket_fd(fd) };
    Ok(EventsClient::new(client))
}
