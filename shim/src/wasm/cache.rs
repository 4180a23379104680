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
        // Only the lock holder writes a key's files: temporary files still
        // here are what a writer killed mid-write (a crashed shim) left.
        self.remove_partial_writes(key);
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

    /// Removes `<key>.tmp<pid>` files. Call with the key's lock held.
    fn remove_partial_writes(&self, key: &str) {
        let prefix = format!("{key}.tmp");
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                log::warn!("compile cache: removing {}, left by a writer that did not finish", entry.path().display());
                let _ = fs::remove_file(entry.path());
            }
        }
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

/// Writes `path` whole or not at all: a temporary file beside it, synced,
/// then renamed over it. A failed write (a full disk) removes its temporary
/// file, so it leaves nothing behind.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = File::create(&tmp)
        .with_context(|| format!("create {}", tmp.display()))
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("write {}", tmp.display())))
        .and_then(|()| fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display())));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
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
    fn a_write_cut_off_midway_is_cleaned_up_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().to_path_buf());
        // A shim killed while storing: half the code in its temporary file,
        // and an older entry whose code was replaced but whose checksum was not.
        fs::write(dir.path().join("k.tmp4242"), b"nat").unwrap();
        fs::write(dir.path().join("k.cwasm"), b"nat").unwrap();
        fs::write(dir.path().join("k.sha256"), hex::encode(Sha256::digest(b"native"))).unwrap();
        let (v, o) = cache.get_or_compile("k", || Ok(b"native".to_vec()), read_all).unwrap();
        assert_eq!((v.as_slice(), o), (&b"native"[..], Outcome::Compiled));
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(!left.iter().any(|n| n.contains(".tmp")), "temporary files left: {left:?}");
        // Another key's writer may be at work: its temporary file stays.
        fs::write(dir.path().join("other.tmp4243"), b"x").unwrap();
        cache.get_or_compile("k2", || Ok(b"more".to_vec()), read_all).unwrap();
        assert!(dir.path().join("other.tmp4243").exists());
    }

    #[test]
    fn a_full_disk_fails_the_store_and_leaves_no_partial_file() {
        use nix::mount::{mount, umount, MsFlags};
        let dir = tempfile::tempdir().unwrap();
        // A 4 KiB tmpfs (needs root, as the shim has): the code does not fit.
        mount(Some("tmpfs"), dir.path(), Some("tmpfs"), MsFlags::empty(), Some("size=4k")).expect("mount a small tmpfs");
        let cache = CompileCache::new(dir.path().to_path_buf());
        let result = cache.get_or_compile("k", || Ok(vec![7u8; 64 * 1024]), read_all);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        umount(dir.path()).unwrap();
        let err = format!("{:#}", result.err().expect("a store into a full filesystem succeeded"));
        assert!(err.contains("k.tmp") && err.contains("No space left"), "{err}");
        assert!(!left.iter().any(|n| n.contains(".tmp") || n.ends_with(".cwasm")), "left behind: {left:?}");
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
