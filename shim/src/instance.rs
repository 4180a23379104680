//! Running one guest: a Store with its WASI host state, on a thread of its
//! own (so a busy guest never starves the shim's RPCs, and its sockets live
//! in the container's network namespace), cancellable by Kill at any point.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::{oneshot, Notify};
use wasmtime::component::{self, ResourceTable};
use wasmtime::{Engine, InstancePre, Linker, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::engine::{wt, Compiled};
use crate::stdio::GuestStdio;
use crate::wasi::Capabilities;

/// Exit status of a guest that trapped (as `wasmtime run` reports a trap:
/// 128 + SIGABRT). Distinct from 128+SIGTERM/SIGKILL, which Kill gives.
pub const TRAP_EXIT_CODE: u32 = 134;
/// How much output a guest may have in flight before its writes wait.
const OUTPUT_BUDGET: usize = 64 * 1024;

/// A Kill request for a running guest: the signal, and a wake-up for a guest
/// blocked in a host call. Epoch interruption covers guests running code.
#[derive(Default)]
pub struct Interrupt {
    signal: AtomicI32,
    notify: Notify,
}

impl Interrupt {
    /// The first signal wins, except that SIGKILL overrides one that asked
    /// for a graceful stop (a wasi:http server draining).
    pub fn raise(&self, signal: i32) {
        if self.signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_err() && signal == libc::SIGKILL {
            self.signal.store(signal, Ordering::SeqCst);
        }
        self.notify.notify_one();
    }

    pub fn raised(&self) -> Option<i32> {
        Some(self.signal.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    pub(crate) async fn wait(&self) -> i32 {
        self.wait_for(|_| true).await
    }

    /// Waits for a signal that `pred` accepts.
    pub(crate) async fn wait_for(&self, pred: impl Fn(i32) -> bool) -> i32 {
        loop {
            if let Some(s) = self.raised().filter(|s| pred(*s)) {
                return s;
            }
            self.notify.notified().await;
        }
    }
}

/// Bounds each linear memory at the container's memory limit. A denied
/// grow makes `memory.grow` return -1 inside the guest, as a full heap would.
pub(crate) struct MemoryLimit {
    id: String,
    limit: Option<u64>,
    /// Linear memory in use, shared with the container for Stats.
    in_use: Arc<AtomicU64>,
}

impl MemoryLimit {
    pub(crate) fn new(id: &str, limit: Option<u64>) -> Self {
        Self { id: id.to_string(), limit, in_use: Arc::default() }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        match self.limit {
            Some(limit) if desired as u64 > limit => {
                log::warn!(
                    "container {}: memory.grow from {current} to {desired} bytes denied by the memory limit of {limit} bytes",
                    self.id
                );
                Ok(false)
            }
            _ => {
                self.in_use.fetch_add(desired.saturating_sub(current) as u64, Ordering::Relaxed);
                Ok(true)
            }
        }
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Store data for preview 1 modules.
pub struct P1Host {
    wasi: WasiP1Ctx,
    limits: MemoryLimit,
    interrupt: Arc<Interrupt>,
}

/// Store data for preview 2 components.
pub struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: MemoryLimit,
    interrupt: Arc<Interrupt>,
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

trait Host: Send + 'static {
    fn limits(&mut self) -> &mut MemoryLimit;
    fn interrupt(&self) -> &Interrupt;
}

impl Host for P1Host {
    fn limits(&mut self) -> &mut MemoryLimit {
        &mut self.limits
    }
    fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }
}

impl Host for P2Host {
    fn limits(&mut self) -> &mut MemoryLimit {
        &mut self.limits
    }
    fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }
}

/// Code linked against WASI and checked for an entry point: ready to start.
#[derive(Clone)]
pub enum Prepared {
    Module(InstancePre<P1Host>),
    Command(CommandPre<P2Host>),
    /// A wasi:http proxy, served by `http.rs`.
    Http(crate::http::HttpPlan),
}

/// The WASI linkers, built once per engine.
pub struct Linkers {
    p1: Linker<P1Host>,
    p2: component::Linker<P2Host>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> Result<Self> {
        let mut p1 = Linker::new(engine);
        wt(wasmtime_wasi::p1::add_to_linker_async(&mut p1, |h: &mut P1Host| &mut h.wasi)).context("link WASI preview 1")?;
        let mut p2 = component::Linker::new(engine);
        // WASI 0.2's exit carries only ok/err: a component exits 0 or 1.
        wt(wasmtime_wasi::p2::add_to_linker_async(&mut p2)).context("link WASI preview 2")?;
        Ok(Self { p1, p2 })
    }

    /// Resolves imports and finds the entry point, so that a module that
    /// cannot run fails at Create with the reason.
    pub fn prepare(&self, compiled: &Compiled, caps: &Capabilities) -> Result<Prepared> {
        match compiled {
            Compiled::Module(module) => {
                if !matches!(module.get_export("_start"), Some(wasmtime::ExternType::Func(_))) {
                    anyhow::bail!("module exports no `_start` function: it is not a WASI command");
                }
                Ok(Prepared::Module(wt(self.p1.instantiate_pre(module)).context("link module")?))
            }
            Compiled::Component(c) => {
                let pre = wt(self.p2.instantiate_pre(c)).context("link component")?;
                Ok(Prepared::Command(
                    wt(CommandPre::new(pre)).context("component exports neither `wasi:cli/run` nor `wasi:http/incoming-handler`")?,
                ))
            }
            Compiled::Proxy(c) => Ok(Prepared::Http(crate::http::prepare(c, caps)?)),
        }
    }
}

/// What a guest needs to start.
pub struct Launch {
    pub id: String,
    pub engine: Engine,
    pub prepared: Prepared,
    pub caps: Capabilities,
    pub stdio: GuestStdio,
    pub interrupt: Arc<Interrupt>,
    pub cgroup: Option<Arc<crate::cgroups::ContainerCgroup>>,
    pub memory_in_use: Arc<AtomicU64>,
}

/// Starts the guest on its own thread and returns once it is instantiated
/// (or failed to be). The receiver yields the exit status.
pub async fn start(launch: Launch) -> Result<oneshot::Receiver<u32>> {
    let (started_tx, started_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    let name = format!("wasm-{}", launch.id.chars().take(10).collect::<String>());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || guest_thread(launch, started_tx, exit_tx))
        .context("spawn guest thread")?;
    started_rx.await.context("guest thread ended before the guest started")??;
    Ok(exit_rx)
}

fn guest_thread(launch: Launch, started: oneshot::Sender<Result<()>>, exit: oneshot::Sender<u32>) {
    if let Some(cg) = &launch.cgroup {
        cg.add_thread(nix::unistd::gettid().as_raw() as u64);
    }
    if let Err(e) = crate::netns::enter(&launch.caps.network) {
        let _ = started.send(Err(e));
        return;
    }
    // A wasi:http server runs requests on every core; a command is one thread.
    let rt = match &launch.prepared {
        Prepared::Http(_) => crate::http::runtime(&launch.id),
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            let _ = started.send(Err(anyhow::Error::from(e).context("guest runtime")));
            return;
        }
    };
    let status = rt.block_on(run(launch, started));
    // Drops the guest's stdio tasks, so output copies see end-of-file.
    rt.shutdown_background();
    if let Some(status) = status {
        let _ = exit.send(status);
    }
}

async fn run(launch: Launch, started: oneshot::Sender<Result<()>>) -> Option<u32> {
    let Launch { id, engine, prepared, caps, stdio, interrupt, memory_in_use, .. } = launch;
    if let Prepared::Http(plan) = prepared {
        return crate::http::serve(crate::http::Serve { id, plan, caps, stdio, interrupt }, started).await;
    }
    let mut builder = match caps.builder() {
        Ok(b) => b,
        Err(e) => {
            let _ = started.send(Err(e));
            return None;
        }
    };
    if let Some(stdin) = stdio.stdin {
        builder.stdin(AsyncStdinStream::new(stdin));
    }
    if let Some(out) = stdio.stdout {
        builder.stdout(AsyncStdoutStream::new(OUTPUT_BUDGET, out));
    }
    if let Some(err) = stdio.stderr {
        builder.stderr(AsyncStdoutStream::new(OUTPUT_BUDGET, err));
    }
    let limits = MemoryLimit { id: id.clone(), limit: caps.memory_limit, in_use: memory_in_use };
    let result = match prepared {
        Prepared::Module(pre) => {
            let host = P1Host { wasi: builder.build_p1(), limits, interrupt: interrupt.clone() };
            let mut store = new_store(&engine, host);
            let instance = match pre.instantiate_async(&mut store).await {
                Ok(i) => i,
                Err(e) => {
                    let _ = started.send(Err(anyhow::Error::from(e).context("instantiate module")));
                    return None;
                }
            };
            let entry = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Ok(f) => f,
                Err(e) => {
                    let _ = started.send(Err(anyhow::Error::from(e).context("`_start` has the wrong signature")));
                    return None;
                }
            };
            let _ = started.send(Ok(()));
            tokio::select! {
                r = entry.call_async(&mut store, ()) => Ended::Returned(r),
                s = interrupt.wait() => Ended::Signalled(s),
            }
        }
        Prepared::Command(pre) => {
            let host = P2Host { ctx: builder.build(), table: ResourceTable::new(), limits, interrupt: interrupt.clone() };
            let mut store = new_store(&engine, host);
            let command = match pre.instantiate_async(&mut store).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = started.send(Err(anyhow::Error::from(e).context("instantiate component")));
                    return None;
                }
            };
            let _ = started.send(Ok(()));
            tokio::select! {
                r = command.wasi_cli_run().call_run(&mut store) => Ended::Returned(r.and_then(|ok| ok.map_err(|()| wasmtime::Error::new(I32Exit(1))))),
                s = interrupt.wait() => Ended::Signalled(s),
            }
        }
        Prepared::Http(_) => {
            // Served above; kept out of the command runner by construction.
            let _ = started.send(Err(anyhow::anyhow!("internal error: wasi:http component given to the command runner")));
            return None;
        }
    };
    Some(result.status(&id, &interrupt))
}

fn new_store<T: Host>(engine: &Engine, host: T) -> Store<T> {
    let mut store = Store::new(engine, host);
    store.limiter(|h| h.limits());
    // Epochs only move when some guest is killed; each store then checks
    // whether it was the one.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| match ctx.data().interrupt().raised() {
        Some(sig) => Err(wasmtime::format_err!("killed by signal {sig}")),
        None => Ok(UpdateDeadline::Continue(1)),
    });
    store
}

enum Ended {
    Returned(wasmtime::Result<()>),
    Signalled(i32),
}

impl Ended {
    fn status(self, id: &str, interrupt: &Interrupt) -> u32 {
        match self {
            Ended::Returned(Ok(())) => 0,
            Ended::Signalled(sig) => 128 + sig as u32,
            Ended::Returned(Err(e)) => {
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    return exit.0 as u32;
                }
                if let Some(sig) = interrupt.raised() {
                    return 128 + sig as u32;
                }
                match e.downcast_ref::<Trap>() {
                    Some(trap) => log::error!("container {id}: wasm trap ({trap}): {e:?}"),
                    None => log::error!("container {id}: guest failed: {e:?}"),
                }
                TRAP_EXIT_CODE
            }
        }
    }
}
