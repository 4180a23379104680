//! A Wasm container's state: status, exit record and the parts it owns
//! (bundle and rootfs mount, stdio copies, cgroup, scratch dirs), and its
//! Create step: compile, link, grant capabilities.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use shim_input::entrypoint::{Entrypoint, Kind};
use tokio::sync::watch;

use super::exec::Execs;
use super::{Exit, Status};
use crate::error::{Result, ShimError};
use crate::host::bundle::Bundle;
use crate::host::cgroups::{self, ContainerCgroup};
use crate::wasm::engine::WasmEngine;
use crate::wasm::linker::{Linkers, Prepared};
use crate::wasm::store::Interrupt;
use crate::wasm::wasi::Capabilities;

pub struct WasmContainer {
    pub id: String,
    pub bundle: Bundle,
    pub stdio: Stdio,
    pub io: IoTasks,
    pub status: Status,
    pub exit: Option<Exit>,
    /// What Start needs; taken when the guest starts.
    pub plan: Option<(Prepared, Capabilities)>,
    /// The sandbox, kept for execs: they run in it too.
    pub caps: Capabilities,
    pub execs: Execs,
    pub interrupt: Arc<Interrupt>,
    pub exited: watch::Sender<Option<Exit>>,
    /// The container's cgroup (CPU is accounted per guest thread).
    pub cgroup: Option<Arc<ContainerCgroup>>,
    /// Bytes of linear memory the guest holds (the kernel charges it to the shim).
    pub memory_in_use: Arc<std::sync::atomic::AtomicU64>,
    scratch: PathBuf,
}

impl WasmContainer {
    /// Compiles the entrypoint and grants capabilities. Blocking. On failure
    /// the bundle is handed back for the caller to release.
    pub fn create(
        id: &str,
        bundle: Bundle,
        entry: &Entrypoint,
        stdio: Stdio,
        engine: &WasmEngine,
        linkers: &Linkers,
    ) -> std::result::Result<Self, (ShimError, Bundle)> {
        let scratch = bundle.path.join("wasm-scratch");
        let prepared = Self::prepare(id, &bundle, entry, &scratch, engine, linkers)
            .and_then(|plan| Ok((plan, cgroups::for_container(&bundle.spec)?.map(Arc::new))));
        match prepared {
            Ok((plan, cgroup)) => Ok(Self {
                id: id.to_string(),
                bundle,
                stdio,
                io: IoTasks::default(),
                status: Status::Created,
                exit: None,
                caps: plan.1.clone(),
                execs: Execs::default(),
                plan: Some(plan),
                interrupt: Arc::default(),
                exited: watch::channel(None).0,
                cgroup,
                memory_in_use: Arc::default(),
                scratch,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                Err((e, bundle))
            }
        }
    }

    fn prepare(
        id: &str,
        bundle: &Bundle,
        entry: &Entrypoint,
        scratch: &Path,
        engine: &WasmEngine,
        linkers: &Linkers,
    ) -> Result<(Prepared, Capabilities)> {
        let mut caps = Capabilities::from_spec(&bundle.spec, &bundle.rootfs, scratch)?;
        // A namespace of its own is made now, so that execs can join it.
        caps.network = caps.network.held().map_err(|e| ShimError::Internal(e.context(format!("container {id}"))))?;
        let name = &entry.name;
        // An artifact may be run with no args; a program still gets an argv[0].
        if caps.args.is_empty() {
            caps.args.push(name.clone());
        }
        if entry.kind == Kind::Native {
            return Err(ShimError::invalid(format!("entrypoint {name} is not a WebAssembly module or component")));
        }
        let compiled = engine.load(&entry.bytes, entry.kind).map_err(|e| ShimError::invalid(format!("entrypoint {name}: {e:#}")))?;
        let prepared = linkers.prepare(&compiled, &caps).map_err(|e| ShimError::invalid(format!("entrypoint {name}: {e:#}")))?;
        log::debug!("container {id}: prepared {name} ({:?})", entry.kind);
        Ok((prepared, caps))
    }

    /// Records the exit and wakes every waiter.
    pub fn set_exited(&mut self, code: u32) -> Exit {
        let exit = Exit { code, at: SystemTime::now() };
        self.status = Status::Stopped;
        self.exit = Some(exit);
        self.plan = None;
        self.exited.send_replace(Some(exit));
        exit
    }

    /// Releases what the container holds on the host. Blocking.
    pub fn release(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&self.scratch);
        if let Some(cg) = &self.cgroup {
            cg.remove();
        }
        self.bundle.release()
    }
}
