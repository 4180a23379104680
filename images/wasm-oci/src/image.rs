//! OCI image assembly: config, manifest and index JSON, and the image-layout tar.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::tar::TarWriter;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Config of a Wasm OCI artifact (CNCF TAG Runtime layout).
pub const MEDIA_TYPE_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// A raw Wasm binary as the layer of a Wasm OCI artifact.
pub const MEDIA_TYPE_WASM_LAYER: &str = "application/wasm";
/// A raw Wasm binary as the layer of runwasi's older image layout.
pub const MEDIA_TYPE_WASM_LAYER_LEGACY: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// Annotation containerd uses as the image name on `ctr images import`.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation for the reference (tag) of a manifest in an index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// OCI annotation naming a blob's file (set on raw Wasm layers, as `wkg` does).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Platform of the images this tool writes by default (`wasi/wasm`).
pub const OS: &str = "wasi";
pub const ARCHITECTURE: &str = "wasm";

/// A content-addressed blob.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        let digest = sha256_digest(&bytes);
        Self {
            media_type,
            bytes,
            digest,
        }
    }

    /// `sha256:<hex>` digest of the bytes.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.to_string(),
            digest: self.digest(),
            size: self.bytes.len() as u64,
            platform: None,
            annotations: None,
        }
    }
}

/// `sha256:<hex>` digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

impl Platform {
    pub fn wasi() -> Self {
        Self {
            architecture: ARCHITECTURE.into(),
            os: OS.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    /// Optional in the image spec (e.g. absent in `ctr images export` output).
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// Image configuration; field order is fixed so the JSON is reproducible.
/// There is deliberately no `created` timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Vec<String>,
    #[serde(rename = "Env", default)]
    pub env: Vec<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// An image reference split into its full name and its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageName {
    /// Full reference, always with a tag, e.g. `localhost/hello:latest`.
    pub full: String,
    pub tag: String,
}

impl ImageName {
    /// Parses `[host[:port]/]path[:tag]`; a missing tag becomes `latest`.
    /// Digest references (`@sha256:...`) are not accepted.
    pub fn parse(name: &str) -> Result<Self> {
        ensure!(!name.is_empty(), "image name is empty");
        ensure!(
            !name.contains('@'),
            "image name {name:?}: digest references are not supported, use a tag"
        );
        let (repo, tag) = split_tag(name);
        let tag = tag.unwrap_or("latest");
        ensure!(valid_tag(tag), "image name {name:?}: invalid tag {tag:?}");
        ensure!(valid_repository(repo), "image name {name:?}: invalid repository {repo:?} (use lowercase [a-z0-9._-] path components)");
        Ok(Self {
            full: format!("{repo}:{tag}"),
            tag: tag.to_string(),
        })
    }
}

/// Splits off a `:tag` found after the last `/` (so `host:5000/x` has no tag).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok && tag.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn valid_repository(repo: &str) -> bool {
    let parts: Vec<&str> = repo.split('/').collect();
    let path = match parts.as_slice() {
        [domain, rest @ ..] if !rest.is_empty() && is_domain(domain) => rest,
        all => all,
    };
    path.iter().all(|p| {
        !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    })
}

/// A first path component is a registry host if it looks like one
/// (`localhost`, contains `.` or a `:port`), as in Docker's reference grammar.
fn is_domain(part: &str) -> bool {
    let looks_like_host = part == "localhost" || part.contains('.') || part.contains(':');
    looks_like_host
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
}

/// Checks that `bytes` is a Wasm binary (`\0asm`) or WebAssembly text
/// (first character after whitespace and `;;` line comments is `(`).
pub fn check_module(bytes: &[u8]) -> Result<()> {
    ensure!(!bytes.is_empty(), "module is empty");
    if bytes.starts_with(b"\0asm") {
        return Ok(());
    }
    let mut rest = bytes;
    loop {
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[start..];
        if rest.starts_with(b";;") {
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            rest = &rest[end..];
        } else {
            break;
        }
    }
    let first = rest.first();
    ensure!(
        first == Some(&b'('),
        "not a WebAssembly module: expected the binary magic \\0asm or WebAssembly text starting with '('"
    );
    Ok(())
}

/// What goes into an image besides the layer itself.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub name: ImageName,
    /// Absolute path of the module inside the image, e.g. `/app.wasm`.
    pub entrypoint: String,
    pub platform: Platform,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// The blobs of a built image, with the index that names it.
#[derive(Clone, Debug)]
pub struct Image {
    pub index: Blob,
    pub manifest: Blob,
    pub config: Blob,
    pub layer: Blob,
}

impl Image {
    /// Builds config, manifest and index around an uncompressed layer tar.
    pub fn new(spec: &ImageSpec, layer_tar: Vec<u8>) -> Result<Self> {
        let layer = Blob::new(MEDIA_TYPE_LAYER, layer_tar);
        let config = Blob::new(MEDIA_TYPE_CONFIG, to_json(&image_config(spec, &layer))?);
        Self::assemble(&spec.name, &spec.platform, config, layer, None)
    }

    /// Builds manifest and index around a config and a single layer;
    /// `layer_annotations` go on the layer's descriptor.
    pub fn assemble(
        name: &ImageName,
        platform: &Platform,
        config: Blob,
        layer: Blob,
        layer_annotations: Option<BTreeMap<String, String>>,
    ) -> Result<Self> {
        let layer_descriptor = Descriptor {
            annotations: layer_annotations,
            ..layer.descriptor()
        };
        let manifest = Blob::new(
            MEDIA_TYPE_MANIFEST,
            to_json(&Manifest {
                schema_version: 2,
                media_type: MEDIA_TYPE_MANIFEST.into(),
                config: config.descriptor(),
                layers: vec![layer_descriptor],
            })?,
        );
        let index = Blob::new(
            MEDIA_TYPE_INDEX,
            to_json(&index(name, platform, &manifest))?,
        );
        Ok(Self {
            index,
            manifest,
            config,
            layer,
        })
    }

    /// Serializes the image as an OCI image-layout tar (`oci-layout`,
    /// `index.json`, `blobs/sha256/*`), entries sorted.
    pub fn to_layout_tar(&self) -> Result<Vec<u8>> {
        let mut blobs: Vec<&Blob> = vec![&self.config, &self.layer, &self.manifest];
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        let mut tar = TarWriter::new();
        tar.append_dir("blobs", 0o755)?;
        tar.append_dir("blobs/sha256", 0o755)?;
        for blob in blobs {
            let hex = blob.digest().trim_start_matches("sha256:").to_string();
            tar.append_file(&format!("blobs/sha256/{hex}"), 0o644, &blob.bytes)?;
        }
        tar.append_file("index.json", 0o644, &self.index.bytes)?;
        tar.append_file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(tar.finish())
    }
}

fn image_config(spec: &ImageSpec, layer: &Blob) -> ImageConfig {
    ImageConfig {
        architecture: spec.platform.architecture.clone(),
        os: spec.platform.os.clone(),
        config: RunConfig {
            entrypoint: vec![spec.entrypoint.clone()],
            cmd: spec.args.clone(),
            env: spec.env.clone(),
            labels: None,
        },
        // The layer is uncompressed, so its diff ID equals its digest.
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.digest()],
        },
    }
}

fn index(name: &ImageName, platform: &Platform, manifest: &Blob) -> Index {
    let annotations = BTreeMap::from([
        (ANNOTATION_IMAGE_NAME.to_string(), name.full.clone()),
        (ANNOTATION_REF_NAME.to_string(), name.tag.clone()),
    ]);
    Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX.into(),
        manifests: vec![Descriptor {
            platform: Some(platform.clone()),
            annotations: Some(annotations),
            ..manifest.descriptor()
        }],
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        let n = ImageName::parse("localhost/hello:latest").unwrap();
        assert_eq!(
            (n.full.as_str(), n.tag.as_str()),
            ("localhost/hello:latest", "latest")
        );
        let n = ImageName::parse("localhost:5000/chat/api").unwrap();
        assert_eq!(
            (n.full.as_str(), n.tag.as_str()),
            ("localhost:5000/chat/api:latest", "latest")
        );
        let n = ImageName::parse("docker.io/Org.example/x:v1.2").err();
        assert!(n.is_some(), "uppercase path component must be rejected");
        assert_eq!(ImageName::parse("hello:v1").unwrap().full, "hello:v1");
        for bad in [
            "",
            "Hello",
            "a b",
            "x:",
            "x:-bad",
            "x@sha256:00",
            "a//b",
            "/a",
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn checks_module_magic() {
        assert!(check_module(b"\0asm\x01\0\0\0").is_ok());
        assert!(check_module(b"  \n\t(module)").is_ok());
        assert!(check_module(b"").is_err());
        assert!(check_module(b"#!/bin/sh\n").is_err());
        assert!(check_module(b"\x7fELF").is_err());
        assert!(check_module(b"   ").is_err());
    }

    #[test]
    fn config_json_shape() {
        let spec = ImageSpec {
            name: ImageName::parse("localhost/hello:latest").unwrap(),
            entrypoint: "/app.wasm".into(),
            platform: Platform::wasi(),
            args: vec!["--port".into(), "8080".into()],
            env: vec!["A=1".into()],
        };
        let image = Image::new(&spec, vec![0; 1024]).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        let expected = serde_json::json!({
            "architecture": "wasm",
            "os": "wasi",
            "config": {"Entrypoint": ["/app.wasm"], "Cmd": ["--port", "8080"], "Env": ["A=1"]},
            "rootfs": {"type": "layers", "diff_ids": [image.layer.digest()]}
        });
        assert_eq!(config, expected);
        let text = String::from_utf8(image.config.bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"architecture":"wasm","os":"wasi","config":{"Entrypoint""#),
            "{text}"
        );
        assert!(!text.contains("created"));
    }
}
