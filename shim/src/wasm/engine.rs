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
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Module, OptLevel};

use super::cache::{CompileCache, Outcome};
use super::wt;
use crate::host::entrypoint::Kind;

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
    /// `host::entrypoint`), compiled at most once per content and engine
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
        let (compiled, outcome) = match kind {
            Kind::Module => self.cache.get_or_compile(
                &key,
                || wt(engine.precompile_module(bytes)).context("compile module"),
                // SAFETY: the file was written by `precompile_module` of an
                // engine with this configuration hash, and its checksum was
                // verified by the cache just before this call.
                |_, file| wt(unsafe { Module::deserialize_open_file(engine, file) }).map(Compiled::Module),
            )?,
            Kind::Command | Kind::Proxy => self.cache.get_or_compile(
                &key,
                || wt(engine.precompile_component(bytes)).context("compile component"),
                // SAFETY: as above.
                |path, _| {
                    let component = wt(unsafe { Component::deserialize_file(engine, path) })?;
                    Ok(if proxy { Compiled::Proxy(component) } else { Compiled::Command(component) })
                },
            )?,
            Kind::Native => anyhow::bail!("not a WebAssembly module or component"),
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

/// Where compiled code lives: `$CONTAINERD_SHIM_WASMTIME_CACHE_DIR`, or the
/// shim's state directory.
pub fn cache_dir_for(bundle: &std::path::Path) -> PathBuf {
    match std::env::var_os("CONTAINERD_SHIM_WASMTIME_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::host::bundle::state_dir_for(bundle).join("compile-cache"),
    }
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
    fn cache_dir_sits_beside_containerd_state() {
        let dir = cache_dir_for(std::path::Path::new("/run/containerd/io.containerd.runtime.v2.task/default/c1"));
        assert_eq!(dir, PathBuf::from("/run/containerd/io.containerd.wasmtime.v1/compile-cache"));
    }
}
