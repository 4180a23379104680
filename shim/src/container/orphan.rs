//! What a killed shim leaves of a container. containerd runs `shim delete`
//! for each container of a shim that went away; this releases what the
//! daemon would have: a Linux container's runc state and processes (runc
//! created them, they outlive the shim), a Wasm container's cgroup (its
//! threads died with the shim), the rootfs mount and scratch space.

use std::path::Path;

use super::linux::{self, Runc};
use crate::host::bundle::{read_spec, unmount_rootfs};
use crate::host::cgroups::{self, CgroupsPath};

pub async fn release(bundle: &Path, namespace: &str, id: &str) {
    let spec = read_spec(bundle).inspect_err(|e| log::warn!("delete {id}: {e}")).ok();
    let runc_root = Runc::root_for(bundle, namespace);
    if runc_root.join(id).exists() {
        let systemd = spec.as_ref().and_then(|s| CgroupsPath::of(s).ok().flatten()).is_some_and(|p| p.is_systemd());
        // --force kills what still runs of it, then removes its state and cgroup.
        let deleted = match Runc::new(&runc_root).map_err(Into::into).and_then(|r| r.with_systemd_cgroup(systemd)) {
            Ok(runc) => linux::delete(&runc, id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            log::warn!("delete {id}: {e}");
        }
    } else if let Some(spec) = &spec {
        cgroups::remove_orphaned(spec);
    }
    if let Err(e) = unmount_rootfs(bundle) {
        log::warn!("delete {id}: {e:#}");
    }
    let _ = std::fs::remove_dir_all(bundle.join("wasm-scratch"));
}
