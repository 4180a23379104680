//! `wasm-oci`: writes reproducible OCI image-layout tars for WebAssembly —
//! images whose single uncompressed layer holds a module (platform
//! `wasi/wasm`), and Wasm OCI artifacts whose layer is the raw binary — and
//! pushes such tars to a registry.

pub mod artifact;
pub mod build;
pub mod cli;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod plan;
pub mod push;
pub mod tar;

#[cfg(test)]
pub(crate) mod test_util;
