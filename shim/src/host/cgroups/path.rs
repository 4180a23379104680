//! What a spec's `cgroupsPath` names. containerd's CRI writes a cgroupfs
//! path (`/kubepods/besteffort/pod…/<id>`) when kubelet's cgroup parent is
//! a directory, and runc's systemd form `slice:prefix:name`
//! (`kubepods-besteffort-pod….slice:cri-containerd:<id>`) when it is a
//! systemd slice; runc's systemd driver then makes the transient unit
//! `prefix-name.scope` in that slice.

use cgroups_rs::systemd::utils::expand_slice;

use crate::error::{Result, ShimError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupsPath {
    /// A cgroupfs path, relative to the hierarchy's root.
    Fs { relative: String },
    /// runc's systemd form, as given (`spec`), with the unit and the
    /// cgroupfs directory systemd gives that unit.
    Systemd { spec: String, unit: String, relative: String },
}

impl CgroupsPath {
    /// Parses a spec's `cgroupsPath`; `None` when it is empty.
    pub fn parse(path: &str) -> Result<Option<Self>> {
        if path.is_empty() {
            return Ok(None);
        }
        if path.starts_with('/') || !path.contains(':') {
            let relative = path.trim_start_matches('/').to_string();
            return Ok((!relative.is_empty()).then_some(Self::Fs { relative }));
        }
        let bad = |why: &str| ShimError::invalid(format!("cgroupsPath {path:?}: {why} (want a cgroupfs path or systemd's slice:prefix:name)"));
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts[..] else { return Err(bad("not three fields")) };
        if name.is_empty() {
            return Err(bad("no name"));
        }
        // runc's defaults: system.slice; a name that is a slice is the unit itself.
        let slice = if slice.is_empty() { "system.slice" } else { slice };
        let unit = match (name.ends_with(".slice"), prefix.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => format!("{name}.scope"),
            (false, false) => format!("{prefix}-{name}.scope"),
        };
        let parent = expand_slice(slice).map_err(|_| bad("its slice is not a systemd slice name"))?;
        let relative = if parent.is_empty() { unit.clone() } else { format!("{parent}/{unit}") };
        Ok(Some(Self::Systemd { spec: path.to_string(), unit, relative }))
    }

    pub fn of(spec: &oci_spec::runtime::Spec) -> Result<Option<Self>> {
        match spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()) {
            Some(path) => Self::parse(&path.to_string_lossy()),
            None => Ok(None),
        }
    }

    /// The cgroup's directory below the hierarchy's root.
    pub fn relative(&self) -> &str {
        match self {
            Self::Fs { relative } | Self::Systemd { relative, .. } => relative,
        }
    }

    pub fn is_systemd(&self) -> bool {
        matches!(self, Self::Systemd { .. })
    }
}

impl std::fmt::Display for CgroupsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fs { relative } => write!(f, "/{relative}"),
            Self::Systemd { unit, relative, .. } => write!(f, "{unit} (/{relative})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(path: &str) -> CgroupsPath {
        CgroupsPath::parse(path).unwrap().unwrap()
    }

    #[test]
    fn cgroupfs_paths_are_relative_to_the_root() {
        assert_eq!(parsed("/kubepods/besteffort/pod1/c1"), CgroupsPath::Fs { relative: "kubepods/besteffort/pod1/c1".into() });
        assert_eq!(parsed("wasm/c1").relative(), "wasm/c1");
        assert_eq!(CgroupsPath::parse("").unwrap(), None);
        assert!(!parsed("/a/b").is_systemd());
    }

    #[test]
    fn systemd_paths_name_the_scope_runc_makes() {
        let p = parsed("kubepods-besteffort-pod1.slice:cri-containerd:abc");
        assert!(p.is_systemd());
        assert_eq!(p.relative(), "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope");
        let CgroupsPath::Systemd { unit, .. } = &p else { unreachable!() };
        assert_eq!(unit, "cri-containerd-abc.scope");
        assert_eq!(parsed(":docker:abc").relative(), "system.slice/docker-abc.scope");
        assert_eq!(parsed("user.slice::abc").relative(), "user.slice/abc.scope");
        assert_eq!(parsed("-.slice:p:abc").relative(), "p-abc.scope");
    }

    #[test]
    fn malformed_systemd_paths_are_refused_by_name() {
        for bad in ["a.slice:b", "a.slice:b:c:d", "notaslice:p:n", "a.slice:p:"] {
            let err = CgroupsPath::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
