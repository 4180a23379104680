//! The runtime options containerd sends with Create. For this runtime
//! containerd's CRI sends `runtimeoptions.v1.Options`, whose body is the
//! handler's `options` TOML section (or names a file holding it); a client
//! may also send runc's own `containerd.runc.v1.Options`. Of either, the
//! shim honours `SystemdCgroup`, as containerd's runc shim does.

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedInputStream, Message};
use containerd_shim_protos::shim::oci::Options as RuncOptions;

use crate::{InputError, Result};

const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";
const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// runc creates cgroups through systemd (`runc --systemd-cgroup`).
    pub systemd_cgroup: bool,
}

#[derive(serde::Deserialize, Default)]
struct Section {
    #[serde(rename = "SystemdCgroup", default)]
    systemd_cgroup: bool,
}

impl RuntimeOptions {
    pub fn parse(options: Option<&Any>) -> Result<Self> {
        let Some(any) = options.filter(|a| !a.type_url.is_empty()) else { return Ok(Self::default()) };
        let bad = |why: String| InputError::invalid(format!("runtime options ({}): {why}", any.type_url));
        match any.type_url.rsplit('/').next().unwrap_or_default() {
            RUNC_OPTIONS => {
                let runc = RuncOptions::parse_from_bytes(&any.value).map_err(|e| bad(e.to_string()))?;
                Ok(Self { systemd_cgroup: runc.systemd_cgroup })
            }
            RUNTIME_OPTIONS => {
                let (config_path, config_body) = runtime_options_fields(&any.value).map_err(|e| bad(e.to_string()))?;
                let body = match config_path {
                    Some(path) => read_config_file(&path).map_err(|e| bad(format!("read ConfigPath {path}: {e}")))?,
                    None => String::from_utf8(config_body).map_err(|e| bad(format!("ConfigBody is not UTF-8: {e}")))?,
                };
                let section: Section = toml::from_str(&body).map_err(|e| bad(format!("bad TOML: {e}")))?;
                Ok(Self { systemd_cgroup: section.systemd_cgroup })
            }
            other => {
                log::warn!("ignoring runtime options of type {other}");
                Ok(Self::default())
            }
        }
    }
}

/// The largest options file read: a handler's section is a few lines.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// A regular file of at most `MAX_CONFIG_FILE` bytes, as text: a path to a
/// device or a FIFO would block Create or never end.
fn read_config_file(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_CONFIG_FILE {
        return Err(std::io::Error::other(format!("{} bytes, more than {MAX_CONFIG_FILE}", meta.len())));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE).read_to_string(&mut text)?;
    Ok(text)
}

/// `config_path` (2) and `config_body` (3) of a `runtimeoptions.v1.Options`
/// (the crates of containerd's protos do not carry this message).
fn runtime_options_fields(bytes: &[u8]) -> containerd_shim_protos::protobuf::Result<(Option<String>, Vec<u8>)> {
    use containerd_shim_protos::protobuf::rt::WireType;
    let mut input = CodedInputStream::from_bytes(bytes);
    let (mut path, mut body) = (None, Vec::new());
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match (tag >> 3, tag & 7) {
            (2, 2) => path = Some(input.read_string()?).filter(|p| !p.is_empty()),
            (3, 2) => body = input.read_bytes()?,
            (_, wire) => input.skip_field(WireType::new(wire).ok_or(containerd_shim_protos::protobuf::Error::from(std::io::Error::other("bad wire type")))?)?,
        }
    }
    Ok((path, body))
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::protobuf::CodedOutputStream;

    use super::*;

    fn runtime_options(path: &str, body: &str) -> Any {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(1, "").unwrap();
            if !path.is_empty() {
                out.write_string(2, path).unwrap();
            }
            out.write_bytes(3, body.as_bytes()).unwrap();
            out.flush().unwrap();
        }
        Any { type_url: RUNTIME_OPTIONS.into(), value, ..Default::default() }
    }

    #[test]
    fn cri_handler_options_body_sets_systemd_cgroup() {
        let on = RuntimeOptions::parse(Some(&runtime_options("", "SystemdCgroup = true\nBinaryName = \"x\"\n"))).unwrap();
        assert!(on.systemd_cgroup);
        assert!(!RuntimeOptions::parse(Some(&runtime_options("", ""))).unwrap().systemd_cgroup);
        assert!(!RuntimeOptions::parse(None).unwrap().systemd_cgroup);
        let err = RuntimeOptions::parse(Some(&runtime_options("", "SystemdCgroup = maybe"))).unwrap_err().to_string();
        assert!(err.contains("runtimeoptions.v1.Options") && err.contains("bad TOML"), "{err}");
    }

    #[test]
    fn config_path_is_read_and_runc_options_are_understood() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opts.toml");
        std::fs::write(&file, "SystemdCgroup = true\n").unwrap();
        assert!(RuntimeOptions::parse(Some(&runtime_options(file.to_str().unwrap(), ""))).unwrap().systemd_cgroup);
        let err = RuntimeOptions::parse(Some(&runtime_options("/nonexistent/opts.toml", ""))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/opts.toml"), "{err}");
        // A device would never end, a FIFO would block: refused at once.
        let err = RuntimeOptions::parse(Some(&runtime_options("/dev/zero", ""))).unwrap_err().to_string();
        assert!(err.contains("/dev/zero") && err.contains("not a regular file"), "{err}");

        let runc = RuncOptions { systemd_cgroup: true, ..Default::default() };
        let any = Any { type_url: format!("types.containerd.io/{RUNC_OPTIONS}"), value: runc.write_to_bytes().unwrap(), ..Default::default() };
        assert!(RuntimeOptions::parse(Some(&any)).unwrap().systemd_cgroup);
    }
}
