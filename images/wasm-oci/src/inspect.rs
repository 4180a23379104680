//! Reads an OCI image-layout tar back, verifies it and reports its contents.
//!
//! Every blob reached from `index.json` is checked against its descriptor
//! (digest and size), and uncompressed layers are checked against the
//! config's `diff_ids`, so a successful inspection means the chain
//! index → manifest → config/layers is consistent.

use anyhow::{ensure, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::artifact::{WasmConfig, WasmKind};
use crate::image::{
    sha256_digest, Descriptor, Manifest, RootFs, MEDIA_TYPE_LAYER, MEDIA_TYPE_WASM_CONFIG,
};
use crate::layout::{parse_json, Layout};
use crate::tar::{read_entries, Entry, Kind};

/// The part of an OCI image config inspection checks.
#[derive(Deserialize)]
struct RootFsOnly {
    rootfs: RootFs,
}

/// Whether a layer is a filesystem layer (a tar, maybe compressed), which an
/// image config's `diff_ids` must list; raw Wasm layers are not.
fn is_filesystem_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// Verifies an image-layout tar and returns a JSON report:
/// `{"ociLayout", "index", "manifests": [{"descriptor", "manifest", "config", "layers"}]}`.
pub fn inspect(tar: &[u8]) -> Result<Value> {
    let layout = Layout::parse(tar).context("reading image layout tar")?;
    let oci_layout: Value = parse_json(layout.file("oci-layout")?).context("parsing oci-layout")?;
    let (index_bytes, index) = layout.index()?;
    let manifests = index
        .manifests
        .iter()
        .map(|desc| {
            inspect_manifest(&layout, desc).with_context(|| format!("manifest {}", desc.digest))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "ociLayout": oci_layout,
        "index": {"digest": sha256_digest(index_bytes), "json": parse_json::<Value>(index_bytes)?},
        "manifests": manifests,
    }))
}

fn inspect_manifest(layout: &Layout, desc: &Descriptor) -> Result<Value> {
    let (manifest, manifest_json): (Manifest, _) = layout.json_blob(desc)?;
    let config_json: Value = layout
        .json_blob::<Value>(&manifest.config)
        .context("config")?
        .1;
    let layers = if manifest.config.media_type == MEDIA_TYPE_WASM_CONFIG {
        check_wasm_config(&manifest, &config_json)?;
        manifest
            .layers
            .iter()
            .map(|layer| inspect_layer(layout, layer, None))
            .collect::<Result<Vec<_>>>()?
    } else {
        let config: RootFsOnly =
            serde_json::from_value(config_json.clone()).context("config has no rootfs")?;
        let filesystem = manifest
            .layers
            .iter()
            .filter(|l| is_filesystem_layer(&l.media_type))
            .count();
        ensure!(
            config.rootfs.diff_ids.len() == filesystem,
            "config has {} diff_ids for {filesystem} filesystem layers",
            config.rootfs.diff_ids.len(),
        );
        let mut diff_ids = config.rootfs.diff_ids.iter();
        manifest
            .layers
            .iter()
            .map(|layer| {
                let diff_id = if is_filesystem_layer(&layer.media_type) {
                    diff_ids.next()
                } else {
                    None
                };
                inspect_layer(layout, layer, diff_id.map(String::as_str))
            })
            .collect::<Result<Vec<_>>>()?
    };
    Ok(json!({
        "descriptor": desc,
        "manifest": manifest_json,
        "config": {"digest": manifest.config.digest, "size": manifest.config.size, "json": config_json},
        "layers": layers,
    }))
}

/// A Wasm artifact's config must list exactly the manifest's layer digests.
fn check_wasm_config(manifest: &Manifest, config: &Value) -> Result<()> {
    let config: WasmConfig =
        serde_json::from_value(config.clone()).context("parsing the Wasm config")?;
    let digests: Vec<&str> = manifest.layers.iter().map(|l| l.digest.as_str()).collect();
    ensure!(
        config.layer_digests == digests,
        "config layerDigests {:?} differ from the manifest's layers {digests:?}",
        config.layer_digests
    );
    Ok(())
}

fn inspect_layer(layout: &Layout, desc: &Descriptor, diff_id: Option<&str>) -> Result<Value> {
    let context = || format!("layer {}", desc.digest);
    let bytes = layout.blob(desc).with_context(context)?;
    let mut report =
        json!({"digest": desc.digest, "size": desc.size, "mediaType": desc.media_type});
    if !is_filesystem_layer(&desc.media_type) {
        // A raw Wasm binary (or another non-tar blob): say what it is.
        report["entries"] = Value::Null;
        report["wasm"] = match WasmKind::of(bytes) {
            Ok(WasmKind::Module) => "module".into(),
            Ok(WasmKind::Component) => "component".into(),
            Err(_) => Value::Null,
        };
        return Ok(report);
    }
    if desc.media_type != MEDIA_TYPE_LAYER {
        report["entries"] = Value::Null; // compressed layers are not listed
        return Ok(report);
    }
    ensure!(
        diff_id == Some(desc.digest.as_str()),
        "layer {}: diff_id {diff_id:?} differs from the uncompressed layer digest",
        desc.digest
    );
    let entries = read_entries(bytes)
        .context("reading layer tar")
        .with_context(context)?;
    report["entries"] = entries.iter().map(entry_report).collect::<Vec<_>>().into();
    Ok(report)
}

fn entry_report(entry: &Entry) -> Value {
    let kind = match entry.kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Other(b'1') => "hardlink",
        Kind::Other(b'2') => "symlink",
        Kind::Other(_) => "other",
    };
    json!({
        "path": format!("/{}", entry.path.trim_start_matches("./")),
        "type": kind,
        "mode": format!("{:04o}", entry.mode),
        "size": entry.data.len(),
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime": entry.mtime,
    })
}
