//! One wasi:http container's server: its connections (HTTP/1.1 with
//! keep-alive), and each request run in a fresh instance with its own
//! deadline, memory limit and Kill check.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::body::with_first_frame;
use crate::busy::{Busy, BusyGuard};
use super::outbound::Outbound;
use super::output::Output;
use super::watchdog::{Deadline, Watchdog};
use super::{drains, HEADER_READ_TIMEOUT, SLOTS, TIMEOUT_ENV};
use crate::wasm::store::{Interrupt, MemoryLimit};
use crate::wasm::wasi::Capabilities;
use crate::wasm::wt;

pub(super) struct Server {
    pub(super) id: String,
    pub(super) pre: ProxyPre<HttpHost>,
    pub(super) timeout: Duration,
    pub(super) caps: Capabilities,
    pub(super) preopens: WasiFilesystemCtx,
    pub(super) stdout: Option<Output>,
    pub(super) stderr: Option<Output>,
    pub(super) interrupt: Arc<Interrupt>,
    pub(super) watchdog: Arc<Watchdog>,
    /// Connections and requests in flight, for the drain.
    pub(super) busy: Busy,
}

/// One client connection: HTTP/1.1 with keep-alive until the client closes
/// it or the server drains (then the request in progress, if any, finishes).
pub(super) async fn connection(server: Arc<Server>, stream: TcpStream, mut stop: watch::Receiver<bool>, _busy: BusyGuard) {
    // Responses go out in one or two writes; without NODELAY the second one
    // waits for the client's delayed ACK (40 ms).
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let id = server.id.clone();
    let service = hyper::service::service_fn(move |mut req| {
        let server = server.clone();
        default_host(&mut req, local);
        async move { server.handle(req).await }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Clients that go away mid-request are routine.
        log::debug!("container {id}: connection: {e}");
    }
}

/// wasi:http requires an authority; HTTP/1.0 requests may carry none. Such a
/// request is taken to address the server as the client reached it (the
/// connection's local address), as servers do without a configured name.
fn default_host<B>(req: &mut hyper::Request<B>, local: Option<SocketAddr>) {
    if req.uri().authority().is_some() || req.headers().contains_key(hyper::header::HOST) {
        return;
    }
    if let Some(value) = local.and_then(|a| hyper::header::HeaderValue::from_str(&a.to_string()).ok()) {
        req.headers_mut().insert(hyper::header::HOST, value);
    }
}

/// Why a request got no response from the guest.
enum Failure {
    TimedOut,
    Guest(wasmtime::Error),
}

impl Server {
    /// A request's response; `Err` (hyper then drops the connection without
    /// answering) once the container is being killed: a SIGKILL stops
    /// serving at once, so handlers it cuts off get no 500 in its last moments.
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> Result<hyper::Response<HyperOutgoingBody>, Killed> {
        // Cheap clones (shared bytes), formatted only on failure.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let response = self.clone().respond(req).await;
        if self.interrupt.raised().is_some_and(|s| !drains(s)) {
            return Err(Killed);
        }
        Ok(match response {
            Ok(response) => response,
            Err((status, e)) => {
                log::warn!("container {}: {method} {}: {e:#}", self.id, uri.path());
                error_response(status)
            }
        })
    }

    async fn respond(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, (hyper::StatusCode, anyhow::Error)> {
        use hyper::StatusCode;
        let internal = |e: anyhow::Error| (StatusCode::INTERNAL_SERVER_ERROR, e);
        let busy = self.busy.enter();
        // The deadline runs from arrival: time spent waiting for a slot counts.
        let deadline = Arc::new(Deadline::default());
        let watch = self.watchdog.watch(Instant::now() + self.timeout, deadline.clone());
        let slot = tokio::select! {
            slot = SLOTS.acquire() => slot.map_err(|e| internal(anyhow::anyhow!("request slots closed: {e}")))?,
            _ = deadline.expired() => return Err((StatusCode::SERVICE_UNAVAILABLE, anyhow::anyhow!("no instance slot free within {:?}", self.timeout))),
        };
        let mut store = self.store(deadline.clone());
        let (tx, rx) = oneshot::channel();
        let req = wt(store.data_mut().http().new_incoming_request(Scheme::Http, req)).map_err(internal)?;
        let out = wt(store.data_mut().http().new_response_outparam(tx)).map_err(internal)?;
        let pre = self.pre.clone();
        // The handler runs in a task of its own so that it can go on writing
        // the body after handing over the response.
        let task = tokio::spawn(async move {
            let held = (slot, watch, busy);
            let call = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
            };
            // A guest running code is stopped by the epoch callback; one
            // waiting in a host call is dropped here when the deadline passes.
            let result = tokio::select! {
                r = call => r.map_err(|e| if deadline.is_expired() { Failure::TimedOut } else { Failure::Guest(e) }),
                _ = deadline.expired() => Err(Failure::TimedOut),
            };
            // The instance goes back to the pool before its slot is released:
            // a request on another worker that takes the slot must find room
            // in the pool, or its instantiation fails (a 500 under a full pool).
            drop(store);
            drop(held);
            result
        });
        match rx.await {
            Ok(Ok(response)) => with_first_frame(response).await.map_err(internal),
            Ok(Err(code)) => Err(internal(anyhow::anyhow!("handler answered with error {code:?}"))),
            // The guest dropped the response outparam without setting it.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(internal(anyhow::anyhow!("handler returned without setting a response"))),
                Ok(Err(Failure::TimedOut)) => {
                    Err((StatusCode::SERVICE_UNAVAILABLE, anyhow::anyhow!("cut off after the {TIMEOUT_ENV} of {:?}", self.timeout)))
                }
                Ok(Err(Failure::Guest(e))) => Err(internal(anyhow::Error::from(e).context("handler failed"))),
                Err(e) => Err(internal(anyhow::anyhow!("handler task: {e}"))),
            },
        }
    }

    /// A store for one request: WASI context from the container's
    /// capabilities, the memory limit, and the deadline and Kill checks.
    pub(super) fn store(&self, deadline: Arc<Deadline>) -> Store<HttpHost> {
        let mut builder = self.caps.builder_without_preopens();
        if let Some(out) = &self.stdout {
            builder.stdout(out.clone());
        }
        if let Some(err) = &self.stderr {
            builder.stderr(err.clone());
        }
        let mut wasi = builder.build();
        *wasi.filesystem() = self.preopens.clone();
        let host = HttpHost {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Outbound,
            limits: MemoryLimit::new(&self.id, self.caps.memory_limit),
            deadline,
            interrupt: self.interrupt.clone(),
        };
        let mut store = Store::new(self.pre.engine(), host);
        store.limiter(|h| &mut h.limits);
        // Epochs move when some request's deadline passes, when a request runs
        // past a time slice (watchdog::SLICE), or when the container is
        // killed; each running store then checks whether that concerns it,
        // and otherwise yields its worker thread to the tasks waiting there
        // (tokio's yield puts it behind them).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let host = ctx.data();
            if host.deadline.is_expired() {
                return Err(wasmtime::format_err!("request deadline ({TIMEOUT_ENV}) exceeded"));
            }
            match host.interrupt.raised() {
                Some(sig) if !drains(sig) => Err(wasmtime::format_err!("killed by signal {sig}")),
                _ => Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))),
            }
        });
        store
    }
}

/// The container is being killed: no more responses.
#[derive(Debug)]
struct Killed;

impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("container killed")
    }
}

impl std::error::Error for Killed {}

fn error_response(status: hyper::StatusCode) -> hyper::Response<HyperOutgoingBody> {
    let text = match status {
        hyper::StatusCode::SERVICE_UNAVAILABLE => "request timed out\n",
        _ => "internal server error\n",
    };
    let body = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never: Infallible| match never {}).boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

/// Store data of one request.
pub(super) struct HttpHost {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Outbound,
    limits: MemoryLimit,
    deadline: Arc<Deadline>,
    interrupt: Arc<Interrupt>,
}

impl WasiView for HttpHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HttpHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_without_host_address_the_local_socket() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let mut bare = hyper::Request::new(());
        default_host(&mut bare, local);
        assert_eq!(bare.headers()[hyper::header::HOST], "127.0.0.1:8080");
        let mut named = hyper::Request::builder().header("host", "example.test").body(()).unwrap();
        default_host(&mut named, local);
        assert_eq!(named.headers()[hyper::header::HOST], "example.test");
    }
}
