//! Cgroups for Wasm containers. A guest runs on a thread of the shim, so its
//! CPU is accounted by moving that thread into the cgroup containerd names in
//! `cgroupsPath`. Memory is charged per process by the kernel, so the shim
//! itself joins the parent (pod-level) cgroup: the pod's limits then bound
//! every Wasm container of the pod, and each container's linear memory is
//! bounded by its own limit in the store.

use std::sync::Once;

use anyhow::Context;
use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::CgroupPid;
use containerd_shim::protos::cgroups::metrics::Metrics;
use oci_spec::runtime::Spec;

use crate::error::Result;

pub struct ContainerCgroup {
    path: String,
    cgroup: Cgroup,
}

/// The cgroup for a Wasm container, if the spec names one (cgroupfs paths
/// only; systemd `slice:prefix:name` paths are left alone).
pub fn for_container(spec: &Spec) -> Result<Option<ContainerCgroup>> {
    let Some(linux) = spec.linux() else { return Ok(None) };
    let Some(path) = linux.cgroups_path().as_ref().map(|p| p.to_string_lossy().into_owned()) else { return Ok(None) };
    if path.is_empty() || (!path.starts_with('/') && path.contains(':')) {
        log::debug!("not managing cgroup {path:?}");
        return Ok(None);
    }
    let relative = path.trim_start_matches('/').to_string();
    join_parent_once(&relative);
    let cgroup = Cgroup::new(hierarchies::auto(), &relative).with_context(|| format!("create cgroup {path}"))?;
    if let Some(resources) = linux.resources() {
        // CPU and pids limits act on the guest thread; memory is bounded per store.
        if let Err(e) = containerd_shim::cgroup::update_resources(&cgroup, resources) {
            log::warn!("cgroup {path}: apply resources: {e}");
        }
    }
    Ok(Some(ContainerCgroup { path, cgroup }))
}

/// Metrics of a cgroup as the runc shim reports them. On cgroup v1 the
/// shim crate reads CPU time from a v2-only field, so it is taken from
/// cpuacct here.
pub fn metrics_of(cgroup: &Cgroup) -> anyhow::Result<Metrics> {
    let mut metrics = containerd_shim::cgroup::collect_metrics(cgroup).map_err(|e| anyhow::anyhow!("collect metrics: {e}"))?;
    if !cgroup.v2() {
        // containerd's CRI tells an OOM kill (reason OOMKilled) by this counter.
        if let Some(memory) = cgroup.controller_of::<cgroups_rs::fs::memory::MemController>() {
            let oom = memory.memory_stat().oom_control;
            let control = metrics.memory_oom_control.mut_or_insert_default();
            control.oom_kill_disable = oom.oom_kill_disable as u64;
            control.under_oom = oom.under_oom as u64;
            control.oom_kill = oom.oom_kill;
        }
        if let Some(acct) = cgroup.controller_of::<cgroups_rs::fs::cpuacct::CpuAcctController>() {
            let acct = acct.cpuacct();
            let usage = metrics.cpu.mut_or_insert_default().usage.mut_or_insert_default();
            usage.total = acct.usage;
            usage.user = acct.usage_user;
            usage.kernel = acct.usage_sys;
            usage.per_cpu = acct.usage_percpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        }
    }
    Ok(metrics)
}

/// Metrics of the cgroup a spec's `cgroupsPath` names (cgroupfs paths), which
/// outlives the container's processes: Stats after an exit still answer
/// (containerd's CRI asks then, to tell an OOM kill).
pub fn spec_metrics(spec: &Spec) -> Option<anyhow::Result<Metrics>> {
    let path = spec.linux().as_ref()?.cgroups_path().as_ref()?.to_string_lossy().into_owned();
    if path.is_empty() || (!path.starts_with('/') && path.contains(':')) {
        return None;
    }
    let cgroup = Cgroup::load(hierarchies::auto(), path.trim_start_matches('/'));
    Some(metrics_of(&cgroup).with_context(|| format!("cgroup {path}")))
}

/// Metrics of the cgroup process `pid` is in.
pub fn process_metrics(pid: u32) -> anyhow::Result<Metrics> {
    let cgroup = containerd_shim::cgroup::get_cgroup(pid).map_err(|e| anyhow::anyhow!("find cgroup of {pid}: {e}"))?;
    metrics_of(&cgroup)
}

/// Moves the whole shim into the pod-level cgroup, once.
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
    /// Moves one thread (a guest's) into the container's cgroup; threads it
    /// starts later inherit it.
    pub fn add_thread(&self, tid: u64) {
        if let Err(e) = self.cgroup.add_task(CgroupPid::from(tid)) {
            log::warn!("cgroup {}: add thread {tid}: {e}", self.path);
        }
    }

    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        metrics_of(&self.cgroup).with_context(|| format!("cgroup {}", self.path))
    }

    /// Removes the cgroup; its threads have ended by now.
    pub fn remove(&self) {
        if let Err(e) = self.cgroup.delete() {
            log::warn!("remove cgroup {}: {e}", self.path);
        }
    }
}
