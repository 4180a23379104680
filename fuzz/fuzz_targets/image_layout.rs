//! The image tool's reader: an OCI image-layout tar (its tar parser, then
//! `index.json` → manifests → config and layers, each blob checked against
//! its descriptor) inspected and planned for a push, from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_oci::layout::Layout;

fuzz_target!(|data: &[u8]| {
    let _ = wasm_oci::inspect::inspect(data);
    if let Ok(layout) = Layout::parse(data) {
        if let Ok(steps) = wasm_oci::plan::plan(&layout, None) {
            assert!(!steps.is_empty(), "a plan without uploads");
        }
    }
});
