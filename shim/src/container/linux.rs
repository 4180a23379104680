//! Linux containers — a pod's sandbox (pause), sidecars, any native
//! entrypoint — delegated to runc as containerd's runc shim would: runc
//! creates them in their own namespaces and cgroups; the shim wires their
//! stdio to containerd's FIFOs and reaps their init process, which is
//! reparented to the shim (a child subreaper) once `runc create` returns.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use containerd_shim::asynchronous::io::{IoTasks, Pty, Stdio};
use oci_spec::runtime::Process;
use runc::io::{IoOption, PipedIo};
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, GlobalOpts, KillOpts};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::exec::Execs;
use super::{Exit, Status};
use crate::error::{Result, ShimError};
use crate::host::bundle::Bundle;
use crate::host::console::ConsoleSocket;

/// The runc binary, with its state under a root of the shim's choosing and
/// the cgroup driver a container's cgroupsPath is for.
#[derive(Clone)]
pub struct Runc {
    runc: Arc<runc::Runc>,
    root: PathBuf,
    systemd_cgroup: bool,
}

impl Runc {
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        Self::build(root, false)
    }

    fn build(root: &Path, systemd_cgroup: bool) -> anyhow::Result<Self> {
        let runc = GlobalOpts::new().root(root).systemd_cgroup(systemd_cgroup).build().map_err(|e| anyhow::anyhow!("configure runc: {e}"))?;
        Ok(Self { runc: Arc::new(runc), root: root.to_path_buf(), systemd_cgroup })
    }

    /// This runc, with `--systemd-cgroup` or without.
    pub fn with_systemd_cgroup(&self, on: bool) -> Result<Self> {
        if on == self.systemd_cgroup {
            return Ok(self.clone());
        }
        Ok(Self::build(&self.root, on)?)
    }

    /// A runc that logs to the bundle, so a failed create can say why.
    fn logging_to(&self, bundle: &Path) -> Result<runc::Runc> {
        GlobalOpts::new()
            .root(&self.root)
            .systemd_cgroup(self.systemd_cgroup)
            .log(bundle.join("runc-log.json"))
            .log_json()
            .build()
            .map_err(|e| ShimError::Internal(anyhow::anyhow!("configure runc: {e}")))
    }

    /// runc's state root for containers of `namespace`, beside containerd's
    /// state (derived from a bundle path like the compile cache).
    pub fn root_for(bundle: &Path, namespace: &str) -> PathBuf {
        crate::host::bundle::state_dir_for(bundle).join("runc").join(namespace)
    }
}

pub struct LinuxContainer {
    pub bundle: Bundle,
    pub stdio: Stdio,
    pub io: IoTasks,
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub exited: watch::Sender<Option<Exit>>,
    pub execs: Execs,
    /// runc as this container needs it (its cgroup driver).
    pub runc: Runc,
}

impl LinuxContainer {
    /// `runc create`: the container exists, its init waits for Start.
    pub async fn create(id: &str, bundle: Bundle, stdio: Stdio, runc: Runc) -> std::result::Result<Self, (ShimError, Bundle)> {
        match Self::try_create(id, &bundle, &stdio, &runc).await {
            Ok((pid, io)) => Ok(Self {
                bundle,
                stdio,
                io,
                pid,
                status: Status::Created,
                exit: None,
                exited: watch::channel(None).0,
                execs: Execs::default(),
                runc,
            }),
            Err(e) => Err((e, bundle)),
        }
    }

    async fn try_create(id: &str, bundle: &Bundle, stdio: &Stdio, runc: &Runc) -> Result<(u32, IoTasks)> {
        let (uid, gid) = bundle
            .spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid()))
            .unwrap_or((0, 0));
        let pipes = pipes_for(stdio, uid, gid)?;
        let pid_file = bundle.path.join("init.pid");
        let opts = CreateOpts::new().io(runc_io(&pipes)?).pid_file(&pid_file);
        if let Err(e) = runc.logging_to(&bundle.path)?.create(id, &bundle.path, Some(&opts)).await {
            let why = last_runc_error(&bundle.path.join("runc-log.json")).unwrap_or_else(|| e.to_string());
            return Err(ShimError::FailedPrecondition(format!("runc create {id}: {why}")));
        }
        let pid = read_pid(&pid_file)?;
        let io = IoTasks::default();
        let _readers = crate::host::stdio::readers_ready(stdio).await;
        if let Err(e) = wire(&io, &pipes, stdio) {
            let _ = runc.runc.delete(id, Some(&DeleteOpts { force: true })).await;
            return Err(e.context("connect stdio").into());
        }
        Ok((pid, io))
    }

    pub fn set_exited(&mut self, code: u32) -> Exit {
        let exit = Exit { code, at: SystemTime::now() };
        self.status = Status::Stopped;
        self.exit = Some(exit);
        self.exited.send_replace(Some(exit));
        exit
    }
}

/// Pipes for a process's stdio, unless containerd wants none. The process
/// keeps whatever runc's stdio is: never leave it on a pipe nobody drains
/// (runc's own output), or runc never returns.
fn pipes_for(stdio: &Stdio, uid: u32, gid: u32) -> Result<Option<Arc<PipedIo>>> {
    if stdio.is_null() {
        return Ok(None);
    }
    let option = IoOption { open_stdin: !stdio.stdin.is_empty(), open_stdout: true, open_stderr: true };
    Ok(Some(Arc::new(PipedIo::new(uid, gid, &option).context("create stdio pipes")?)))
}

fn runc_io(pipes: &Option<Arc<PipedIo>>) -> Result<Arc<dyn runc::asynchronous::Io>> {
    Ok(match pipes {
        Some(p) => p.clone(),
        None => Arc::new(runc::io::NullIo::new().context("null io")?),
    })
}

/// Copies between the process's pipes and containerd's FIFOs.
fn wire(io: &IoTasks, pipes: &Option<Arc<PipedIo>>, stdio: &Stdio) -> anyhow::Result<()> {
    use runc::asynchronous::Io;
    let Some(pipes) = pipes else { return Ok(()) };
    if let Some(w) = pipes.stdin() {
        io.copy_from_fifo(&stdio.stdin, w).map_err(|e| anyhow::anyhow!("stdin: {e}"))?;
    }
    for (reader, target) in [(pipes.stdout(), &stdio.stdout), (pipes.stderr(), &stdio.stderr)] {
        if let Some(reader) = reader {
            crate::host::stdio::forward(io, reader, target).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(())
}

fn read_pid(pid_file: &Path) -> Result<u32> {
    let pid = std::fs::read_to_string(pid_file)
        .with_context(|| format!("read {}", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("parse {}", pid_file.display()))?;
    Ok(pid)
}

/// `runc exec --detach` of `spec` in container `id`: its stdio goes to the
/// FIFOs `stdio` names through `io`, or, for a terminal, through the pty
/// master runc hands over (returned, for ResizePty). Returns the process's
/// pid; it is the shim's child once runc has returned (the shim is a
/// subreaper), and is reaped with `wait_for_exit`.
pub async fn exec(runc: &Runc, id: &str, bundle: &Path, exec_id: &str, spec: &Process, stdio: &Stdio, io: &IoTasks) -> Result<(u32, Option<Pty>)> {
    let pid_file = bundle.join(format!("exec-{exec_id}.pid"));
    let mut opts = ExecOpts::new().pid_file(&pid_file).detach(true);
    let (console, pipes) = if stdio.terminal {
        let console = ConsoleSocket::new()?;
        opts = opts.console_socket(console.path());
        (Some(console), None)
    } else {
        let pipes = pipes_for(stdio, spec.user().uid(), spec.user().gid())?;
        opts = opts.io(runc_io(&pipes)?);
        (None, pipes)
    };
    if let Err(e) = runc.logging_to(bundle)?.exec(id, spec, Some(&opts)).await {
        let why = last_runc_error(&bundle.join("runc-log.json")).unwrap_or_else(|| e.to_string());
        return Err(ShimError::FailedPrecondition(format!("runc exec {exec_id} in {id}: {why}")));
    }
    let pid = read_pid(&pid_file);
    let _ = std::fs::remove_file(&pid_file);
    let pid = pid?;
    let wired = async {
        let Some(console) = console else {
            return wire(io, &pipes, stdio).map(|()| None);
        };
        let pty = Pty::new(console.receive().await?).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !stdio.stdout.is_empty() {
            crate::host::stdio::forward(io, Box::new(pty.clone()), &stdio.stdout).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if !stdio.stdin.is_empty() {
            io.copy_from_fifo(&stdio.stdin, pty.clone()).map_err(|e| anyhow::anyhow!("stdin: {e}"))?;
        }
        Ok(Some(pty))
    };
    match wired.await {
        Ok(pty) => Ok((pid, pty)),
        Err(e) => {
            // Started, but unreachable: do not leave it running unseen (or unreaped).
            signal(pid, libc::SIGKILL as u32).ok();
            tokio::spawn(wait_for_exit(pid));
            Err(ShimError::Internal(e.context(format!("exec {exec_id} in {id}: connect stdio"))))
        }
    }
}

/// Sends `signal` to process `pid` (an exec's).
pub fn signal(pid: u32, signal: u32) -> Result<()> {
    // 0 and "negative" pids would name process groups.
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(ShimError::invalid(format!("no process {pid} to signal")));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid as libc::pid_t, signal as libc::c_int) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => ShimError::NotFound(format!("process {pid} already finished")),
            Some(libc::EINVAL) => ShimError::invalid(format!("signal {signal} is not a signal")),
            _ => ShimError::Internal(anyhow::Error::from(e).context(format!("signal process {pid}"))),
        });
    }
    Ok(())
}

pub async fn start(runc: &Runc, id: &str) -> Result<()> {
    runc.runc.start(id).await.map_err(|e| ShimError::FailedPrecondition(format!("runc start {id}: {e}")))?;
    Ok(())
}

pub async fn kill(runc: &Runc, id: &str, signal: u32, all: bool) -> Result<()> {
    runc.runc
        .kill(id, signal, Some(&KillOpts { all }))
        .await
        .map_err(|e| ShimError::NotFound(format!("runc kill {id}: {e}")))
}

/// `runc delete --force`: also fine for a container that never started.
pub async fn delete(runc: &Runc, id: &str) -> Result<()> {
    runc.runc
        .delete(id, Some(&DeleteOpts { force: true }))
        .await
        .map_err(|e| ShimError::Internal(anyhow::anyhow!("runc delete {id}: {e}")))
}

pub async fn pids(runc: &Runc, id: &str) -> Result<Vec<u32>> {
    let pids = runc.runc.ps(id).await.map_err(|e| ShimError::Internal(anyhow::anyhow!("runc ps {id}: {e}")))?;
    Ok(pids.into_iter().map(|p| p as u32).collect())
}

pub async fn pause(runc: &Runc, id: &str) -> Result<()> {
    runc.runc.pause(id).await.map_err(|e| ShimError::FailedPrecondition(format!("runc pause {id}: {e}")))
}

pub async fn resume(runc: &Runc, id: &str) -> Result<()> {
    runc.runc.resume(id).await.map_err(|e| ShimError::FailedPrecondition(format!("runc resume {id}: {e}")))
}

pub async fn update(runc: &Runc, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    runc.runc.update(id, resources).await.map_err(|e| ShimError::FailedPrecondition(format!("runc update {id}: {e}")))
}

/// The last error runc logged (its log is JSON lines with `level` and `msg`).
fn last_runc_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| v.get("msg")?.as_str().map(str::to_string))?
    })
}

/// Waits for process `pid` (a child of the shim) to exit and reaps it.
/// Event-driven: a pidfd becomes readable when the process ends.
pub async fn wait_for_exit(pid: u32) -> u32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: the descriptor was just returned to us and is owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the AsyncFd owns the descriptor, which stays open and the
        // same for as long as it is registered.
        match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
            Ok(afd) => {
                let _ = afd.readable().await;
            }
            Err(e) => log::warn!("watch pid {pid}: {e}"),
        }
    }
    let reaped = tokio::task::spawn_blocking(move || waitpid(Pid::from_raw(pid as i32), None)).await;
    match reaped {
        Ok(Ok(WaitStatus::Exited(_, code))) => code as u32,
        Ok(Ok(WaitStatus::Signaled(_, sig, _))) => 128 + sig as u32,
        other => {
            log::warn!("reap pid {pid}: {other:?}");
            255
        }
    }
}
