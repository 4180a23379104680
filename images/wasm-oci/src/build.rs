//! The `build` command: module + options in, image-layout tar out.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::artifact::{artifact_image, legacy_image, LegacySpec};
use crate::image::{check_module, Image, ImageName, ImageSpec, Platform, OS};
use crate::layer::{LayerTree, EXEC_MODE};

/// What `build` writes (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// An OCI image whose single tar layer holds the module (and `--add` files).
    #[default]
    Image,
    /// A Wasm OCI artifact (CNCF TAG Runtime layout, as `wkg oci push` writes).
    Artifact,
    /// runwasi's older layout: OCI image config, raw Wasm layer.
    ArtifactLegacy,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "image" => Some(Self::Image),
            "artifact" => Some(Self::Artifact),
            "artifact-legacy" => Some(Self::ArtifactLegacy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Artifact => "artifact",
            Self::ArtifactLegacy => "artifact-legacy",
        }
    }
}

/// Validated options of `wasm-oci build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub module: PathBuf,
    pub name: ImageName,
    pub output: PathBuf,
    /// Normalized path of the module inside the image; `None` means the
    /// module's own file name.
    pub file_name: Option<String>,
    pub format: Format,
    /// `None`: the format's default — `wasi/wasm` for images, `wasip1/wasm`
    /// or `wasip2/wasm` (by module kind) for artifacts. Test images for runc
    /// are `linux/amd64`.
    pub platform: Option<Platform>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub adds: Vec<AddSpec>,
}

/// One `--add SRC:DEST`; `dest` is normalized (no leading `/`, `""` = root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    pub src: PathBuf,
    pub dest: String,
}

/// Builds the image described by `opts` in memory (nothing is written).
pub fn build_image(opts: &BuildOptions) -> Result<Image> {
    let file_name = module_file_name(opts)?;
    let read = || {
        fs::read(&opts.module)
            .with_context(|| format!("cannot read module {}", opts.module.display()))
    };
    let module_context = || format!("module {}", opts.module.display());
    match opts.format {
        Format::Image => {}
        Format::Artifact => {
            return artifact_image(&opts.name, &file_name, read()?).with_context(module_context)
        }
        Format::ArtifactLegacy => {
            let spec = LegacySpec {
                name: opts.name.clone(),
                title: file_name,
                platform: opts.platform.clone(),
                args: opts.args.clone(),
                env: opts.env.clone(),
            };
            return legacy_image(&spec, read()?).with_context(module_context);
        }
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::wasi);
    let module = read_module(&opts.module, &platform)?;
    let mut tree = LayerTree::new();
    tree.add_file(&file_name, EXEC_MODE, module)?;
    for add in &opts.adds {
        tree.add_host_path(&add.src, &add.dest)
            .with_context(|| format!("--add {}:/{}", add.src.display(), add.dest))?;
    }
    let spec = ImageSpec {
        name: opts.name.clone(),
        entrypoint: format!("/{file_name}"),
        platform,
        args: opts.args.clone(),
        env: opts.env.clone(),
    };
    Image::new(&spec, tree.to_tar()?)
}

/// Builds the image and writes its layout tar to `opts.output`.
pub fn build_to_file(opts: &BuildOptions) -> Result<Image> {
    let image = build_image(opts)?;
    let tar = image.to_layout_tar()?;
    write_atomically(&opts.output, &tar)?;
    Ok(image)
}

fn read_module(path: &Path, platform: &Platform) -> Result<Vec<u8>> {
    let bytes = fs::read(path).with_context(|| format!("cannot read module {}", path.display()))?;
    if platform.os == OS {
        check_module(&bytes).with_context(|| format!("module {}", path.display()))?;
    }
    Ok(bytes)
}

fn module_file_name(opts: &BuildOptions) -> Result<String> {
    if let Some(name) = &opts.file_name {
        return Ok(name.clone());
    }
    let name = opts
        .module
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!(
                "cannot derive a file name from {}; pass --file-name",
                opts.module.display()
            )
        })?;
    Ok(name.to_string())
}

/// Writes `bytes` to a temporary sibling of `path`, then renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("output {} is not a file path", path.display()))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("cannot move {} to {}", tmp.display(), path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::inspect;
    use crate::test_util::TempDir;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn options(tmp: &TempDir) -> BuildOptions {
        tmp.write("app.wasm", MODULE);
        tmp.write("static/index.html", b"<h1>hello</h1>");
        tmp.write("static/js/app.js", b"console.log(1)");
        BuildOptions {
            module: tmp.path().join("app.wasm"),
            name: ImageName::parse("localhost/hello:latest").unwrap(),
            output: tmp.path().join("out.tar"),
            file_name: None,
            format: Format::Image,
            platform: None,
            args: vec!["--port".into(), "8080".into()],
            env: vec!["RUST_LOG=info".into()],
            adds: vec![AddSpec {
                src: tmp.path().join("static"),
                dest: "www".into(),
            }],
        }
    }

    #[test]
    fn builds_are_reproducible() {
        let tmp = TempDir::new("repro");
        let opts = options(&tmp);
        build_to_file(&opts).unwrap();
        let first = fs::read(&opts.output).unwrap();
        let again = BuildOptions {
            output: tmp.path().join("again.tar"),
            ..opts.clone()
        };
        build_to_file(&again).unwrap();
        assert_eq!(first, fs::read(&again.output).unwrap());

        // A different input changes the digests.
        let other = BuildOptions {
            args: vec![],
            output: tmp.path().join("other.tar"),
            ..opts
        };
        let a = build_image(&again).unwrap();
        let b = build_to_file(&other).unwrap();
        assert_eq!(a.layer.digest(), b.layer.digest());
        assert_ne!(a.manifest.digest(), b.manifest.digest());
    }

    #[test]
    fn layout_is_consistent() {
        let tmp = TempDir::new("layout");
        let opts = options(&tmp);
        let image = build_to_file(&opts).unwrap();
        let report = inspect(&fs::read(&opts.output).unwrap()).unwrap();

        let index = &report["index"]["json"];
        assert_eq!(index["schemaVersion"], 2);
        let desc = &index["manifests"][0];
        assert_eq!(desc["digest"], image.manifest.digest());
        assert_eq!(desc["size"], image.manifest.bytes.len());
        assert_eq!(
            desc["platform"],
            serde_json::json!({"architecture": "wasm", "os": "wasi"})
        );
        assert_eq!(
            desc["annotations"]["io.containerd.image.name"],
            "localhost/hello:latest"
        );
        assert_eq!(
            desc["annotations"]["org.opencontainers.image.ref.name"],
            "latest"
        );

        let m = &report["manifests"][0];
        assert_eq!(m["manifest"]["config"]["digest"], image.config.digest());
        assert_eq!(m["manifest"]["layers"][0]["digest"], image.layer.digest());
        assert_eq!(m["manifest"]["layers"][0]["size"], image.layer.bytes.len());
        let config = &m["config"]["json"];
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/app.wasm"])
        );
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["--port", "8080"])
        );
        assert_eq!(
            config["config"]["Env"],
            serde_json::json!(["RUST_LOG=info"])
        );
        assert_eq!(config["rootfs"]["diff_ids"][0], image.layer.digest());

        let entries: Vec<(String, String, String)> = m["layers"][0]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().into(),
                    e["type"].as_str().unwrap().into(),
                    e["mode"].as_str().unwrap().into(),
                )
            })
            .collect();
        let expected = [
            ("/app.wasm", "file", "0755"),
            ("/www", "dir", "0755"),
            ("/www/index.html", "file", "0644"),
            ("/www/js", "dir", "0755"),
            ("/www/js/app.js", "file", "0644"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(entries, expected);
    }

    #[test]
    fn file_name_sets_entrypoint() {
        let tmp = TempDir::new("filename");
        let opts = BuildOptions {
            file_name: Some("bin/svc.wasm".into()),
            adds: vec![],
            ..options(&tmp)
        };
        let image = build_image(&opts).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/svc.wasm");
    }

    #[test]
    fn rejects_bad_inputs() {
        let tmp = TempDir::new("bad");
        let opts = options(&tmp);
        let err = |o: &BuildOptions| format!("{:#}", build_to_file(o).unwrap_err());

        let missing = BuildOptions {
            module: tmp.path().join("missing.wasm"),
            ..opts.clone()
        };
        assert!(
            err(&missing).contains("cannot read module"),
            "{}",
            err(&missing)
        );

        tmp.write("script.sh", b"#!/bin/sh\necho hi\n");
        let not_wasm = BuildOptions {
            module: tmp.path().join("script.sh"),
            ..opts.clone()
        };
        assert!(
            err(&not_wasm).contains("not a WebAssembly module"),
            "{}",
            err(&not_wasm)
        );

        let clash = BuildOptions {
            adds: vec![AddSpec {
                src: opts.module.clone(),
                dest: "app.wasm".into(),
            }],
            ..opts.clone()
        };
        assert!(err(&clash).contains("more than once"), "{}", err(&clash));

        let bad_add = BuildOptions {
            adds: vec![AddSpec {
                src: tmp.path().join("nope"),
                dest: "x".into(),
            }],
            ..opts.clone()
        };
        assert!(err(&bad_add).contains("nope"), "{}", err(&bad_add));

        let bad_out = BuildOptions {
            output: tmp.path().join("no/such/dir/out.tar"),
            ..opts
        };
        assert!(err(&bad_out).contains("cannot write"), "{}", err(&bad_out));
        assert!(!tmp.path().join("out.tar").exists());
    }

    #[test]
    fn accepts_wat_text() {
        let tmp = TempDir::new("wat");
        tmp.write("hello.wat", b"\n  (module)\n");
        let opts = BuildOptions {
            module: tmp.path().join("hello.wat"),
            adds: vec![],
            ..options(&tmp)
        };
        let image = build_image(&opts).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], "/hello.wat");
    }

    #[test]
    fn artifact_formats_build_and_inspect() {
        let tmp = TempDir::new("artifact");
        let base = BuildOptions {
            adds: vec![],
            args: vec![],
            env: vec![],
            ..options(&tmp)
        };
        for (format, config_type, layer_type) in [
            (
                Format::Artifact,
                "application/vnd.wasm.config.v0+json",
                "application/wasm",
            ),
            (
                Format::ArtifactLegacy,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            ),
        ] {
            let opts = BuildOptions {
                format,
                ..base.clone()
            };
            let image = build_to_file(&opts).unwrap();
            let tar = fs::read(&opts.output).unwrap();
            let report = inspect(&tar).unwrap();
            let m = &report["manifests"][0];
            assert_eq!(
                m["manifest"]["config"]["mediaType"], config_type,
                "{format:?}"
            );
            assert_eq!(m["layers"][0]["mediaType"], layer_type, "{format:?}");
            assert_eq!(m["layers"][0]["wasm"], "module", "{format:?}");
            assert_eq!(m["descriptor"]["platform"]["os"], "wasip1", "{format:?}");
            assert_eq!(
                image.layer.bytes, MODULE,
                "{format:?}: the layer is the raw module"
            );
            // Reproducible: a second build writes the same bytes.
            build_to_file(&opts).unwrap();
            assert_eq!(fs::read(&opts.output).unwrap(), tar, "{format:?}");
        }

        // WebAssembly text is no binary to put in a raw layer.
        tmp.write("hello.wat", b"(module)");
        let wat = BuildOptions {
            module: tmp.path().join("hello.wat"),
            format: Format::Artifact,
            ..base
        };
        let err = format!("{:#}", build_image(&wat).unwrap_err());
        assert!(
            err.contains("not a WebAssembly binary") && err.contains("hello.wat"),
            "{err}"
        );
    }
}
