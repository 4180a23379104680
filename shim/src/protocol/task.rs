//! The task service: one thin method per RPC. Each locks the container map
//! briefly, delegates to the container (a Wasm guest, or a Linux container
//! run by runc), and publishes the matching event after the lock is released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::api::{self, Status as ApiStatus};
use containerd_shim::asynchronous::io::Stdio;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{TtrpcContext, TtrpcResult};

use containerd_shim::asynchronous::io::IoTasks;
use containerd_shim::protos::types::task::ProcessInfo;

use super::events::Events;
use crate::container::instance::{self, Launch};
use crate::container::linux::{self, LinuxContainer, Runc};
use crate::container::wasm::WasmContainer;
use crate::container::{self, Container, Exit, Status};
use crate::error::{Result, ShimError};
use crate::host::bundle::Bundle;
use crate::host::cgroups::process_metrics;
use crate::host::content::ImageContent;
use crate::host::entrypoint::{Entrypoint, Kind};
use crate::wasm::engine::WasmEngine;
use crate::wasm::linker::Linkers;

type Containers = Arc<Mutex<HashMap<String, Container>>>;

#[derive(Clone)]
pub struct TaskService {
    containers: Containers,
    engine: Arc<WasmEngine>,
    linkers: Arc<Linkers>,
    runc: Option<Runc>,
    content: ImageContent,
    events: Events,
    exit: Arc<ExitSignal>,
    /// Signalled by every RPC; the shim trims itself once they stop.
    activity: Arc<tokio::sync::Notify>,
}

impl TaskService {
    pub fn new(
        engine: Arc<WasmEngine>,
        linkers: Linkers,
        runc: Option<Runc>,
        content: ImageContent,
        publisher: RemotePublisher,
        namespace: String,
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
            events: Events::new(publisher, namespace),
            exit,
            activity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or_else(|| ShimError::NotFound(format!("container {id} not found")))?;
        f(c)
    }

    fn runc(&self) -> Result<&Runc> {
        self.runc.as_ref().ok_or_else(|| ShimError::FailedPrecondition("runc is not available to run Linux containers".into()))
    }

    async fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        if self.lock().contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(format!("container {} already exists", req.id)));
        }
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
            Ok(entry) if entry.kind == Kind::Native => match self.runc() {
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
        blocking(move || Entrypoint::classify(&name, layer.bytes, &env)).await
    }

    async fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        no_exec(&req.exec_id)?;
        enum Plan {
            Wasm(Launch),
            Linux(u32),
        }
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
                std::process::id()
            }
            Plan::Linux(pid) => {
                linux::start(self.runc()?, &req.id).await?;
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

    /// Drains the container's output, then marks it stopped and tells containerd.
    async fn record_exit(&self, id: String, code: u32) {
        if let Ok(io) = self.with(&id, |c| Ok(c.io().clone())) {
            io.shutdown().await;
        }
        let exit = self.with(&id, |c| Ok((c.status() != Status::Stopped).then(|| c.set_exited(code))));
        if let Ok(Some(exit)) = exit {
            log::info!("container {id} exited with status {code}");
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

    async fn kill(&self, req: api::KillRequest) -> Result<()> {
        no_exec(&req.exec_id)?;
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
            Action::Runc => linux::kill(self.runc()?, &req.id, req.signal, req.all).await?,
            Action::Ignore => log::debug!("container {}: ignoring signal {}", req.id, req.signal),
        }
        log::info!("container {}: signal {} delivered", req.id, req.signal);
        Ok(())
    }

    async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        no_exec(&req.exec_id)?;
        let entry = {
            let mut map = self.lock();
            let c = map.get(&req.id).ok_or_else(|| ShimError::NotFound(format!("container {} not found", req.id)))?;
            if !c.status().can_delete() {
                return Err(ShimError::FailedPrecondition(format!("container {} is running; kill it first", req.id)));
            }
            map.remove(&req.id).ok_or_else(|| ShimError::NotFound(req.id.clone()))?
        };
        if let Container::Linux(_) = &entry {
            if let Err(e) = linux::delete(self.runc()?, &req.id).await {
                log::warn!("delete {}: {e}", req.id);
            }
        }
        entry.io().abort().await;
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

    fn state(&self, req: &api::StateRequest) -> Result<api::StateResponse> {
        no_exec(&req.exec_id)?;
        self.with(&req.id, |c| {
            let status = match c.status() {
                Status::Created => ApiStatus::CREATED,
                Status::Running => ApiStatus::RUNNING,
                Status::Stopped => ApiStatus::STOPPED,
            };
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

    async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        no_exec(&req.exec_id)?;
        let mut rx = self.with(&req.id, |c| Ok(c.exited().subscribe()))?;
        let exit = loop {
            if let Some(exit) = *rx.borrow_and_update() {
                break exit;
            }
            if rx.changed().await.is_err() {
                return Err(ShimError::NotFound(format!("container {} was deleted", req.id)));
            }
        };
        Ok(api::WaitResponse { exit_status: exit.code, exited_at: MessageField::some(timestamp(exit.at)), ..Default::default() })
    }

    async fn pids(&self, req: &api::PidsRequest) -> Result<api::PidsResponse> {
        let (pid, linux) = self.with(&req.id, |c| Ok((c.pid(), matches!(c, Container::Linux(_)))))?;
        let pids = if linux { linux::pids(self.runc()?, &req.id).await? } else { vec![pid] };
        let processes = pids.into_iter().map(|pid| ProcessInfo { pid, ..Default::default() }).collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse> {
        let metrics = self.with(&req.id, |c| match c {
            Container::Wasm(c) => {
                let mut metrics = match &c.cgroup {
                    Some(cg) => cg.metrics()?,
                    None => process_metrics(std::process::id())?,
                };
                // CPU is the guest thread's own; memory is charged to the shim's
                // process, so report the guest's linear memory as its usage.
                let linear = c.memory_in_use.load(std::sync::atomic::Ordering::Relaxed);
                let usage = metrics.memory.mut_or_insert_default().usage.mut_or_insert_default();
                usage.usage = usage.usage.max(linear);
                Ok(metrics)
            }
            Container::Linux(c) => Ok(process_metrics(c.pid)?),
        })?;
        let any = containerd_shim::util::convert_to_any(Box::new(metrics)).map_err(|e| anyhow::anyhow!("encode metrics: {e}"))?;
        Ok(api::StatsResponse { stats: MessageField::some(any), ..Default::default() })
    }

    fn close_io(&self, req: &api::CloseIORequest) -> Result<()> {
        no_exec(&req.exec_id)?;
        self.with(&req.id, |c| {
            c.io().close_input();
            Ok(())
        })
    }

    /// Pause, Resume and Update are runc's for Linux containers; Wasm
    /// containers do not support them (see the README).
    fn linux_only(&self, id: &str, op: &'static str) -> Result<()> {
        match self.with(id, |c| Ok(matches!(c, Container::Linux(_))))? {
            true => Ok(()),
            false => Err(ShimError::Unimplemented(op)),
        }
    }
}

/// Runs blocking work (mounts, file reads, compiles) off the RPC threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ShimError::Internal(anyhow::anyhow!("blocking task failed: {e}")))?
}

fn release(bundle: &Bundle) {
    if let Err(e) = bundle.release() {
        log::warn!("release bundle {}: {e:#}", bundle.path.display());
    }
}

fn no_exec(exec_id: &str) -> Result<()> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        Err(ShimError::NotFound(format!("exec process {exec_id} not found: exec is not supported for Wasm containers")))
    }
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32, ..Default::default() }
}

#[async_trait]
impl Task for TaskService {
    async fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        self.activity.notify_one();
        Ok(TaskService::create(self, req).await?)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        self.activity.notify_one();
        Ok(TaskService::start(self, req).await?)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        self.activity.notify_one();
        Ok(TaskService::state(self, &req)?)
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        self.activity.notify_one();
        Ok(TaskService::wait(self, req).await?)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        TaskService::kill(self, req).await?;
        Ok(api::Empty::default())
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        self.activity.notify_one();
        Ok(TaskService::delete(self, req).await?)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        self.activity.notify_one();
        Ok(TaskService::pids(self, &req).await?)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        self.activity.notify_one();
        Ok(TaskService::stats(self, &req)?)
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        TaskService::close_io(self, &req)?;
        Ok(api::Empty::default())
    }

    async fn connect(&self, _ctx: &TtrpcContext, _req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        self.activity.notify_one();
        let pid = std::process::id();
        Ok(api::ConnectResponse { shim_pid: pid, task_pid: pid, version: env!("CARGO_PKG_VERSION").into(), ..Default::default() })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        if self.lock().is_empty() {
            log::info!("no containers left; shutting down");
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }

    async fn exec(&self, _ctx: &TtrpcContext, _req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        Err(ShimError::Unimplemented("Exec").into())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, _req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        Err(ShimError::Unimplemented("ResizePty (Wasm containers have no terminal)").into())
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        self.linux_only(&req.id, "Pause of a Wasm container")?;
        linux::pause(self.runc()?, &req.id).await?;
        Ok(api::Empty::default())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        self.linux_only(&req.id, "Resume of a Wasm container")?;
        linux::resume(self.runc()?, &req.id).await?;
        Ok(api::Empty::default())
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, _req: api::CheckpointTaskRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        Err(ShimError::Unimplemented("Checkpoint").into())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        self.activity.notify_one();
        self.linux_only(&req.id, "Update of a Wasm container")?;
        // containerd sends the resources as JSON inside an Any.
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&req.resources.value)
            .map_err(|e| ShimError::invalid(format!("update {}: bad resources: {e}", req.id)))?;
        linux::update(self.runc()?, &req.id, &resources).await?;
        Ok(api::Empty::default())
    }
}
