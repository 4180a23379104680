//! The HTTP server loop shared by every service: accept, one task per
//! connection, hyper 1 HTTP/1.1 with keep-alive, bodies read up to
//! [`MAX_BODY_BYTES`], a deadline per request, and errors rendered as JSON.
//!
//! A client that hangs up never cancels a handler half-way. hyper drops the
//! future of a request whose client has closed the connection; had that
//! future been the handler, a query would stop half-way, or, worse, a
//! `mysql_async` `get_conn` that the pool had just woken would be dropped and
//! take the pool's wakeup with it: every later request then queued behind a
//! waiter that was never woken, with connections idle in the pool, until
//! `getting a database connection: timed out` (503). So each request's
//! handler runs as a task of its own, which hyper's future only awaits: a
//! hang-up drops the wait, never the work, and the answer goes nowhere. The
//! deadline ([`ServerConfig::request_timeout`]) is the only thing that stops
//! a handler early, and the connection's slot (`MAX_CONNECTIONS`) is held
//! until its last handler is done.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Env;
use crate::error::ApiError;
use crate::http::{error_response, Request, Response, MAX_BODY_BYTES};
use crate::listener::Listener;

/// What a service implements: one request in, a response or an error out.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> impl Future<Output = Result<Response, ApiError>> + Send;
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Deadline for handling one request once its head has arrived.
    pub request_timeout: Duration,
}

impl ServerConfig {
    /// `LISTEN_ADDR`, `LISTEN_PORT` (default `default_port`),
    /// `MAX_CONNECTIONS` (default 1024), `REQUEST_TIMEOUT_SECS` (default 30).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>, default_port: u16) -> Result<Self> {
        Ok(Self {
            addr: env.listen_addr(default_port)?,
            max_connections: env.parse_or("MAX_CONNECTIONS", 1024usize)?.max(1),
            request_timeout: Duration::from_secs(env.parse_or("REQUEST_TIMEOUT_SECS", 30u64)?.max(1)),
        })
    }
}

/// Serves `handler` forever (returns only if the listener cannot be bound).
pub async fn serve<H: Handler>(config: ServerConfig, handler: Arc<H>) -> Result<()> {
    let listener = Listener::bind(config.addr).with_context(|| format!("binding {}", config.addr))?;
    log::info!("listening on {}", listener.local_addr().unwrap_or(config.addr));
    serve_on(listener, config, handler).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on<H: Handler>(listener: Listener, config: ServerConfig, handler: Arc<H>) -> Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let permit = permits.clone().acquire_owned().await.context("connection limiter closed")?;
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE or a connection reset before accept; back
                // off briefly instead of spinning on the error.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let timeout = config.request_timeout;
        // Shared with the connection's handler tasks, which may outlive it.
        let permit = Arc::new(permit);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                let permit = permit.clone();
                async move { Ok::<_, Infallible>(handle_request(handler, req, peer, timeout, permit).await) }
            });
            let conn = http1::Builder::new()
                // One write per response: with two (head, then body) the
                // client's delayed ACK stalls every response by ~40 ms, as
                // wasi:sockets has no TCP_NODELAY.
                .writev(false)
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                match peer {
                    Some(peer) => log::debug!("connection from {peer}: {e}"),
                    None => log::debug!("connection: {e}"),
                }
            }
        });
    }
}

/// Reads the request, then runs the handler to completion in a task of its
/// own (see the module docs) and answers with what it returns.
async fn handle_request<H: Handler>(
    handler: Arc<H>,
    req: hyper::Request<Incoming>,
    peer: Option<SocketAddr>,
    timeout: Duration,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Reading the body touches nothing but the connection: if the client
    // goes away meanwhile, there is nothing to finish.
    let request = match read_request(req, peer).await {
        Ok(request) => request,
        Err(e) => return respond(&method, &path, started, Err(e)),
    };
    let work = tokio::spawn(async move {
        let _connection_slot = permit;
        let result = match tokio::time::timeout(timeout, handler.handle(request)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out")),
        };
        respond(&method, &path, started, result)
    });
    match work.await {
        Ok(response) => response,
        // Only on the host (the services abort on panic): a panicking handler.
        Err(e) => error_response(&ApiError::internal("request handler", &e)),
    }
}

/// The response for `result`, logged (server errors as warnings), also when
/// the client is no longer there to get it.
fn respond(method: &hyper::Method, path: &str, started: Instant, result: Result<Response, ApiError>) -> Response {
    let response = result.unwrap_or_else(|e| error_response(&e));
    let status = response.status();
    let elapsed = started.elapsed();
    if status.is_server_error() {
        log::warn!("{method} {path} -> {} in {elapsed:?}", status.as_u16());
    } else {
        log::debug!("{method} {path} -> {} in {elapsed:?}", status.as_u16());
    }
    response
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (413).
async fn read_request(req: hyper::Request<Incoming>, peer: Option<SocketAddr>) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::payload_too_large(MAX_BODY_BYTES))
        }
        Err(e) => return Err(ApiError::bad_request(format!("could not read request body: {e}"))),
    };
    Ok(Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
        peer,
    })
}

/// Builds the current_thread runtime the services run on and blocks on `f`.
/// wasm32-wasip2 has no threads, and one thread is all a service needs.
pub fn run<F: Future<Output = Result<()>>>(f: F) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json;
    use hyper::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Echo;

    impl Handler for Echo {
        async fn handle(&self, req: Request) -> Result<Response, ApiError> {
            if req.method != Method::POST {
                return Err(ApiError::method_not_allowed(vec!["POST"]));
            }
            json(StatusCode::OK, &serde_json::json!({ "len": req.body.len(), "path": req.path }))
        }
    }

    async fn start() -> SocketAddr {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ServerConfig { addr, max_connections: 8, request_timeout: Duration::from_secs(5) };
        tokio::spawn(serve_on(listener, config, Arc::new(Echo)));
        addr
    }

    async fn roundtrip(addr: SocketAddr, raw: &[u8]) -> String {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serves_json_and_errors() {
        let addr = start().await;
        let ok =
            roundtrip(addr, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("content-type: application/json"), "{ok}");
        assert!(ok.ends_with(r#"{"len":3,"path":"/x"}"#), "{ok}");

        let bad = roundtrip(addr, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 405"), "{bad}");
        assert!(bad.contains("allow: POST"), "{bad}");
        assert!(bad.ends_with(r#"{"error":"method not allowed"}"#), "{bad}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn oversized_bodies_are_413() {
        let addr = start().await;
        let len = MAX_BODY_BYTES + 1;
        let mut raw =
            format!("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n").into_bytes();
        raw.extend(std::iter::repeat_n(b'a', len));
        let resp = roundtrip(addr, &raw).await;
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    }

    /// Counts handlers that started and that ran to their end.
    #[derive(Default)]
    struct Slow {
        started: std::sync::atomic::AtomicUsize,
        finished: std::sync::atomic::AtomicUsize,
    }

    impl Handler for Slow {
        async fn handle(&self, _req: Request) -> Result<Response, ApiError> {
            self.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Stands for a query (or a wait for a pooled connection).
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            json(StatusCode::CREATED, &serde_json::json!({}))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_hangs_up_does_not_cancel_its_handler() {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(Slow::default());
        let config = ServerConfig { addr, max_connections: 8, request_timeout: Duration::from_secs(5) };
        tokio::spawn(serve_on(listener, config, handler.clone()));

        for _ in 0..5 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"POST /m HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}").await.unwrap();
            // Hang up while the handler is still working.
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(c);
        }
        assert_eq!(handler.started.load(SeqCst), 5);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(handler.finished.load(SeqCst), 5, "handlers were cancelled when their clients left");

        // And the server answers the next client as usual.
        let ok =
            roundtrip(addr, b"POST /m HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 201"), "{ok}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_deadline_still_stops_a_handler() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(Slow::default());
        let config = ServerConfig { addr, max_connections: 8, request_timeout: Duration::from_millis(50) };
        tokio::spawn(serve_on(listener, config, handler.clone()));
        let resp =
            roundtrip(addr, b"POST /m HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        assert!(resp.ends_with(r#"{"error":"request timed out"}"#), "{resp}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(handler.finished.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn garbage_is_answered_not_fatal() {
        let addr = start().await;
        let resp = roundtrip(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 400"), "{resp}");
        // The server still serves afterwards.
        let ok =
            roundtrip(addr, b"POST /y HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }
}
