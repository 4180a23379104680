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

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

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
    let trial = Arc::new(Deadline::default());
    let watched = watchdog.watch(Instant::now() + plan.settings.timeout, trial.clone());
    let mut store = server.store(trial);
    let instantiated = server.pre.instantiate_async(&mut store).await;
    drop((store, watched));
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
        async move { Ok::<_, Infallible>(server.handle(req).await) }
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
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> hyper::Response<HyperOutgoingBody> {
        // Cheap clones (shared bytes), formatted only on failure.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        match self.clone().respond(req).await {
            Ok(response) => response,
            Err((status, e)) => {
                log::warn!("container {}: {method} {}: {e:#}", self.id, uri.path());
                error_response(status)
            }
        }
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
        // Epochs move when some request's deadline passes or the container is
        // killed; each running store then checks whether that concerns it.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let host = ctx.data();
            if host.deadline.is_expired() {
                return Err(wasmtime::format_err!("request deadline ({TIMEOUT_ENV}) exceeded"));
            }
            match host.interrupt.raised() {
                Some(sig) if !drains(sig) => Err(wasmtime::format_err!("killed by signal {sig}")),
                _ => Ok(UpdateDeadline::Continue(1)),
            }
        });
        store
    }
}

/// Holds the response head back until the body's first frame (or its end)
/// is there, as Go's net/http does until the first write, so that hyper
/// sends head and body in one write: the guest hands over the head before it
/// writes the body, and two writes per response cost a second segment and a
/// second wake-up of the client for every request.
async fn with_first_frame(response: hyper::Response<HyperOutgoingBody>) -> Result<hyper::Response<HyperOutgoingBody>> {
    let (parts, mut body) = response.into_parts();
    let body = match body.frame().await {
        None => body,
        Some(Ok(first)) => Prefixed { first: Some(first), rest: body }.boxed_unsync(),
        // Nothing was sent yet, so the client can still get a clean 500.
        Some(Err(e)) => return Err(anyhow::Error::from(e).context("handler failed before writing the body")),
    };
    Ok(hyper::Response::from_parts(parts, body))
}

/// A body whose first frame was already read.
struct Prefixed {
    first: Option<hyper::body::Frame<Bytes>>,
    rest: HyperOutgoingBody,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(frame) => std::task::Poll::Ready(Some(Ok(frame))),
            None => std::pin::Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let first = self.first.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

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

/// How a request's deadline reaches it: a flag the epoch callback reads
/// (guest running code) and a wake-up for a guest waiting in a host call.
#[derive(Default)]
struct Deadline {
    expired: AtomicBool,
    notify: Notify,
}

impl Deadline {
    fn expire(&self) {
        self.expired.store(true, Ordering::SeqCst);
        // Stores a permit if nobody waits yet: the wake-up is not lost.
        self.notify.notify_one();
    }

    fn is_expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    async fn expired(&self) {
        while !self.is_expired() {
            self.notify.notified().await;
        }
    }
}

/// Expires request deadlines. A thread rather than a tokio timer: a guest
/// spinning in a loop holds its worker thread, and tokio can park the timer
/// task of that request on that very worker (its LIFO slot cannot be stolen),
/// or every worker may be spinning. The thread sleeps until the earliest
/// deadline, and without one until a request arrives: nothing ticks while
/// idle.
struct Watchdog {
    state: Mutex<Deadlines>,
    wake: Condvar,
    engine: Engine,
}

#[derive(Default)]
struct Deadlines {
    next: u64,
    pending: BTreeMap<(Instant, u64), Arc<Deadline>>,
    /// When the thread wakes by itself; `None`: only when woken.
    wake_at: Option<Instant>,
    stopped: bool,
}

/// Keeps a deadline registered; dropping it (the request ended) removes it.
struct Watched {
    watchdog: Arc<Watchdog>,
    key: (Instant, u64),
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watchdog.lock().pending.remove(&self.key);
    }
}

impl Watchdog {
    fn start(engine: Engine, id: &str) -> Result<Arc<Self>> {
        let watchdog = Arc::new(Self { state: Mutex::default(), wake: Condvar::new(), engine });
        let w = watchdog.clone();
        std::thread::Builder::new()
            .name(format!("http-{}", id.chars().take(10).collect::<String>()))
            .spawn(move || w.run())
            .context("spawn the request watchdog thread")?;
        Ok(watchdog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        // The map stays consistent whatever a panicking holder was doing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn watch(self: &Arc<Self>, at: Instant, deadline: Arc<Deadline>) -> Watched {
        let mut state = self.lock();
        state.next += 1;
        let key = (at, state.next);
        state.pending.insert(key, deadline);
        // Only a deadline earlier than the thread's wake-up needs it now. With
        // one timeout for all requests that is rare: under load the thread
        // wakes about once per timeout, not once per request.
        if state.wake_at.is_none_or(|wake| at < wake) {
            self.wake.notify_one();
        }
        Watched { watchdog: self.clone(), key }
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let now = Instant::now();
            let mut expired = false;
            while let Some(entry) = state.pending.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().expire();
                expired = true;
            }
            if expired {
                // Running guests check their flag at their next epoch check.
                self.engine.increment_epoch();
            }
            state.wake_at = state.pending.keys().next().map(|(at, _)| *at);
            state = match state.wake_at {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.wake.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0
                }
                None => self.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
        }
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

/// A container's stdout or stderr, shared by all requests. Each request's
/// stream hands whole writes to one copying task through a bounded channel,
/// so concurrent requests neither trap on a shared stream (Wasmtime's
/// `AsyncStdoutStream` allows one writer at a time) nor interleave within a
/// write, and a full pipe makes writers wait rather than grow memory.
#[derive(Clone)]
struct Output(mpsc::Sender<Bytes>);

/// Writes queued per container stream before writers wait.
const OUTPUT_QUEUE: usize = 64;
/// The most one write may carry.
const OUTPUT_CHUNK: usize = 64 * 1024;

impl Output {
    /// Starts the copying task; the receiver yields once everything written
    /// has been copied and every writer is gone.
    fn forward(pipe: Option<crate::stdio::GuestOutput>) -> (Option<Self>, oneshot::Receiver<()>) {
        let (done_tx, done_rx) = oneshot::channel();
        let Some(mut pipe) = pipe else {
            let _ = done_tx.send(());
            return (None, done_rx);
        };
        let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if pipe.write_all(&bytes).await.is_err() {
                    // Nobody reads any more; writers see a closed stream.
                    break;
                }
            }
            let _ = pipe.shutdown().await;
            let _ = done_tx.send(());
        });
        (Some(Self(tx)), done_rx)
    }
}

impl wasmtime_wasi::cli::IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(OutputHandle { tx: self.0.clone(), permit: None })
    }

    /// Used only by WASIp3 bindings, which this shim does not link.
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

/// One store's handle on an `Output`: a write needs a reserved queue slot.
struct OutputHandle {
    tx: mpsc::Sender<Bytes>,
    permit: Option<mpsc::OwnedPermit<Bytes>>,
}

#[async_trait::async_trait]
impl Pollable for OutputHandle {
    async fn ready(&mut self) {
        if self.permit.is_none() {
            // A closed channel is ready too: the next check reports it.
            self.permit = self.tx.clone().reserve_owned().await.ok();
        }
    }
}

impl OutputStream for OutputHandle {
    fn check_write(&mut self) -> StreamResult<usize> {
        if self.permit.is_some() {
            return Ok(OUTPUT_CHUNK);
        }
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => {
                self.permit = Some(permit);
                Ok(OUTPUT_CHUNK)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::Closed),
        }
    }

    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > OUTPUT_CHUNK {
            return Err(StreamError::trap("write larger than check-write allowed"));
        }
        match self.permit.take() {
            Some(permit) => {
                permit.send(bytes);
                Ok(())
            }
            None => Err(StreamError::trap("write without a successful check-write")),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Queued writes are the copying task's; there is nothing to push.
        Ok(())
    }
}

/// Outbound wasi:http: plain HTTP over hyper from the container's network
/// namespace (this runtime's threads are in it). HTTPS would need a TLS stack
/// and a trust store in the shim; it is refused instead.
struct Outbound;

type SendFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)>> + Send>;
type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        Box::new(send_plain(request, options))
    }
}

async fn send_plain(
    mut request: hyper::Request<WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)> {
    use wasmtime_wasi_http::Error;
    // The guest's request deadline bounds all of this anyway; these only
    // apply when the guest asks for less.
    const NO_LIMIT: Duration = Duration::from_secs(600);
    let uri = request.uri();
    if uri.scheme() != Some(&hyper::http::uri::Scheme::HTTP) {
        log::debug!("refusing outbound request to {uri}: only plain http is supported");
        return Err(Error::HttpRequestDenied);
    }
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let address = match authority.port() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:80"),
    };
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(NO_LIMIT);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(NO_LIMIT);
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries only the path: the authority went into Host.
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    *request.uri_mut() = hyper::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let io = tokio::spawn(conn);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: IoFuture = Box::new(async move {
        match io.await {
            Ok(r) => r.map_err(Error::from),
            Err(e) => Err(Error::InternalError(Some(format!("outbound connection task: {e}")))),
        }
    });
    Ok((response, io))
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
    async fn watchdog_expires_only_due_deadlines() {
        let watchdog = Watchdog::start(Engine::default(), "test").unwrap();
        let soon = Arc::new(Deadline::default());
        let later = Arc::new(Deadline::default());
        let _a = watchdog.watch(Instant::now() + Duration::from_millis(20), soon.clone());
        let _b = watchdog.watch(Instant::now() + Duration::from_secs(3600), later.clone());
        tokio::time::timeout(Duration::from_secs(10), soon.expired()).await.expect("deadline not expired");
        assert!(!later.is_expired());
        // A finished request's deadline is forgotten.
        let done = Arc::new(Deadline::default());
        drop(watchdog.watch(Instant::now() + Duration::from_millis(1), done.clone()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!done.is_expired());
        assert_eq!(watchdog.lock().pending.len(), 1);
        watchdog.stop();
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
