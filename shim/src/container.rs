//! A Wasm container's state: its status machine, exit record and the parts
//! it owns (bundle and rootfs mount, stdio copies, cgroup, scratch dirs).
//! Lifecycle rules live here as predicates; the RPC layer only asks them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use tokio::sync::watch;

use crate::bundle::{Artifact, Bundle, Entrypoint};
use crate::cgroups::{self, ContainerCgroup};
use crate::engine::WasmEngine;
use crate::error::{Result, ShimError};
use crate::instance::{Interrupt, Linkers, Prepared};
use crate::wasi::Capabilities;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    pub fn can_delete(self) -> bool {
        self != Status::Running
    }
    pub fn can_kill(self) -> bool {
        self != Status::Stopped
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

pub struct Container {
    pub id: String,
    pub bundle: Bundle,
    pub stdio: Stdio,
    pub io: IoTasks,
    pub status: Status,
    pub exit: Option<Exit>,
    /// What Start needs; taken when the guest starts.
    pub plan: Option<(Prepared, Capabilities)>,
    pub interrupt: Arc<Interrupt>,
    pub exited: watch::Sender<Option<Exit>>,
    /// The container's cgroup (CPU is accounted per guest thread).
    pub cgroup: Option<Arc<ContainerCgroup>>,
    /// Bytes of linear memory the guest holds (the kernel charges it to the shim).
    pub memory_in_use: Arc<std::sync::atomic::AtomicU64>,
    scratch: PathBuf,
}

impl Container {
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
        let caps = Capabilities::from_spec(&bundle.spec, &bundle.rootfs, scratch)?;
        let arg0 = &entry.arg0;
        let artifact = match entry.artifact {
            Some(Artifact::Native) | None => {
                return Err(ShimError::invalid(format!("entrypoint {arg0} is not a WebAssembly module or component")))
            }
            Some(a) => a,
        };
        let compiled = engine
            .load(&entry.bytes, artifact)
            .map_err(|e| ShimError::invalid(format!("entrypoint {arg0}: {e:#}")))?;
        let prepared = linkers.prepare(&compiled, &caps).map_err(|e| ShimError::invalid(format!("entrypoint {arg0}: {e:#}")))?;
        log::debug!("container {id}: prepared {arg0} ({artifact:?})");
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

/// Exit status for a signal that ends a process, or `None` for signals whose
/// default action is to be ignored (or that have no meaning for a guest).
pub fn terminating(signal: u32) -> Option<u32> {
    use libc::{SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH};
    match signal as i32 {
        SIGCHLD | SIGCONT | SIGURG | SIGWINCH | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => None,
        s if s > 0 && s < 65 => Some(s as u32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_predicates() {
        assert!(Status::Created.can_start() && !Status::Running.can_start() && !Status::Stopped.can_start());
        assert!(Status::Created.can_delete() && !Status::Running.can_delete() && Status::Stopped.can_delete());
        assert!(Status::Created.can_kill() && Status::Running.can_kill() && !Status::Stopped.can_kill());
    }

    #[test]
    fn which_signals_terminate() {
        assert_eq!(terminating(15), Some(15));
        assert_eq!(terminating(9), Some(9));
        assert_eq!(terminating(2), Some(2));
        assert_eq!(terminating(libc::SIGWINCH as u32), None);
        assert_eq!(terminating(0), None);
        assert_eq!(terminating(99), None);
    }
}
