//! `wasm-oci`: writes reproducible OCI image-layout tars (platform `wasi/wasm`)
//! whose single uncompressed layer holds a WebAssembly module.

pub mod build;
pub mod cli;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod tar;

#[cfg(test)]
pub(crate) mod test_util;
