//! Relaying an API request to its service and the answer back, whole.
//!
//! The host sends the request over a pooled keep-alive connection (the shim
//! keeps connections per worker thread) and keeps running this handler when
//! the client hangs up, so a service's work is never cut half-way by the
//! gateway and its connection goes back to the pool clean.

use std::io::Read as _;
use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

use crate::config::Upstream;
use crate::respond::Header;

/// Largest service response relayed.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus
/// the framing headers the outgoing message sets itself.
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

/// A service's answer, read whole.
pub struct Relayed {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// The end-to-end headers of `headers` (names are lowercase in wasi:http).
pub fn end_to_end(headers: Vec<Header>) -> Vec<Header> {
    headers.into_iter().filter(|(name, _)| !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str())).collect()
}

/// Sends one request to `upstream` and reads the whole answer. `timeout`
/// bounds the wait for its first byte and between later ones.
pub fn forward(
    upstream: &Upstream,
    method: &Method,
    path_with_query: &str,
    headers: Vec<Header>,
    body: &[u8],
    timeout: Duration,
) -> Result<Relayed, String> {
    let fields = Fields::new();
    for (name, value) in end_to_end(headers) {
        let _ = fields.append(&name, &value);
    }
    // Always a length, even 0: a body of unknown length would go chunked.
    let _ = fields.set("content-length", &[body.len().to_string().into_bytes()]);
    let request = OutgoingRequest::new(fields);
    request.set_method(method).map_err(|()| "building the request: invalid method")?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "building the request: invalid scheme")?;
    request
        .set_authority(Some(&upstream.address.authority()))
        .map_err(|()| "building the request: invalid authority")?;
    request.set_path_with_query(Some(path_with_query)).map_err(|()| "building the request: invalid path")?;
    let outgoing = request.body().map_err(|()| "building the request: body taken twice")?;
    let options = RequestOptions::new();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let _ = options.set_connect_timeout(Some(nanos(CONNECT_TIMEOUT)));
    let _ = options.set_first_byte_timeout(Some(nanos(timeout)));
    let _ = options.set_between_bytes_timeout(Some(nanos(timeout)));
    let pending =
        outgoing_handler::handle(request, Some(options)).map_err(|e| format!("sending the request: {e:?}"))?;
    // A body the host stopped taking (the exchange failed, or the service
    // answered early) is not an error of its own: the response says which.
    let sent = write_body(&outgoing, body);
    match sent {
        Ok(()) => OutgoingBody::finish(outgoing, None).map_err(|e| format!("finishing the request body: {e:?}"))?,
        // Unfinished: the host aborts the request rather than wait for more.
        Err(_) => drop(outgoing),
    }
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(format!("waiting for the response: {code:?}")),
        Some(Err(())) | None => return Err("waiting for the response: no response".into()),
    };
    let status = response.status();
    let headers = end_to_end(response.headers().entries());
    let incoming = response.consume().map_err(|()| "reading the response: body taken twice")?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "reading the response: body stream taken twice")?;
        let mut limited = stream.take(MAX_RESPONSE_BYTES + 1);
        limited.read_to_end(&mut body).map_err(|e| format!("reading the response: {e}"))?;
    }
    if body.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(format!("reading the response: larger than {MAX_RESPONSE_BYTES} bytes"));
    }
    // Trailers are not relayed; dropping them ends the exchange.
    drop(IncomingBody::finish(incoming));
    Ok(Relayed { status, headers, body })
}

fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    if body.is_empty() {
        return Ok(());
    }
    let mut stream = outgoing.write().map_err(|()| "writing the request body: stream taken twice")?;
    stream
        .write_all(body)
        .and_then(|()| std::io::Write::flush(&mut stream))
        .map_err(|e| format!("writing the request body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_hop_by_hop_headers() {
        let h = |n: &str, v: &str| (n.to_string(), v.as_bytes().to_vec());
        let from = vec![
            h("connection", "close"),
            h("Transfer-Encoding", "chunked"),
            h("host", "evil"),
            h("content-length", "12"),
            h("session-id", "S"),
            h("accept", "a"),
            h("accept", "b"),
        ];
        let kept = end_to_end(from);
        assert_eq!(kept, vec![h("session-id", "S"), h("accept", "a"), h("accept", "b")]);
    }
}
