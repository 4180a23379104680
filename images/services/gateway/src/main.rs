//! The gateway: one base URL for the browser, like the original single-host
//! app. `/api/<service>…` is forwarded to that service over pooled keep-alive
//! connections; everything else is the web UI's static files.

mod statics;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use common::http::{Request, Response};
use common::server::{self, Handler, ServerConfig};
use common::ApiError;
use http_body_util::Full;
use statics::StaticFiles;
use upstream::{Address, Upstream};

const DEFAULT_PORT: u16 = 3000;

/// `/api/<segment>` → (service name, environment variable of its URL).
/// The truncator is optional: without `TRUNCATOR_URL` its path is a 404.
const SERVICES: &[(&str, &str, &str, bool)] = &[
    ("sessions", "session", "SESSION_URL", true),
    ("chats", "chat", "CHAT_URL", true),
    ("messages", "message", "MESSAGE_URL", true),
    ("users", "user", "USER_URL", true),
    ("truncator", "truncator", "TRUNCATOR_URL", false),
];

struct Gateway {
    /// (path segment, upstream), in [`SERVICES`] order.
    upstreams: Vec<(&'static str, Upstream)>,
    statics: StaticFiles,
}

impl Handler for Gateway {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let Some(rest) = req.path.strip_prefix("/api/").or(if req.path == "/api" { Some("") } else { None }) else {
            return Ok(self.statics.serve(&req.method, &req.path, &req.headers));
        };
        let segment = rest.split('/').next().unwrap_or("");
        let upstream = self
            .upstreams
            .iter()
            .find(|(s, _)| *s == segment)
            .map(|(_, u)| u)
            .ok_or_else(|| ApiError::not_found(format!("no API at /api/{segment}")))?;
        let path_and_query = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        let forwarded_for = req.peer.map(|peer| peer.ip().to_string());
        let relayed = upstream
            .forward(req.method.clone(), &path_and_query, &req.headers, forwarded_for.as_deref(), req.body.clone())
            .await?;
        let mut response = hyper::Response::new(Full::new(relayed.body));
        *response.status_mut() = relayed.status;
        *response.headers_mut() = relayed.headers;
        Ok(response)
    }
}

fn main() -> Result<()> {
    common::logger::init("gateway");
    let env = common::config::from_process();
    let server_config = ServerConfig::from_env(&env, DEFAULT_PORT)?;
    let max_idle: usize = env.parse_or("UPSTREAM_MAX_IDLE", 64)?;
    let mut upstreams = Vec::new();
    for &(segment, name, var, required) in SERVICES {
        let url = if required { Some(env.required(var)?) } else { env.get(var) };
        if let Some(url) = url {
            let address = Address::parse(&url).with_context(|| format!("{var} is invalid"))?;
            upstreams.push((segment, Upstream::new(name, address, max_idle, server_config.request_timeout)?));
        }
    }
    let static_dir = PathBuf::from(env.get("STATIC_DIR").unwrap_or_else(|| "/www".into()));
    let statics = match StaticFiles::load(&static_dir) {
        Ok(files) => {
            log::info!("serving {} static files from {}", files.len(), static_dir.display());
            files
        }
        // The API still works without the UI; say so loudly.
        Err(e) => {
            log::error!("no web UI: {e:#}");
            StaticFiles::default()
        }
    };
    for (segment, u) in &upstreams {
        log::info!("/api/{segment} -> {} service at {}:{}", u.name, u.address().host, u.address().port);
    }
    server::run(server::serve(server_config, Arc::new(Gateway { upstreams, statics })))
}
