//! The container's stdout and stderr as seen by concurrent requests.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// A container's stdout or stderr, shared by all requests. Each request's
/// stream hands whole writes to one copying task through a bounded channel,
/// so concurrent requests neither trap on a shared stream (Wasmtime's
/// `AsyncStdoutStream` allows one writer at a time) nor interleave within a
/// write, and a full pipe makes writers wait rather than grow memory.
#[derive(Clone)]
pub(super) struct Output(mpsc::Sender<Bytes>);

/// Writes queued per container stream before writers wait.
const OUTPUT_QUEUE: usize = 64;
/// The most one write may carry.
const OUTPUT_CHUNK: usize = 64 * 1024;

impl Output {
    /// Starts the copying task; the receiver yields once everything written
    /// has been copied and every writer is gone.
    pub(super) fn forward(pipe: Option<crate::host::stdio::GuestOutput>) -> (Option<Self>, oneshot::Receiver<()>) {
        let (done_tx, done_rx) = oneshot::channel();
        let Some(mut pipe) = pipe else {
            let _ = done_tx.send(());
            return (None, done_rx);
        };
        let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if pipe.write_all(&bytes).await.is_err() {
                    // Nobody reads any more; writers see a closed stream.
                    break;
                }
            }
            let _ = pipe.shutdown().await;
            let _ = done_tx.send(());
        });
        (Some(Self(tx)), done_rx)
    }
}

impl wasmtime_wasi::cli::IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(OutputHandle { tx: self.0.clone(), permit: None })
    }

    /// Used only by WASIp3 bindings, which this shim does not link.
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

/// One store's handle on an `Output`: a write needs a reserved queue slot.
struct OutputHandle {
    tx: mpsc::Sender<Bytes>,
    permit: Option<mpsc::OwnedPermit<Bytes>>,
}

#[async_trait::async_trait]
impl Pollable for OutputHandle {
    async fn ready(&mut self) {
        if self.permit.is_none() {
            // A closed channel is ready too: the next check reports it.
            self.permit = self.tx.clone().reserve_owned().await.ok();
        }
    }
}

impl OutputStream for OutputHandle {
    fn check_write(&mut self) -> StreamResult<usize> {
        if self.permit.is_some() {
            return Ok(OUTPUT_CHUNK);
        }
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => {
                self.permit = Some(permit);
                Ok(OUTPUT_CHUNK)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::Closed),
        }
    }

    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > OUTPUT_CHUNK {
            return Err(StreamError::trap("write larger than check-write allowed"));
        }
        match self.permit.take() {
            Some(permit) => {
                permit.send(bytes);
                Ok(())
            }
            None => Err(StreamError::trap("write without a successful check-write")),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Queued writes are the copying task's; there is nothing to push.
        Ok(())
    }
}
