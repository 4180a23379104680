//! Wasm OCI artifacts, whose single layer is the raw Wasm binary (no tar):
//!
//! - `artifact`: the CNCF TAG Runtime "Wasm OCI Artifact layout", as
//!   `wkg oci push` writes it: config `application/vnd.wasm.config.v0+json`,
//!   layer `application/wasm`, os `wasip1` (core module) or `wasip2` (component).
//! - `artifact-legacy`: runwasi's older layout: an ordinary OCI image config
//!   with no diff IDs and a layer of media type
//!   `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::image::{
    to_json, Blob, Image, ImageConfig, ImageName, Platform, RootFs, RunConfig, ANNOTATION_TITLE,
    ARCHITECTURE, MEDIA_TYPE_CONFIG, MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER,
    MEDIA_TYPE_WASM_LAYER_LEGACY,
};

/// `created` of every artifact config: a fixed time keeps builds reproducible
/// (the spec's consumers, e.g. the `oci-wasm` crate, require the field).
pub const CREATED: &str = "1970-01-01T00:00:00Z";
/// OS of a core module artifact.
pub const OS_MODULE: &str = "wasip1";
/// OS of a component artifact.
pub const OS_COMPONENT: &str = "wasip2";
/// Label runwasi puts on a legacy image config so that configs of different
/// modules differ even though they list no diff IDs.
pub const LABEL_RUNWASI_LAYERS: &str = "containerd.runwasi.layers";

/// What a Wasm binary is, told by the version and layer fields after `\0asm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmKind {
    Module,
    Component,
}

impl WasmKind {
    pub fn of(bytes: &[u8]) -> Result<Self> {
        ensure!(
            bytes.starts_with(b"\0asm"),
            "not a WebAssembly binary (no \\0asm magic); artifact formats need a binary module, not WebAssembly text"
        );
        match bytes.get(4..8) {
            Some([1, 0, 0, 0]) => Ok(Self::Module),
            Some([0x0d, 0, 1, 0]) => Ok(Self::Component),
            Some(v) => bail!("unknown WebAssembly binary version/layer {v:02x?}"),
            None => bail!("WebAssembly binary is truncated (no version field)"),
        }
    }

    /// The OS the artifact spec gives this kind of binary.
    pub fn os(self) -> &'static str {
        match self {
            Self::Module => OS_MODULE,
            Self::Component => OS_COMPONENT,
        }
    }
}

/// The config blob of an `artifact`; field order as the spec and `oci-wasm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub layer_digests: Vec<String>,
    /// Required for components (`wasip2`); absent for core modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The world the component targets; not recorded in the binary, so null.
    pub target: Option<String>,
}

/// Top-level import and export names of a component, in binary order
/// (interfaces as `ns:pkg/iface@version`, plain names for functions).
/// Nested modules and components are skipped: their imports are internal.
pub fn component_info(bytes: &[u8]) -> Result<ComponentInfo> {
    use wasmparser::{ComponentExternalKind as Kind, Parser, Payload};
    let (mut imports, mut exports, mut depth) = (Vec::new(), Vec::new(), 0usize);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("parsing the component")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.context("reading a component import")?;
                    // World imports are interfaces, functions and types.
                    if matches!(import.ty.kind(), Kind::Instance | Kind::Func | Kind::Type) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.context("reading a component export")?;
                    // World exports are interfaces and functions.
                    if matches!(export.kind, Kind::Instance | Kind::Func) {
                        exports.push(export.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(ComponentInfo {
        exports,
        imports,
        target: None,
    })
}

/// Builds an `artifact` (CNCF TAG Runtime layout) around `module`.
/// `title` names the layer's file (annotation `org.opencontainers.image.title`).
pub fn artifact_image(name: &ImageName, title: &str, module: Vec<u8>) -> Result<Image> {
    let kind = WasmKind::of(&module)?;
    let component = match kind {
        WasmKind::Module => None,
        WasmKind::Component => Some(component_info(&module)?),
    };
    let layer = Blob::new(MEDIA_TYPE_WASM_LAYER, module);
    let config = WasmConfig {
        created: CREATED.into(),
        architecture: ARCHITECTURE.into(),
        os: kind.os().into(),
        layer_digests: vec![layer.digest()],
        component,
    };
    let config = Blob::new(MEDIA_TYPE_WASM_CONFIG, to_json(&config)?);
    let platform = Platform {
        architecture: ARCHITECTURE.into(),
        os: kind.os().into(),
    };
    Image::assemble(
        name,
        &platform,
        config,
        layer,
        Some(title_annotation(title)),
    )
}

/// What an `artifact-legacy` image carries besides the module.
#[derive(Clone, Debug)]
pub struct LegacySpec {
    pub name: ImageName,
    /// File name of the module (layer title); the entrypoint is `/<title>`.
    pub title: String,
    /// `None`: `wasm` and the OS the module's kind implies.
    pub platform: Option<Platform>,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// Builds an `artifact-legacy` image (runwasi's layout) around `module`.
pub fn legacy_image(spec: &LegacySpec, module: Vec<u8>) -> Result<Image> {
    let kind = WasmKind::of(&module)?;
    let platform = spec.platform.clone().unwrap_or_else(|| Platform {
        architecture: ARCHITECTURE.into(),
        os: kind.os().into(),
    });
    let layer = Blob::new(MEDIA_TYPE_WASM_LAYER_LEGACY, module);
    // runwasi's value: sha256 of the concatenated hex digests of the layers.
    let layer_hex = layer.digest().trim_start_matches("sha256:").to_string();
    let unique = hex::encode(Sha256::digest(layer_hex.as_bytes()));
    let config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        config: RunConfig {
            entrypoint: vec![format!("/{}", spec.title)],
            cmd: spec.args.clone(),
            env: spec.env.clone(),
            labels: Some(BTreeMap::from([(LABEL_RUNWASI_LAYERS.to_string(), unique)])),
        },
        // The layer is no filesystem layer, so there is nothing to diff.
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![],
        },
    };
    let config = Blob::new(MEDIA_TYPE_CONFIG, to_json(&config)?);
    Image::assemble(
        &spec.name,
        &platform,
        config,
        layer,
        Some(title_annotation(&spec.title)),
    )
}

fn title_annotation(title: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(ANNOTATION_TITLE.to_string(), title.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{sha256_digest, Manifest, MEDIA_TYPE_MANIFEST};
    use serde_json::{json, Value};

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// A component importing `wasi:cli/stdout@0.2.0` (an instance), importing
    /// a function `log`, exporting `wasi:cli/run@0.2.0`, and holding a nested
    /// component whose own import must not be listed. Hand-assembled.
    fn component() -> Vec<u8> {
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        // Type section (id 7): 0 = instance type {}, 1 = func type () -> ().
        section(&mut c, 7, &[2, 0x42, 0, 0x40, 0, 0x01, 0]);
        // Import section (id 10): instance of type 0, func of type 1.
        let mut imports = vec![2];
        name(&mut imports, "wasi:cli/stdout@0.2.0");
        imports.extend([0x05, 0]);
        name(&mut imports, "log");
        imports.extend([0x01, 1]);
        section(&mut c, 10, &imports);
        // A nested component (id 4) with an import of its own.
        let mut inner = b"\0asm\x0d\0\x01\0".to_vec();
        section(&mut inner, 7, &[1, 0x42, 0]);
        let mut inner_imports = vec![1];
        name(&mut inner_imports, "inner:only/thing");
        inner_imports.extend([0x05, 0]);
        section(&mut inner, 10, &inner_imports);
        section(&mut c, 4, &inner);
        // Export section (id 11): instance 0 (the imported one) as wasi:cli/run.
        let mut exports = vec![1];
        name(&mut exports, "wasi:cli/run@0.2.0");
        exports.extend([0x05, 0, 0]);
        section(&mut c, 11, &exports);
        c
    }

    fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
        assert!(body.len() < 128, "test helper writes one-byte LEB sizes");
        out.push(id);
        out.push(body.len() as u8);
        out.extend_from_slice(body);
    }

    fn name(out: &mut Vec<u8>, name: &str) {
        out.push(0); // plain extern name
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }

    fn parts(image: &Image) -> (Manifest, Value, Value) {
        let manifest: Manifest = serde_json::from_slice(&image.manifest.bytes).unwrap();
        let config: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        let index: Value = serde_json::from_slice(&image.index.bytes).unwrap();
        (manifest, config, index)
    }

    fn name_ref() -> ImageName {
        ImageName::parse("localhost/test/hello:v1").unwrap()
    }

    #[test]
    fn tells_modules_from_components() {
        assert_eq!(WasmKind::of(MODULE).unwrap(), WasmKind::Module);
        assert_eq!(WasmKind::of(&component()).unwrap(), WasmKind::Component);
        assert_eq!(WasmKind::Module.os(), "wasip1");
        assert_eq!(WasmKind::Component.os(), "wasip2");
        for bad in [
            &b"(module)"[..],
            b"\0asm",
            b"\0asm\x02\0\0\0",
            b"\x7fELF\x02\x01\x01\0",
        ] {
            assert!(WasmKind::of(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lists_top_level_component_imports_and_exports() {
        let info = component_info(&component()).unwrap();
        assert_eq!(info.imports, ["wasi:cli/stdout@0.2.0", "log"]);
        assert_eq!(info.exports, ["wasi:cli/run@0.2.0"]);
        assert_eq!(info.target, None);
        let mut broken = component();
        broken.truncate(broken.len() - 3);
        assert!(component_info(&broken).is_err());
    }

    #[test]
    fn module_artifact_follows_the_spec() {
        let image = artifact_image(&name_ref(), "hello.wasm", MODULE.to_vec()).unwrap();
        let (manifest, config, index) = parts(&image);
        assert_eq!(manifest.media_type, MEDIA_TYPE_MANIFEST);
        assert_eq!(
            manifest.config.media_type,
            "application/vnd.wasm.config.v0+json"
        );
        assert_eq!(manifest.config.digest, image.config.digest());
        let [layer] = manifest.layers.as_slice() else {
            panic!("one layer")
        };
        assert_eq!(layer.media_type, "application/wasm");
        assert_eq!(layer.digest, sha256_digest(MODULE));
        assert_eq!(layer.size, MODULE.len() as u64);
        assert_eq!(image.layer.bytes, MODULE, "the layer is the raw module");
        assert_eq!(
            layer.annotations.as_ref().unwrap()["org.opencontainers.image.title"],
            "hello.wasm"
        );
        assert_eq!(
            config,
            json!({
                "created": "1970-01-01T00:00:00Z",
                "architecture": "wasm",
                "os": "wasip1",
                "layerDigests": [sha256_digest(MODULE)],
            })
        );
        let desc = &index["manifests"][0];
        assert_eq!(
            desc["platform"],
            json!({"architecture": "wasm", "os": "wasip1"})
        );
        assert_eq!(
            desc["annotations"]["io.containerd.image.name"],
            "localhost/test/hello:v1"
        );
        assert_eq!(desc["digest"], image.manifest.digest());
    }

    #[test]
    fn component_artifact_lists_its_world() {
        let bytes = component();
        let image = artifact_image(&name_ref(), "app.wasm", bytes.clone()).unwrap();
        let (_, config, index) = parts(&image);
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"], json!([sha256_digest(&bytes)]));
        assert_eq!(
            config["component"],
            json!({
                "exports": ["wasi:cli/run@0.2.0"],
                "imports": ["wasi:cli/stdout@0.2.0", "log"],
                "target": null,
            })
        );
        assert_eq!(index["manifests"][0]["platform"]["os"], "wasip2");
        // Field order as in the spec (the config's digest depends on it).
        let text = String::from_utf8(image.config.bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"created":"1970-01-01T00:00:00Z","architecture":"wasm","os":"wasip2","layerDigests":["#), "{text}");
    }

    #[test]
    fn artifacts_are_reproducible() {
        let a = artifact_image(&name_ref(), "a.wasm", component()).unwrap();
        let b = artifact_image(&name_ref(), "a.wasm", component()).unwrap();
        assert_eq!(a.to_layout_tar().unwrap(), b.to_layout_tar().unwrap());
        let other = artifact_image(&name_ref(), "a.wasm", MODULE.to_vec()).unwrap();
        assert_ne!(a.config.digest(), other.config.digest());
        assert_ne!(a.manifest.digest(), other.manifest.digest());
    }

    #[test]
    fn legacy_image_is_runwasi_layout() {
        let spec = LegacySpec {
            name: name_ref(),
            title: "hello.wasm".into(),
            platform: None,
            args: vec!["--x".into()],
            env: vec!["A=1".into()],
        };
        let image = legacy_image(&spec, MODULE.to_vec()).unwrap();
        let (manifest, config, index) = parts(&image);
        assert_eq!(
            manifest.config.media_type,
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(
            manifest.layers[0].media_type,
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
        );
        assert_eq!(image.layer.bytes, MODULE);
        let hex = sha256_digest(MODULE)
            .trim_start_matches("sha256:")
            .to_string();
        assert_eq!(
            config,
            json!({
                "architecture": "wasm",
                "os": "wasip1",
                "config": {
                    "Entrypoint": ["/hello.wasm"],
                    "Cmd": ["--x"],
                    "Env": ["A=1"],
                    "Labels": {"containerd.runwasi.layers": hex::encode(Sha256::digest(hex.as_bytes()))},
                },
                "rootfs": {"type": "layers", "diff_ids": []},
            })
        );
        assert_eq!(index["manifests"][0]["platform"]["os"], "wasip1");

        let component = legacy_image(&spec, component()).unwrap();
        assert_eq!(parts(&component).1["os"], "wasip2");
        let wasi = LegacySpec {
            platform: Some(Platform::wasi()),
            ..spec
        };
        let image = legacy_image(&wasi, MODULE.to_vec()).unwrap();
        assert_eq!(parts(&image).2["manifests"][0]["platform"]["os"], "wasi");
    }
}
