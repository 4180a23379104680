//! One Wasmtime engine per shim process (plus a pooled one, created the first
//! time a wasi:http proxy shows up), and the compile step in front of them:
//! Wasm bytes → native code, once per (content digest, engine configuration),
//! via the on-disk cache and an in-process map shared by every container the
//! shim runs.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use shim_input::entrypoint::Kind;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Module, OptLevel};

use super::cache::{CompileCache, Outcome};
use super::wt;

pub const WASMTIME_VERSION: &str = "48.0.8";

/// Compiled code, ready to be linked and instantiated.
#[derive(Clone)]
pub enum Compiled {
    Module(Module),
    /// A component run through `wasi:cli/run`.
    Command(Component),
    /// A component served through `wasi:http/incoming-handler`, compiled
    /// for the pooled engine.
    Proxy(Component),
}

/// An engine and the hash of its configuration, which keys its compiled code.
struct Flavor {
    engine: Engine,
    config_hash: String,
}

impl Flavor {
    fn new(config: &Config, tag: &str) -> Result<Self> {
        let engine = wt(Engine::new(config)).with_context(|| format!("configure wasmtime ({tag})"))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // The tag keeps each engine's code under its own key: code is only
        // ever loaded into the engine it was compiled for.
        tag.hash(&mut hasher);
        Ok(Self { engine, config_hash: format!("{:016x}", hasher.finish()) })
    }
}

pub struct WasmEngine {
    /// On-demand allocation: what CLI guests (one instance per container) run on.
    default: Flavor,
    /// Pooling allocation for wasi:http (an instance per request). Engine-wide
    /// pools reserve address space up front, so this engine exists only once
    /// a proxy component has been seen.
    pooled: Mutex<Option<Arc<Flavor>>>,
    cache: CompileCache,
    compiled: Mutex<HashMap<String, Compiled>>,
}

fn base_config() -> Config {
    let mut config = Config::new();
    // Kill (and, for wasi:http, a request's deadline) must stop a guest stuck
    // in a loop; epochs are only bumped by those, so there is no ticker and
    // no cost while idle.
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config
}

impl WasmEngine {
    pub fn new(cache_dir: PathBuf) -> Result<Arc<Self>> {
        let default = Flavor::new(&base_config(), "on-demand")?;
        Ok(Arc::new(Self { default, pooled: Mutex::default(), cache: CompileCache::new(cache_dir), compiled: Mutex::default() }))
    }

    pub fn engine(&self) -> &Engine {
        &self.default.engine
    }

    /// The pooled engine, created on first use.
    fn pooled(&self) -> Result<Arc<Flavor>> {
        let mut slot = self.pooled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flavor) = &*slot {
            return Ok(flavor.clone());
        }
        let mut config = base_config();
        config.allocation_strategy(super::pool::pooling_config());
        let flavor = Arc::new(Flavor::new(&config, "pooling").context("set up the pooled engine for wasi:http")?);
        log::info!("created the pooled engine for wasi:http components");
        *slot = Some(flavor.clone());
        Ok(flavor)
    }

    /// Interrupts running guests so that they check whether they were killed.
    pub fn interrupt_guests(&self) {
        self.default.engine.increment_epoch();
        if let Some(pooled) = &*self.pooled.lock().unwrap_or_else(|p| p.into_inner()) {
            pooled.engine.increment_epoch();
        }
    }

    /// Native code for `bytes` (a binary module or component, classified by
    /// `shim_input::entrypoint`), compiled at most once per content and engine
    /// configuration. Blocking.
    pub fn load(&self, bytes: &[u8], kind: Kind) -> Result<Compiled> {
        let proxy = kind == Kind::Proxy;
        let pooled;
        let flavor = if proxy {
            pooled = self.pooled()?;
            &*pooled
        } else {
            &self.default
        };
        let engine = &flavor.engine;
        let digest = hex::encode(Sha256::digest(bytes));
        let key = format!("{digest}-{}", flavor.config_hash);
        if let Some(hit) = self.lock_compiled().get(&key) {
            return Ok(hit.clone());
        }
        let started = Instant::now();
        if kind == Kind::Native {
            anyhow::bail!("not a WebAssembly module or component");
        }
        // What this call compiled, so that a cache that cannot hold or map it
        // (unwritable, full, mounted noexec) costs no second compile.
        let produced = std::cell::RefCell::new(None::<Vec<u8>>);
        let compile_failed = std::cell::Cell::new(false);
        let compile = || {
            let code = precompile(engine, kind, bytes).inspect_err(|_| compile_failed.set(true))?;
            *produced.borrow_mut() = Some(code.clone());
            Ok(code)
        };
        // SAFETY (both loads): the code was written by `precompile` of an
        // engine with this configuration hash (the key says so), and its
        // checksum was verified by the cache just before this call.
        let cached = self.cache.get_or_compile(&key, compile, |path, file| match kind {
            Kind::Module => wt(unsafe { Module::deserialize_open_file(engine, file) }).map(Compiled::Module),
            _ => wt(unsafe { Component::deserialize_file(engine, path) }).map(|c| compiled_component(c, proxy)),
        });
        let (compiled, outcome) = match cached {
            Ok(found) => found,
            Err(e) if compile_failed.get() => return Err(e),
            Err(e) => {
                log::warn!("compile cache {} unusable ({e:#}): keeping sha256:{digest}'s code in memory", self.cache.dir().display());
                let code = match produced.into_inner() {
                    Some(code) => code,
                    None => precompile(engine, kind, bytes)?,
                };
                // SAFETY: `code` is what `precompile` of this engine just produced.
                let compiled = match kind {
                    Kind::Module => wt(unsafe { Module::deserialize(engine, &code) }).map(Compiled::Module)?,
                    _ => wt(unsafe { Component::deserialize(engine, &code) }).map(|c| compiled_component(c, proxy))?,
                };
                (compiled, Outcome::Compiled)
            }
        };
        match outcome {
            Outcome::Compiled => log::info!(
                "compiled sha256:{digest} ({} bytes) in {:?} into {}",
                bytes.len(),
                started.elapsed(),
                self.cache.dir().display()
            ),
            Outcome::Hit => log::debug!("loaded sha256:{digest} from the compile cache in {:?}", started.elapsed()),
        }
        self.lock_compiled().insert(key, compiled.clone());
        Ok(compiled)
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<String, Compiled>> {
        // A poisoned map only means another load panicked; its entries are whole.
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Native code for a binary module or component.
fn precompile(engine: &Engine, kind: Kind, bytes: &[u8]) -> Result<Vec<u8>> {
    match kind {
        Kind::Module => wt(engine.precompile_module(bytes)).context("compile module"),
        _ => wt(engine.precompile_component(bytes)).context("compile component"),
    }
}

fn compiled_component(component: Component, proxy: bool) -> Compiled {
    if proxy {
        Compiled::Proxy(component)
    } else {
        Compiled::Command(component)
    }
}

/// Where compiled code is cached when containerd's state directory is on a
/// filesystem mounted noexec (systemd mounts `/run` so): containerd's
/// default root.
const NOEXEC_FALLBACK_CACHE: &str = "/var/lib/containerd/io.containerd.wasmtime.v1/compile-cache";

/// Where compiled code lives: `$CONTAINERD_SHIM_WASMTIME_CACHE_DIR`, else
/// beside containerd's state, unless code cannot be mapped executable
/// there; then containerd's default root.
pub fn cache_dir_for(bundle: &std::path::Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINERD_SHIM_WASMTIME_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let beside_state = crate::host::bundle::state_dir_for(bundle).join("compile-cache");
    if allows_exec(&beside_state) {
        beside_state
    } else {
        PathBuf::from(NOEXEC_FALLBACK_CACHE)
    }
}

/// Whether the filesystem holding `path` (or its nearest existing ancestor)
/// lets files be mapped executable.
fn allows_exec(path: &std::path::Path) -> bool {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(std::path::Path::new("/"));
    statvfs(existing).map(|st| !st.flags().contains(FsFlags::ST_NOEXEC)).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT7: &str = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $exit (i32.const 7))))"#;

    fn exit7() -> Vec<u8> {
        wat::parse_str(EXIT7).unwrap()
    }

    #[test]
    fn compiles_once_across_engines() {
        let dir = tempfile::tempdir().unwrap();
        let a = WasmEngine::new(dir.path().to_path_buf()).unwrap();
        assert!(matches!(a.load(&exit7(), Kind::Module).unwrap(), Compiled::Module(_)));
        let entries = || std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm")).count();
        assert_eq!(entries(), 1);
        // A second engine (another shim process) reuses the entry.
        let b = WasmEngine::new(dir.path().to_path_buf()).unwrap();
        let cwasm = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "cwasm")).unwrap();
        let before = std::fs::metadata(&cwasm).unwrap().modified().unwrap();
        b.load(&exit7(), Kind::Module).unwrap();
        assert_eq!(std::fs::metadata(&cwasm).unwrap().modified().unwrap(), before);
        assert_eq!(entries(), 1);
    }

    #[test]
    fn garbage_cache_entry_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = WasmEngine::new(dir.path().to_path_buf()).unwrap();
        a.load(&exit7(), Kind::Module).unwrap();
        // Code in use is mapped from the entry; it must outlive any change to the file.
        drop(a);
        let cwasm = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "cwasm")).unwrap();
        // Replace code and checksum consistently with garbage: wasmtime itself must refuse it.
        std::fs::write(&cwasm, b"\x7fELF garbage").unwrap();
        std::fs::write(cwasm.with_extension("sha256"), hex::encode(Sha256::digest(b"\x7fELF garbage"))).unwrap();
        let b = WasmEngine::new(dir.path().to_path_buf()).unwrap();
        assert!(matches!(b.load(&exit7(), Kind::Module).unwrap(), Compiled::Module(_)));
    }

    #[test]
    fn invalid_wasm_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = WasmEngine::new(dir.path().to_path_buf()).unwrap();
        let Err(err) = e.load(b"\0asm\x01\0\0\0\xff\xff\xff", Kind::Module) else { panic!("garbage compiled") };
        assert!(format!("{err:#}").contains("compile module"), "{err:#}");
    }

    #[test]
    fn an_unusable_cache_still_gives_code() {
        // A regular file where the cache directory should be: nothing can be
        // stored, yet the module compiles (once) and runs.
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, b"x").unwrap();
        let e = WasmEngine::new(blocked).unwrap();
        assert!(matches!(e.load(&exit7(), Kind::Module).unwrap(), Compiled::Module(_)));
        // Broken Wasm is still reported as such, not as a cache problem.
        let Err(err) = e.load(b"\0asm\x01\0\0\0\xff\xff\xff", Kind::Module) else { panic!("garbage compiled") };
        assert!(format!("{err:#}").contains("compile module"), "{err:#}");
    }

    #[test]
    fn a_full_or_read_only_cache_still_gives_code() {
        use nix::mount::{mount, umount, MsFlags};
        // Needs root, as the shim has. A 4 KiB tmpfs is full before the code fits.
        let full = tempfile::tempdir().unwrap();
        mount(Some("tmpfs"), full.path(), Some("tmpfs"), MsFlags::empty(), Some("size=4k")).expect("mount a small tmpfs");
        let loaded = WasmEngine::new(full.path().join("cache")).unwrap().load(&exit7(), Kind::Module);
        let left: Vec<_> = std::fs::read_dir(full.path().join("cache")).unwrap().map(|e| e.unwrap().file_name()).collect();
        umount(full.path()).unwrap();
        assert!(matches!(loaded.unwrap(), Compiled::Module(_)));
        assert!(left.iter().all(|n| n.to_string_lossy().ends_with(".lock")), "left in a full cache: {left:?}");
        // A cache directory on a read-only filesystem.
        let ro = tempfile::tempdir().unwrap();
        mount(Some("tmpfs"), ro.path(), Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>).expect("mount a read-only tmpfs");
        let loaded = WasmEngine::new(ro.path().join("cache")).unwrap().load(&exit7(), Kind::Module);
        umount(ro.path()).unwrap();
        assert!(matches!(loaded.unwrap(), Compiled::Module(_)));
    }

    #[test]
    fn noexec_filesystems_are_detected() {
        use nix::mount::{mount, umount, MsFlags};
        let dir = tempfile::tempdir().unwrap();
        assert!(allows_exec(dir.path()));
        // A tmpfs mounted noexec, as systemd mounts /run (needs root, as the shim does).
        mount(Some("tmpfs"), dir.path(), Some("tmpfs"), MsFlags::MS_NOEXEC, None::<&str>).expect("mount a noexec tmpfs");
        let not_yet_created = dir.path().join("io.containerd.wasmtime.v1/compile-cache");
        let noexec = allows_exec(&not_yet_created);
        umount(dir.path()).unwrap();
        assert!(!noexec);
    }

    #[test]
    fn cache_dir_sits_beside_containerd_state() {
        let dir = cache_dir_for(std::path::Path::new("/run/containerd/io.containerd.runtime.v2.task/default/c1"));
        assert_eq!(dir, PathBuf::from("/run/containerd/io.containerd.wasmtime.v1/compile-cache"));
    }
}
