//! Outbound `wasi:http/outgoing-handler` requests: plain HTTP/1.1 from the
//! container's network namespace (the calling runtime's threads are in it),
//! over keep-alive connections that later requests to the same host reuse.
//!
//! A connection per request (what Wasmtime's default sender does) made every
//! proxied request pay a TCP connect, a handshake, a new socket on both ends
//! and a TIME_WAIT entry: a gateway in front of a service spent more on that
//! than the service spent on its work. Connections are pooled per thread: a
//! wasi:http worker is a current-thread runtime, and a connection's task
//! lives on the runtime that opened it, so reusing it never wakes another
//! thread. Idle connections expire when a request looks for one (no timer
//! runs while the container is idle). HTTPS would need a TLS stack and a
//! trust store in the shim; it is refused instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

/// An idle connection is not reused after this: servers commonly close
/// keep-alive connections idle for 30 s or more, and reusing one just as the
/// server closes it fails the request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle connections kept per host and worker thread.
const MAX_IDLE_PER_HOST: usize = 256;
/// The guest's request deadline bounds all of this anyway; limits only
/// apply when the guest asks for less.
const NO_LIMIT: Duration = Duration::from_secs(600);

thread_local! {
    static CLIENT: Client<Connector, WasiBody> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(Connector);
}

tokio::task_local! {
    /// The connect timeout of the request being sent: the pool's connector
    /// is shared, the guest's `request-options` are per request.
    static CONNECT_TIMEOUT: Duration;
}

pub(in crate::wasm) struct Outbound;

type SendFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)>> + Send>;
type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        Box::new(send(request, options))
    }
}

async fn send(
    request: hyper::Request<WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)> {
    let uri = request.uri();
    if uri.scheme() != Some(&hyper::http::uri::Scheme::HTTP) {
        log::debug!("refusing outbound request to {uri}: only plain http is supported");
        return Err(Error::HttpRequestDenied);
    }
    if uri.authority().is_none() {
        return Err(Error::HttpRequestUriInvalid);
    }
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(NO_LIMIT);
    // On a new connection the connect counts toward the first byte too: the
    // pool decides whether to connect only once the request is under way.
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(NO_LIMIT);
    let client = CLIENT.with(Client::clone);
    let sent = CONNECT_TIMEOUT.scope(connect_timeout, tokio::time::timeout(first_byte_timeout, client.request(request)));
    let response = match sent.await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(error_code(&e)),
        Err(_) => return Err(Error::ConnectionReadTimeout),
    };
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    // The connection's own task belongs to the pool, not to this request.
    let io: IoFuture = Box::new(async { Ok(()) });
    Ok((response, io))
}

/// The wasi:http error code for a failed exchange, from the cause the
/// client wraps (the connector's I/O error, or hyper's).
fn error_code(e: &hyper_util::client::legacy::Error) -> Error {
    log::debug!("outbound request: {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>().filter(|_| e.is_connect()) {
            return match io.kind() {
                io::ErrorKind::TimedOut => Error::ConnectionTimeout,
                io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
                // Name lookup failures keep their message: wasi:http maps it to a DNS error.
                kind => Error::Connect(io::Error::new(kind, io.to_string())),
            };
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return if hyper.is_timeout() {
                Error::HttpResponseTimeout
            } else if hyper.is_incomplete_message() {
                Error::HttpResponseIncomplete
            } else if hyper.is_closed() || hyper.is_canceled() {
                Error::ConnectionTerminated
            } else {
                Error::HttpProtocolError
            };
        }
        source = cause.source();
    }
    Error::InternalError(Some(e.to_string()))
}

/// Opens the pool's connections: TCP with NODELAY (a request goes out in one
/// or two writes; the second must not wait for a delayed ACK), names
/// resolved by the system resolver as the container sees it.
#[derive(Clone, Copy)]
struct Connector;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // Read now: the pool calls this within the request's task.
        let limit = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(NO_LIMIT);
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(80);
            let stream = tokio::time::timeout(limit, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {host}:{port} timed out")))??;
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        })
    }
}
