//! OCI spec → WASI grants. Any JSON that parses as a spec either gives
//! grants or an error; granted directories are the rootfs, tmpfs stand-ins
//! under the scratch directory or existing bind sources, and nothing is ever
//! granted for a kernel filesystem.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;
use shim_input::grants::Grants;

fn dirs() -> &'static (PathBuf, PathBuf) {
    static DIRS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let base = tempfile::tempdir().expect("temp dir").keep();
        let (rootfs, scratch) = (base.join("rootfs"), base.join("scratch"));
        std::fs::create_dir_all(&rootfs).expect("rootfs");
        std::fs::create_dir_all(&scratch).expect("scratch");
        (rootfs, scratch)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else { return };
    let (rootfs, scratch) = dirs();
    let Ok(grants) = Grants::from_spec(&spec, rootfs, scratch) else { return };
    assert_eq!(grants.preopens[0].host, *rootfs, "the rootfs is the first preopen");
    assert_eq!(grants.preopens[0].guest, "/");
    for p in &grants.preopens[1..] {
        assert!(p.guest.starts_with('/'), "relative guest path {:?} granted", p.guest);
        assert!(p.host.starts_with(scratch) || p.host.is_dir(), "{} granted but not a directory", p.host.display());
        assert!(!is_kernel_fs(&p.host), "the host's kernel filesystem {} granted", p.host.display());
    }
    for a in &grants.args {
        assert!(!a.contains('\0'));
    }
    for (k, v) in &grants.env {
        assert!(!k.contains('\0') && !v.contains('\0'));
    }
});

/// Where the host mounts its kernel filesystems: a bind of any of these
/// (or below them) must not be granted.
fn is_kernel_fs(host: &Path) -> bool {
    let Ok(real) = host.canonicalize() else { return false };
    ["/proc", "/sys", "/dev/pts", "/dev/mqueue"].iter().any(|k| real.starts_with(k))
}
