//! On-disk cache of compiled native code, keyed by (Wasm content digest,
//! engine configuration). Entries are written atomically, checksummed, and
//! rebuilt when they fail verification, so a corrupt or foreign file is never
//! handed to Wasmtime. A per-key file lock makes concurrent shims compile a
//! module once between them.
//!
//! Loaded code is mapped from its entry file, so shims running the same
//! module share its pages. Entries are therefore only ever replaced by
//! rename, never rewritten in place, and the directory is private to root.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub struct CompileCache {
    dir: PathBuf,
}

/// How an entry was obtained, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Compiled,
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the entry for `key` with `load`, or compiles it with `compile`,
    /// stores it, and loads the stored copy.
    pub fn get_or_compile<T>(
        &self,
        key: &str,
        compile: impl FnOnce() -> Result<Vec<u8>>,
        load: impl Fn(&Path, File) -> Result<T>,
    ) -> Result<(T, Outcome)> {
        if !self.dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("create compile cache {}", self.dir.display()))?;
        }
        if let Some(hit) = self.try_load(key, &load) {
            return Ok((hit, Outcome::Hit));
        }
        let _lock = self.lock(key)?;
        // Another shim may have compiled it while we waited for the lock.
        if let Some(hit) = self.try_load(key, &load) {
            return Ok((hit, Outcome::Hit));
        }
        let code = compile()?;
        self.store(key, &code)?;
        let file = File::open(self.code_path(key)).context("reopen freshly cached code")?;
        Ok((load(&self.code_path(key), file)?, Outcome::Compiled))
    }

    fn code_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    fn sum_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.sha256"))
    }

    /// A verified entry, or `None` (after removing a bad one).
    fn try_load<T>(&self, key: &str, load: &impl Fn(&Path, File) -> Result<T>) -> Option<T> {
        let code = self.code_path(key);
        let expected = fs::read_to_string(self.sum_path(key)).ok()?;
        let mut file = File::open(&code).ok()?;
        match digest_reader(&mut file) {
            Ok(actual) if actual == expected.trim() => {}
            Ok(_) => {
                log::warn!("compile cache entry {} fails its checksum; rebuilding it", code.display());
                self.evict(key);
                return None;
            }
            Err(e) => {
                log::warn!("compile cache entry {} unreadable ({e:#}); rebuilding it", code.display());
                self.evict(key);
                return None;
            }
        }
        if let Err(e) = file.seek(SeekFrom::Start(0)) {
            log::warn!("compile cache entry {}: {e}", code.display());
            return None;
        }
        match load(&code, file) {
            Ok(v) => Some(v),
            Err(e) => {
                log::warn!("compile cache entry {} rejected by wasmtime ({e:#}); rebuilding it", code.display());
                self.evict(key);
                None
            }
        }
    }

    fn evict(&self, key: &str) {
        let _ = fs::remove_file(self.sum_path(key));
        let _ = fs::remove_file(self.code_path(key));
    }

    fn store(&self, key: &str, code: &[u8]) -> Result<()> {
        // Code first, checksum last: an entry without a checksum is a miss.
        write_atomic(&self.code_path(key), code)?;
        write_atomic(&self.sum_path(key), hex::encode(Sha256::digest(code)).as_bytes())
    }

    /// Holds an exclusive flock on the key until the guard is dropped.
    fn lock(&self, key: &str) -> Result<nix::fcntl::Flock<File>> {
        let path = self.dir.join(format!("{key}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        // Blocking is fine: callers run on a blocking thread.
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("lock {}: {e}", path.display()))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

fn digest_reader(r: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn read_all(_: &Path, mut f: File) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        if v.starts_with(b"bad") {
            anyhow::bail!("incompatible");
        }
        Ok(v)
    }

    #[test]
    fn compiles_once_then_hits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().join("c"));
        let calls = Cell::new(0);
        let compile = || {
            calls.set(calls.get() + 1);
            Ok(b"native".to_vec())
        };
        let (v, o) = cache.get_or_compile("k", compile, read_all).unwrap();
        assert_eq!((v.as_slice(), o), (&b"native"[..], Outcome::Compiled));
        let (v, o) = cache.get_or_compile("k", compile, read_all).unwrap();
        assert_eq!((v.as_slice(), o), (&b"native"[..], Outcome::Hit));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn corrupt_entry_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().to_path_buf());
        cache.get_or_compile("k", || Ok(b"native".to_vec()), read_all).unwrap();
        // Flip the content behind the cache's back: the checksum catches it.
        fs::write(dir.path().join("k.cwasm"), b"nativX").unwrap();
        let (v, o) = cache.get_or_compile("k", || Ok(b"native".to_vec()), read_all).unwrap();
        assert_eq!((v.as_slice(), o), (&b"native"[..], Outcome::Compiled));
        // Truncated to nothing: also rebuilt.
        fs::write(dir.path().join("k.cwasm"), b"").unwrap();
        let (_, o) = cache.get_or_compile("k", || Ok(b"native".to_vec()), read_all).unwrap();
        assert_eq!(o, Outcome::Compiled);
    }

    #[test]
    fn entry_the_engine_rejects_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().to_path_buf());
        cache.store("k", b"bad code").unwrap();
        let (v, o) = cache.get_or_compile("k", || Ok(b"good".to_vec()), read_all).unwrap();
        assert_eq!((v.as_slice(), o), (&b"good"[..], Outcome::Compiled));
    }

    #[test]
    fn missing_checksum_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().to_path_buf());
        fs::write(dir.path().join("k.cwasm"), b"stale").unwrap();
        let (v, o) = cache.get_or_compile("k", || Ok(b"fresh".to_vec()), read_all).unwrap();
        assert_eq!((v.as_slice(), o), (&b"fresh"[..], Outcome::Compiled));
    }
}
