//! The task service: one thin method per RPC. Each locks the container map
//! briefly, delegates to the container (a Wasm guest, or a Linux container
//! run by runc), and publishes the matching event after the lock is released.
//! Requests that name an exec process go to `exec`; `ttrpc` serves them all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim::api::{self, Status as ApiStatus};
use containerd_shim::asynchronous::io::Stdio;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics;
use shim_input::entrypoint::{Entrypoint, Kind};
use shim_input::options::RuntimeOptions;

use containerd_shim::asynchronous::io::IoTasks;
use containerd_shim::protos::types::task::ProcessInfo;

use super::events::Events;
use super::rpcs::InFlight;
use crate::container::instance::{self, Launch};
use crate::container::linux::{self, LinuxContainer, Runc};
use crate::container::wasm::WasmContainer;
use crate::container::{self, Container, Exit, Status};
use crate::error::{Result, ShimError};
use crate::host::bundle::Bundle;
use crate::host::cgroups::{process_metrics, spec_metrics, CgroupsPath};
use crate::host::content::ImageContent;
use crate::wasm::engine::WasmEngine;
use crate::wasm::linker::Linkers;

type Containers = Arc<Mutex<HashMap<String, Container>>>;

#[derive(Clone)]
pub struct TaskService {
    containers: Containers,
    pub(super) engine: Arc<WasmEngine>,
    pub(super) linkers: Arc<Linkers>,
    runc: Option<Runc>,
    content: ImageContent,
    pub(super) events: Events,
    pub(super) exit: Arc<ExitSignal>,
    /// Containers being deleted, as State answers for them until Delete
    /// returns: containerd marks a container exited only then, and its CRI
    /// may ask in between.
    deleting: Arc<Mutex<HashMap<String, api::StateResponse>>>,
    /// The RPCs being served (and activity for the idle trim).
    pub(super) rpcs: Arc<InFlight>,
}

impl TaskService {
    pub fn new(
        engine: Arc<WasmEngine>,
        linkers: Linkers,
        runc: Option<Runc>,
        content: ImageContent,
        events: Events,
        exit: Arc<ExitSignal>,
    ) -> Self {
        let activity = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(crate::host::trim::trim_when_idle(activity.clone()));
        Self {
            containers: Containers::default(),
            engine,
            linkers: Arc::new(linkers),
            runc,
            content,
            events,
            exit,
            deleting: Arc::default(),
            rpcs: Arc::new(InFlight::new(activity)),
        }
    }

    fn lock_deleting(&self) -> MutexGuard<'_, HashMap<String, api::StateResponse>> {
        self.deleting.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or_else(|| ShimError::NotFound(format!("container {id} not found")))?;
        f(c)
    }

    pub(super) fn runc(&self) -> Result<&Runc> {
        self.runc.as_ref().ok_or_else(|| ShimError::FailedPrecondition("runc is not available to run Linux containers".into()))
    }

    /// runc with the cgroup driver a new Linux container needs: systemd's when
    /// the runtime options say `SystemdCgroup` (as for containerd's runc
    /// shim) or the cgroupsPath has systemd's `slice:prefix:name` form, which
    /// only that driver takes.
    fn runc_for_spec(&self, options: &RuntimeOptions, bundle: &Bundle) -> Result<Runc> {
        let systemd_path = CgroupsPath::of(&bundle.spec)?.is_some_and(|p| p.is_systemd());
        self.runc()?.with_systemd_cgroup(options.systemd_cgroup || systemd_path)
    }

    /// The runc of an existing Linux container.
    pub(super) fn runc_of(&self, id: &str) -> Result<Runc> {
        self.with(id, |c| match c {
            Container::Linux(l) => Ok(l.runc.clone()),
            Container::Wasm(_) => Err(ShimError::Internal(anyhow::anyhow!("container {id} is not run by runc"))),
        })
    }

    pub(super) async fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        if self.lock().contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(format!("container {} already exists", req.id)));
        }
        // Checked for Wasm containers too (only runc uses them), so that options
        // of the wrong type or an unreadable ConfigPath fail Create, not pass unseen.
        let options = RuntimeOptions::parse(req.options.as_ref()).inspect_err(|e| log::error!("create {}: {e}", req.id))?;
        let stdio = Stdio::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        let (path, mounts) = (PathBuf::from(&req.bundle), req.rootfs.clone());
        let (bundle, found) = blocking(move || {
            let bundle = Bundle::open(&path, &mounts)?;
            let found = bundle.entrypoint();
            Ok((bundle, found))
        })
        .await
        .inspect_err(|e| log::error!("create {}: {e}", req.id))?;
        let found = match found {
            Err(ShimError::NotFound(missing)) => self.artifact_entrypoint(&req.id, &bundle, missing).await,
            other => other,
        };
        let created = match found {
            Err(e) => Err((e, bundle)),
            Ok(entry) if entry.kind == Kind::Native => match self.runc_for_spec(&options, &bundle) {
                Ok(runc) => LinuxContainer::create(&req.id, bundle, stdio, runc).await.map(Container::Linux),
                Err(e) => Err((e, bundle)),
            },
            Ok(entry) => {
                let (engine, linkers, id) = (self.engine.clone(), self.linkers.clone(), req.id.clone());
                blocking(move || Ok(WasmContainer::create(&id, bundle, &entry, stdio, &engine, &linkers).map(Container::Wasm))).await?
            }
        };
        let entry = match created {
            Ok(entry) => entry,
            Err((e, bundle)) => {
                log::error!("create {}: {e}", req.id);
                let _ = blocking(move || {
                    release(&bundle);
                    Ok(())
                })
                .await;
                return Err(e);
            }
        };
        let pid = entry.pid();
        if let Container::Linux(c) = &entry {
            tokio::spawn(self.clone().reap_linux(req.id.clone(), c.pid));
        }
        self.lock().insert(req.id.clone(), entry);
        self.events.publish(topics::TASK_CREATE_EVENT_TOPIC, TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal, ..Default::default() }),
            pid,
            ..Default::default()
        }).await;
        log::info!("created container {}", req.id);
        Ok(api::CreateTaskResponse { pid, ..Default::default() })
    }

    /// An entrypoint the rootfs lacks may be the layer of an OCI Wasm
    /// artifact (whose rootfs is empty): ask containerd for the image.
    async fn artifact_entrypoint(&self, id: &str, bundle: &Bundle, missing: String) -> Result<Entrypoint> {
        let arg0 = bundle.spec.process().as_ref().and_then(|p| p.args().as_ref()).and_then(|a| a.first()).cloned().unwrap_or_default();
        let layer = match self.content.wasm_layer(id, &arg0).await {
            Ok(Some(layer)) => layer,
            Ok(None) => return Err(ShimError::invalid(missing)),
            Err(e) => return Err(ShimError::invalid(format!("{missing}; nor could the image be read as a Wasm artifact: {e:#}"))),
        };
        log::info!("container {id}: entrypoint is layer {} of Wasm artifact {}", layer.digest, layer.image);
        let name = layer.title.clone().unwrap_or_else(|| layer.image.clone());
        let env = bundle.env();
        blocking(move || Ok(Entrypoint::classify(&name, layer.bytes, &env)?)).await
    }

    pub(super) async fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        if !req.exec_id.is_empty() {
            return self.start_exec(&req.id, &req.exec_id).await;
        }
        enum Plan {
            Wasm(Launch),
            Linux(u32),
        }
        let stdio = self.with(&req.id, |c| Ok(c.stdio().clone()))?;
        let _readers = crate::host::stdio::readers_ready(&stdio).await;
        let plan = self.with(&req.id, |entry| {
            if !entry.status().can_start() {
                return Err(ShimError::FailedPrecondition(format!("container {} is {:?}, not created", req.id, entry.status())));
            }
            match entry {
                Container::Wasm(c) => {
                    let (prepared, caps) = c.plan.take().ok_or_else(|| ShimError::FailedPrecondition(format!("container {} has nothing to start", c.id)))?;
                    let stdio = crate::host::stdio::connect(&c.io, &c.stdio)?;
                    c.status = Status::Running;
                    Ok(Plan::Wasm(Launch {
                        id: c.id.clone(),
                        exec_id: None,
                        engine: self.engine.engine().clone(),
                        prepared,
                        caps,
                        stdio,
                        interrupt: c.interrupt.clone(),
                        cgroup: c.cgroup.clone(),
                        memory_in_use: c.memory_in_use.clone(),
                    }))
                }
                Container::Linux(c) => Ok(Plan::Linux(c.pid)),
            }
        })?;
        let pid = match plan {
            Plan::Wasm(launch) => {
                let exit_rx = match instance::start(launch).await {
                    Ok(rx) => rx,
                    Err(e) => {
                        let io = self.with(&req.id, |c| {
                            c.set_exited(instance::TRAP_EXIT_CODE);
                            Ok(c.io().clone())
                        })?;
                        io.abort().await;
                        log::error!("start {}: {e:#}", req.id);
                        return Err(ShimError::FailedPrecondition(format!("start container {}: {e:#}", req.id)));
                    }
                };
                tokio::spawn(self.clone().reap_wasm(req.id.clone(), exit_rx));
                self.with(&req.id, |c| Ok(c.pid()))?
            }
            Plan::Linux(pid) => {
                linux::start(&self.runc_of(&req.id)?, &req.id).await?;
                self.with(&req.id, |c| {
                    if let Container::Linux(c) = c {
                        if c.status == Status::Created {
                            c.status = Status::Running;
                        }
                    }
                    Ok(())
                })?;
                pid
            }
        };
        self.events.publish(topics::TASK_START_EVENT_TOPIC, TaskStart { container_id: req.id.clone(), pid, ..Default::default() }).await;
        log::info!("started container {}", req.id);
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    /// Waits for a guest to end, then records the exit.
    async fn reap_wasm(self, id: String, exit_rx: tokio::sync::oneshot::Receiver<u32>) {
        let code = exit_rx.await.unwrap_or(instance::TRAP_EXIT_CODE);
        self.record_exit(id, code).await;
    }

    /// Waits for a Linux container's init process to end, then records the exit.
    async fn reap_linux(self, id: String, pid: u32) {
        let code = linux::wait_for_exit(pid).await;
        self.record_exit(id, code).await;
    }

    /// Drains the container's output, then marks it stopped and tells
    /// containerd. Its execs end with it, as they would with a container's
    /// init under runc.
    async fn record_exit(&self, id: String, code: u32) {
        if let Ok(io) = self.with(&id, |c| Ok(c.io().clone())) {
            io.shutdown().await;
        }
        let exit = self.with(&id, |c| Ok((c.status() != Status::Stopped).then(|| c.set_exited(code))));
        if let Ok(Some(exit)) = exit {
            log::info!("container {id} exited with status {code}");
            self.stop_execs(&id);
            self.publish_exit(&id, exit).await;
        }
    }

    async fn publish_exit(&self, id: &str, exit: Exit) {
        self.events.publish(topics::TASK_EXIT_EVENT_TOPIC, TaskExit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: self.with(id, |c| Ok(c.pid())).unwrap_or_else(|_| std::process::id()),
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        }).await;
    }

    pub(super) async fn kill(&self, req: api::KillRequest) -> Result<()> {
        if !req.exec_id.is_empty() {
            return self.kill_exec(&req.id, &req.exec_id, req.signal).await;
        }
        enum Action {
            Interrupt,
            Exited(Exit, IoTasks),
            Runc,
            Ignore,
        }
        let action = self.with(&req.id, |entry| {
            if !entry.status().can_kill() {
                return Err(ShimError::NotFound(format!("container {}: process already finished", req.id)));
            }
            Ok(match entry {
                Container::Linux(_) => Action::Runc,
                Container::Wasm(c) => match container::terminating(req.signal) {
                    None => Action::Ignore,
                    Some(code) if c.status == Status::Running => {
                        c.interrupt.raise(code as i32);
                        Action::Interrupt
                    }
                    Some(code) => Action::Exited(c.set_exited(128 + code), c.io.clone()),
                },
            })
        })?;
        match action {
            Action::Interrupt => self.engine.interrupt_guests(),
            Action::Exited(exit, io) => {
                io.abort().await;
                self.publish_exit(&req.id, exit).await;
            }
            Action::Runc => linux::kill(&self.runc_of(&req.id)?, &req.id, req.signal, req.all).await?,
            Action::Ignore => log::debug!("container {}: ignoring signal {}", req.id, req.signal),
        }
        log::info!("container {}: signal {} delivered", req.id, req.signal);
        Ok(())
    }

    pub(super) async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            return self.delete_exec(&req.id, &req.exec_id).await;
        }
        let deletable = |c: &Container| match c.status().can_delete() {
            true => Ok(()),
            false => Err(ShimError::FailedPrecondition(format!("container {} is running; kill it first", req.id))),
        };
        self.with(&req.id, |c| deletable(c))?;
        // Nothing of the container may outlive it: not a Wasm exec's thread
        // in its cgroup and rootfs either.
        self.end_execs(&req.id).await;
        let state = self.state(&api::StateRequest { id: req.id.clone(), ..Default::default() })?;
        let entry = {
            let mut map = self.lock();
            let c = map.get(&req.id).ok_or_else(|| ShimError::NotFound(format!("container {} not found", req.id)))?;
            deletable(c)?;
            self.lock_deleting().insert(req.id.clone(), state);
            map.remove(&req.id).ok_or_else(|| ShimError::NotFound(req.id.clone()))?
        };
        let _listed = Deleting { service: self, id: &req.id };
        if let Container::Linux(l) = &entry {
            if let Err(e) = linux::delete(&l.runc, &req.id).await {
                log::warn!("delete {}: {e}", req.id);
            }
        }
        entry.io().abort().await;
        for exec in entry.execs().values() {
            exec.io.abort().await;
        }
        let exit = entry.exit().unwrap_or(Exit { code: 128 + libc::SIGKILL as u32, at: SystemTime::now() });
        let pid = entry.pid();
        let released = blocking(move || {
            match &entry {
                Container::Wasm(c) => {
                    if let Err(e) = c.release() {
                        log::warn!("delete {}: {e:#}", c.id);
                    }
                }
                Container::Linux(c) => release(&c.bundle),
            }
            Ok(())
        })
        .await;
        if let Err(e) = released {
            log::warn!("delete {}: {e}", req.id);
        }
        self.events.publish(topics::TASK_DELETE_EVENT_TOPIC, TaskDelete {
            container_id: req.id.clone(),
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        }).await;
        log::info!("deleted container {}", req.id);
        Ok(api::DeleteResponse { pid, exit_status: exit.code, exited_at: MessageField::some(timestamp(exit.at)), ..Default::default() })
    }

    pub(super) fn state(&self, req: &api::StateRequest) -> Result<api::StateResponse> {
        if !req.exec_id.is_empty() {
            return self.state_exec(&req.id, &req.exec_id);
        }
        if let Some(state) = self.lock_deleting().get(&req.id) {
            return Ok(state.clone());
        }
        self.with(&req.id, |c| {
            let status = api_status(c.status());
            let stdio = c.stdio();
            Ok(api::StateResponse {
                id: req.id.clone(),
                bundle: c.bundle().path.to_string_lossy().into_owned(),
                pid: c.pid(),
                status: status.into(),
                stdin: stdio.stdin.clone(),
                stdout: stdio.stdout.clone(),
                stderr: stdio.stderr.clone(),
                terminal: stdio.terminal,
                exit_status: c.exit().map(|e| e.code).unwrap_or(0),
                exited_at: c.exit().map(|e| timestamp(e.at)).into(),
                ..Default::default()
            })
        })
    }

    pub(super) async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let mut rx = self.with(&req.id, |c| match req.exec_id.as_str() {
            "" => Ok(c.exited().subscribe()),
            exec_id => Ok(c.exec_mut(&req.id, exec_id)?.exited.subscribe()),
        })?;
        let exit = loop {
            if let Some(exit) = *rx.borrow_and_update() {
                break exit;
            }
            if rx.changed().await.is_err() {
                let what = if req.exec_id.is_empty() { format!("container {}", req.id) } else { format!("exec process {}", req.exec_id) };
                return Err(ShimError::NotFound(format!("{what} was deleted")));
            }
        };
        Ok(api::WaitResponse { exit_status: exit.code, exited_at: MessageField::some(timestamp(exit.at)), ..Default::default() })
    }

    pub(super) async fn pids(&self, req: &api::PidsRequest) -> Result<api::PidsResponse> {
        let (pid, linux) = self.with(&req.id, |c| Ok((c.pid(), matches!(c, Container::Linux(_)))))?;
        let pids = if linux { linux::pids(&self.runc_of(&req.id)?, &req.id).await? } else { vec![pid] };
        let processes = pids.into_iter().map(|pid| ProcessInfo { pid, ..Default::default() }).collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    pub(super) fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse> {
        let metrics = self.with(&req.id, |c| match c {
            Container::Wasm(c) => {
                let mut metrics = match &c.cgroup {
                    Some(cg) => cg.metrics()?,
                    None => process_metrics(std::process::id())?,
                };
                // Memory is charged to the shim's process, so the guest's
                // linear memory is its usage at least.
                metrics.raise_memory_usage(c.memory_in_use.load(std::sync::atomic::Ordering::Relaxed));
                Ok(metrics)
            }
            // The spec's cgroup outlives the processes: Stats after the exit
            // still answer (containerd's CRI asks then, to tell an OOM kill).
            Container::Linux(c) => Ok(spec_metrics(&c.bundle.spec).unwrap_or_else(|| process_metrics(c.pid))?),
        })?;
        Ok(api::StatsResponse { stats: MessageField::some(metrics.into_any()?), ..Default::default() })
    }

    pub(super) fn close_io(&self, req: &api::CloseIORequest) -> Result<()> {
        self.with(&req.id, |c| {
            match req.exec_id.as_str() {
                "" => c.io().close_input(),
                exec_id => c.exec_mut(&req.id, exec_id)?.io.close_input(),
            }
            Ok(())
        })
    }

    /// Pause, Resume and Update are runc's for Linux containers; Wasm
    /// containers do not support them (see the README).
    pub(super) fn linux_only(&self, id: &str, op: &'static str) -> Result<()> {
        match self.with(id, |c| Ok(matches!(c, Container::Linux(_))))? {
            true => Ok(()),
            false => Err(ShimError::Unimplemented(op)),
        }
    }
}

/// Runs blocking work (mounts, file reads, compiles) off the RPC threads.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ShimError::Internal(anyhow::anyhow!("blocking task failed: {e}")))?
}

fn release(bundle: &Bundle) {
    if let Err(e) = bundle.release() {
        log::warn!("release bundle {}: {e:#}", bundle.path.display());
    }
}

pub(super) fn api_status(status: Status) -> ApiStatus {
    match status {
        Status::Created => ApiStatus::CREATED,
        Status::Running => ApiStatus::RUNNING,
        Status::Stopped => ApiStatus::STOPPED,
    }
}

pub(super) fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32, ..Default::default() }
}

/// Keeps a container's last state listed while its Delete runs.
struct Deleting<'a> {
    service: &'a TaskService,
    id: &'a str,
}

impl Drop for Deleting<'_> {
    fn drop(&mut self) {
        self.service.lock_deleting().remove(self.id);
    }
}
