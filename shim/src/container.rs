//! A Wasm container's state: its status machine, exit record and the parts
//! it owns (rootfs mount, stdio copies, scratch dirs). Lifecycle rules live
//! here as predicates; the RPC layer only asks them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use oci_spec::runtime::Spec;
use tokio::sync::watch;

use crate::bundle::{self, Artifact};
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
    pub bundle: PathBuf,
    pub stdio: Stdio,
    pub io: IoTasks,
    pub status: Status,
    pub exit: Option<Exit>,
    /// What Start needs; taken when the guest starts.
    pub plan: Option<(Prepared, Capabilities)>,
    pub interrupt: Arc<Interrupt>,
    pub exited: watch::Sender<Option<Exit>>,
    rootfs_mounted: bool,
    scratch: PathBuf,
}

/// The inputs of Create, already validated by containerd.
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<containerd_shim::protos::types::mount::Mount>,
    pub stdio: Stdio,
}

impl Container {
    /// Mounts the rootfs, finds and compiles the entrypoint, and grants
    /// capabilities. Blocking; undoes the mount on failure.
    pub fn create(req: CreateRequest, engine: &WasmEngine, linkers: &Linkers) -> Result<Self> {
        let spec = bundle::read_spec(&req.bundle)?;
        let rootfs = bundle::mount_rootfs(&req.bundle, &spec, &req.rootfs)?;
        let rootfs_mounted = !req.rootfs.is_empty();
        let scratch = req.bundle.join("wasm-scratch");
        match Self::prepare(&req, &spec, &rootfs, &scratch, engine, linkers) {
            Ok(plan) => Ok(Self {
                id: req.id,
                bundle: req.bundle,
                stdio: req.stdio,
                io: IoTasks::default(),
                status: Status::Created,
                exit: None,
                plan: Some(plan),
                interrupt: Arc::default(),
                exited: watch::channel(None).0,
                rootfs_mounted,
                scratch,
            }),
            Err(e) => {
                if rootfs_mounted {
                    if let Err(ue) = bundle::unmount_rootfs(&req.bundle) {
                        log::warn!("container {}: cleanup after failed create: {ue:#}", req.id);
                    }
                }
                let _ = std::fs::remove_dir_all(&scratch);
                Err(e)
            }
        }
    }

    fn prepare(
        req: &CreateRequest,
        spec: &Spec,
        rootfs: &Path,
        scratch: &Path,
        engine: &WasmEngine,
        linkers: &Linkers,
    ) -> Result<(Prepared, Capabilities)> {
        let caps = Capabilities::from_spec(spec, rootfs, scratch)?;
        let arg0 = caps.args.first().map(String::as_str).unwrap_or("");
        let path_env = caps.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
        let entry = bundle::resolve_entrypoint(rootfs, arg0, &caps.cwd, path_env)?;
        let bytes = std::fs::read(&entry).with_context(|| format!("read entrypoint {arg0}"))?;
        let artifact = match Artifact::detect(&bytes) {
            Some(Artifact::Native) => {
                return Err(ShimError::invalid(format!(
                    "entrypoint {arg0} is a native executable, not WebAssembly; run it with runc"
                )))
            }
            Some(a) => a,
            None => {
                return Err(ShimError::invalid(format!(
                    "entrypoint {arg0} is not a WebAssembly module or component (bad magic or version)"
                )))
            }
        };
        let compiled = engine
            .load(&bytes, artifact)
            .map_err(|e| ShimError::invalid(format!("entrypoint {arg0}: {e:#}")))?;
        let prepared = linkers.prepare(&compiled, &caps).map_err(|e| ShimError::invalid(format!("entrypoint {arg0}: {e:#}")))?;
        log::debug!("container {}: prepared {arg0} ({artifact:?})", req.id);
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
        if self.rootfs_mounted {
            bundle::unmount_rootfs(&self.bundle)?;
        }
        Ok(())
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
