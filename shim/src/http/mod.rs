//! Serving wasi:http proxy components: a component that exports
//! `wasi:http/incoming-handler` (and not `wasi:cli/run`) becomes an HTTP/1.1
//! server in the container's network namespace, running each request in a
//! fresh instance of the component.
//!
//! Settings, from the container's environment (`process.env`):
//! - `WASI_HTTP_PORT`: the TCP port to listen on, on every IPv4 address of the
//!   container's network namespace (default 8080). Not a port number 1–65535:
//!   Create fails, naming the variable.
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
//! from the container's network namespace; `https` is refused
//! (`HTTP-request-denied`). wasi:sockets is linked as for CLI components.

mod body;
mod outbound;
mod output;
mod watchdog;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use self::body::with_first_frame;
use self::outbound::Outbound;
use self::output::Output;
use self::watchdog::{Deadline, Watchdog};
use crate::engine::wt;
use crate::instance::{Interrupt, MemoryLimit};
use crate::stdio::GuestStdio;
use crate::wasi::Capabilities;

pub const PORT_ENV: &str = "WASI_HTTP_PORT";
pub const TIMEOUT_ENV: &str = "WASI_HTTP_TIMEOUT_MS";
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
/// How long a client may take to send a request head, and so also how long
/// a kept-alive connection may sit idle: without it a client that never
/// finishes a request would hold a drain open until SIGKILL.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Instances the pooled engine holds at once, shim-wide: the most requests
/// that run at the same time; more wait for a slot (in their connection)
/// rather than fail. 128 keeps far more requests in flight than two cores can
/// execute, so handlers that wait on I/O do not starve the rest, while each
/// slot's address-space reservation (a 4 GiB memory slot with guards, a fiber
/// stack, instance state) stays well inside the 128 TiB of a process. Slots
/// cost physical memory only while used (and while kept warm for reuse).
const POOL_INSTANCES: u32 = 128;
/// Linear memory one instance may grow to, whatever the container's limit:
/// a per-request handler needing more is broken, and 128 of them at this
/// bound already exceed any machine this shim runs on.
const MAX_INSTANCE_MEMORY: usize = 1 << 30;

/// Bytes of each memory slot reset by hand (from the image) rather than given
/// back with madvise and faulted in again by the next request: page faults,
/// copy-on-write faults and madvise each flush the TLB of every core running
/// a shim thread (IPIs). With the PAGEMAP_SCAN ioctl (Linux ≥ 6.7, used when
/// present) only the pages a request dirtied are reset; without it the
/// lowest KEEP_RESIDENT bytes are reset whole. A typical Rust component's
/// memory (1 MiB stack, data, heap) fits; the rest of a larger one is given
/// back as before. Costs up to this much RSS per slot in use. Measured here
/// at 50 connections, µs of shim CPU per request: 41 with madvise, 37 with
/// whole resets, 34 with PAGEMAP_SCAN.
const KEEP_RESIDENT: usize = 2 << 20;

/// Request slots, shim-wide, matching the pool (see `POOL_INSTANCES`).
static SLOTS: Semaphore = Semaphore::const_new(POOL_INSTANCES as usize);

/// The pooling configuration of the wasi:http engine: copy-on-write memory
/// images (Wasmtime's default) make instantiation a few mappings rather than
/// a copy of the data segments.
pub fn pooling_config() -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        // A Rust wasip2 component is a handful of core instances (the
        // program, wit-component's shims, an adapter); composed or
        // JavaScript components have more. Unused slots cost address space.
        .total_core_instances(POOL_INSTANCES * 16)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        // Every request runs on a fiber of its own.
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(MAX_INSTANCE_MEMORY);
    pool.linear_memory_keep_resident(KEEP_RESIDENT).table_keep_resident(64 << 10);
    // Off by default in Wasmtime 48; Auto uses it where the kernel has it.
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    InstanceAllocationStrategy::Pooling(pool)
}

/// Whether a component is a wasi:http proxy: exports
/// `wasi:http/incoming-handler@0.2.*` and not `wasi:cli/run@0.2.*` (a command
/// that also handles requests keeps being run as a command). Read from the
/// binary before compiling, so the component is compiled once, for the
/// engine that will run it; unparsable bytes are not a proxy (compiling them
/// reports the error).
pub fn is_proxy(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    let (mut handler, mut run, mut depth) = (false, false, 0usize);
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { return false };
        match payload {
            // Nested modules and components have exports of their own.
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let Ok(export) = export else { return false };
                    let name = export.name.name;
                    handler |= name.starts_with("wasi:http/incoming-handler@0.2.");
                    run |= name.starts_with("wasi:cli/run@0.2.");
                }
            }
            _ => {}
        }
    }
    handler && !run
}

/// Serving settings, from the container's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    pub timeout: Duration,
}

impl Settings {
    /// The last definition of a variable wins, as in a shell.
    pub fn from_env(env: &[(String, String)]) -> Result<Self, String> {
        let var = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let port = match var(PORT_ENV) {
            None => DEFAULT_PORT,
            Some(v) => v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{PORT_ENV}={v:?} is not a TCP port number (1-65535)"))?,
        };
        let timeout = match var(TIMEOUT_ENV) {
            None => DEFAULT_TIMEOUT,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| format!("{TIMEOUT_ENV}={v:?} is not a request timeout in milliseconds (1-{MAX_TIMEOUT_MS})"))?,
        };
        Ok(Self { port, timeout })
    }
}

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
    let pre = wt(linker.instantiate_pre(component)).context("link component")?;
    let pre = wt(ProxyPre::new(pre)).context("component does not export `wasi:http/incoming-handler`")?;
    Ok(HttpPlan { pre, settings })
}

/// The runtime of one HTTP container. Built on the guest thread after it
/// entered the container's network namespace, so its worker threads (and
/// their blocking-pool threads) are created in it too: new threads inherit
/// the creating thread's namespaces. A container of its own rather than the
/// shim's runtime, because sockets must live in that namespace; several
/// workers rather than the current-thread runtime CLI guests use, because
/// requests run guest code and should use every core the shim may.
pub fn runtime(id: &str) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(format!("wasm-{}", id.chars().take(10).collect::<String>()))
        .enable_all()
        .build()
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
    let addr = SocketAddr::from(([0, 0, 0, 0], plan.settings.port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            let _ = started.send(Err(anyhow::Error::from(e).context(format!("listen on {addr} ({PORT_ENV})"))));
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
    let _ = started.send(Ok(()));
    log::info!("container {id}: serving wasi:http on {addr} (request timeout {:?})", plan.settings.timeout);

    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let busy = server.busy.enter();
                    tokio::spawn(connection(server.clone(), stream, stop_rx.clone(), busy));
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
fn drains(signal: i32) -> bool {
    signal == libc::SIGTERM || signal == libc::SIGINT
}

struct Server {
    id: String,
    pre: ProxyPre<HttpHost>,
    timeout: Duration,
    caps: Capabilities,
    preopens: WasiFilesystemCtx,
    stdout: Option<Output>,
    stderr: Option<Output>,
    interrupt: Arc<Interrupt>,
    watchdog: Arc<Watchdog>,
    /// Connections and requests in flight, for the drain.
    busy: Busy,
}

/// One client connection: HTTP/1.1 with keep-alive until the client closes
/// it or the server drains (then the request in progress, if any, finishes).
async fn connection(server: Arc<Server>, stream: TcpStream, mut stop: watch::Receiver<bool>, _busy: BusyGuard) {
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
            let _held = (slot, watch, busy);
            let call = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
            };
            // A guest running code is stopped by the epoch callback; one
            // waiting in a host call is dropped here when the deadline passes.
            tokio::select! {
                r = call => r.map_err(|e| if deadline.is_expired() { Failure::TimedOut } else { Failure::Guest(e) }),
                _ = deadline.expired() => Err(Failure::TimedOut),
            }
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
    fn store(&self, deadline: Arc<Deadline>) -> Store<HttpHost> {
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
struct HttpHost {
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

/// Counts connections and requests in flight; the drain waits for zero.
#[derive(Clone, Default)]
struct Busy(Arc<BusyState>);

#[derive(Default)]
struct BusyState {
    count: AtomicUsize,
    idle: Notify,
}

struct BusyGuard(Arc<BusyState>);

impl Busy {
    fn enter(&self) -> BusyGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.0.clone())
    }

    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a last guard dropped in
            // between still wakes us.
            notified.as_mut().enable();
            if self.0.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn settings_default_and_override() {
        assert_eq!(Settings::from_env(&[]).unwrap(), Settings { port: 8080, timeout: Duration::from_secs(30) });
        let s = Settings::from_env(&env(&[("WASI_HTTP_PORT", "1"), ("WASI_HTTP_PORT", "9000"), ("WASI_HTTP_TIMEOUT_MS", "250")])).unwrap();
        assert_eq!(s, Settings { port: 9000, timeout: Duration::from_millis(250) });
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for bad in ["0", "65536", "http", "", "-1"] {
            let err = Settings::from_env(&env(&[("WASI_HTTP_PORT", bad)])).unwrap_err();
            assert!(err.starts_with("WASI_HTTP_PORT=") && err.contains("not a TCP port"), "{err}");
        }
        for bad in ["0", "abc", "86400001", "1.5"] {
            let err = Settings::from_env(&env(&[("WASI_HTTP_TIMEOUT_MS", bad)])).unwrap_err();
            assert!(err.starts_with("WASI_HTTP_TIMEOUT_MS="), "{err}");
        }
    }

    fn component(exports: &str) -> Vec<u8> {
        wat::parse_str(format!("(component {exports})")).unwrap()
    }

    #[test]
    fn proxies_are_told_apart_by_their_exports() {
        let handler = r#"(instance $h) (export "wasi:http/incoming-handler@0.2.3" (instance $h))"#;
        let run = r#"(instance $r) (export "wasi:cli/run@0.2.0" (instance $r))"#;
        assert!(is_proxy(&component(handler)));
        assert!(!is_proxy(&component(run)));
        assert!(!is_proxy(&component(&format!("{handler} {run}"))), "a command that also handles requests stays a command");
        // An export of a nested component is not the component's.
        let nested = format!("(component {handler})");
        assert!(!is_proxy(&component(&nested)));
        assert!(!is_proxy(b"\0asm\x0d\0\x01\0garbage"));
    }

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

    #[tokio::test]
    async fn busy_idles_when_the_last_guard_goes() {
        let busy = Busy::default();
        busy.idle().await;
        let guard = busy.enter();
        let waiter = tokio::spawn({
            let busy = busy.clone();
            async move { busy.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    }
}
