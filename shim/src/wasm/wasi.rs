//! Turns an OCI process spec into the WASI capabilities a guest gets: argv,
//! env, the rootfs and volumes as preopened directories, and the network the
//! spec's network namespace allows. Nothing of the host is granted beyond it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::{Result, ShimError};
use crate::host::dns::NameService;
use crate::host::netns::Network;

/// Kernel filesystems an OCI spec lists as mounts; a guest never gets them.
const HOST_KERNEL_FS: &[&str] = &["proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// Everything a guest may see, derived once at Create.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub network: Network,
    /// The resolver files the spec binds (a pod's), for the guest's lookups.
    pub name_service: NameService,
    /// Per-instance bound on linear memory, from `linux.resources.memory.limit`.
    pub memory_limit: Option<u64>,
}

impl Capabilities {
    /// `scratch` is a per-container directory for tmpfs mounts.
    pub fn from_spec(spec: &Spec, rootfs: &Path, scratch: &Path) -> Result<Self> {
        let process = spec.process().as_ref().ok_or_else(|| ShimError::invalid("OCI spec has no process"))?;
        let args = process.args().clone().unwrap_or_default();
        let env = crate::host::bundle::env_pairs(spec);
        // WASI hands args and env to the guest as NUL-terminated strings: a NUL
        // inside one would cut it short without a word (execve refuses them too).
        if let Some(i) = args.iter().position(|a| a.contains('\0')) {
            return Err(ShimError::invalid(format!("process.args[{i}] contains a NUL byte, which a WASI program cannot be given")));
        }
        if let Some((k, _)) = env.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(ShimError::invalid(format!("process.env entry {k:?} contains a NUL byte, which a WASI program cannot be given")));
        }
        let root_ro = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
        let mut preopens = vec![Preopen { host: rootfs.to_path_buf(), guest: "/".into(), read_only: root_ro }];
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let ty = m.typ().as_deref().unwrap_or("");
            let options = m.options().clone().unwrap_or_default();
            let guest = m.destination().to_string_lossy().into_owned();
            let read_only = options.iter().any(|o| o == "ro");
            let is_bind = ty == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
            if (is_bind || ty == "tmpfs") && !guest.starts_with('/') {
                return Err(ShimError::invalid(format!("mount destination {guest:?} is not an absolute path")));
            }
            if is_bind {
                let Some(source) = m.source() else { continue };
                if !source.exists() {
                    return Err(ShimError::invalid(format!("bind mount source {} (for {guest}) does not exist", source.display())));
                }
                // WASI preopens are directories; file binds (hosts, resolv.conf) are not granted.
                if !source.is_dir() {
                    log::debug!("not granting non-directory bind mount {} at {guest}", source.display());
                    continue;
                }
                preopens.push(Preopen { host: source.clone(), guest, read_only });
            } else if ty == "tmpfs" {
                let dir = scratch.join(format!("tmpfs-{i}"));
                std::fs::create_dir_all(&dir).with_context(|| format!("create tmpfs stand-in {}", dir.display()))?;
                preopens.push(Preopen { host: dir, guest, read_only });
            } else if !HOST_KERNEL_FS.contains(&ty) {
                log::debug!("not granting mount of type {ty:?} at {guest}");
            }
        }
        let network = network_of(spec);
        let memory_limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
            .map(|l| l as u64);
        Ok(Self { args, env, preopens, network, name_service: NameService::from_spec(spec), memory_limit })
    }

    /// The WASI context builder for these capabilities (stdio is added by the caller).
    pub fn builder(&self) -> anyhow::Result<WasiCtxBuilder> {
        let mut b = self.builder_without_preopens();
        for p in &self.preopens {
            let perms = if p.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
            super::wt(b.preopened_dir(&p.host, &p.guest, perms).map(|_| ()))
                .with_context(|| format!("grant {} at {}", p.host.display(), p.guest))?;
        }
        Ok(b)
    }

    /// All but the preopened directories: for wasi:http, which builds a
    /// context per request and shares directories opened once.
    pub fn builder_without_preopens(&self) -> WasiCtxBuilder {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.args);
        for (k, v) in &self.env {
            b.env(k, v);
        }
        // The network namespace is the boundary: inside it the guest may use
        // TCP, UDP and DNS like any process would.
        b.inherit_network().allow_tcp(true).allow_udp(true).allow_ip_name_lookup(true);
        b
    }
}

/// The spec's network namespace: a path to join, a new one to create, or
/// none listed (the host's, as `ctr run --net-host` asks).
fn network_of(spec: &Spec) -> Network {
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|nss| nss.iter().find(|n| n.typ() == LinuxNamespaceType::Network).cloned());
    match ns {
        None => Network::Host,
        Some(n) => match n.path() {
            Some(p) if !p.as_os_str().is_empty() => Network::Join(p.clone()),
            _ => Network::Private,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn grants_rootfs_binds_and_tmpfs_but_no_kernel_fs() {
        let vol = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/app.wasm", "x"], "env": ["A=1", "B=x=y", "EMPTY"], "cwd": "/work"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
                {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                {"destination": "/data", "type": "bind", "source": vol.path(), "options": ["rbind", "ro"]},
                {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind"]}
            ],
            "linux": {"namespaces": [{"type": "network"}], "resources": {"memory": {"limit": 1048576}}}
        }));
        let caps = Capabilities::from_spec(&s, Path::new("/r"), scratch.path()).unwrap();
        assert_eq!(caps.args, vec!["/app.wasm", "x"]);
        assert_eq!(caps.env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into()), ("EMPTY".into(), "".into())]);
        let guests: Vec<_> = caps.preopens.iter().map(|p| (p.guest.as_str(), p.read_only)).collect();
        assert_eq!(guests, vec![("/", false), ("/run", false), ("/data", true)]);
        assert!(caps.preopens[1].host.starts_with(scratch.path()));
        assert_eq!(caps.network, Network::Private);
        assert_eq!(caps.memory_limit, Some(1048576));
    }

    #[test]
    fn network_follows_the_spec() {
        let base = |ns: serde_json::Value| spec(serde_json::json!({"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "args": ["a"], "cwd": "/"}, "linux": {"namespaces": ns}}));
        assert_eq!(network_of(&base(serde_json::json!([]))), Network::Host);
        assert_eq!(network_of(&base(serde_json::json!([{"type": "network", "path": "/var/run/netns/x"}]))), Network::Join("/var/run/netns/x".into()));
        assert_eq!(network_of(&base(serde_json::json!([{"type": "pid"}, {"type": "network"}]))), Network::Private);
    }
}
