//! Exec processes: further processes started in a running container (kubectl
//! exec, exec probes through CRI ExecSync, `ctr tasks exec`). Each has its
//! own stdio, status and exit, like the container's init. In a Linux
//! container runc execs the OCI process containerd sends; in a Wasm
//! container the process names another Wasm command in the container's
//! rootfs, which runs in the container's sandbox — its preopens, network
//! namespace, cgroup and memory limit — with argv from the exec and the
//! container's env plus the exec's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::asynchronous::io::{IoTasks, Pty, Stdio};
use oci_spec::runtime::Process;
use shim_input::entrypoint::{self, Entrypoint};
use tokio::sync::watch;

use super::{Exit, Status};
use crate::error::{Result, ShimError};
use crate::host::bundle::pairs;
use crate::wasm::engine::WasmEngine;
use crate::wasm::linker::{Linkers, Prepared};
use crate::wasm::store::Interrupt;
use crate::wasm::wasi::Capabilities;

/// A container's exec processes, by exec id.
pub type Execs = HashMap<String, ExecProcess>;

pub struct ExecProcess {
    pub stdio: Stdio,
    /// Created at Exec, so that a CloseIO before Start is kept.
    pub io: IoTasks,
    pub status: Status,
    pub pid: u32,
    pub exit: Option<Exit>,
    pub exited: watch::Sender<Option<Exit>>,
    /// Set once a Linux exec's process is reaped: its pid may be reused
    /// from then on, so it is never signalled again.
    pub reaped: bool,
    pub kind: ExecKind,
}

pub enum ExecKind {
    /// A Wasm command; what Start needs is taken when it starts.
    Wasm { plan: Option<Box<(Prepared, Capabilities)>>, interrupt: Arc<Interrupt> },
    /// A process runc execs; `pty` is its terminal's master, if it has one.
    Linux { spec: Box<Process>, pty: Option<Pty> },
}

impl ExecProcess {
    pub fn new(stdio: Stdio, pid: u32, kind: ExecKind) -> Self {
        Self {
            stdio,
            io: IoTasks::default(),
            status: Status::Created,
            pid,
            exit: None,
            exited: watch::channel(None).0,
            reaped: false,
            kind,
        }
    }

    /// Records the exit and wakes every waiter.
    pub fn set_exited(&mut self, code: u32) -> Exit {
        let exit = Exit { code, at: SystemTime::now() };
        self.status = Status::Stopped;
        self.exit = Some(exit);
        if let ExecKind::Wasm { plan, .. } = &mut self.kind {
            *plan = None;
        }
        self.exited.send_replace(Some(exit));
        exit
    }
}

/// The OCI process of an Exec request (JSON inside a protobuf Any).
pub fn parse_process(exec_id: &str, spec: &[u8]) -> Result<Process> {
    if spec.is_empty() {
        return Err(ShimError::invalid(format!("exec {exec_id}: the request carries no process spec")));
    }
    serde_json::from_slice(spec).map_err(|e| ShimError::invalid(format!("exec {exec_id}: bad process spec: {e}")))
}

/// Finds, compiles and links the Wasm command `process` names in a Wasm
/// container whose rootfs is `rootfs` and whose capabilities are `caps`.
/// Blocking.
pub fn prepare_wasm(
    rootfs: &Path,
    caps: &Capabilities,
    process: &Process,
    engine: &WasmEngine,
    linkers: &Linkers,
) -> Result<(Prepared, Capabilities)> {
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first().filter(|a| !a.is_empty()).cloned() else {
        return Err(ShimError::invalid("exec: process.args is empty: it names no command"));
    };
    let env = merge_env(&caps.env, &pairs(process.env().as_deref().unwrap_or_default()));
    let path_env = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
    let cwd = process.cwd().to_string_lossy();
    // A missing command is the caller's mistake, not a missing container.
    let path = entrypoint::resolve_named("command", rootfs, &arg0, &cwd, path_env).map_err(|e| match e {
        shim_input::InputError::NotFound(why) => ShimError::invalid(format!("exec: {why}")),
        other => other.into(),
    })?;
    let bytes = std::fs::read(&path).map_err(|e| ShimError::invalid(format!("exec {arg0}: read {}: {e}", path.display())))?;
    let command = Entrypoint::classify_command(&arg0, bytes)?;
    let compiled = engine.load(&command.bytes, command.kind).map_err(|e| ShimError::invalid(format!("exec {arg0}: {e:#}")))?;
    let mut caps = caps.clone();
    caps.args = args;
    caps.env = env;
    let prepared = linkers.prepare(&compiled, &caps).map_err(|e| ShimError::invalid(format!("exec {arg0}: {e:#}")))?;
    Ok((prepared, caps))
}


/// The container's environment with the exec's on top: an exec's variable
/// replaces the container's of the same name, in place; new ones follow.
fn merge_env(container: &[(String, String)], exec: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = container.to_vec();
    for (k, v) in exec {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn exec_env_extends_the_containers() {
        let container = kv(&[("PATH", "/bin"), ("A", "1")]);
        // What containerd sends: the container's process env, plus the exec's own.
        let exec = pairs(&["PATH=/bin".into(), "A=2".into(), "B".into()]);
        assert_eq!(merge_env(&container, &exec), kv(&[("PATH", "/bin"), ("A", "2"), ("B", "")]));
        assert_eq!(merge_env(&container, &[]), container);
    }

    #[test]
    fn process_spec_is_json() {
        let p = parse_process("e1", br#"{"user": {"uid": 0, "gid": 0}, "args": ["/probe.wasm", "env"], "env": ["A=1"], "cwd": "/"}"#).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["/probe.wasm".to_string(), "env".to_string()][..]));
        let err = parse_process("e1", b"").unwrap_err().to_string();
        assert!(err.contains("exec e1") && err.contains("no process spec"), "{err}");
        assert!(parse_process("e1", b"{not json").unwrap_err().to_string().contains("bad process spec"));
    }

    #[test]
    fn wasm_exec_finds_compiles_and_links_a_command() {
        let root = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("tool.wat"), r#"(module (func (export "_start")) (memory (export "memory") 1))"#).unwrap();
        std::fs::write(root.path().join("native"), b"\x7fELF\x02\x01\x01").unwrap();
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/app.wasm"], "env": ["PATH=/", "A=1"], "cwd": "/"},
            "linux": {"resources": {"memory": {"limit": 1048576}}}
        }))
        .unwrap();
        let caps = Capabilities::from_spec(&spec, root.path(), scratch.path()).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let engine = WasmEngine::new(cache.path().to_path_buf()).unwrap();
        let linkers = Linkers::new(engine.engine()).unwrap();
        let process = |args: &[&str], env: &[&str]| -> Process {
            serde_json::from_value(serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": args, "env": env, "cwd": "/"})).unwrap()
        };

        let (prepared, exec_caps) = prepare_wasm(root.path(), &caps, &process(&["tool.wat", "x"], &["B=2"]), &engine, &linkers).unwrap();
        assert!(matches!(prepared, Prepared::Module(_)));
        assert_eq!(exec_caps.args, vec!["tool.wat", "x"]);
        assert_eq!(exec_caps.env, kv(&[("PATH", "/"), ("A", "1"), ("B", "2")]));
        assert_eq!((exec_caps.preopens, exec_caps.memory_limit), (caps.preopens.clone(), caps.memory_limit), "the container's sandbox");

        let refused = |p: Process| match prepare_wasm(root.path(), &caps, &p, &engine, &linkers) {
            Err(e) => e,
            Ok(_) => panic!("prepared {:?}", p.args()),
        };
        let err = refused(process(&["/missing.wasm"], &[]));
        assert!(matches!(err, ShimError::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("command \"/missing.wasm\" not found in the container's rootfs"), "{err}");
        let err = refused(process(&["/native"], &[])).to_string();
        assert!(err.contains("exec /native: is a native executable"), "{err}");
        let err = refused(process(&[], &[])).to_string();
        assert!(err.contains("names no command"), "{err}");
    }
}
