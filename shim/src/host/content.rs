//! Image content from containerd, for OCI Wasm artifacts: their rootfs is
//! empty and the module is a layer of the image. The shim asks containerd's
//! API (at the address and namespace it was started with) for container →
//! image → manifest (through an index if need be) → layer, and reads it.
//!
//! Recognised (see the README): the CNCF TAG Runtime format — config
//! `application/vnd.wasm.config.v0+json`, layers `application/wasm`, layer 0
//! the entrypoint — and the older `…wasm.component.layer.v0+wasm` layers.

use anyhow::{bail, Context, Result};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::tonic::{self, transport::Channel, Request};
use containerd_client::types::Descriptor;
use oci_spec::image::{ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};

pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";
pub const LEGACY_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
const TITLE: &str = "org.opencontainers.image.title";
/// Manifests and indexes are small; a larger one is not an image.
const MAX_MANIFEST: i64 = 4 << 20;
/// Bounds what one Create may hold in memory for a module.
const MAX_LAYER: i64 = 1 << 30;

/// The module an artifact image carries.
#[derive(Debug)]
pub struct WasmLayer {
    pub image: String,
    pub digest: String,
    /// The layer's `org.opencontainers.image.title`, if it has one.
    pub title: Option<String>,
    pub bytes: Vec<u8>,
}

/// containerd's API as the shim reaches it.
#[derive(Clone)]
pub struct ImageContent {
    address: String,
    namespace: String,
}

impl ImageContent {
    pub fn new(address: &str, namespace: &str) -> Self {
        let address = address.strip_prefix("unix://").unwrap_or(address).to_string();
        Self { address, namespace: namespace.to_string() }
    }

    /// The Wasm layer of the container's image, or `None` when the image is
    /// not a Wasm artifact. `arg0` picks among several legacy layers by title.
    pub async fn wasm_layer(&self, container_id: &str, arg0: &str) -> Result<Option<WasmLayer>> {
        if self.address.is_empty() {
            bail!("the shim was not given containerd's address");
        }
        // A connection per lookup: an idle shim holds none.
        let channel = containerd_client::connect(&self.address)
            .await
            .with_context(|| format!("connect to containerd at {}", self.address))?;
        let container = ContainersClient::new(channel.clone())
            .get(self.request(GetContainerRequest { id: container_id.to_string() })?)
            .await
            .with_context(|| format!("look up container {container_id} in containerd"))?
            .into_inner()
            .container
            .with_context(|| format!("containerd returned no container {container_id}"))?;
        if container.image.is_empty() {
            return Ok(None);
        }
        let image = ImagesClient::new(channel.clone())
            .get(self.request(GetImageRequest { name: container.image.clone() })?)
            .await
            .with_context(|| format!("look up image {}", container.image))?
            .into_inner()
            .image
            .and_then(|i| i.target)
            .with_context(|| format!("image {} has no target", container.image))?;
        let manifest = self.manifest(&channel, &container.image, image).await?;
        let Some(layer) = pick_layer(&manifest, arg0).map_err(|e| anyhow::anyhow!("image {}: {e}", container.image))? else {
            return Ok(None);
        };
        let bytes = self.read(&channel, &layer.digest, layer.size, MAX_LAYER).await.with_context(|| {
            format!("read Wasm layer {} of image {}", layer.digest, container.image)
        })?;
        Ok(Some(WasmLayer { image: container.image, digest: layer.digest, title: layer.title, bytes }))
    }

    fn request<T>(&self, message: T) -> Result<Request<T>> {
        let mut req = Request::new(message);
        let ns = self.namespace.parse().with_context(|| format!("namespace {:?} is not a valid header value", self.namespace))?;
        req.metadata_mut().insert("containerd-namespace", ns);
        Ok(req)
    }

    /// The image's manifest; for an index, the Wasm platform's (or the only one).
    async fn manifest(&self, channel: &Channel, image: &str, target: Descriptor) -> Result<ImageManifest> {
        let mut desc = target;
        for _ in 0..2 {
            let bytes = self.read(channel, &desc.digest, desc.size, MAX_MANIFEST).await.with_context(|| format!("read {} of image {image}", desc.digest))?;
            if is_index(&desc.media_type) {
                let index = ImageIndex::from_reader(bytes.as_slice()).with_context(|| format!("parse the index of image {image}"))?;
                let chosen = wasm_manifest(&index).with_context(|| format!("image {image}: its index lists no manifest for the wasm architecture"))?;
                desc = Descriptor { media_type: chosen.media_type().to_string(), digest: chosen.digest().to_string(), size: chosen.size() as i64, annotations: Default::default() };
                continue;
            }
            return ImageManifest::from_reader(bytes.as_slice()).with_context(|| format!("parse the manifest of image {image}"));
        }
        bail!("image {image}: an index nested in an index")
    }

    /// A blob, checked against its digest.
    async fn read(&self, channel: &Channel, digest: &str, size: i64, max: i64) -> Result<Vec<u8>> {
        if size > max {
            bail!("{digest} is {size} bytes, more than the {max} allowed");
        }
        let mut stream = ContentClient::new(channel.clone())
            .read(self.request(ReadContentRequest { digest: digest.to_string(), offset: 0, size: 0 })?)
            .await
            .map_err(describe_status)?
            .into_inner();
        let mut bytes = Vec::with_capacity(size.max(0) as usize);
        while let Some(chunk) = stream.message().await.map_err(describe_status)? {
            if (bytes.len() + chunk.data.len()) as i64 > max {
                bail!("{digest} is larger than the {max} bytes allowed");
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if digest.starts_with("sha256:") && actual != digest {
            bail!("content {digest} read back as {actual}: the content store is corrupt");
        }
        Ok(bytes)
    }
}

fn describe_status(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::NotFound => anyhow::anyhow!("not in containerd's content store (was the image pulled whole?): {}", s.message()),
        _ => anyhow::anyhow!("containerd: {}", s.message()),
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json" || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn wasm_manifest(index: &ImageIndex) -> Option<&oci_spec::image::Descriptor> {
    let manifests = index.manifests();
    let wasm = manifests.iter().find(|m| m.platform().as_ref().is_some_and(|p| p.architecture().to_string() == "wasm"));
    wasm.or(if manifests.len() == 1 { manifests.first() } else { None })
}

/// The layer a manifest names as its module.
#[derive(Debug, PartialEq, Eq)]
struct Chosen {
    digest: String,
    size: i64,
    title: Option<String>,
}

/// Layer 0 of a Wasm artifact; or, in an image with legacy Wasm layers, the
/// one titled like `arg0` (else the first). `None` for any other image.
fn pick_layer(manifest: &ImageManifest, arg0: &str) -> std::result::Result<Option<Chosen>, String> {
    let chosen = |d: &oci_spec::image::Descriptor| Chosen {
        digest: d.digest().to_string(),
        size: d.size() as i64,
        title: d.annotations().as_ref().and_then(|a| a.get(TITLE)).cloned(),
    };
    let layers = manifest.layers();
    if manifest.config().media_type().to_string() == WASM_CONFIG {
        let first = layers.first().ok_or("a Wasm artifact with no layers")?;
        let media = first.media_type().to_string();
        if media != WASM_LAYER {
            return Err(format!("layer 0 of a Wasm artifact is {media}, not {WASM_LAYER}"));
        }
        return Ok(Some(chosen(first)));
    }
    let legacy: Vec<_> = layers.iter().filter(|l| l.media_type().to_string() == LEGACY_LAYER).collect();
    let base = arg0.rsplit('/').next().unwrap_or(arg0);
    let titled = legacy.iter().find(|l| chosen(l).title.as_deref().is_some_and(|t| !base.is_empty() && t.rsplit('/').next() == Some(base)));
    Ok(titled.or(legacy.first()).map(|l| chosen(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[(&str, Option<&str>)]) -> ImageManifest {
        let layers: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(i, (media, title))| {
                let mut l = serde_json::json!({"mediaType": media, "digest": format!("sha256:{:064x}", i + 1), "size": 10 + i});
                if let Some(t) = title {
                    l["annotations"] = serde_json::json!({TITLE: t});
                }
                l
            })
            .collect();
        let json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config, "digest": format!("sha256:{:064x}", 0), "size": 2},
            "layers": layers,
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn artifact_layer_zero_is_the_entrypoint() {
        let m = manifest(WASM_CONFIG, &[(WASM_LAYER, Some("app.wasm")), (WASM_LAYER, None)]);
        let c = pick_layer(&m, "").unwrap().unwrap();
        assert_eq!(c.digest, format!("sha256:{:064x}", 1));
        assert_eq!(c.title.as_deref(), Some("app.wasm"));
        let bad = manifest(WASM_CONFIG, &[("application/vnd.oci.image.layer.v1.tar", None)]);
        assert!(pick_layer(&bad, "").unwrap_err().contains("layer 0 of a Wasm artifact"));
        let empty = manifest(WASM_CONFIG, &[]);
        assert!(pick_layer(&empty, "").is_err());
    }

    #[test]
    fn legacy_layers_by_title_then_first() {
        let tar = "application/vnd.oci.image.layer.v1.tar+gzip";
        let m = manifest("application/vnd.oci.image.config.v1+json", &[(tar, None), (LEGACY_LAYER, Some("a.wasm")), (LEGACY_LAYER, Some("b.wasm"))]);
        assert_eq!(pick_layer(&m, "/b.wasm").unwrap().unwrap().title.as_deref(), Some("b.wasm"));
        assert_eq!(pick_layer(&m, "/other.wasm").unwrap().unwrap().title.as_deref(), Some("a.wasm"));
        let plain = manifest("application/vnd.oci.image.config.v1+json", &[(tar, None)]);
        assert_eq!(pick_layer(&plain, "/app.wasm").unwrap(), None);
    }
}
