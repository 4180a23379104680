//! Stats as containerd's runc shim answers them: cgroup v1 metrics
//! (`io.containerd.cgroups.v1.Metrics`) on a v1 host, v2 metrics
//! (`io.containerd.cgroups.v2.Metrics`: `memory.current`, `cpu.stat`) on a
//! unified host. containerd's CRI reads either.

use cgroups_rs::fs::Cgroup;
use containerd_shim::protos::cgroups::metrics::Metrics as MetricsV1;
use containerd_shim::protos::cgroups_v2::metrics::Metrics as MetricsV2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;

pub enum Metrics {
    V1(MetricsV1),
    V2(MetricsV2),
}

impl Metrics {
    /// Metrics of a cgroup of either version.
    pub fn of(cgroup: &Cgroup) -> anyhow::Result<Self> {
        if cgroup.v2() {
            let metrics = containerd_shim::cgroup::collect_metrics_v2(cgroup).map_err(|e| anyhow::anyhow!("collect metrics: {e}"))?;
            return Ok(Self::V2(metrics));
        }
        Ok(Self::V1(v1(cgroup)?))
    }

    /// Reports at least `bytes` of memory in use (a guest's linear memory,
    /// which the kernel charges to the shim's process, not to the guest).
    pub fn raise_memory_usage(&mut self, bytes: u64) {
        match self {
            Self::V1(m) => {
                let usage = m.memory.mut_or_insert_default().usage.mut_or_insert_default();
                usage.usage = usage.usage.max(bytes);
            }
            Self::V2(m) => {
                let memory = m.memory.mut_or_insert_default();
                memory.usage = memory.usage.max(bytes);
            }
        }
    }

    pub fn into_any(self) -> anyhow::Result<Any> {
        let message: Box<dyn containerd_shim::protos::protobuf::MessageDyn> = match self {
            Self::V1(m) => Box::new(m),
            Self::V2(m) => Box::new(m),
        };
        containerd_shim::util::convert_to_any(message).map_err(|e| anyhow::anyhow!("encode metrics: {e}"))
    }
}

/// v1 metrics. The shim crate reads CPU time from a v2-only field, so it is
/// taken from cpuacct here, and the OOM counters containerd's CRI uses to
/// tell an OOM kill (reason OOMKilled) from memory.oom_control.
fn v1(cgroup: &Cgroup) -> anyhow::Result<MetricsV1> {
    let mut metrics = containerd_shim::cgroup::collect_metrics(cgroup).map_err(|e| anyhow::anyhow!("collect metrics: {e}"))?;
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
    Ok(metrics)
}
