//! The OCI bundle: its spec, and its root filesystem mounted where the spec
//! says; the entrypoint the spec names is read from it (see
//! `shim_input::entrypoint`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use containerd_shim::protos::types::mount::Mount;
use oci_spec::runtime::Spec;
use shim_input::entrypoint::{self, Entrypoint};

use crate::error::{Result, ShimError};

/// An opened bundle: its spec, and its rootfs mounted where the spec says.
pub struct Bundle {
    pub path: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
    mounted: bool,
}

impl Bundle {
    /// Reads the spec and mounts the rootfs containerd passed (if any).
    pub fn open(path: &Path, mounts: &[Mount]) -> Result<Self> {
        let spec = read_spec(path)?;
        let rootfs = mount_rootfs(path, &spec, mounts)?;
        Ok(Self { path: path.to_path_buf(), spec, rootfs, mounted: !mounts.is_empty() })
    }

    /// Finds `process.args[0]` in the rootfs, reads and classifies it.
    /// `NotFound` when the rootfs has no such file (an OCI Wasm artifact's
    /// rootfs is empty: its module comes from the image, see `content`).
    pub fn entrypoint(&self) -> Result<Entrypoint> {
        let process = self.spec.process().as_ref().ok_or_else(|| ShimError::invalid("OCI spec has no process"))?;
        let arg0 = process.args().as_ref().and_then(|a| a.first()).cloned().unwrap_or_default();
        if arg0.is_empty() {
            return Err(ShimError::NotFound("process.args is empty: the spec names no entrypoint".into()));
        }
        let path_env = process.env().iter().flatten().find_map(|kv| kv.strip_prefix("PATH="));
        let cwd = process.cwd().to_string_lossy();
        if !cwd.is_empty() && !cwd.starts_with('/') {
            return Err(ShimError::invalid(format!("process.cwd {cwd:?} is not an absolute path")));
        }
        let path = entrypoint::resolve(&self.rootfs, &arg0, &cwd, path_env)?;
        let bytes = std::fs::read(&path).with_context(|| format!("read entrypoint {arg0}"))?;
        Ok(Entrypoint::classify(&arg0, bytes, &self.env())?)
    }

    /// `process.env` as pairs (a bare `NAME` is `NAME=`).
    pub fn env(&self) -> Vec<(String, String)> {
        env_pairs(&self.spec)
    }

    /// Unmounts what `open` mounted. Blocking.
    pub fn release(&self) -> anyhow::Result<()> {
        if self.mounted {
            unmount_rootfs(&self.path)?;
        }
        Ok(())
    }
}

pub fn read_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| {
        // oci-spec's own message is only "serde failed"; its cause names the field.
        let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
        ShimError::invalid(format!("read OCI spec {}: {e}{cause}", path.display()))
    })
}

/// Mounts the rootfs containerd hands over (an overlay of the image layers)
/// at `<bundle>/rootfs`. Returns the rootfs path to use.
pub fn mount_rootfs(bundle: &Path, spec: &Spec, mounts: &[Mount]) -> Result<PathBuf> {
    let target = bundle.join("rootfs");
    if mounts.is_empty() {
        // ctr with --rootfs or a pre-populated bundle: use the spec's root.
        let root = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| "rootfs".into());
        let root = if root.is_absolute() { root } else { bundle.join(root) };
        if !root.is_dir() {
            let why = if root.exists() { "is not a directory" } else { "does not exist" };
            return Err(ShimError::invalid(format!("root.path {} {why}", root.display())));
        }
        return Ok(root);
    }
    std::fs::create_dir_all(&target).with_context(|| format!("create {}", target.display()))?;
    for m in mounts {
        let ty = Some(m.type_.as_str()).filter(|s| !s.is_empty());
        let source = Some(m.source.as_str()).filter(|s| !s.is_empty());
        containerd_shim::mount::mount_rootfs(ty, source, &m.options, &target)
            .map_err(|e| anyhow::anyhow!("mount rootfs ({}) at {}: {e}", m.type_, target.display()))?;
    }
    Ok(target)
}

/// Unmounts everything at and under `<bundle>/rootfs`; missing is fine.
pub fn unmount_rootfs(bundle: &Path) -> anyhow::Result<()> {
    let target = bundle.join("rootfs");
    if !target.exists() {
        return Ok(());
    }
    let target = target.to_string_lossy().into_owned();
    containerd_shim::mount::umount_recursive(Some(&target), libc::MNT_DETACH)
        .map_err(|e| anyhow::anyhow!("unmount {target}: {e}"))
}

pub use shim_input::env::{env_pairs, pairs};

/// The shim's own state directory, beside containerd's runtime state: a
/// bundle is `<state>/io.containerd.runtime.v2.task/<ns>/<id>`.
pub fn state_dir_for(bundle: &Path) -> PathBuf {
    match bundle.ancestors().nth(3) {
        Some(state) if state != Path::new("/") && !state.as_os_str().is_empty() => state.join(crate::RUNTIME_ID),
        _ => PathBuf::from("/run/containerd").join(crate::RUNTIME_ID),
    }
}
