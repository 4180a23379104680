//! Forwarding `/api/<service>` requests to the services over pooled
//! keep-alive HTTP/1.1 connections.
//!
//! Each upstream keeps a stack of idle connections. A request takes the most
//! recently used one (or dials a new one), and the connection goes back once
//! the response body has been read. Responses are buffered (API bodies are
//! small JSON), which also frees the connection as early as possible.
//!
//! One exchange (send, read the whole response, give the connection back)
//! runs as a task of its own that `forward` only awaits, under a deadline.
//! A client that hangs up on the gateway therefore never cuts an exchange
//! half-way: the upstream still answers (its work is not cancelled either),
//! and the connection returns to the stack clean, ready for the next request.
//! Only a complete exchange returns its connection; one past its deadline is
//! dropped, and its connection closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use common::ApiError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;

/// Largest upstream response body the gateway relays.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are dropped instead of reused: the
/// services close keep-alive connections that stay idle for 30 s.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus
/// the framing headers that the outgoing body sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
];

/// `http://host:port` (port defaults to 80; no path, no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").with_context(|| format!("{url:?} must start with http://"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            bail!("{url:?} must be http://host:port with no path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port, e.g. [::1].
            Some((_, p)) if p.ends_with(']') => (authority, 80),
            Some((h, p)) => (h, p.parse().with_context(|| format!("{url:?} has an invalid port"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            bail!("{url:?} has no host");
        }
        Ok(Self { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

pub struct Upstream {
    /// The service's name, for errors and logs.
    pub name: &'static str,
    /// What the exchange tasks need too.
    shared: Arc<Shared>,
}

struct Shared {
    name: &'static str,
    address: Address,
    host_header: HeaderValue,
    max_idle: usize,
    /// Deadline of one exchange.
    timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// A response from the upstream, fully read.
pub struct Relayed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Upstream {
    /// `timeout` bounds one exchange (the gateway's request deadline).
    pub fn new(name: &'static str, address: Address, max_idle: usize, timeout: Duration) -> Result<Self> {
        let host_header = HeaderValue::from_str(&address.authority()).context("upstream host")?;
        let shared = Shared { name, address, host_header, max_idle, timeout, idle: Mutex::new(Vec::new()) };
        Ok(Self { name, shared: Arc::new(shared) })
    }

    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Sends one request and reads the whole response, in a task of its own
    /// (see the module docs): dropping this future does not stop it.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        forwarded_for: Option<&str>,
        body: Bytes,
    ) -> Result<Relayed, ApiError> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .body(Full::new(body))
            .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?;
        copy_end_to_end(headers, request.headers_mut());
        request.headers_mut().insert(HOST, self.shared.host_header.clone());
        // The client's address, when known (never on wasm32-wasip2).
        if let Some(v) = forwarded_for.and_then(|f| HeaderValue::from_str(f).ok()) {
            request.headers_mut().insert(HeaderName::from_static("x-forwarded-for"), v);
        }

        let shared = self.shared.clone();
        let exchange = tokio::spawn(async move {
            match tokio::time::timeout(shared.timeout, shared.exchange(request)).await {
                Ok(relayed) => relayed,
                Err(_) => Err(shared.bad_gateway("waiting for the response", &"timed out")),
            }
        });
        match exchange.await {
            Ok(relayed) => relayed,
            // Only on the host (the gateway aborts on panic).
            Err(e) => Err(self.shared.bad_gateway("forwarding", &e)),
        }
    }

    /// Idle connections kept (tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.shared.idle.lock().unwrap().len()
    }
}

impl Shared {
    /// One exchange: send, read the whole response, then (only then) give
    /// the connection back.
    async fn exchange(&self, request: hyper::Request<Full<Bytes>>) -> Result<Relayed, ApiError> {
        let (response, sender) = self.send(request).await?;
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return Err(self.bad_gateway("reading the response", &*e)),
        };
        // Only now is the connection free for the next request.
        self.release(sender);
        let mut headers = HeaderMap::new();
        copy_end_to_end(&parts.headers, &mut headers);
        Ok(Relayed { status: parts.status, headers, body })
    }

    async fn send(
        &self,
        mut request: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::Response<Incoming>, SendRequest<Full<Bytes>>), ApiError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut e) => match e.take_message() {
                    // The connection died before the request went out (the
                    // service closed it while idle): safe to try another.
                    Some(unsent) => request = unsent,
                    None => return Err(self.bad_gateway("sending the request", e.error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        match sender.send_request(request).await {
            Ok(response) => Ok((response, sender)),
            Err(e) => Err(self.bad_gateway("sending the request", &e)),
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() && conn.since.elapsed() < IDLE_TIMEOUT {
                return Some(conn.sender);
            }
        }
        None
    }

    fn release(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        // Not through tokio's resolver: see common::resolve.
        let target = common::resolve::resolve(&self.address.host, self.address.port)
            .map_err(|e| self.bad_gateway("resolving", &e))?;
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(self.bad_gateway("connecting", &e)),
            Err(_) => return Err(self.bad_gateway("connecting", &"timed out")),
        };
        let (sender, connection) = http1::Builder::new()
            // One write per request, for the same delayed-ACK reason as the
            // server side (see common::server).
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.bad_gateway("handshake", &e))?;
        let name = self.name;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("connection to {name} service: {e}");
            }
        });
        Ok(sender)
    }

    fn bad_gateway(&self, context: &str, cause: &dyn std::fmt::Display) -> ApiError {
        log::error!("{} service at {}: {context}: {cause}", self.name, self.address.authority());
        ApiError::new(StatusCode::BAD_GATEWAY, format!("{} service unavailable", self.name))
    }
}

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A service that answers every request `delay` after it arrives;
    /// counts the connections it accepted and the requests it answered.
    async fn slow_service(delay: Duration) -> (Address, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, a) = (connections.clone(), answered.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                c.fetch_add(1, SeqCst);
                let a = a.clone();
                let service = hyper::service::service_fn(move |_req| {
                    let a = a.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        a.fetch_add(1, SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (Address { host: "127.0.0.1".into(), port }, connections, answered)
    }

    async fn post(upstream: &Upstream) -> Result<Relayed, ApiError> {
        upstream.forward(Method::POST, "/api/x", &HeaderMap::new(), Some("127.0.0.1"), Bytes::from_static(b"{}")).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_hangs_up_leaves_a_clean_reusable_connection() {
        let (address, connections, answered) = slow_service(Duration::from_millis(200)).await;
        let upstream = Upstream::new("test", address, 4, Duration::from_secs(5)).unwrap();
        // The gateway's client goes away 50 ms into the exchange: its
        // request future (and so `forward`) is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(50), post(&upstream)).await.is_err());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(answered.load(SeqCst), 1, "the service's answer was read");
        assert_eq!(upstream.idle_count(), 1, "the connection went back to the stack");
        let relayed = post(&upstream).await.unwrap();
        assert_eq!((relayed.status, &relayed.body[..]), (StatusCode::OK, &b"{}"[..]));
        assert_eq!(connections.load(SeqCst), 1, "the next request reused that connection");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_exchange_past_its_deadline_drops_its_connection() {
        let (address, _, _) = slow_service(Duration::from_millis(500)).await;
        let upstream = Upstream::new("test", address, 4, Duration::from_millis(100)).unwrap();
        let e = post(&upstream).await.err().expect("a 502");
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(upstream.idle_count(), 0);
    }

    #[test]
    fn parses_addresses() {
        let a = Address::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(a, Address { host: "127.0.0.1".into(), port: 8081 });
        assert_eq!(a.authority(), "127.0.0.1:8081");
        assert_eq!(Address::parse("http://chat/").unwrap(), Address { host: "chat".into(), port: 80 });
        let v6 = Address::parse("http://[::1]:9000").unwrap();
        assert_eq!(v6, Address { host: "::1".into(), port: 9000 });
        assert_eq!(v6.authority(), "[::1]:9000");
        assert_eq!(Address::parse("http://[::1]").unwrap().port, 80);
        for bad in ["https://x:1", "x:1", "http://", "http://x:1/path", "http://x:port", "http://u@x:1", "http://:80"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn drops_hop_by_hop_headers() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("close"));
        from.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        from.insert("host", HeaderValue::from_static("evil"));
        from.insert("session-id", HeaderValue::from_static("S"));
        from.append("accept", HeaderValue::from_static("a"));
        from.append("accept", HeaderValue::from_static("b"));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to);
        assert_eq!(to.len(), 3);
        assert_eq!(to["session-id"], "S");
        assert_eq!(to.get_all("accept").iter().count(), 2);
    }
}
