//! Test helpers: a self-cleaning temporary directory, a small sample image.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("wasm-oci-{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `data` to `rel`, creating parent directories.
    pub fn write(&self, rel: &str, data: &[u8]) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        fs::write(path, data).expect("write test file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A one-layer `image`-format Wasm image named `localhost/x:v1`.
pub fn sample_image() -> crate::image::Image {
    use crate::image::{Image, ImageName, ImageSpec, Platform};
    let spec = ImageSpec {
        name: ImageName::parse("localhost/x:v1").expect("valid name"),
        entrypoint: "/a.wasm".into(),
        platform: Platform::wasi(),
        args: vec![],
        env: vec![],
    };
    Image::new(&spec, vec![7; 512]).expect("sample image")
}
