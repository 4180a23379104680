//! Name lookups as the container sees them. Kubernetes gives a pod its own
//! `/etc/resolv.conf` (cluster DNS server, search domains, ndots) and
//! `/etc/hosts` as file bind mounts in the spec. A Wasm guest's lookups are
//! made by the shim (wasi:sockets ip-name-lookup, outbound wasi:http) with
//! the system resolver, which reads those two paths: so the guest's thread
//! gets a mount namespace of its own in which the spec's files are bound
//! over the node's. Threads it spawns later (its runtime, the resolver's
//! blocking threads) inherit it, as they inherit the network namespace.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;

/// The resolver files a spec binds, `None` where it leaves the node's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameService {
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
}

impl NameService {
    pub fn from_spec(spec: &Spec) -> Self {
        let mut found = Self::default();
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

    /// Puts the calling thread (and the threads it creates later) into a
    /// private mount namespace with the spec's files in place. Nothing to do
    /// when the spec binds neither.
    pub fn enter(&self) -> Result<()> {
        let binds: Vec<(&Path, &str)> = [(self.resolv_conf.as_deref(), "/etc/resolv.conf"), (self.hosts.as_deref(), "/etc/hosts")]
            .into_iter()
            .filter_map(|(source, target)| Some((source?, target)))
            .collect();
        if binds.is_empty() {
            return Ok(());
        }
        // CLONE_FS too: a mount namespace cannot be unshared by a thread
        // that shares its filesystem context with the others.
        nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).context("create a mount namespace for name lookups")?;
        // Private first, so that nothing mounted here reaches the node.
        nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .context("make the guest's mount namespace private")?;
        for (source, target) in binds {
            nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .with_context(|| format!("bind {} over {target} for name lookups", source.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_files_a_pod_binds() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 10.0.0.10\nsearch ns.svc.cluster.local\noptions ndots:5\n").unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/a.wasm"], "cwd": "/"},
            "mounts": [
                {"destination": "/etc/resolv.conf", "type": "bind", "source": resolv, "options": ["rbind", "ro"]},
                // A directory bind at /etc/hosts is not a hosts file.
                {"destination": "/etc/hosts", "type": "bind", "source": dir.path(), "options": ["rbind"]},
                {"destination": "/etc/hostname", "type": "bind", "source": resolv, "options": ["rbind"]}
            ]
        }))
        .unwrap();
        assert_eq!(NameService::from_spec(&spec), NameService { resolv_conf: Some(resolv), hosts: None });
        // Nothing bound: the node's resolver, no namespace.
        assert!(NameService::default().enter().is_ok());
    }
}
