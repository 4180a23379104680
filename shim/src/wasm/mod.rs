//! The Wasm side: Wasmtime engines and the compile cache, linking against
//! WASI, store state and limits, OCI spec → WASI capabilities, and serving
//! wasi:http proxy components.

pub mod cache;
pub mod engine;
pub mod http;
pub mod imports;
pub mod linker;
pub mod pool;
pub mod store;
pub mod wasi;

/// Wasmtime has an error type of its own; the shim speaks anyhow.
pub fn wt<T>(r: wasmtime::Result<T>) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::from)
}
