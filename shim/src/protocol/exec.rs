//! Exec processes over the task API: Exec adds one to a container; Start,
//! Kill, Delete, State, Wait, CloseIO and ResizePty with an exec id act on
//! it. Its state lives with its container (`container::exec`); events are
//! those of containerd's runc shim: TaskExecAdded, TaskExecStarted, and
//! TaskExit with the exec id.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api;
use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use containerd_shim::protos::events::task::{TaskExecAdded, TaskExecStarted, TaskExit};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics;
use oci_spec::runtime::Process;

use super::task::{api_status, blocking, timestamp, TaskService};
use crate::container::exec::{self, ExecKind, ExecProcess};
use crate::container::instance::{self, Launch};
use crate::container::linux::{self, Runc};
use crate::container::{self, Container, Status};
use crate::error::{Result, ShimError};
use crate::wasm::wasi::Capabilities;

/// Exit status recorded for an exec that could not be started.
const START_FAILED: u32 = 255;
/// How long deleting a container waits for its killed execs to end.
const END_EXECS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl TaskService {
    pub(super) async fn exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        let (id, exec_id) = (req.id.as_str(), req.exec_id.as_str());
        if exec_id.is_empty() {
            return Err(ShimError::invalid(format!("exec in container {id}: no exec id")));
        }
        let process = exec::parse_process(exec_id, &req.spec.value)?;
        let stdio = Stdio::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        enum Sandbox {
            Wasm(PathBuf, Box<Capabilities>),
            Linux,
        }
        let sandbox = self.with(id, |c| {
            if c.status() == Status::Stopped {
                return Err(ShimError::FailedPrecondition(format!("container {id} has stopped: cannot exec in it")));
            }
            if c.execs().contains_key(exec_id) {
                return Err(ShimError::AlreadyExists(format!("exec process {exec_id} already exists in container {id}")));
            }
            Ok(match c {
                Container::Wasm(w) => Sandbox::Wasm(w.bundle.rootfs.clone(), Box::new(w.caps.clone())),
                Container::Linux(_) => Sandbox::Linux,
            })
        })?;
        let (kind, pid) = match sandbox {
            Sandbox::Wasm(rootfs, caps) => {
                let (engine, linkers) = (self.engine.clone(), self.linkers.clone());
                let plan = blocking(move || exec::prepare_wasm(&rootfs, &caps, &process, &engine, &linkers))
                    .await
                    .inspect_err(|e| log::warn!("container {id}: exec {exec_id}: {e}"))?;
                (ExecKind::Wasm { plan: Some(Box::new(plan)), interrupt: Arc::default() }, std::process::id())
            }
            // Its pid is known once runc has started it.
            Sandbox::Linux => (ExecKind::Linux { spec: Box::new(process), pty: None }, 0),
        };
        self.with(id, |c| {
            // The map was unlocked while the command compiled.
            if c.execs().contains_key(exec_id) {
                return Err(ShimError::AlreadyExists(format!("exec process {exec_id} already exists in container {id}")));
            }
            c.execs_mut().insert(exec_id.to_string(), ExecProcess::new(stdio, pid, kind));
            Ok(())
        })?;
        self.events
            .publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, TaskExecAdded { container_id: id.into(), exec_id: exec_id.into(), ..Default::default() })
            .await;
        log::info!("container {id}: exec {exec_id} added");
        Ok(())
    }

    pub(super) async fn start_exec(&self, id: &str, exec_id: &str) -> Result<api::StartResponse> {
        enum Plan {
            Wasm(Box<Launch>),
            Linux { spec: Box<Process>, stdio: Stdio, io: IoTasks, bundle: PathBuf, runc: Runc },
        }
        let not_created = |e: &ExecProcess| {
            (e.status != Status::Created).then(|| ShimError::FailedPrecondition(format!("exec process {exec_id} is {:?}, not created", e.status)))
        };
        let stdio = self.with(id, |c| Ok(c.exec_mut(id, exec_id)?.stdio.clone()))?;
        let _readers = crate::host::stdio::readers_ready(&stdio).await;
        let plan = self.with(id, |c| {
            if c.status() == Status::Stopped {
                return Err(ShimError::FailedPrecondition(format!("container {id} has stopped: cannot start exec process {exec_id}")));
            }
            let missing = || ShimError::NotFound(format!("exec process {exec_id} not found in container {id}"));
            match c {
                Container::Wasm(w) => {
                    let e = w.execs.get_mut(exec_id).ok_or_else(missing)?;
                    if let Some(err) = not_created(e) {
                        return Err(err);
                    }
                    let ExecKind::Wasm { plan, interrupt } = &mut e.kind else {
                        return Err(ShimError::Internal(anyhow::anyhow!("exec process {exec_id} of a Wasm container is not Wasm")));
                    };
                    let (prepared, caps) = *plan.take().ok_or_else(|| ShimError::FailedPrecondition(format!("exec process {exec_id} has nothing to start")))?;
                    let stdio = crate::host::stdio::connect(&e.io, &e.stdio)?;
                    let interrupt = interrupt.clone();
                    e.status = Status::Running;
                    Ok(Plan::Wasm(Box::new(Launch {
                        id: id.to_string(),
                        exec_id: Some(exec_id.to_string()),
                        engine: self.engine.engine().clone(),
                        prepared,
                        caps,
                        stdio,
                        interrupt,
                        cgroup: w.cgroup.clone(),
                        memory_in_use: w.memory_in_use.clone(),
                    })))
                }
                Container::Linux(l) => {
                    let e = l.execs.get_mut(exec_id).ok_or_else(missing)?;
                    if let Some(err) = not_created(e) {
                        return Err(err);
                    }
                    let ExecKind::Linux { spec, .. } = &e.kind else {
                        return Err(ShimError::Internal(anyhow::anyhow!("exec process {exec_id} of a Linux container is not Linux")));
                    };
                    let plan = Plan::Linux { spec: spec.clone(), stdio: e.stdio.clone(), io: e.io.clone(), bundle: l.bundle.path.clone(), runc: l.runc.clone() };
                    // Running from now on (pid 0 until runc returns), so a second Start is refused.
                    e.status = Status::Running;
                    Ok(plan)
                }
            }
        })?;
        let pid = match plan {
            Plan::Wasm(launch) => match instance::start(*launch).await {
                Ok(exit_rx) => {
                    tokio::spawn(self.clone().reap_wasm_exec(id.to_string(), exec_id.to_string(), exit_rx));
                    std::process::id()
                }
                Err(e) => {
                    self.fail_exec(id, exec_id).await;
                    log::error!("container {id}: start exec {exec_id}: {e:#}");
                    return Err(ShimError::FailedPrecondition(format!("start exec process {exec_id} in container {id}: {e:#}")));
                }
            },
            Plan::Linux { spec, stdio, io, bundle, runc } => {
                let (pid, pty) = match linux::exec(&runc, id, &bundle, exec_id, &spec, &stdio, &io).await {
                    Ok(started) => started,
                    Err(e) => {
                        self.fail_exec(id, exec_id).await;
                        log::error!("container {id}: start exec {exec_id}: {e}");
                        return Err(e);
                    }
                };
                let recorded = self.with(id, |c| {
                    let e = c.exec_mut(id, exec_id)?;
                    e.pid = pid;
                    if let ExecKind::Linux { pty: slot, .. } = &mut e.kind {
                        *slot = pty;
                    }
                    Ok(())
                });
                // Reaped whatever happened meanwhile, so it never lingers as a zombie.
                tokio::spawn(self.clone().reap_linux_exec(id.to_string(), exec_id.to_string(), pid));
                if let Err(e) = recorded {
                    let _ = linux::signal(pid, libc::SIGKILL as u32);
                    return Err(e);
                }
                pid
            }
        };
        self.events
            .publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, TaskExecStarted {
                container_id: id.into(),
                exec_id: exec_id.into(),
                pid,
                ..Default::default()
            })
            .await;
        log::info!("container {id}: exec {exec_id} started");
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    /// A failed start: the exec is stopped, its stdio released.
    async fn fail_exec(&self, id: &str, exec_id: &str) {
        let io = self.with(id, |c| {
            let e = c.exec_mut(id, exec_id)?;
            e.set_exited(START_FAILED);
            Ok(e.io.clone())
        });
        if let Ok(io) = io {
            io.abort().await;
        }
    }

    async fn reap_wasm_exec(self, id: String, exec_id: String, exit_rx: tokio::sync::oneshot::Receiver<u32>) {
        let code = exit_rx.await.unwrap_or(instance::TRAP_EXIT_CODE);
        self.record_exec_exit(&id, &exec_id, code).await;
    }

    async fn reap_linux_exec(self, id: String, exec_id: String, pid: u32) {
        let code = linux::wait_for_exit(pid).await;
        let _ = self.with(&id, |c| {
            c.exec_mut(&id, &exec_id)?.reaped = true;
            Ok(())
        });
        self.record_exec_exit(&id, &exec_id, code).await;
    }

    /// Drains the exec's output, then marks it stopped and tells containerd.
    async fn record_exec_exit(&self, id: &str, exec_id: &str, code: u32) {
        if let Ok(io) = self.with(id, |c| Ok(c.exec_mut(id, exec_id)?.io.clone())) {
            io.shutdown().await;
        }
        let exit = self.with(id, |c| {
            let e = c.exec_mut(id, exec_id)?;
            Ok((e.status != Status::Stopped).then(|| (e.set_exited(code), e.pid)))
        });
        if let Ok(Some((exit, pid))) = exit {
            log::info!("container {id}: exec {exec_id} exited with status {code}");
            self.events
                .publish(topics::TASK_EXIT_EVENT_TOPIC, TaskExit {
                    container_id: id.into(),
                    id: exec_id.into(),
                    pid,
                    exit_status: exit.code,
                    exited_at: MessageField::some(timestamp(exit.at)),
                    ..Default::default()
                })
                .await;
        }
    }

    pub(super) async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        enum Action {
            Interrupt,
            Signal(u32),
            Ignore,
        }
        let action = self.with(id, |c| {
            let e = c.exec_mut(id, exec_id)?;
            if e.status == Status::Stopped || e.reaped {
                return Err(ShimError::NotFound(format!("exec process {exec_id}: process already finished")));
            }
            let not_started = || ShimError::FailedPrecondition(format!("exec process {exec_id} has not started"));
            match &e.kind {
                ExecKind::Wasm { .. } if e.status == Status::Created => Err(not_started()),
                ExecKind::Wasm { interrupt, .. } => Ok(match container::terminating(signal) {
                    None => Action::Ignore,
                    Some(code) => {
                        interrupt.raise(code as i32);
                        Action::Interrupt
                    }
                }),
                ExecKind::Linux { .. } if e.pid == 0 => Err(not_started()),
                ExecKind::Linux { .. } => Ok(Action::Signal(e.pid)),
            }
        })?;
        match action {
            Action::Interrupt => self.engine.interrupt_guests(),
            Action::Signal(pid) => linux::signal(pid, signal)?,
            Action::Ignore => log::debug!("container {id}: exec {exec_id}: ignoring signal {signal}"),
        }
        log::info!("container {id}: exec {exec_id}: signal {signal} delivered");
        Ok(())
    }

    /// Removes an exec that has ended (or never started). No TaskDelete
    /// event: containerd's runc shim sends that for a container's init only.
    pub(super) async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse> {
        let exec = {
            let mut map = self.lock();
            let c = map.get_mut(id).ok_or_else(|| ShimError::NotFound(format!("container {id} not found")))?;
            if c.exec_mut(id, exec_id)?.status == Status::Running {
                return Err(ShimError::FailedPrecondition(format!("exec process {exec_id} is running; kill it first")));
            }
            c.execs_mut().remove(exec_id).ok_or_else(|| ShimError::NotFound(format!("exec process {exec_id} not found")))?
        };
        exec.io.abort().await;
        log::info!("container {id}: exec {exec_id} deleted");
        Ok(api::DeleteResponse {
            pid: exec.pid,
            exit_status: exec.exit.map_or(0, |e| e.code),
            exited_at: exec.exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    pub(super) fn state_exec(&self, id: &str, exec_id: &str) -> Result<api::StateResponse> {
        self.with(id, |c| {
            let bundle = c.bundle().path.to_string_lossy().into_owned();
            let e = c.exec_mut(id, exec_id)?;
            Ok(api::StateResponse {
                id: exec_id.into(),
                exec_id: exec_id.into(),
                bundle,
                pid: e.pid,
                status: api_status(e.status).into(),
                stdin: e.stdio.stdin.clone(),
                stdout: e.stdio.stdout.clone(),
                stderr: e.stdio.stderr.clone(),
                terminal: e.stdio.terminal,
                exit_status: e.exit.map_or(0, |e| e.code),
                exited_at: e.exit.map(|e| timestamp(e.at)).into(),
                ..Default::default()
            })
        })
    }

    pub(super) fn resize_pty(&self, req: &api::ResizePtyRequest) -> Result<()> {
        self.with(&req.id, |c| {
            if req.exec_id.is_empty() {
                return Err(match c {
                    Container::Wasm(_) => ShimError::Unimplemented("ResizePty (Wasm containers have no terminal)"),
                    Container::Linux(_) => ShimError::Unimplemented("ResizePty of a Linux container's init (only exec processes get a terminal)"),
                });
            }
            match &c.exec_mut(&req.id, &req.exec_id)?.kind {
                ExecKind::Wasm { .. } => Err(ShimError::Unimplemented("ResizePty of a Wasm exec (Wasm processes have no terminal)")),
                ExecKind::Linux { pty: Some(pty), .. } => Ok(crate::host::console::resize(pty.as_fd(), req.width, req.height)?),
                // No terminal, nothing to resize (as runc's shim answers).
                ExecKind::Linux { pty: None, .. } => Ok(()),
            }
        })
    }

    /// Kills the container's running execs and waits (bounded) until their
    /// exits are recorded.
    pub(super) async fn end_execs(&self, id: &str) {
        let running: Vec<_> = self
            .with(id, |c| Ok(c.execs().values().filter(|e| e.status == Status::Running).map(|e| e.exited.subscribe()).collect()))
            .unwrap_or_default();
        if running.is_empty() {
            return;
        }
        self.stop_execs(id);
        let all_ended = async {
            for mut rx in running {
                let _ = rx.wait_for(Option::is_some).await;
            }
        };
        if tokio::time::timeout(END_EXECS_TIMEOUT, all_ended).await.is_err() {
            log::warn!("container {id}: exec processes still running after {END_EXECS_TIMEOUT:?}");
        }
    }

    /// A container's init has ended: its execs end with it (a Linux
    /// container's would with its PID namespace; a Wasm container's share
    /// its sandbox).
    pub(super) fn stop_execs(&self, id: &str) {
        let mut wasm = false;
        let pids = self
            .with(id, |c| {
                let mut pids = Vec::new();
                for e in c.execs().values().filter(|e| e.status == Status::Running && !e.reaped) {
                    match &e.kind {
                        ExecKind::Wasm { interrupt, .. } => {
                            interrupt.raise(libc::SIGKILL);
                            wasm = true;
                        }
                        ExecKind::Linux { .. } if e.pid != 0 => pids.push(e.pid),
                        ExecKind::Linux { .. } => {}
                    }
                }
                Ok(pids)
            })
            .unwrap_or_default();
        if wasm {
            self.engine.interrupt_guests();
        }
        for pid in pids {
            let _ = linux::signal(pid, libc::SIGKILL as u32);
        }
    }
}
