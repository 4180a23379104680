//! Running one guest: a Store with its WASI host state, on a thread of its
//! own (so a busy guest never starves the shim's RPCs, and its sockets live
//! in the container's network namespace), cancellable by Kill at any point.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use wasmtime::{Engine, Trap};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi::I32Exit;

use crate::host::cgroups::ContainerCgroup;
use crate::host::stdio::GuestStdio;
use crate::wasm::http;
use crate::wasm::linker::Prepared;
use crate::wasm::store::{new_store, Interrupt, MemoryLimit, P1Host, P2Host};
use crate::wasm::wasi::Capabilities;

/// Exit status of a guest that trapped (as `wasmtime run` reports a trap:
/// 128 + SIGABRT). Distinct from 128+SIGTERM/SIGKILL, which Kill gives.
pub const TRAP_EXIT_CODE: u32 = 134;
/// How much output a guest may have in flight before its writes wait.
const OUTPUT_BUDGET: usize = 64 * 1024;

/// What a guest needs to start.
pub struct Launch {
    pub id: String,
    /// Set for an exec: a further command in the container's sandbox, on a
    /// thread (and with an Interrupt) of its own.
    pub exec_id: Option<String>,
    pub engine: Engine,
    pub prepared: Prepared,
    pub caps: Capabilities,
    pub stdio: GuestStdio,
    pub interrupt: Arc<Interrupt>,
    pub cgroup: Option<Arc<ContainerCgroup>>,
    pub memory_in_use: Arc<AtomicU64>,
}

/// Starts the guest on its own thread and returns once it is instantiated
/// (or failed to be). The receiver yields the exit status.
pub async fn start(launch: Launch) -> Result<oneshot::Receiver<u32>> {
    let (started_tx, started_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    // Thread names are cut at 15 bytes; an exec's differs from its container's.
    let name = match &launch.exec_id {
        None => format!("wasm-{}", launch.id.chars().take(10).collect::<String>()),
        Some(exec) => format!("wexec-{}", exec.chars().take(9).collect::<String>()),
    };
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
    if let Err(e) = crate::host::netns::enter(&launch.caps.network).and_then(|()| crate::host::dns::enter(&launch.caps.name_service)) {
        let _ = started.send(Err(e));
        return;
    }
    // One thread for a command; a wasi:http server accepts here and starts
    // its per-core worker threads from this thread (http::serve), so they
    // share its namespaces and cgroup.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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
    let Launch { id, exec_id, engine, prepared, caps, stdio, interrupt, memory_in_use, .. } = launch;
    if let Prepared::Http(plan) = prepared {
        return http::serve(http::Serve { id, plan, caps, stdio, interrupt }, started).await;
    }
    // What logs call the guest: `container ID` or `container ID exec EXEC`.
    let id = match exec_id {
        None => id,
        Some(exec) => format!("{id} exec {exec}"),
    };
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
    let limits = MemoryLimit::counting(&id, caps.memory_limit, memory_in_use);
    let result = match prepared {
        Prepared::Module(pre) => {
            let host = P1Host::new(builder.build_p1(), limits, interrupt.clone());
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
            let host = P2Host::new(builder.build(), limits, interrupt.clone());
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
