//! Request and response types handed to service handlers, and the helpers
//! every handler uses: JSON bodies in and out, query parameters, headers.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// Largest request body a service accepts. Chat payloads are a few hundred
/// bytes; the cap keeps a hostile client from making us buffer megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub type Response = hyper::Response<Full<Bytes>>;

/// A request whose body has already been read (at most [`MAX_BODY_BYTES`]).
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client's address, where it can be known safely: never on
    /// wasm32-wasip2 (see `common::listener`).
    pub peer: Option<SocketAddr>,
}

impl Request {
    /// The value of a header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The (percent-decoded) value of the first query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref()?, name)
    }

    /// Parses the body as JSON into `T`; malformed JSON or wrong types are 400.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }
}

/// Parses a JSON body; the serde message (which names the offending field and
/// position) is passed on, since it helps the client and reveals nothing.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A JSON response with `Content-Type: application/json`.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal("serializing response", &e))?;
    Ok(raw_json(status, Bytes::from(body)))
}

/// A response from an already serialized JSON body.
pub fn raw_json(status: StatusCode, body: Bytes) -> Response {
    let mut resp = hyper::Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // API answers depend on the session and change constantly.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The error response for `err`.
pub fn error_response(err: &ApiError) -> Response {
    let mut resp = raw_json(err.status, Bytes::from(err.body()));
    if let Some(allow) = err.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
        resp.headers_mut().insert(hyper::header::ALLOW, allow);
    }
    resp
}

/// The first value of `name` in a query string, percent-decoded (`+` is a
/// space, as in HTML forms). Invalid escapes are kept literally.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+`. Invalid UTF-8 is replaced, not rejected:
/// callers validate the decoded value anyway.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        id: u64,
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        let q = "chat_id=12&fetch_from_message_id=7&name=a%20b+c";
        assert_eq!(query_param(q, "chat_id").as_deref(), Some("12"));
        assert_eq!(query_param(q, "fetch_from_message_id").as_deref(), Some("7"));
        assert_eq!(query_param(q, "name").as_deref(), Some("a b c"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
    }

    #[test]
    fn percent_decode_keeps_invalid_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn json_errors_are_400() {
        assert_eq!(parse_json::<Body>(b"").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(parse_json::<Body>(b"{").unwrap_err().status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Body>(br#"{"id":"x"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert_eq!(parse_json::<Body>(br#"{"id":-1}"#).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(parse_json::<Body>(br#" {"id":3} "#).unwrap().id, 3);
    }

    #[test]
    fn error_response_sets_allow_and_content_type() {
        let resp = error_response(&ApiError::method_not_allowed(vec!["GET"]));
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[hyper::header::ALLOW], "GET");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    }
}
