//! The file a container starts: found inside its rootfs, and told apart by
//! its bytes — a core module, a component (a command or a wasi:http proxy),
//! WebAssembly text, or a native executable.
//!
//! A component that exports `wasi:http/incoming-handler` is served as a
//! wasi:http proxy, whether or not it also exports `wasi:cli/run` (the
//! wasm32-wasip2 target adds `run` to every binary). `WASI_ENTRY=cli` in the
//! container's environment runs `wasi:cli/run` instead; `WASI_ENTRY=http`
//! insists on serving.

use std::path::{Component as PathComponent, Path, PathBuf};


use crate::{InputError, Result};

/// The environment variable that picks a component's export.
pub const ENTRY_ENV: &str = "WASI_ENTRY";

/// What an entrypoint holds, judged by content rather than by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WebAssembly core module (WASI preview 1).
    Module,
    /// A component run through `wasi:cli/run`.
    Command,
    /// A component served through `wasi:http/incoming-handler`.
    Proxy,
    /// An ELF executable or a `#!` script: a Linux container, run by runc.
    Native,
}

/// The binary format, before a component's role is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Module,
    Component,
    Text,
    Native,
}

impl Format {
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        const WASM_MAGIC: &[u8] = b"\0asm";
        if bytes.starts_with(WASM_MAGIC) {
            // Bytes 4..8: version 1 for core modules; components use a
            // different version and layer 1.
            return match bytes.get(4..8) {
                Some([1, 0, 0, 0]) => Some(Self::Module),
                Some([_, _, 1, 0]) => Some(Self::Component),
                _ => None,
            };
        }
        if bytes.starts_with(b"\x7fELF") || bytes.starts_with(b"#!") {
            return Some(Self::Native);
        }
        let text = std::str::from_utf8(bytes.get(..bytes.len().min(4096))?).ok()?;
        let first = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        (first.starts_with('(') || first.starts_with(";;")).then_some(Self::Text)
    }
}

/// The file a container starts, read and classified.
pub struct Entrypoint {
    /// How the spec (or the image) named it, for messages.
    pub name: String,
    /// Binary Wasm (text is converted on read), or the native file.
    pub bytes: Vec<u8>,
    pub kind: Kind,
}

impl std::fmt::Debug for Entrypoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entrypoint").field("name", &self.name).field("bytes", &self.bytes.len()).field("kind", &self.kind).finish()
    }
}

impl Entrypoint {
    /// Classifies `bytes`; `env` is the container's environment (for `WASI_ENTRY`).
    pub fn classify(name: &str, bytes: Vec<u8>, env: &[(String, String)]) -> Result<Self> {
        let invalid = |why: String| InputError::invalid(format!("entrypoint {name}: {why}"));
        let (bytes, format) = binary(bytes).map_err(invalid)?;
        let kind = match format {
            Format::Module => Kind::Module,
            Format::Native => Kind::Native,
            Format::Component => role(&exports(&bytes), env).map_err(invalid)?,
            // The text parser's output starts with the binary magic.
            Format::Text => return Err(invalid("WebAssembly text did not produce a binary module".into())),
        };
        Ok(Self { name: name.to_string(), bytes, kind })
    }

    /// Classifies a file an exec names in a Wasm container: it must be a
    /// command — a core module, or a component exporting `wasi:cli/run`
    /// (whatever else it exports). A wasi:http proxy, which has no command
    /// to run, and a native file are refused with the reason.
    pub fn classify_command(name: &str, bytes: Vec<u8>) -> Result<Self> {
        let invalid = |why: String| InputError::invalid(format!("exec {name}: {why}"));
        let (bytes, format) = binary(bytes).map_err(invalid)?;
        let kind = match format {
            Format::Module => Kind::Module,
            Format::Component => match exports(&bytes) {
                Exports { cli_run: true, .. } => Kind::Command,
                Exports { http_handler: true, .. } => {
                    return Err(invalid(
                        "is a wasi:http proxy component (it exports wasi:http/incoming-handler but not wasi:cli/run): there is no command to run".into(),
                    ))
                }
                _ => return Err(invalid("is a component that exports no wasi:cli/run@0.2: there is no command to run".into())),
            },
            Format::Native => {
                return Err(invalid(
                    "is a native executable; a Wasm container runs only WebAssembly commands (a core module, or a component exporting wasi:cli/run)".into(),
                ))
            }
            Format::Text => return Err(invalid("WebAssembly text did not produce a binary module".into())),
        };
        Ok(Self { name: name.to_string(), bytes, kind })
    }
}

/// The bytes in binary form (WebAssembly text is converted) and their format.
fn binary(bytes: Vec<u8>) -> std::result::Result<(Vec<u8>, Format), String> {
    match Format::detect(&bytes) {
        None if bytes.is_empty() => Err("is empty (0 bytes): not a WebAssembly module or component".into()),
        None if bytes.starts_with(b"\0asm") => Err(match bytes.get(4..8) {
            Some(version) => format!(
                "has the WebAssembly magic but version {version:02x?}, neither a core module's [01, 00, 00, 00] nor a component's [0d, 00, 01, 00]"
            ),
            None => "is cut off inside the WebAssembly header (magic and version, 8 bytes)".into(),
        }),
        None => Err("is not a WebAssembly module or component".into()),
        Some(Format::Text) => {
            let binary = wat::parse_bytes(&bytes).map_err(|e| format!("parse WebAssembly text: {e}"))?.into_owned();
            let format = Format::detect(&binary).ok_or_else(|| "WebAssembly text produced no module".to_string())?;
            Ok((binary, format))
        }
        Some(f) => Ok((bytes, f)),
    }
}

/// The WASI exports of a component that decide how it runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exports {
    pub http_handler: bool,
    pub cli_run: bool,
}

/// Reads a component's top-level exports before compiling it, so it is
/// compiled once, for the engine that runs it. Unparsable bytes export
/// nothing (compiling them reports the error).
pub fn exports(bytes: &[u8]) -> Exports {
    use wasmparser::{Parser, Payload};
    let (mut found, mut depth) = (Exports::default(), 0usize);
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { return Exports::default() };
        match payload {
            // Nested modules and components have exports of their own.
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let Ok(export) = export else { return Exports::default() };
                    let name = export.name.name;
                    found.http_handler |= name.starts_with("wasi:http/incoming-handler@0.2.");
                    found.cli_run |= name.starts_with("wasi:cli/run@0.2.");
                }
            }
            _ => {}
        }
    }
    found
}

/// Serve if the component handles requests, else run it as a command;
/// `WASI_ENTRY` (last definition wins) overrides.
fn role(exports: &Exports, env: &[(String, String)]) -> std::result::Result<Kind, String> {
    let choice = env.iter().rev().find(|(k, _)| k == ENTRY_ENV).map(|(_, v)| v.trim());
    match choice {
        None | Some("") => Ok(if exports.http_handler { Kind::Proxy } else { Kind::Command }),
        Some("http") if exports.http_handler => Ok(Kind::Proxy),
        Some("http") => Err(format!("{ENTRY_ENV}=http, but the component does not export wasi:http/incoming-handler@0.2")),
        Some("cli") if exports.cli_run => Ok(Kind::Command),
        Some("cli") => Err(format!("{ENTRY_ENV}=cli, but the component does not export wasi:cli/run@0.2")),
        Some(other) => Err(format!("{ENTRY_ENV}={other:?} is not `http` or `cli`")),
    }
}

/// Resolves `args[0]` inside the container's rootfs without following any
/// path out of it: `..` is clamped at the rootfs and symlinks are resolved
/// against the rootfs, as they would be inside the container.
pub fn resolve(rootfs: &Path, arg0: &str, cwd: &str, path_env: Option<&str>) -> Result<PathBuf> {
    resolve_named("entrypoint", rootfs, arg0, cwd, path_env)
}

/// `resolve`, for what an error calls `what` ("entrypoint", "command").
pub fn resolve_named(what: &str, rootfs: &Path, arg0: &str, cwd: &str, path_env: Option<&str>) -> Result<PathBuf> {
    if arg0.is_empty() {
        return Err(InputError::invalid("process.args is empty: the spec names no entrypoint"));
    }
    let candidates: Vec<String> = if arg0.contains('/') {
        if arg0.starts_with('/') {
            vec![arg0.to_string()]
        } else {
            vec![format!("{cwd}/{arg0}")]
        }
    } else {
        let dirs = path_env.unwrap_or("/");
        dirs.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{arg0}")).chain([format!("/{arg0}")]).collect()
    };
    for guest in &candidates {
        if let Some(host) = resolve_in_root(rootfs, guest, 0)? {
            if host.is_file() {
                return Ok(host);
            }
        }
    }
    Err(InputError::NotFound(format!(
        "{what} {arg0:?} not found in the container's rootfs (looked for {})",
        candidates.join(", ")
    )))
}

/// Maps a guest path to a host path under `root`, resolving symlinks as the
/// guest would see them. `None` when a component does not exist.
fn resolve_in_root(root: &Path, guest: &str, depth: u32) -> Result<Option<PathBuf>> {
    if depth > 40 {
        return Err(InputError::invalid(format!("too many levels of symbolic links resolving {guest}")));
    }
    let mut resolved = PathBuf::new();
    let parts: Vec<_> = Path::new(guest).components().collect();
    for (i, part) in parts.iter().enumerate() {
        match part {
            PathComponent::RootDir | PathComponent::CurDir | PathComponent::Prefix(_) => {}
            PathComponent::ParentDir => {
                resolved.pop();
            }
            PathComponent::Normal(name) => {
                let host = root.join(&resolved).join(name);
                match std::fs::symlink_metadata(&host) {
                    Err(_) => return Ok(None),
                    Ok(md) if md.file_type().is_symlink() => {
                        let link = std::fs::read_link(&host).map_err(|e| InputError::io(format!("read link {}", host.display()), e))?;
                        let rest: PathBuf = parts[i + 1..].iter().collect();
                        let base = if link.is_absolute() { PathBuf::from("/") } else { Path::new("/").join(&resolved) };
                        let next = base.join(link).join(rest);
                        return resolve_in_root(root, &next.to_string_lossy(), depth + 1);
                    }
                    Ok(_) => resolved.push(name),
                }
            }
        }
    }
    Ok(Some(root.join(resolved)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_content() {
        assert_eq!(Format::detect(b"\0asm\x01\0\0\0rest"), Some(Format::Module));
        assert_eq!(Format::detect(b"\0asm\x0d\0\x01\0rest"), Some(Format::Component));
        assert_eq!(Format::detect(b"\x7fELF\x02\x01"), Some(Format::Native));
        assert_eq!(Format::detect(b"  (module)"), Some(Format::Text));
        assert_eq!(Format::detect(b"#!/bin/sh\necho"), Some(Format::Native));
        assert_eq!(Format::detect(b"MZ\x90\x00 not wasm"), None);
        assert_eq!(Format::detect(b"\0asm"), None);
        assert_eq!(Format::detect(&[0xff, 0xfe, 0x00]), None);
    }

    fn component(exports: &str) -> Vec<u8> {
        wat::parse_str(format!("(component {exports})")).unwrap()
    }

    const HANDLER: &str = r#"(instance $h) (export "wasi:http/incoming-handler@0.2.3" (instance $h))"#;
    const RUN: &str = r#"(instance $r) (export "wasi:cli/run@0.2.0" (instance $r))"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn kind(exports: &str, e: &[(&str, &str)]) -> std::result::Result<Kind, String> {
        Entrypoint::classify("/app.wasm", component(exports), &env(e)).map(|e| e.kind).map_err(|e| e.to_string())
    }

    #[test]
    fn components_that_handle_requests_are_served() {
        assert_eq!(kind(HANDLER, &[]), Ok(Kind::Proxy));
        assert_eq!(kind(RUN, &[]), Ok(Kind::Command));
        // What `cargo build --target wasm32-wasip2` makes of a wstd http_server binary.
        assert_eq!(kind(&format!("{HANDLER} {RUN}"), &[]), Ok(Kind::Proxy));
        // An export of a nested component is not the component's.
        assert_eq!(kind(&format!("(component {HANDLER})"), &[]), Ok(Kind::Command));
        assert_eq!(exports(b"\0asm\x0d\0\x01\0garbage"), Exports::default());
    }

    #[test]
    fn wasi_entry_overrides_and_is_checked() {
        let both = format!("{HANDLER} {RUN}");
        assert_eq!(kind(&both, &[("WASI_ENTRY", "cli")]), Ok(Kind::Command));
        assert_eq!(kind(&both, &[("WASI_ENTRY", "cli"), ("WASI_ENTRY", "http")]), Ok(Kind::Proxy));
        let err = kind(RUN, &[("WASI_ENTRY", "http")]).unwrap_err();
        assert!(err.contains("WASI_ENTRY=http") && err.contains("incoming-handler"), "{err}");
        let err = kind(HANDLER, &[("WASI_ENTRY", "cli")]).unwrap_err();
        assert!(err.contains("wasi:cli/run"), "{err}");
        let err = kind(&both, &[("WASI_ENTRY", "serve")]).unwrap_err();
        assert!(err.contains("WASI_ENTRY=\"serve\""), "{err}");
    }

    #[test]
    fn exec_runs_commands_only() {
        let command = |bytes: Vec<u8>| Entrypoint::classify_command("/x.wasm", bytes).map(|e| e.kind).map_err(|e| e.to_string());
        assert_eq!(command(b"(module)".to_vec()), Ok(Kind::Module));
        assert_eq!(command(component(RUN)), Ok(Kind::Command));
        // A wstd http_server binary exports both: as an exec it is a command.
        assert_eq!(command(component(&format!("{HANDLER} {RUN}"))), Ok(Kind::Command));
        let err = command(component(HANDLER)).unwrap_err();
        assert!(err.starts_with("exec /x.wasm: is a wasi:http proxy component"), "{err}");
        let err = command(component("")).unwrap_err();
        assert!(err.contains("exports no wasi:cli/run"), "{err}");
        let err = command(b"\x7fELF\x02\x01".to_vec()).unwrap_err();
        assert!(err.contains("native executable"), "{err}");
        let err = command(b"MZ nonsense".to_vec()).unwrap_err();
        assert!(err.contains("not a WebAssembly"), "{err}");
    }

    #[test]
    fn text_and_garbage() {
        let m = Entrypoint::classify("/m.wat", b"(module)".to_vec(), &[]).unwrap();
        assert_eq!(m.kind, Kind::Module);
        assert!(m.bytes.starts_with(b"\0asm"));
        let err = Entrypoint::classify("/x", b"MZ nonsense".to_vec(), &[]).unwrap_err().to_string();
        assert!(err.contains("/x") && err.contains("not a WebAssembly"), "{err}");
        let err = Entrypoint::classify("/bad.wat", b"(module (func $f (bogus)))".to_vec(), &[]).unwrap_err().to_string();
        assert!(err.contains("parse WebAssembly text"), "{err}");
    }

    #[test]
    fn resolves_inside_root_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("bin/app.wasm"), b"x").unwrap();
        std::os::unix::fs::symlink("/bin/app.wasm", r.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", r.join("escape")).unwrap();

        let found = resolve(r, "/bin/app.wasm", "/", None).unwrap();
        assert_eq!(found, r.join("bin/app.wasm"));
        // An absolute link resolves against the rootfs, not the host.
        assert_eq!(resolve(r, "/abs-link", "/", None).unwrap(), r.join("bin/app.wasm"));
        // `..` is clamped at the rootfs, so this is the rootfs' /etc/passwd, which is absent.
        assert!(resolve(r, "/escape", "/", None).is_err());
        assert!(resolve(r, "/../../etc/passwd", "/", None).is_err());
        // Bare names search PATH, then /.
        assert_eq!(resolve(r, "app.wasm", "/", Some("/usr/bin:/bin")).unwrap(), r.join("bin/app.wasm"));
        let err = resolve(r, "/missing.wasm", "/", None).unwrap_err().to_string();
        assert!(err.starts_with("entrypoint \"/missing.wasm\" not found"), "{err}");
        let err = resolve_named("command", r, "/missing.wasm", "/", None).unwrap_err().to_string();
        assert!(err.starts_with("command \"/missing.wasm\" not found"), "{err}");
    }
}
