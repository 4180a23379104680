//! A guest's store state: the WASI (and wasi:http) host contexts, the
//! memory limit, and the Kill signal that epoch checks look at.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::http::outbound::Outbound;

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

    pub async fn wait(&self) -> i32 {
        self.wait_for(|_| true).await
    }

    /// Waits for a signal that `pred` accepts.
    pub async fn wait_for(&self, pred: impl Fn(i32) -> bool) -> i32 {
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
pub struct MemoryLimit {
    id: String,
    limit: Option<u64>,
    /// Linear memory in use, shared with the container for Stats (its init
    /// and its execs add to it; each gives back what it was granted when its
    /// store is dropped).
    in_use: Arc<AtomicU64>,
    granted: u64,
}

impl MemoryLimit {
    pub fn new(id: &str, limit: Option<u64>) -> Self {
        Self::counting(id, limit, Arc::default())
    }

    /// A limit that adds what it grants to `in_use`.
    pub fn counting(id: &str, limit: Option<u64>, in_use: Arc<AtomicU64>) -> Self {
        Self { id: id.to_string(), limit, in_use, granted: 0 }
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        self.in_use.fetch_sub(self.granted, Ordering::Relaxed);
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
                let grown = desired.saturating_sub(current) as u64;
                self.granted += grown;
                self.in_use.fetch_add(grown, Ordering::Relaxed);
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
    pub(super) wasi: WasiP1Ctx,
    limits: MemoryLimit,
    interrupt: Arc<Interrupt>,
}

impl P1Host {
    pub fn new(wasi: WasiP1Ctx, limits: MemoryLimit, interrupt: Arc<Interrupt>) -> Self {
        Self { wasi, limits, interrupt }
    }
}

/// Store data for preview 2 commands: all of WASI 0.2, wasi:http included
/// (outgoing requests from jobs and CLI tools).
pub struct P2Host {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outbound,
    table: ResourceTable,
    limits: MemoryLimit,
    interrupt: Arc<Interrupt>,
}

impl P2Host {
    pub fn new(ctx: WasiCtx, limits: MemoryLimit, interrupt: Arc<Interrupt>) -> Self {
        Self { ctx, http: WasiHttpCtx::new(), hooks: Outbound, table: ResourceTable::new(), limits, interrupt }
    }
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl WasiHttpView for P2Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// What the store callbacks of a long-running guest need from its data.
pub trait Host: Send + 'static {
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

/// A store with the memory limit and the Kill check in place.
pub fn new_store<T: Host>(engine: &Engine, host: T) -> Store<T> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_use_is_shared_and_given_back() {
        let in_use = Arc::new(AtomicU64::new(0));
        let mut init = MemoryLimit::counting("c", Some(1 << 20), in_use.clone());
        let mut exec = MemoryLimit::counting("c", Some(1 << 20), in_use.clone());
        assert!(init.memory_growing(0, 65536, None).unwrap());
        assert!(exec.memory_growing(0, 131072, None).unwrap());
        assert!(!exec.memory_growing(131072, 2 << 20, None).unwrap(), "over the limit");
        assert_eq!(in_use.load(Ordering::Relaxed), 196608);
        drop(exec);
        assert_eq!(in_use.load(Ordering::Relaxed), 65536, "an ended exec gives its memory back");
    }
}
