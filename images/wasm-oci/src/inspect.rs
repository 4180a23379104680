//! Reads an OCI image-layout tar back, verifies it and reports its contents.
//!
//! Every blob reached from `index.json` is checked against its descriptor
//! (digest and size), and uncompressed layers are checked against the
//! config's `diff_ids`, so a successful inspection means the chain
//! index → manifest → config/layers is consistent.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::image::{sha256_digest, Descriptor, ImageConfig, Index, Manifest, MEDIA_TYPE_LAYER};
use crate::tar::{read_entries, Entry, Kind};

/// Files of an image-layout tar, by normalized path.
struct Layout {
    files: BTreeMap<String, Vec<u8>>,
}

impl Layout {
    fn parse(tar: &[u8]) -> Result<Self> {
        let files = read_entries(tar)?
            .into_iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| (e.path.trim_start_matches("./").to_string(), e.data))
            .collect();
        Ok(Self { files })
    }

    fn file(&self, path: &str) -> Result<&[u8]> {
        self.files
            .get(path)
            .map(Vec::as_slice)
            .with_context(|| format!("image layout has no {path}"))
    }

    /// Returns the blob for `desc` after checking its digest and size.
    fn blob(&self, desc: &Descriptor) -> Result<&[u8]> {
        let hex = desc
            .digest
            .strip_prefix("sha256:")
            .with_context(|| format!("unsupported digest {}", desc.digest))?;
        let bytes = self.file(&format!("blobs/sha256/{hex}"))?;
        ensure!(
            bytes.len() as u64 == desc.size,
            "blob {} is {} bytes, descriptor says {}",
            desc.digest,
            bytes.len(),
            desc.size
        );
        let actual = sha256_digest(bytes);
        ensure!(
            actual == desc.digest,
            "blob {} has digest {actual}",
            desc.digest
        );
        Ok(bytes)
    }

    fn json_blob<T: DeserializeOwned>(&self, desc: &Descriptor) -> Result<(T, Value)> {
        let bytes = self.blob(desc)?;
        Ok((parse_json(bytes)?, parse_json(bytes)?))
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Verifies an image-layout tar and returns a JSON report:
/// `{"ociLayout", "index", "manifests": [{"descriptor", "manifest", "config", "layers"}]}`.
pub fn inspect(tar: &[u8]) -> Result<Value> {
    let layout = Layout::parse(tar).context("reading image layout tar")?;
    let oci_layout: Value = parse_json(layout.file("oci-layout")?).context("parsing oci-layout")?;
    let index_bytes = layout.file("index.json")?;
    let index: Index = parse_json(index_bytes).context("parsing index.json")?;
    ensure!(!index.manifests.is_empty(), "index.json lists no manifests");
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
    let (config, config_json): (ImageConfig, _) =
        layout.json_blob(&manifest.config).context("config")?;
    ensure!(
        config.rootfs.diff_ids.len() == manifest.layers.len(),
        "config has {} diff_ids for {} layers",
        config.rootfs.diff_ids.len(),
        manifest.layers.len()
    );
    let layers = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(layer, diff_id)| {
            inspect_layer(layout, layer, diff_id).with_context(|| format!("layer {}", layer.digest))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "descriptor": desc,
        "manifest": manifest_json,
        "config": {"digest": manifest.config.digest, "size": manifest.config.size, "json": config_json},
        "layers": layers,
    }))
}

fn inspect_layer(layout: &Layout, desc: &Descriptor, diff_id: &str) -> Result<Value> {
    let bytes = layout.blob(desc)?;
    let mut report =
        json!({"digest": desc.digest, "size": desc.size, "mediaType": desc.media_type});
    if desc.media_type != MEDIA_TYPE_LAYER {
        report["entries"] = Value::Null; // compressed layers are not listed
        return Ok(report);
    }
    ensure!(
        diff_id == desc.digest,
        "diff_id {diff_id} differs from uncompressed layer digest"
    );
    let entries = read_entries(bytes).context("reading layer tar")?;
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
