//! Cgroups: where Wasm guests are accounted, and the metrics of any
//! container's cgroup.
//!
//! A guest runs on a thread of the shim, and what a host allows decides how
//! it is accounted:
//! - cgroup v1 with cgroupfs paths: the guest's thread moves into its
//!   container's cgroup (CPU and pids per container), and the shim process
//!   joins the pod-level parent, so memory is charged to the pod.
//! - cgroup v2, or systemd paths: a cgroup holds whole processes (v2 places
//!   threads only in threaded subtrees; systemd places processes), so the
//!   shim process moves into the cgroup of the first Wasm container it runs
//!   — the systemd scope runc would create for that cgroupsPath, or the
//!   cgroupfs directory — under that container's CPU and pids limits. Later
//!   Wasm containers of the pod are accounted there too; when that container
//!   is removed the process moves on to another's cgroup, or back.
//!
//! Memory limits are not put on the shim's process: each guest's linear
//! memory is bounded by its own limit in the store, and the pod's cgroup
//! bounds them all.

mod metrics;
mod path;

use std::sync::{Mutex, Once};

use anyhow::Context;
use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::manager::{Manager, SystemdManager};
use cgroups_rs::CgroupPid;
use oci_spec::runtime::{LinuxResources, Spec};

pub use metrics::Metrics;
pub use path::CgroupsPath;

use crate::error::Result;

pub struct ContainerCgroup {
    path: CgroupsPath,
    cgroup: Cgroup,
    /// Guest threads are moved in one by one (cgroup v1, cgroupfs); else the
    /// shim's process is accounted as a whole (see [`ProcessHome`]).
    per_thread: bool,
}

/// Where the shim's process is accounted when cgroups hold processes: in
/// the cgroup of one of its running Wasm containers (the holder). When the
/// holder is removed the process moves on to another member's, or back where
/// it came from, so it never sits in a removed container's cgroup.
#[derive(Default)]
struct ProcessHome {
    holder: Option<CgroupsPath>,
    /// The process's cgroup before it first moved (cgroup v2).
    origin: Option<String>,
    /// Wasm containers accounted with the process, holder included, with
    /// the limits a holder applies.
    members: Vec<(CgroupsPath, Option<LinuxResources>)>,
}

static HOME: Mutex<Option<ProcessHome>> = Mutex::new(None);

/// The cgroup for a Wasm container, if the spec names one.
pub fn for_container(spec: &Spec) -> Result<Option<ContainerCgroup>> {
    let Some(path) = CgroupsPath::of(spec)? else { return Ok(None) };
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    if !hierarchies::is_cgroup2_unified_mode() && !path.is_systemd() {
        return Ok(Some(per_thread(path, resources.as_ref())?));
    }
    // CPU and pids only: see the module comment.
    let limits = resources.map(|mut r| {
        r.set_memory(None);
        r
    });
    let mut guard = HOME.lock().unwrap_or_else(|e| e.into_inner());
    let home = guard.get_or_insert_with(ProcessHome::default);
    if home.origin.is_none() && hierarchies::is_cgroup2_unified_mode() {
        home.origin = Some(process_cgroup_v2(std::process::id())?);
    }
    match &home.holder {
        Some(holder) => log::info!("cgroup {path}: accounted with the shim's process, in {holder}"),
        None => {
            move_process(&path, limits.as_ref())?;
            home.holder = Some(path.clone());
        }
    }
    home.members.push((path.clone(), limits));
    let cgroup = Cgroup::load(hierarchies::auto(), path.relative());
    Ok(Some(ContainerCgroup { path, cgroup, per_thread: false }))
}

/// Moves the shim's process into `path`'s cgroup: a systemd scope is
/// started with it (the holder's old scope, left empty, ends by itself), a
/// cgroupfs directory is created.
fn move_process(path: &CgroupsPath, limits: Option<&LinuxResources>) -> Result<()> {
    let shim = CgroupPid::from(std::process::id() as u64);
    match path {
        CgroupsPath::Systemd { spec, .. } => {
            let mut scope = SystemdManager::new(spec).map_err(|e| anyhow::anyhow!("systemd scope for {path}: {e}"))?;
            scope.add_proc(shim).map_err(|e| anyhow::anyhow!("start systemd scope {path} with the shim: {e}"))?;
            if let Some(limits) = limits {
                if let Err(e) = scope.set(limits) {
                    log::warn!("cgroup {path}: apply resources: {e}");
                }
            }
        }
        CgroupsPath::Fs { relative } => {
            let cgroup = Cgroup::new(hierarchies::auto(), relative).with_context(|| format!("create cgroup {path}"))?;
            if let Some(limits) = limits {
                apply(&cgroup, path, limits);
            }
            cgroup.add_task_by_tgid(shim).with_context(|| format!("move the shim into cgroup {path}"))?;
        }
    }
    log::info!("shim's process joined cgroup {path}");
    Ok(())
}

/// cgroup v1, cgroupfs: the container's own cgroup, for its guest threads.
fn per_thread(path: CgroupsPath, resources: Option<&LinuxResources>) -> Result<ContainerCgroup> {
    join_parent_once(path.relative());
    let cgroup = Cgroup::new(hierarchies::auto(), path.relative()).with_context(|| format!("create cgroup {path}"))?;
    if let Some(resources) = resources {
        // CPU and pids limits act on the guest thread; memory is bounded per store.
        // A memory limit here would charge the thread's kernel allocations to it
        // (cgroup v1 kmem): a small one fails the guest's setns with ENOMEM, and
        // reaching it would OOM-kill the whole shim.
        let mut limits = resources.clone();
        limits.set_memory(None);
        apply(&cgroup, &path, &limits);
    }
    Ok(ContainerCgroup { path, cgroup, per_thread: true })
}

fn apply(cgroup: &Cgroup, path: &CgroupsPath, resources: &LinuxResources) {
    if let Err(e) = containerd_shim::cgroup::update_resources(cgroup, resources) {
        log::warn!("cgroup {path}: apply resources: {e}");
    }
}

/// Removes the cgroupfs cgroup of a Wasm container whose shim was killed (its
/// threads died with it). A systemd scope ends by itself with its processes.
pub fn remove_orphaned(spec: &Spec) {
    let Ok(Some(path @ CgroupsPath::Fs { .. })) = CgroupsPath::of(spec) else { return };
    let cgroup = Cgroup::load(hierarchies::auto(), path.relative());
    if cgroup.exists() {
        if let Err(e) = cgroup.delete() {
            log::warn!("remove cgroup {path}: {e}");
        }
    }
}

/// Metrics of the cgroup a spec's `cgroupsPath` names, which outlives the
/// container's processes: Stats after an exit still answer (containerd's
/// CRI asks then, to tell an OOM kill).
pub fn spec_metrics(spec: &Spec) -> Option<anyhow::Result<Metrics>> {
    let path = match CgroupsPath::of(spec) {
        Ok(path) => path?,
        Err(e) => return Some(Err(e.into())),
    };
    let cgroup = Cgroup::load(hierarchies::auto(), path.relative());
    Some(Metrics::of(&cgroup).with_context(|| format!("cgroup {path}")))
}

/// Metrics of the cgroup process `pid` is in.
pub fn process_metrics(pid: u32) -> anyhow::Result<Metrics> {
    let cgroup = if hierarchies::is_cgroup2_unified_mode() {
        Cgroup::load(hierarchies::auto(), process_cgroup_v2(pid)?)
    } else {
        containerd_shim::cgroup::get_cgroup(pid).map_err(|e| anyhow::anyhow!("find cgroup of {pid}: {e}"))?
    };
    Metrics::of(&cgroup)
}

/// A process's cgroup on a unified host, relative to the root (`0::/x` → `x`).
fn process_cgroup_v2(pid: u32) -> anyhow::Result<String> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).with_context(|| format!("read {file}"))?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).with_context(|| format!("{file} has no cgroup v2 entry"))?;
    Ok(path.trim().trim_start_matches('/').to_string())
}

/// Moves the whole shim into the pod-level cgroup, once (cgroup v1).
fn join_parent_once(relative: &str) {
    static JOINED: Once = Once::new();
    let Some(parent) = std::path::Path::new(relative).parent().filter(|p| !p.as_os_str().is_empty()) else { return };
    let parent = parent.to_string_lossy().into_owned();
    JOINED.call_once(|| {
        let joined = Cgroup::new(hierarchies::auto(), &parent)
            .map_err(anyhow::Error::from)
            .and_then(|cg| cg.add_task_by_tgid(CgroupPid::from(std::process::id() as u64)).map_err(anyhow::Error::from));
        match joined {
            Ok(()) => log::info!("shim joined cgroup /{parent}"),
            Err(e) => log::warn!("shim could not join cgroup /{parent}: {e:#}"),
        }
    });
}

impl ContainerCgroup {
    /// Moves a guest's thread into the container's cgroup where threads can
    /// be placed one by one; threads it starts later inherit it.
    pub fn add_thread(&self, tid: u64) {
        if !self.per_thread {
            return;
        }
        if let Err(e) = self.cgroup.add_task(CgroupPid::from(tid)) {
            log::warn!("cgroup {}: add thread {tid}: {e}", self.path);
        }
    }

    /// The container's cgroup's metrics; for a container accounted with the
    /// shim's process, those of the cgroup that process is in.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let holder = match self.per_thread {
            true => None,
            false => HOME.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|h| h.holder.clone()),
        };
        match holder {
            Some(holder) if holder != self.path => {
                Metrics::of(&Cgroup::load(hierarchies::auto(), holder.relative())).with_context(|| format!("cgroup {holder}"))
            }
            _ => Metrics::of(&self.cgroup).with_context(|| format!("cgroup {}", self.path)),
        }
    }

    /// Removes the cgroup; its guest threads have ended by now. A holder of
    /// the shim's process hands it on first.
    pub fn remove(&self) {
        if !self.per_thread && !self.leave_process_home() {
            return;
        }
        let exists = !hierarchies::is_cgroup2_unified_mode() || std::path::Path::new("/sys/fs/cgroup").join(self.path.relative()).exists();
        if exists && !self.path.is_systemd() {
            if let Err(e) = self.cgroup.delete() {
                log::warn!("remove cgroup {}: {e}", self.path);
            }
        }
    }

    /// Leaves the members; if this container holds the shim's process, moves
    /// it to the next member's cgroup or back to its origin. False if the
    /// process could not leave (the cgroup must stay).
    fn leave_process_home(&self) -> bool {
        let mut guard = HOME.lock().unwrap_or_else(|e| e.into_inner());
        let Some(home) = guard.as_mut() else { return true };
        home.members.retain(|(p, _)| *p != self.path);
        if home.holder.as_ref() != Some(&self.path) {
            return true;
        }
        if let Some((next, limits)) = home.members.first().cloned() {
            match move_process(&next, limits.as_ref()) {
                Ok(()) => {
                    home.holder = Some(next);
                    return true;
                }
                Err(e) => log::warn!("cgroup {}: move the shim on to {next}: {e}", self.path),
            }
        }
        let Some(origin) = home.origin.clone() else { return false };
        let back = Cgroup::load(hierarchies::auto(), &origin).add_task_by_tgid(CgroupPid::from(std::process::id() as u64));
        if let Err(e) = back {
            log::warn!("cgroup {}: move the shim back to /{origin}: {e}", self.path);
            return false;
        }
        log::info!("shim's process went back to cgroup /{origin}");
        home.holder = None;
        true
    }
}
