//! An OCI spec's process and mounts as what a guest may see: argv, env, the
//! rootfs and volumes as preopened directories, the network namespace to
//! use, the resolver files a pod binds, and the bound on linear memory.
//! Nothing of the host is granted beyond it: kernel filesystems (proc,
//! sysfs, devpts, …) never are.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::env::env_pairs;
use crate::{InputError, Result};

/// Kernel filesystems an OCI spec lists as mounts; a guest never gets them.
const HOST_KERNEL_FS: &[&str] = &["proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs"];

/// A host directory the guest sees at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// The network namespace a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSpec {
    /// No network namespace listed: the host's (`ctr run --net-host`).
    Host,
    /// An existing namespace to join, e.g. a pod's.
    Join(PathBuf),
    /// A fresh namespace with only loopback, as runc would create.
    Private,
}

/// The resolver files a spec binds (a Kubernetes pod's), `None` where it
/// leaves the node's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameService {
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
}

/// Everything a guest may see, derived once at Create.
#[derive(Debug, Clone)]
pub struct Grants {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub network: NetworkSpec,
    pub name_service: NameService,
    /// Per-instance bound on linear memory, from `linux.resources.memory.limit`.
    pub memory_limit: Option<u64>,
}

impl Grants {
    /// `rootfs` is the guest's `/`; `scratch` a per-container directory in
    /// which each tmpfs mount gets an empty directory of its own.
    pub fn from_spec(spec: &Spec, rootfs: &Path, scratch: &Path) -> Result<Self> {
        let process = spec.process().as_ref().ok_or_else(|| InputError::invalid("OCI spec has no process"))?;
        let args = process.args().clone().unwrap_or_default();
        let env = env_pairs(spec);
        // WASI hands args and env to the guest as NUL-terminated strings: a NUL
        // inside one would cut it short without a word (execve refuses them too).
        if let Some(i) = args.iter().position(|a| a.contains('\0')) {
            return Err(InputError::invalid(format!("process.args[{i}] contains a NUL byte, which a WASI program cannot be given")));
        }
        if let Some((k, _)) = env.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(InputError::invalid(format!("process.env entry {k:?} contains a NUL byte, which a WASI program cannot be given")));
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
                return Err(InputError::invalid(format!("mount destination {guest:?} is not an absolute path")));
            }
            if is_bind {
                let Some(source) = m.source() else { continue };
                if !source.exists() {
                    return Err(InputError::invalid(format!("bind mount source {} (for {guest}) does not exist", source.display())));
                }
                // WASI preopens are directories; file binds (hosts, resolv.conf) are not granted.
                if !source.is_dir() {
                    log::debug!("not granting non-directory bind mount {} at {guest}", source.display());
                    continue;
                }
                // A bind of the host's /proc, /sys, … is still the host's kernel filesystem.
                if let Some(fs) = kernel_fs_at(source) {
                    log::warn!("not granting bind mount {} at {guest}: it is the host's {fs}", source.display());
                    continue;
                }
                preopens.push(Preopen { host: source.clone(), guest, read_only });
            } else if ty == "tmpfs" {
                let dir = scratch.join(format!("tmpfs-{i}"));
                std::fs::create_dir_all(&dir).map_err(|e| InputError::io(format!("create tmpfs stand-in {}", dir.display()), e))?;
                preopens.push(Preopen { host: dir, guest, read_only });
            } else if !HOST_KERNEL_FS.contains(&ty) {
                log::debug!("not granting mount of type {ty:?} at {guest}");
            }
        }
        let memory_limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
            .map(|l| l as u64);
        Ok(Self { args, env, preopens, network: network_of(spec), name_service: name_service_of(spec), memory_limit })
    }
}

/// The kernel filesystem `path` is on, if it is one a guest never gets.
fn kernel_fs_at(path: &Path) -> Option<&'static str> {
    use nix::sys::statfs::{self, FsType};
    // Not in nix's list; linux/magic.h.
    const MQUEUE_MAGIC: FsType = FsType(0x1980_0202);
    let kinds = [
        (statfs::PROC_SUPER_MAGIC, "proc"),
        (statfs::SYSFS_MAGIC, "sysfs"),
        (statfs::DEVPTS_SUPER_MAGIC, "devpts"),
        (MQUEUE_MAGIC, "mqueue"),
        (statfs::CGROUP_SUPER_MAGIC, "cgroup"),
        (statfs::CGROUP2_SUPER_MAGIC, "cgroup2"),
        (statfs::SECURITYFS_MAGIC, "securityfs"),
        (statfs::DEBUGFS_MAGIC, "debugfs"),
        (statfs::TRACEFS_MAGIC, "tracefs"),
        (statfs::BPF_FS_MAGIC, "bpf"),
    ];
    let ty = statfs::statfs(path).ok()?.filesystem_type();
    kinds.iter().find(|(magic, _)| *magic == ty).map(|(_, name)| *name)
}

/// The spec's network namespace: a path to join, a new one to create, or
/// none listed (the host's, as `ctr run --net-host` asks).
fn network_of(spec: &Spec) -> NetworkSpec {
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|nss| nss.iter().find(|n| n.typ() == LinuxNamespaceType::Network).cloned());
    match ns {
        None => NetworkSpec::Host,
        Some(n) => match n.path() {
            Some(p) if !p.as_os_str().is_empty() => NetworkSpec::Join(p.clone()),
            _ => NetworkSpec::Private,
        },
    }
}

/// The files bound at `/etc/resolv.conf` and `/etc/hosts` (regular files only).
fn name_service_of(spec: &Spec) -> NameService {
    let mut found = NameService::default();
    for m in spec.mounts().iter().flatten() {
        let options = m.options().clone().unwrap_or_default();
        let is_bind = m.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind");
        let Some(source) = m.source().clone().filter(|s| is_bind && s.is_file()) else { continue };
        match m.destination().to_str() {
            Some("/etc/resolv.conf") => found.resolv_conf = Some(source),
            Some("/etc/hosts") => found.hosts = Some(source),
            _ => {}
        }
    }
    found
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
                {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind"]},
                // Binds of the host's kernel filesystems are not granted either.
                {"destination": "/host/proc", "type": "bind", "source": "/proc", "options": ["rbind"]},
                {"destination": "/host/sys", "type": "bind", "source": "/sys/fs", "options": ["rbind", "ro"]}
            ],
            "linux": {"namespaces": [{"type": "network"}], "resources": {"memory": {"limit": 1048576}}}
        }));
        let g = Grants::from_spec(&s, Path::new("/r"), scratch.path()).unwrap();
        assert_eq!(g.args, vec!["/app.wasm", "x"]);
        assert_eq!(g.env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into()), ("EMPTY".into(), "".into())]);
        let guests: Vec<_> = g.preopens.iter().map(|p| (p.guest.as_str(), p.read_only)).collect();
        assert_eq!(guests, vec![("/", false), ("/run", false), ("/data", true)]);
        assert!(g.preopens[1].host.starts_with(scratch.path()));
        assert_eq!(g.network, NetworkSpec::Private);
        assert_eq!(g.memory_limit, Some(1048576));
    }

    #[test]
    fn network_follows_the_spec() {
        let base = |ns: serde_json::Value| spec(serde_json::json!({"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "args": ["a"], "cwd": "/"}, "linux": {"namespaces": ns}}));
        assert_eq!(network_of(&base(serde_json::json!([]))), NetworkSpec::Host);
        assert_eq!(network_of(&base(serde_json::json!([{"type": "network", "path": "/var/run/netns/x"}]))), NetworkSpec::Join("/var/run/netns/x".into()));
        assert_eq!(network_of(&base(serde_json::json!([{"type": "pid"}, {"type": "network"}]))), NetworkSpec::Private);
    }

    #[test]
    fn finds_the_resolver_files_a_pod_binds() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 10.0.0.10\nsearch ns.svc.cluster.local\noptions ndots:5\n").unwrap();
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/a.wasm"], "cwd": "/"},
            "mounts": [
                {"destination": "/etc/resolv.conf", "type": "bind", "source": resolv, "options": ["rbind", "ro"]},
                // A directory bind at /etc/hosts is not a hosts file.
                {"destination": "/etc/hosts", "type": "bind", "source": dir.path(), "options": ["rbind"]},
                {"destination": "/etc/hostname", "type": "bind", "source": resolv, "options": ["rbind"]}
            ]
        }));
        assert_eq!(name_service_of(&s), NameService { resolv_conf: Some(resolv), hosts: None });
    }
}
