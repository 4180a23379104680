//! Name lookups as the container sees them. Kubernetes gives a pod its own
//! `/etc/resolv.conf` (cluster DNS server, search domains, ndots) and
//! `/etc/hosts` as file bind mounts in the spec. A Wasm guest's lookups are
//! made by the shim (wasi:sockets ip-name-lookup, outbound wasi:http) with
//! the system resolver, which reads those two paths: so the guest's thread
//! gets a mount namespace of its own in which the spec's files are bound
//! over the node's. Threads it spawns later (its runtime, the resolver's
//! blocking threads) inherit it, as they inherit the network namespace.

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

pub use shim_input::grants::NameService;

/// Puts the calling thread (and the threads it creates later) into a
/// private mount namespace with the spec's files in place. Nothing to do
/// when the spec binds neither.
pub fn enter(files: &NameService) -> Result<()> {
    let binds: Vec<(&Path, &str)> = [(files.resolv_conf.as_deref(), "/etc/resolv.conf"), (files.hosts.as_deref(), "/etc/hosts")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_thread_sees_the_pods_resolver_file_and_the_node_keeps_its_own() {
        // Nothing bound: the node's resolver, no namespace.
        assert!(enter(&NameService::default()).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        let pods = "nameserver 10.0.0.10\nsearch ns.svc.cluster.local\noptions ndots:5\n";
        std::fs::write(&resolv, pods).unwrap();
        let node = std::fs::read("/etc/resolv.conf").ok();
        let files = NameService { resolv_conf: Some(resolv), hosts: None };
        // On a thread of its own, as a guest runs (needs root, as the shim has).
        let seen = std::thread::spawn(move || enter(&files).map(|()| std::fs::read_to_string("/etc/resolv.conf").unwrap()))
            .join()
            .unwrap()
            .expect("enter a mount namespace with the pod's resolv.conf");
        assert_eq!(seen, pods);
        assert_eq!(std::fs::read("/etc/resolv.conf").ok(), node, "the node's file changed");
    }
}
