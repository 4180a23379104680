//! Command-line parsing (hand-rolled, no dependencies) and usage text.

use std::fmt;
use std::path::PathBuf;

use crate::build::{AddSpec, BuildOptions, Format};
use crate::image::{ImageName, Platform};
use crate::layer::normalize_image_path;
use crate::push::PushOptions;

pub const USAGE: &str = "\
wasm-oci: write reproducible OCI image-layout tars for WebAssembly modules and
components (images, or Wasm OCI artifacts), inspect them, push them to a registry

Usage:
  wasm-oci build --module <FILE> --name <REF> -o <OUT.tar> [options]
  wasm-oci inspect <IMAGE.tar>
  wasm-oci push <IMAGE.tar> <REF> [--plain-http] [--username U --password P]
  wasm-oci help | --help | -h

build options:
  -m, --module <FILE>     Wasm module (binary, or WebAssembly text) to run [required]
  -n, --name <REF>        image name, e.g. localhost/hello:latest; the tag defaults
                          to 'latest' [required]
  -o, --output <FILE>     where to write the OCI image-layout tar [required]
      --file-name <PATH>  path of the module inside the image; the entrypoint is
                          /<PATH> [default: file name of --module]
      --arg <ARG>         append ARG to the image's Cmd (repeatable; ARG may
                          start with '-')
      --env <KEY=VALUE>   add an environment variable to the config (repeatable)
      --add <SRC:DEST>    copy host file or directory SRC (recursively) to DEST
                          in the image (repeatable); DEST '/' copies a
                          directory's contents to the root
      --platform <OS/ARCH> platform of the image [default: wasi/wasm; for
                          artifact-legacy wasip1/wasm or wasip2/wasm]
      --format <FORMAT>   image (default): an OCI image whose tar layer holds
                          the module; artifact: a Wasm OCI artifact (CNCF TAG
                          Runtime layout, as 'wkg oci push' writes: config
                          application/vnd.wasm.config.v0+json, the raw binary as
                          layer application/wasm, os wasip1 for a core module,
                          wasip2 for a component; no --add/--arg/--env/
                          --platform); artifact-legacy: runwasi's older layout
                          (OCI image config, raw binary as layer
                          application/vnd.bytecodealliance.wasm.component.layer.v0+wasm;
                          no --add). Artifact formats need a binary module.

The output is reproducible (same inputs give the same bytes and digests) and
named by the io.containerd.image.name annotation, so that:
  ctr images import --platform wasi/wasm OUT.tar

inspect verifies every digest and size reachable from index.json and prints
index, manifest, config and layer listing as JSON.

push uploads the image (or index) that the layout tar's index.json names —
blobs, then manifests as stored, so digests are kept — to REF, e.g.
127.0.0.1:5000/test/hello:latest.
  --plain-http            talk HTTP, not HTTPS, to the registry
  --username, --password  basic auth [env: WASM_OCI_USERNAME, WASM_OCI_PASSWORD;
                          default: anonymous]
  --platform <OS/ARCH>    which manifest, when index.json lists several

Exit status: 0 success, 1 runtime error, 2 usage error.
";

/// A command-line mistake; reported with exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage<T>(message: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(message.into()))
}

#[derive(Debug, Clone)]
pub enum Command {
    Build(BuildOptions),
    Inspect(PathBuf),
    Push(PushOptions),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse_args(args: Vec<String>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        None => usage("missing command"),
        Some("help" | "--help" | "-h") => Ok(Command::Help),
        Some("build") => parse_build(args),
        Some("inspect") => parse_inspect(args),
        Some("push") => crate::push::parse_args(args, |k| std::env::var(k).ok()),
        Some(other) => usage(format!(
            "unknown command {other:?} (expected build, inspect or push)"
        )),
    }
}

fn parse_inspect(args: impl Iterator<Item = String>) -> Result<Command, UsageError> {
    let args: Vec<String> = args.collect();
    match args.as_slice() {
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        [path] if !path.starts_with('-') => Ok(Command::Inspect(PathBuf::from(path))),
        [] => usage("inspect: missing <IMAGE.tar>"),
        _ => usage("inspect takes exactly one argument, <IMAGE.tar>"),
    }
}

/// Every option `build` accepts; each takes a value.
const BUILD_OPTIONS: &[&str] = &[
    "-m",
    "--module",
    "-n",
    "--name",
    "-o",
    "--output",
    "--file-name",
    "--arg",
    "--env",
    "--add",
    "--platform",
    "--format",
];

/// Raw option values as given, before validation.
#[derive(Default)]
struct RawBuild {
    module: Option<String>,
    name: Option<String>,
    output: Option<String>,
    file_name: Option<String>,
    platform: Option<String>,
    format: Option<String>,
    args: Vec<String>,
    env: Vec<String>,
    adds: Vec<String>,
}

fn parse_build(mut args: impl Iterator<Item = String>) -> Result<Command, UsageError> {
    let mut raw = RawBuild::default();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        if !flag.starts_with('-') {
            return usage(format!("build: unexpected argument {flag:?}"));
        }
        if !BUILD_OPTIONS.contains(&flag.as_str()) {
            return usage(format!("build: unknown option {flag:?}"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return usage(format!("build: {flag} needs a value")),
        };
        set_option(&mut raw, &flag, value)?;
    }
    validate_build(raw).map(Command::Build)
}

fn set_option(raw: &mut RawBuild, flag: &str, value: String) -> Result<(), UsageError> {
    if let Some(list) = repeatable_option(raw, flag) {
        list.push(value);
        return Ok(());
    }
    let Some(slot) = single_option(raw, flag) else {
        return usage(format!("build: unknown option {flag:?}"));
    };
    if slot.replace(value).is_some() {
        return usage(format!("build: {flag} given more than once"));
    }
    Ok(())
}

fn single_option<'a>(raw: &'a mut RawBuild, flag: &str) -> Option<&'a mut Option<String>> {
    match flag {
        "-m" | "--module" => Some(&mut raw.module),
        "-n" | "--name" => Some(&mut raw.name),
        "-o" | "--output" => Some(&mut raw.output),
        "--file-name" => Some(&mut raw.file_name),
        "--platform" => Some(&mut raw.platform),
        "--format" => Some(&mut raw.format),
        _ => None,
    }
}

fn repeatable_option<'a>(raw: &'a mut RawBuild, flag: &str) -> Option<&'a mut Vec<String>> {
    match flag {
        "--arg" => Some(&mut raw.args),
        "--env" => Some(&mut raw.env),
        "--add" => Some(&mut raw.adds),
        _ => None,
    }
}

fn validate_build(raw: RawBuild) -> Result<BuildOptions, UsageError> {
    let Some(module) = raw.module else {
        return usage("build: --module <FILE> is required");
    };
    let Some(name) = raw.name else {
        return usage("build: --name <REF> is required");
    };
    let Some(output) = raw.output else {
        return usage("build: -o <OUT.tar> is required");
    };
    let name = ImageName::parse(&name).or_else(|e| usage(format!("build: --name: {e}")))?;
    let file_name = raw.file_name.map(|f| validate_file_name(&f)).transpose()?;
    let platform = raw
        .platform
        .as_deref()
        .map(|p| parse_platform("build", p))
        .transpose()?;
    let format = match raw.format.as_deref() {
        None => Format::Image,
        Some(f) => Format::parse(f).ok_or_else(|| {
            UsageError(format!(
                "build: --format {f:?} is not image, artifact or artifact-legacy"
            ))
        })?,
    };
    // An artifact's one layer is the raw binary and its config has no
    // process settings: say so rather than drop options silently.
    let unsupported: &[(&str, bool)] = match format {
        Format::Image => &[],
        Format::Artifact => &[
            ("--add", !raw.adds.is_empty()),
            ("--arg", !raw.args.is_empty()),
            ("--env", !raw.env.is_empty()),
            ("--platform", platform.is_some()),
        ],
        Format::ArtifactLegacy => &[("--add", !raw.adds.is_empty())],
    };
    if let Some((flag, _)) = unsupported.iter().find(|(_, given)| *given) {
        return usage(format!(
            "build: {flag} cannot be used with --format {}",
            format.name()
        ));
    }
    for env in &raw.env {
        validate_env(env)?;
    }
    let adds = raw
        .adds
        .iter()
        .map(|a| parse_add(a))
        .collect::<Result<_, _>>()?;
    Ok(BuildOptions {
        module: PathBuf::from(module),
        name,
        output: PathBuf::from(output),
        file_name,
        format,
        platform,
        args: raw.args,
        env: raw.env,
        adds,
    })
}

pub(crate) fn parse_platform(command: &str, p: &str) -> Result<Platform, UsageError> {
    match p.split_once('/') {
        Some((os, arch)) if !os.is_empty() && !arch.is_empty() && !arch.contains('/') => {
            Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
            })
        }
        _ => usage(format!("{command}: --platform {p:?} is not OS/ARCH")),
    }
}

/// Validates `--file-name` and returns it normalized (no leading `/`).
pub fn validate_file_name(file_name: &str) -> Result<String, UsageError> {
    match normalize_image_path(file_name) {
        Ok(path) if !path.is_empty() => Ok(path),
        Ok(_) => usage(format!("build: --file-name {file_name:?} names no file")),
        Err(e) => usage(format!("build: --file-name: {e}")),
    }
}

fn validate_env(env: &str) -> Result<(), UsageError> {
    match env.split_once('=') {
        None => usage(format!(
            "build: --env {env:?} must be KEY=VALUE (no '=' found)"
        )),
        Some(("", _)) => usage(format!("build: --env {env:?} has an empty KEY")),
        Some((key, _)) if key.chars().any(|c| c.is_whitespace() || c == '\0') => usage(format!(
            "build: --env {env:?}: KEY must not contain whitespace"
        )),
        Some(_) => Ok(()),
    }
}

/// Parses `SRC:DEST`, splitting at the last `:`.
fn parse_add(add: &str) -> Result<AddSpec, UsageError> {
    let Some((src, dest)) = add.rsplit_once(':') else {
        return usage(format!("build: --add {add:?} must be SRC:DEST"));
    };
    if src.is_empty() || dest.is_empty() {
        return usage(format!(
            "build: --add {add:?} must be SRC:DEST with both parts non-empty"
        ));
    }
    let dest =
        normalize_image_path(dest).or_else(|e| usage(format!("build: --add {add:?}: {e}")))?;
    Ok(AddSpec {
        src: PathBuf::from(src),
        dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(|s| s.to_string()).collect())
    }

    fn build(args: &[&str]) -> BuildOptions {
        match parse(args) {
            Ok(Command::Build(opts)) => opts,
            other => panic!("expected build, got {other:?}"),
        }
    }

    #[test]
    fn parses_full_build() {
        let opts = build(&[
            "build",
            "--module",
            "x/app.wasm",
            "--name=localhost/hello",
            "-o",
            "out.tar",
            "--file-name",
            "/bin/app.wasm",
            "--arg",
            "--port",
            "--arg=8080",
            "--env",
            "A=1=2",
            "--add",
            "static:/www",
        ]);
        assert_eq!(opts.module, PathBuf::from("x/app.wasm"));
        assert_eq!(opts.name.full, "localhost/hello:latest");
        assert_eq!(opts.output, PathBuf::from("out.tar"));
        assert_eq!(opts.file_name.as_deref(), Some("bin/app.wasm"));
        assert_eq!(opts.args, ["--port", "8080"]);
        assert_eq!(opts.env, ["A=1=2"]);
        assert_eq!(
            opts.adds,
            [AddSpec {
                src: "static".into(),
                dest: "www".into()
            }]
        );
    }

    #[test]
    fn help_and_inspect() {
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(matches!(parse(&["build", "-h"]), Ok(Command::Help)));
        assert!(
            matches!(parse(&["inspect", "a.tar"]), Ok(Command::Inspect(p)) if p == Path::new("a.tar"))
        );
    }

    #[test]
    fn rejects_bad_usage() {
        let base = ["build", "-m", "a.wasm", "-n", "hello", "-o", "o.tar"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let cases: &[(&[&str], &str)] = &[
            (&["--env", "NOVALUE"], "KEY=VALUE"),
            (&["--env", "=x"], "empty KEY"),
            (&["--add", "static"], "SRC:DEST"),
            (&["--add", "s:/../x"], ".."),
            (&["--file-name", "/"], "names no file"),
            (&["--bogus", "1"], "unknown option"),
            (&["--bogus"], "unknown option"),
            (&["stray"], "unexpected argument"),
            (&["-m", "b.wasm"], "more than once"),
            (&["--arg"], "needs a value"),
        ];
        for (extra, needle) in cases {
            let err = with(extra).expect_err(&format!("{extra:?} accepted"));
            assert!(err.0.contains(needle), "{extra:?}: {err}");
        }
        assert!(parse(&["build", "-n", "x", "-o", "o"])
            .unwrap_err()
            .0
            .contains("--module"));
        assert!(parse(&["build", "-m", "a", "-n", "Bad Name", "-o", "o"])
            .unwrap_err()
            .0
            .contains("--name"));
        assert!(parse(&[]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["inspect"]).is_err());
        assert!(parse(&["inspect", "a", "b"]).is_err());
    }

    #[test]
    fn parses_formats() {
        let base = ["build", "-m", "a.wasm", "-n", "hello", "-o", "o.tar"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let format = |extra: &[&str]| match with(extra) {
            Ok(Command::Build(o)) => (o.format, o.platform),
            other => panic!("{extra:?}: {other:?}"),
        };
        assert_eq!(format(&[]), (Format::Image, None));
        assert_eq!(format(&["--format", "artifact"]).0, Format::Artifact);
        let wasi = Some(Platform::wasi());
        assert_eq!(
            format(&[
                "--format=artifact-legacy",
                "--platform",
                "wasi/wasm",
                "--arg",
                "x"
            ]),
            (Format::ArtifactLegacy, wasi)
        );
        let cases: &[(&[&str], &str)] = &[
            (&["--format", "tarball"], "not image, artifact"),
            (&["--format", "artifact", "--add", "s:/x"], "--add cannot"),
            (&["--format", "artifact", "--arg", "x"], "--arg cannot"),
            (&["--format", "artifact", "--env", "A=1"], "--env cannot"),
            (
                &["--format", "artifact", "--platform", "wasi/wasm"],
                "--platform cannot",
            ),
            (
                &["--format", "artifact-legacy", "--add", "s:/x"],
                "--add cannot",
            ),
            (&["--platform", "wasi"], "OS/ARCH"),
        ];
        for (extra, needle) in cases {
            let err = with(extra).expect_err(&format!("{extra:?} accepted"));
            assert!(err.0.contains(needle), "{extra:?}: {err}");
        }
    }
}
