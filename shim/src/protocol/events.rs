//! Task events published to containerd; a failed publish is logged, never fatal.

use std::sync::Arc;

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

#[derive(Clone)]
pub struct Events {
    publisher: Arc<RemotePublisher>,
    namespace: String,
}

impl Events {
    pub fn new(publisher: RemotePublisher, namespace: String) -> Self {
        Self { publisher: Arc::new(publisher), namespace }
    }

    pub async fn publish<E: Event>(&self, topic: &str, event: E) {
        if let Err(e) = self.publisher.publish(Context::default(), topic, &self.namespace, Box::new(event)).await {
            log::warn!("publish {topic}: {e}");
        }
    }
}
