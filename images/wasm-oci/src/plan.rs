//! What `push` uploads, worked out from an image-layout tar before any
//! network traffic: the blobs of every manifest, then the manifests, each
//! checked against its descriptor (digest and size).

use std::collections::HashSet;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::image::{Descriptor, Platform, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use crate::layout::{parse_json, Layout};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Indexes nest at most this deep (a layout is data from anywhere).
const MAX_DEPTH: usize = 4;

/// One upload; a plan lists them in the order the registry needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// A config or layer blob; `what` says which, for messages.
    Blob {
        desc: Descriptor,
        what: String,
        bytes: &'a [u8],
    },
    /// A manifest or index, pushed by digest (`by_digest`, an index's
    /// children) or under the reference's tag (the root).
    Manifest {
        desc: Descriptor,
        bytes: &'a [u8],
        by_digest: bool,
    },
}

#[derive(Deserialize)]
struct ManifestParts {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct IndexParts {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// Works out what to upload, checking every blob's digest and size.
pub fn plan<'a>(layout: &'a Layout, platform: Option<&Platform>) -> Result<Vec<Step<'a>>> {
    let (_, index) = layout.index()?;
    let root = select_root(&index.manifests, platform)?;
    let mut steps = Vec::new();
    let mut seen = HashSet::new();
    add_manifest(layout, root, false, 0, &mut steps, &mut seen)?;
    Ok(steps)
}

fn select_root<'d>(
    manifests: &'d [Descriptor],
    platform: Option<&Platform>,
) -> Result<&'d Descriptor> {
    let candidates: Vec<&Descriptor> = match platform {
        None => manifests.iter().collect(),
        Some(p) => manifests
            .iter()
            .filter(|d| d.platform.as_ref() == Some(p))
            .collect(),
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "index.json lists no manifest for platform {}",
            platform.map_or(String::new(), |p| format!("{}/{}", p.os, p.architecture))
        ),
        many => {
            let platforms: Vec<String> = many
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or("?".into(), |p| format!("{}/{}", p.os, p.architecture))
                })
                .collect();
            bail!(
                "index.json lists {} manifests ({}); pass --platform OS/ARCH to choose one",
                many.len(),
                platforms.join(", ")
            )
        }
    }
}

fn add_manifest<'a>(
    layout: &'a Layout,
    desc: &Descriptor,
    by_digest: bool,
    depth: usize,
    steps: &mut Vec<Step<'a>>,
    seen: &mut HashSet<String>,
) -> Result<()> {
    ensure!(
        depth <= MAX_DEPTH,
        "indexes nest deeper than {MAX_DEPTH} levels"
    );
    let bytes = layout
        .blob(desc)
        .with_context(|| format!("manifest {}", desc.digest))?;
    let own_type = |t: &Option<String>| -> Result<()> {
        if let Some(t) = t {
            ensure!(
                t == &desc.media_type,
                "manifest {} says mediaType {t}, its descriptor {}",
                desc.digest,
                desc.media_type
            );
        }
        Ok(())
    };
    match desc.media_type.as_str() {
        MEDIA_TYPE_MANIFEST | DOCKER_MANIFEST => {
            let parts: ManifestParts =
                parse_json(bytes).with_context(|| format!("parsing manifest {}", desc.digest))?;
            own_type(&parts.media_type)?;
            let blobs = std::iter::once(("config".to_string(), &parts.config)).chain(
                parts
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (format!("layer {i}"), l)),
            );
            for (what, blob) in blobs {
                if seen.insert(blob.digest.clone()) {
                    let bytes = layout
                        .blob(blob)
                        .with_context(|| format!("{what} of manifest {}", desc.digest))?;
                    steps.push(Step::Blob {
                        desc: blob.clone(),
                        what,
                        bytes,
                    });
                }
            }
        }
        MEDIA_TYPE_INDEX | DOCKER_MANIFEST_LIST => {
            let parts: IndexParts =
                parse_json(bytes).with_context(|| format!("parsing index {}", desc.digest))?;
            own_type(&parts.media_type)?;
            for child in &parts.manifests {
                add_manifest(layout, child, true, depth + 1, steps, seen)?;
            }
        }
        other => bail!(
            "manifest {} has media type {other:?}, which push does not know",
            desc.digest
        ),
    }
    if seen.insert(desc.digest.clone()) {
        steps.push(Step::Manifest {
            desc: desc.clone(),
            bytes,
            by_digest,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::artifact_image;
    use crate::image::{sha256_digest, Image, ImageName};
    use crate::tar::TarWriter;

    fn layout_of(image: &Image) -> Layout {
        Layout::parse(&image.to_layout_tar().unwrap()).unwrap()
    }

    fn image() -> Image {
        crate::test_util::sample_image()
    }

    #[test]
    fn plans_blobs_then_the_manifest() {
        let image = image();
        let layout = layout_of(&image);
        let steps = plan(&layout, None).unwrap();
        let summary: Vec<(String, String)> = steps
            .iter()
            .map(|s| match s {
                Step::Blob { desc, what, .. } => (what.clone(), desc.digest.clone()),
                Step::Manifest {
                    desc, by_digest, ..
                } => (
                    format!("manifest by_digest={by_digest}"),
                    desc.digest.clone(),
                ),
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("config".to_string(), image.config.digest()),
                ("layer 0".to_string(), image.layer.digest()),
                (
                    "manifest by_digest=false".to_string(),
                    image.manifest.digest()
                ),
            ]
        );
        let Step::Manifest { bytes, .. } = &steps[2] else {
            panic!()
        };
        assert_eq!(
            *bytes,
            image.manifest.bytes.as_slice(),
            "manifest bytes are kept"
        );
    }

    #[test]
    fn plans_artifacts() {
        let name = ImageName::parse("localhost/x:v1").unwrap();
        let image = artifact_image(&name, "m.wasm", b"\0asm\x01\0\0\0".to_vec()).unwrap();
        let layout = layout_of(&image);
        let steps = plan(&layout, None).unwrap();
        assert_eq!(steps.len(), 3);
        let Step::Blob { bytes, .. } = &steps[1] else {
            panic!()
        };
        assert_eq!(*bytes, b"\0asm\x01\0\0\0");
    }

    /// A layout whose index.json points at a nested index of two manifests.
    fn nested_layout(image: &Image) -> Vec<u8> {
        let child = |platform: &str| {
            format!(
                r#"{{"mediaType":"{MEDIA_TYPE_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"wasm","os":"{platform}"}}}}"#,
                image.manifest.digest(),
                image.manifest.bytes.len()
            )
        };
        let nested = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_INDEX}","manifests":[{},{}]}}"#,
            child("wasi"),
            child("wasip1")
        );
        let top = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MEDIA_TYPE_INDEX}","digest":"{}","size":{}}}]}}"#,
            sha256_digest(nested.as_bytes()),
            nested.len()
        );
        let mut tar = TarWriter::new();
        for bytes in [
            &image.config.bytes,
            &image.layer.bytes,
            &image.manifest.bytes,
            &nested.as_bytes().to_vec(),
        ] {
            let hex = sha256_digest(bytes)
                .trim_start_matches("sha256:")
                .to_string();
            tar.append_file(&format!("blobs/sha256/{hex}"), 0o644, bytes)
                .unwrap();
        }
        tar.append_file("index.json", 0o644, top.as_bytes())
            .unwrap();
        tar.append_file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .unwrap();
        tar.finish()
    }

    #[test]
    fn plans_nested_indexes_children_first_and_once() {
        let image = image();
        let layout = Layout::parse(&nested_layout(&image)).unwrap();
        let steps = plan(&layout, None).unwrap();
        let kinds: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Blob { what, .. } => what.clone(),
                Step::Manifest {
                    desc, by_digest, ..
                } => format!("{} {by_digest}", desc.media_type),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "config".to_string(),
                "layer 0".to_string(),
                format!("{MEDIA_TYPE_MANIFEST} true"),
                format!("{MEDIA_TYPE_INDEX} false"),
            ]
        );
    }

    #[test]
    fn refuses_bad_layouts() {
        let image = image();
        // A corrupt layer blob.
        let mut tar = image.to_layout_tar().unwrap();
        let needle = vec![7u8; 512];
        let at = tar
            .windows(512)
            .position(|w| w == needle.as_slice())
            .unwrap();
        tar[at] = 8;
        let layout = Layout::parse(&tar).unwrap();
        let err = format!("{:#}", plan(&layout, None).unwrap_err());
        assert!(
            err.contains("layer 0") && err.contains("has digest"),
            "{err}"
        );

        // Several top-level manifests and no --platform.
        let mut index: serde_json::Value = serde_json::from_slice(&image.index.bytes).unwrap();
        let entry = index["manifests"][0].clone();
        let mut other = entry.clone();
        other["platform"]["os"] = "linux".into();
        index["manifests"] = serde_json::json!([entry, other]);
        let mut t = TarWriter::new();
        for blob in [&image.config, &image.layer, &image.manifest] {
            let hex = blob.digest().trim_start_matches("sha256:").to_string();
            t.append_file(&format!("blobs/sha256/{hex}"), 0o644, &blob.bytes)
                .unwrap();
        }
        t.append_file("index.json", 0o644, index.to_string().as_bytes())
            .unwrap();
        let layout = Layout::parse(&t.finish()).unwrap();
        let err = format!("{:#}", plan(&layout, None).unwrap_err());
        assert!(err.contains("--platform"), "{err}");
        let wasi = Platform::wasi();
        assert_eq!(plan(&layout, Some(&wasi)).unwrap().len(), 3);
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
        };
        assert!(plan(&layout, Some(&arm)).is_err());
    }
}
