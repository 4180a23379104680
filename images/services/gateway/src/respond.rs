//! Writing a response whose body is known whole.

use std::io::Write as _;

use wasi::http::types::{ErrorCode, Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// Header name and value, as wasi:http carries them.
pub type Header = (String, Vec<u8>);

/// Sends `status`, `headers` and `body` with its Content-Length. `None`
/// sends no body and no length (204, 304, a relayed HEAD): wasi:http checks
/// a declared length against the bytes written. For a HEAD request with a
/// known length pass the GET body: the host sends only the head.
pub fn send(out: ResponseOutparam, status: u16, headers: &[Header], body: Option<&[u8]>) {
    let fields = Fields::new();
    for (name, value) in headers {
        // A header wasi:http refuses (hop-by-hop ones) is left out.
        let _ = fields.append(name, value);
    }
    if let Some(body) = body {
        let _ = fields.set("content-length", &[body.len().to_string().into_bytes()]);
    }
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(status).is_err() {
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(format!("invalid status {status}")))));
        return;
    }
    let Ok(outgoing) = response.body() else {
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("response body taken twice".into()))));
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        let Ok(mut stream) = outgoing.write() else {
            eprintln!("gateway: response body stream taken twice");
            return;
        };
        // A client that went away is routine; nothing else to do then.
        if stream.write_all(body).and_then(|()| std::io::Write::flush(&mut stream)).is_err() {
            return;
        }
        // The stream is a child of the body: gone before the body finishes.
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// `{"error": message}` as JSON.
pub fn error(out: ResponseOutparam, status: u16, message: &str) {
    let body = serde_json::json!({ "error": message }).to_string();
    send(out, status, &[json_type()], Some(body.as_bytes()));
}

pub fn json_type() -> Header {
    ("content-type".to_string(), b"application/json".to_vec())
}
