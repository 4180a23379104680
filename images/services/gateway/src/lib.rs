//! The gateway: one origin for the browser, like the original single-host
//! app. `/api/<service>…` is relayed to that service; everything else is the
//! web UI's static files.
//!
//! A wasi:http component: the shim serves HTTP natively, runs a fresh
//! instance of it per request and sends its outbound requests over pooled
//! keep-alive connections. As a long-running socket server the gateway
//! spent more CPU per request than the service behind it (its HTTP and
//! socket I/O ran through the guest's event loop and WASI streams); here
//! only the routing runs in Wasm.

mod config;
mod forward;
mod respond;
mod statics;

use std::io::Read as _;

use wasi::http::types::{IncomingBody, IncomingRequest, Method, ResponseOutparam};

use config::Config;

/// Largest request body relayed to a service (they refuse over 64 KiB).
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

wasi::http::proxy::export!(Gateway);

struct Gateway;

impl wasi::exports::http::incoming_handler::Guest for Gateway {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let env = wasi::cli::environment::get_environment();
        let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
        match config::api_segment(path) {
            Some(segment) => api(request, out, &env, segment.to_string(), &target),
            None => files(&request, out, &env, path),
        }
    }
}

fn api(request: IncomingRequest, out: ResponseOutparam, env: &[(String, String)], segment: String, target: &str) {
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: misconfigured: {e}");
            return respond::error(out, 500, &format!("gateway misconfigured: {e}"));
        }
    };
    let Some(upstream) = config.route(&segment) else {
        return respond::error(out, 404, &format!("no API at /api/{segment}"));
    };
    let method = request.method();
    let headers = request.headers().entries();
    let body = match read_body(&request) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return respond::error(out, 413, "request body too large"),
        Err(BodyError::Read(e)) => {
            eprintln!("gateway: reading a request body: {e}");
            return respond::error(out, 400, "could not read the request body");
        }
    };
    match forward::forward(upstream, &method, target, headers, &body, config.timeout) {
        Ok(relayed) => {
            let bodiless = matches!(method, Method::Head) || relayed.status == 204 || relayed.status == 304;
            let body = if bodiless { None } else { Some(relayed.body.as_slice()) };
            respond::send(out, relayed.status, &relayed.headers, body);
        }
        Err(e) => {
            eprintln!("gateway: {} service at {}: {e}", upstream.name, upstream.address.authority());
            respond::error(out, 502, &format!("{} service unavailable", upstream.name));
        }
    }
}

fn files(request: &IncomingRequest, out: ResponseOutparam, env: &[(String, String)], path: &str) {
    let dir = config::static_dir(env);
    let method = match request.method() {
        Method::Get => "GET",
        Method::Head => "HEAD",
        _ => "other",
    };
    let if_none_match = request.headers().get("if-none-match");
    let reply = statics::serve(dir, method, path, &if_none_match);
    respond::send(out, reply.status, &reply.headers, reply.body.as_deref());
}

enum BodyError {
    TooLarge,
    Read(std::io::Error),
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, BodyError> {
    let Ok(incoming) = request.consume() else { return Ok(Vec::new()) };
    let mut body = Vec::new();
    {
        let stream =
            incoming.stream().map_err(|()| BodyError::Read(std::io::Error::other("body stream taken twice")))?;
        stream.take(MAX_REQUEST_BYTES + 1).read_to_end(&mut body).map_err(BodyError::Read)?;
    }
    drop(IncomingBody::finish(incoming));
    if body.len() as u64 > MAX_REQUEST_BYTES {
        return Err(BodyError::TooLarge);
    }
    Ok(body)
}
