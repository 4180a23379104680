//! The OCI bundle: its spec, its root filesystem, and the entrypoint the
//! spec names, told apart by its bytes (core module, component, native).

use std::path::{Component as PathComponent, Path, PathBuf};

use anyhow::Context;
use containerd_shim::protos::types::mount::Mount;
use oci_spec::runtime::Spec;

use crate::error::{Result, ShimError};

/// What an entrypoint file holds, judged by content rather than by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// A WebAssembly core module (WASI preview 1).
    Module,
    /// A WebAssembly component (WASI preview 2).
    Component,
    /// WebAssembly text; Wasmtime parses it as a module or component.
    Text,
    /// An ELF executable or a `#!` script: a Linux container, run by runc.
    Native,
}

impl Artifact {
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        const WASM_MAGIC: &[u8] = b"\0asm";
        if bytes.starts_with(WASM_MAGIC) {
            // Bytes 4..8: version 1 for core modules; components use a
            // different version and layer 1.
            return match bytes.get(4..8) {
                Some([1, 0, 0, 0]) => Some(Self::Module),
                Some([_, _, 1, 0]) => Some(Self::Component),
                _ => None,
            };
        }
        if bytes.starts_with(b"\x7fELF") || bytes.starts_with(b"#!") {
            return Some(Self::Native);
        }
        let text = std::str::from_utf8(bytes.get(..bytes.len().min(4096))?).ok()?;
        let first = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        (first.starts_with('(') || first.starts_with(";;")).then_some(Self::Text)
    }
}

/// An opened bundle: its spec, and its rootfs mounted where the spec says.
pub struct Bundle {
    pub path: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
    mounted: bool,
}

/// The file a container starts, read and classified.
pub struct Entrypoint {
    pub arg0: String,
    pub bytes: Vec<u8>,
    pub artifact: Option<Artifact>,
}

impl Bundle {
    /// Reads the spec and mounts the rootfs containerd passed (if any).
    pub fn open(path: &Path, mounts: &[Mount]) -> Result<Self> {
        let spec = read_spec(path)?;
        let rootfs = mount_rootfs(path, &spec, mounts)?;
        Ok(Self { path: path.to_path_buf(), spec, rootfs, mounted: !mounts.is_empty() })
    }

    /// Finds `process.args[0]` in the rootfs and reads it.
    pub fn entrypoint(&self) -> Result<Entrypoint> {
        let process = self.spec.process().as_ref().ok_or_else(|| ShimError::invalid("OCI spec has no process"))?;
        let arg0 = process.args().as_ref().and_then(|a| a.first()).cloned().unwrap_or_default();
        let path_env = process.env().iter().flatten().find_map(|kv| kv.strip_prefix("PATH="));
        let cwd = process.cwd().to_string_lossy();
        let path = resolve_entrypoint(&self.rootfs, &arg0, &cwd, path_env)?;
        let bytes = std::fs::read(&path).with_context(|| format!("read entrypoint {arg0}"))?;
        let artifact = Artifact::detect(&bytes);
        Ok(Entrypoint { arg0, bytes, artifact })
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
    Spec::load(&path).map_err(|e| ShimError::invalid(format!("read OCI spec {}: {e}", path.display())))
}

/// Mounts the rootfs containerd hands over (an overlay of the image layers)
/// at `<bundle>/rootfs`. Returns the rootfs path to use.
pub fn mount_rootfs(bundle: &Path, spec: &Spec, mounts: &[Mount]) -> Result<PathBuf> {
    let target = bundle.join("rootfs");
    if mounts.is_empty() {
        // ctr with --rootfs or a pre-populated bundle: use the spec's root.
        let root = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| "rootfs".into());
        return Ok(if root.is_absolute() { root } else { bundle.join(root) });
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

/// Resolves `args[0]` inside the container's rootfs without following any
/// path out of it: `..` is clamped at the rootfs and symlinks are resolved
/// against the rootfs, as they would be inside the container.
pub fn resolve_entrypoint(rootfs: &Path, arg0: &str, cwd: &str, path_env: Option<&str>) -> Result<PathBuf> {
    if arg0.is_empty() {
        return Err(ShimError::invalid("process.args is empty: the spec names no entrypoint"));
    }
    let candidates: Vec<String> = if arg0.contains('/') {
        if arg0.starts_with('/') {
            vec![arg0.to_string()]
        } else {
            vec![format!("{cwd}/{arg0}")]
        }
    } else {
        let dirs = path_env.unwrap_or("/");
        dirs.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{arg0}")).chain([format!("/{arg0}")]).collect()
    };
    for guest in &candidates {
        if let Some(host) = resolve_in_root(rootfs, guest, 0)? {
            if host.is_file() {
                return Ok(host);
            }
        }
    }
    Err(ShimError::invalid(format!(
        "entrypoint {arg0:?} not found in the container's rootfs (looked for {})",
        candidates.join(", ")
    )))
}

/// Maps a guest path to a host path under `root`, resolving symlinks as the
/// guest would see them. `None` when a component does not exist.
fn resolve_in_root(root: &Path, guest: &str, depth: u32) -> Result<Option<PathBuf>> {
    if depth > 40 {
        return Err(ShimError::invalid(format!("too many levels of symbolic links resolving {guest}")));
    }
    let mut resolved = PathBuf::new();
    let parts: Vec<_> = Path::new(guest).components().collect();
    for (i, part) in parts.iter().enumerate() {
        match part {
            PathComponent::RootDir | PathComponent::CurDir | PathComponent::Prefix(_) => {}
            PathComponent::ParentDir => {
                resolved.pop();
            }
            PathComponent::Normal(name) => {
                let host = root.join(&resolved).join(name);
                match std::fs::symlink_metadata(&host) {
                    Err(_) => return Ok(None),
                    Ok(md) if md.file_type().is_symlink() => {
                        let link = std::fs::read_link(&host).with_context(|| format!("read link {}", host.display()))?;
                        let rest: PathBuf = parts[i + 1..].iter().collect();
                        let base = if link.is_absolute() { PathBuf::from("/") } else { Path::new("/").join(&resolved) };
                        let next = base.join(link).join(rest);
                        return resolve_in_root(root, &next.to_string_lossy(), depth + 1);
                    }
                    Ok(_) => resolved.push(name),
                }
            }
        }
    }
    Ok(Some(root.join(resolved)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_content() {
        assert_eq!(Artifact::detect(b"\0asm\x01\0\0\0rest"), Some(Artifact::Module));
        assert_eq!(Artifact::detect(b"\0asm\x0d\0\x01\0rest"), Some(Artifact::Component));
        assert_eq!(Artifact::detect(b"\x7fELF\x02\x01"), Some(Artifact::Native));
        assert_eq!(Artifact::detect(b"  (module)"), Some(Artifact::Text));
        assert_eq!(Artifact::detect(b"#!/bin/sh\necho"), Some(Artifact::Native));
        assert_eq!(Artifact::detect(b"MZ\x90\x00 not wasm"), None);
        assert_eq!(Artifact::detect(b"\0asm"), None);
        assert_eq!(Artifact::detect(&[0xff, 0xfe, 0x00]), None);
    }

    #[test]
    fn resolves_inside_root_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("bin/app.wasm"), b"x").unwrap();
        std::os::unix::fs::symlink("/bin/app.wasm", r.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", r.join("escape")).unwrap();

        let found = resolve_entrypoint(r, "/bin/app.wasm", "/", None).unwrap();
        assert_eq!(found, r.join("bin/app.wasm"));
        // An absolute link resolves against the rootfs, not the host.
        assert_eq!(resolve_entrypoint(r, "/abs-link", "/", None).unwrap(), r.join("bin/app.wasm"));
        // `..` is clamped at the rootfs, so this is the rootfs' /etc/passwd, which is absent.
        assert!(resolve_entrypoint(r, "/escape", "/", None).is_err());
        assert!(resolve_entrypoint(r, "/../../etc/passwd", "/", None).is_err());
        // Bare names search PATH, then /.
        assert_eq!(resolve_entrypoint(r, "app.wasm", "/", Some("/usr/bin:/bin")).unwrap(), r.join("bin/app.wasm"));
        let err = resolve_entrypoint(r, "/missing.wasm", "/", None).unwrap_err().to_string();
        assert!(err.contains("missing.wasm") && err.contains("not found"), "{err}");
    }
}
