//! A pod driven through containerd's CRI plugin the way kubelet drives it:
//! sandbox with the `wasmtime` handler, images pulled from the test
//! registry before each container, kubelet's cleanup after removal.

use std::path::PathBuf;
use std::time::Duration;

use crate::cri::{container_config, pod_config, v1, Cri};
use crate::{registry, unique};

pub const HANDLER: &str = "wasmtime";
/// The cgroup parent of the tests' pods (tests/run.sh removes what is left).
pub const CGROUP_ROOT: &str = "wasmtime-e2e";

pub struct Pod {
    pub cri: Cri,
    pub id: String,
    pub config: v1::PodSandboxConfig,
    pub log_dir: PathBuf,
    pub cgroup_parent: String,
}

impl Pod {
    pub fn run(name: &str) -> Pod {
        Self::run_with_dns(name, None)
    }

    /// A pod whose sandbox gets `dns` (servers, search domains, options), as
    /// kubelet passes a pod's cluster DNS settings.
    pub fn run_with_dns(name: &str, dns: Option<v1::DnsConfig>) -> Pod {
        let name = unique(name);
        let log_dir = std::env::temp_dir().join(format!("e2e-logs-{name}"));
        std::fs::create_dir_all(&log_dir).unwrap();
        let cgroup_parent = format!("/{CGROUP_ROOT}/{name}");
        let mut config = pod_config(&name, &log_dir, &cgroup_parent);
        config.dns_config = dns;
        let mut cri = Cri::connect();
        let id = cri.run_pod(&config, HANDLER).unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
        Pod { cri, id, config, log_dir, cgroup_parent }
    }

    /// Pulls the image from the test registry (PullImage, as kubelet does
    /// before creating a container), then creates the container. A full
    /// reference is pulled as given.
    pub fn create(&mut self, name: &str, image_name: &str, command: &[&str], env: &[(&str, &str)]) -> String {
        let reference = pulled(&mut self.cri, image_name);
        let mut config = container_config(name, &reference, command, &format!("{name}.log"));
        config.envs = env.iter().map(|(k, v)| v1::KeyValue { key: k.to_string(), value: v.to_string() }).collect();
        self.cri.create_container(&self.id, &config, &self.config).unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
    }

    pub fn start(&mut self, name: &str, image_name: &str, command: &[&str]) -> String {
        self.start_with_env(name, image_name, command, &[])
    }

    pub fn start_with_env(&mut self, name: &str, image_name: &str, command: &[&str], env: &[(&str, &str)]) -> String {
        let id = self.create(name, image_name, command, env);
        self.cri.start_container(&id).unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        id
    }

    /// Starts a container and waits (bounded) until it runs.
    pub fn start_running(&mut self, name: &str, image_name: &str, command: &[&str], env: &[(&str, &str)]) -> String {
        let id = self.start_with_env(name, image_name, command, env);
        assert!(self.cri.wait_running(&id, Duration::from_secs(30)), "{name} never ran");
        id
    }

    /// ExecSync with a 20 s timeout: (stdout, stderr, exit code).
    pub fn exec(&mut self, id: &str, cmd: &[&str]) -> (String, String, i32) {
        self.cri.exec_sync(id, cmd, 20).unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
    }

    pub fn running(&mut self, id: &str) -> bool {
        self.cri.container_status(id).map(|s| s.state == v1::ContainerState::ContainerRunning as i32).unwrap_or(false)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn ip(&mut self) -> String {
        self.cri.pod_status(&self.id).unwrap().network.map(|n| n.ip).unwrap_or_default()
    }

    /// Stop and remove the pod, then do what kubelet does after: remove the
    /// pod-level cgroup and the log directory.
    pub fn remove(mut self) {
        self.cri.stop_pod(&self.id).unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
        self.cri.remove_pod(&self.id).unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
        for dir in cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// `<registry>/test/NAME:latest` (or a full reference), pulled through CRI.
pub fn pulled(cri: &mut Cri, image_name: &str) -> String {
    let reference = if image_name.contains('/') { image_name.to_string() } else { format!("{}/test/{image_name}:latest", registry()) };
    cri.pull_image(&reference).unwrap_or_else(|e| panic!("PullImage {reference}: {e}"));
    reference
}

/// The directories of a cgroup path in every v1 hierarchy that has it.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path().join(path.trim_start_matches('/'))).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}
