//! The threads that serve one HTTP container's connections: one
//! current-thread tokio runtime each, a connection pinned to one of them for
//! its whole life.
//!
//! With a work-stealing runtime a request's tasks (the connection, the
//! handler, the body) hopped between workers, and each hop woke a parked
//! thread: on a VM an inter-processor interrupt. Profiles showed the kernel's
//! switching costs above a sixth of the shim's time at 50 connections. Here
//! the only cross-thread step is handing an accepted connection over, once
//! per connection; a keep-alive client's requests then run where its socket
//! is polled.
//!
//! The threads are started from the container's guest thread, so they are in
//! its network namespace and cgroup (a new thread inherits both).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub(super) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping these ends the workers' runtimes (their tasks are dropped).
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// `count` worker threads named `name` (at least one).
    pub(super) fn start(name: &str, count: usize) -> io::Result<Self> {
        let mut handles = Vec::new();
        let mut stop = Vec::new();
        for _ in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, rx) = oneshot::channel::<()>();
            handles.push(runtime.handle().clone());
            std::thread::Builder::new().name(name.to_string()).spawn(move || {
                // Serves until the sender is dropped.
                let _ = runtime.block_on(rx);
                runtime.shutdown_background();
            })?;
            stop.push(tx);
        }
        Ok(Self { handles, next: AtomicUsize::new(0), _stop: stop })
    }

    /// Runs `serve` with `stream` on the next worker, round robin. The socket
    /// moves to that worker's reactor.
    pub(super) fn serve<F, Fut>(&self, stream: TcpStream, serve: F) -> io::Result<()>
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let socket = stream.into_std()?;
        let worker = &self.handles[self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len()];
        // Registered with the reactor of the runtime it runs on: the worker's.
        worker.spawn(async move {
            match TcpStream::from_std(socket) {
                Ok(stream) => serve(stream).await,
                Err(e) => log::warn!("moving a connection to its worker thread: {e}"),
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "current_thread")]
    async fn connections_go_round_robin_to_worker_threads() {
        let workers = Workers::start("test-worker", 2).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..4u8 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            workers
                .serve(stream, move |mut stream| async move {
                    let thread = std::thread::current();
                    seen.lock().unwrap().push((thread.name().map(str::to_string), thread.id()));
                    let mut byte = [0u8; 1];
                    stream.read_exact(&mut byte).await.unwrap();
                    stream.write_all(&[byte[0] + 1]).await.unwrap();
                })
                .unwrap();
            client.write_all(&[i]).await.unwrap();
            let mut reply = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut reply)).await.unwrap().unwrap();
            assert_eq!(reply[0], i + 1, "served on its worker");
        }
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|(name, _)| name.as_deref() == Some("test-worker")), "{seen:?}");
        assert_ne!(seen[0].1, std::thread::current().id());
        assert_ne!(seen[0].1, seen[1].1, "the second connection went to the other worker");
        assert_eq!((seen[0].1, seen[1].1), (seen[2].1, seen[3].1), "round robin");
    }
}
