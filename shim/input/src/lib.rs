//! What the shim is handed, checked and interpreted before anything runs:
//! - `grants`: an OCI spec's process and mounts as what a guest may see;
//! - `entrypoint`: the file a container starts, found inside its rootfs and
//!   classified by its bytes;
//! - `options`: the runtime options containerd sends with Create;
//! - `settings`: the variables of a container's environment that configure
//!   the shim (`WASI_HTTP_PORT`, `WASI_HTTP_TIMEOUT_MS`; `WASI_ENTRY` is in
//!   `entrypoint`).
//!
//! No Wasmtime and no process-wide side effects: the shim builds on these,
//! and `fuzz/` drives them with arbitrary input.

pub mod entrypoint;
pub mod env;
mod error;
pub mod grants;
pub mod options;
pub mod settings;

pub use error::InputError;

pub type Result<T, E = InputError> = std::result::Result<T, E>;
