//! Serving wasi:http proxy components: a component that exports
//! `wasi:http/incoming-handler` becomes an HTTP/1.1 server in the container's
//! network namespace, running each request in a fresh instance of the
//! component (see `shim_input::entrypoint` for how a component's role is chosen).
//!
//! Settings, from the container's environment (`process.env`; parsed by
//! `shim_input::settings`):
//! - `WASI_HTTP_PORT`: the TCP port to listen on (default 8080). Not a port
//!   number 1–65535: Create fails, naming the variable.
//! - `WASI_HTTP_ADDR`: the address to listen on (default 0.0.0.0, every IPv4
//!   address of the container's network namespace); e.g. 127.0.0.1 for a
//!   container on the host's network that only local clients may reach. Not
//!   an IP address: Create fails, naming the variable.
//! - `WASI_HTTP_TIMEOUT_MS`: how long one request may run, from its arrival
//!   until the handler returns (default 30000). A request over it is cut off
//!   and answered 503; others are unaffected. Not a whole number of
//!   milliseconds 1–86400000: Create fails, naming the variable.
//!
//! A handler that traps, or is denied memory beyond the container's memory
//! limit (`linux.resources.memory.limit`, applied to each instance) and so
//! aborts, is answered 500; the server keeps serving. SIGTERM and SIGINT stop
//! accepting connections, let in-flight requests finish, then exit 0;
//! SIGKILL (and any other terminating signal) stops at once with 128+signal.
//! A client gets 30 s to send a request head; an idle kept-alive connection
//! is closed after as long.
//! Outbound `wasi:http/outgoing-handler` requests are sent over plain HTTP
//! from the container's network namespace, on keep-alive connections kept
//! for the next request (see `outbound`); `https` is refused
//! (`HTTP-request-denied`). wasi:sockets is linked as for CLI components.

mod body;
pub mod outbound;
mod output;
mod server;
mod watchdog;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::busy::Busy;
use self::output::Output;
use self::server::{connection, HttpHost, Server};
use self::watchdog::{Deadline, Watchdog};
use self::workers::Workers;
use super::imports::link_component;
use super::pool::POOL_INSTANCES;
use super::store::Interrupt;
use super::wasi::Capabilities;
use super::wt;
use crate::host::stdio::GuestStdio;

/// How long a client may take to send a request head, and so also how long
/// a kept-alive connection may sit idle: without it a client that never
/// finishes a request would hold a drain open until SIGKILL.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Request slots, shim-wide, matching the pool (see `pool::POOL_INSTANCES`).
pub(super) static SLOTS: Semaphore = Semaphore::const_new(POOL_INSTANCES as usize);

pub use shim_input::settings::{HttpSettings as Settings, ADDR_ENV, PORT_ENV, TIMEOUT_ENV};

/// A proxy component linked and checked at Create, with its settings.
#[derive(Clone)]
pub struct HttpPlan {
    pre: ProxyPre<HttpHost>,
    settings: Settings,
}

/// Links a proxy component against WASI 0.2 and wasi:http, and reads its
/// settings, so that either problem fails Create.
pub fn prepare(component: &Component, caps: &Capabilities) -> Result<HttpPlan> {
    let settings = Settings::from_env(&caps.env).map_err(anyhow::Error::msg)?;
    let mut linker = Linker::new(component.engine());
    // All of WASI 0.2 (sockets included), not only the proxy world's imports:
    // handlers may open connections where the container's network allows.
    wt(wasmtime_wasi::p2::add_to_linker_async(&mut linker)).context("link WASI preview 2")?;
    wt(wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)).context("link wasi:http")?;
    let pre = link_component(&linker, component)?;
    let pre = wt(ProxyPre::new(pre)).context("component does not export `wasi:http/incoming-handler`")?;
    Ok(HttpPlan { pre, settings })
}


/// What `serve` needs: the plan from Create and the container's parts.
pub struct Serve {
    pub id: String,
    pub plan: HttpPlan,
    pub caps: Capabilities,
    pub stdio: GuestStdio,
    pub interrupt: Arc<Interrupt>,
}

/// Serves until a signal: returns the exit status (0 after a drain,
/// 128+signal otherwise), or `None` if serving never started (reported on
/// `started`).
pub async fn serve(serve: Serve, started: oneshot::Sender<Result<()>>) -> Option<u32> {
    let Serve { id, plan, caps, stdio, interrupt } = serve;
    let addr = SocketAddr::new(plan.settings.addr, plan.settings.port);
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            let _ = started.send(Err(anyhow::Error::from(e).context(format!("listen on {addr} ({ADDR_ENV}, {PORT_ENV})"))));
            return None;
        }
    };
    let (stdout, stdout_done) = Output::forward(stdio.stdout);
    let (stderr, stderr_done) = Output::forward(stdio.stderr);
    let engine = plan.pre.engine().clone();
    // Directories are opened once and shared by every request's context:
    // opening them (a path walk into the rootfs) was a sixth of a request.
    let preopens = match caps.builder() {
        Ok(mut b) => b.build().filesystem().clone(),
        Err(e) => {
            let _ = started.send(Err(e));
            return None;
        }
    };
    let watchdog = match Watchdog::start(engine.clone(), &id) {
        Ok(w) => w,
        Err(e) => {
            let _ = started.send(Err(e));
            return None;
        }
    };
    let server = Arc::new(Server {
        id: id.clone(),
        pre: plan.pre,
        timeout: plan.settings.timeout,
        caps,
        preopens,
        stdout,
        stderr,
        interrupt: interrupt.clone(),
        watchdog: watchdog.clone(),
        busy: Busy::default(),
    });
    // One instance up front: a component that cannot be instantiated here (a
    // start function that traps, a memory limit below its initial memory,
    // more instances than a pool slot holds) fails Start, not every request.
    // It takes a request slot like any request, so the pool has room for it.
    let trial = Arc::new(Deadline::default());
    let watched = watchdog.watch(Instant::now() + plan.settings.timeout, trial.clone());
    let slot = SLOTS.acquire().await;
    let mut store = server.store(trial);
    let instantiated = server.pre.instantiate_async(&mut store).await;
    drop((store, slot, watched));
    if let Err(e) = instantiated {
        watchdog.stop();
        let _ = started.send(Err(anyhow::Error::from(e).context("instantiate component")));
        return None;
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let workers = match Workers::start(&format!("wasm-{}", id.chars().take(10).collect::<String>()), threads) {
        Ok(w) => w,
        Err(e) => {
            watchdog.stop();
            let _ = started.send(Err(anyhow::Error::from(e).context("start the worker threads")));
            return None;
        }
    };
    let _ = started.send(Ok(()));
    log::info!(
        "container {id}: serving wasi:http on {addr} with {threads} worker threads (request timeout {:?})",
        plan.settings.timeout
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let busy = server.busy.enter();
                    let (server, stop) = (server.clone(), stop_rx.clone());
                    if let Err(e) = workers.serve(stream, move |stream| connection(server, stream, stop, busy)) {
                        log::warn!("container {id}: handing a connection to a worker: {e}");
                    }
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    log::warn!("container {id}: accept: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        s = interrupt.wait() => break s,
                    }
                }
            },
            s = interrupt.wait() => break s,
        }
    };
    drop(listener);
    let status = if drains(signal) {
        log::info!("container {id}: signal {signal}: stopped accepting; draining in-flight requests");
        let _ = stop_tx.send(true);
        let busy = server.busy.clone();
        drop(server);
        tokio::select! {
            _ = async {
                busy.idle().await;
                // Requests are done, so nothing writes any more: let the
                // output copies finish.
                let _ = stdout_done.await;
                let _ = stderr_done.await;
            } => {
                log::info!("container {id}: drained");
                0
            }
            s = interrupt.wait_for(|s| !drains(s)) => 128 + s as u32,
        }
    } else {
        128 + signal as u32
    };
    watchdog.stop();
    Some(status)
}

/// Signals that ask for a graceful stop; any other terminating signal stops at once.
pub(super) fn drains(signal: i32) -> bool {
    signal == libc::SIGTERM || signal == libc::SIGINT
}
