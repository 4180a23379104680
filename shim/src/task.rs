//! The task service: one thin method per RPC. Each locks the container map
//! briefly, delegates to the container, and publishes the matching event
//! after the lock is released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::api::{self, Status as ApiStatus};
use containerd_shim::asynchronous::io::Stdio;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, TtrpcContext, TtrpcResult};

use crate::container::{self, Container, CreateRequest, Exit, Status};
use crate::engine::WasmEngine;
use crate::error::{Result, ShimError};
use crate::instance::{self, Launch, Linkers};

type Containers = Arc<Mutex<HashMap<String, Container>>>;

#[derive(Clone)]
pub struct TaskService {
    containers: Containers,
    engine: Arc<WasmEngine>,
    linkers: Arc<Linkers>,
    events: Events,
    exit: Arc<ExitSignal>,
}

impl TaskService {
    pub fn new(engine: Arc<WasmEngine>, linkers: Linkers, publisher: RemotePublisher, namespace: String, exit: Arc<ExitSignal>) -> Self {
        Self {
            containers: Containers::default(),
            engine,
            linkers: Arc::new(linkers),
            events: Events { publisher: Arc::new(publisher), namespace },
            exit,
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

    async fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        if self.lock().contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(format!("container {} already exists", req.id)));
        }
        let stdio = Stdio::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        let request = CreateRequest { id: req.id.clone(), bundle: PathBuf::from(&req.bundle), rootfs: req.rootfs.clone(), stdio };
        let (engine, linkers) = (self.engine.clone(), self.linkers.clone());
        let container = tokio::task::spawn_blocking(move || Container::create(request, &engine, &linkers))
            .await
            .map_err(|e| anyhow::anyhow!("create task panicked: {e}"))?
            .inspect_err(|e| log::error!("create {}: {e}", req.id))?;
        self.lock().insert(req.id.clone(), container);
        let pid = std::process::id();
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

    async fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        no_exec(&req.exec_id)?;
        let launch = self.with(&req.id, |c| {
            if !c.status.can_start() {
                return Err(ShimError::FailedPrecondition(format!("container {} is {:?}, not created", c.id, c.status)));
            }
            let (prepared, caps) = c.plan.take().ok_or_else(|| ShimError::FailedPrecondition(format!("container {} has nothing to start", c.id)))?;
            let stdio = crate::stdio::connect(&c.io, &c.stdio)?;
            c.status = Status::Running;
            Ok(Launch { id: c.id.clone(), engine: self.engine.engine().clone(), prepared, caps, stdio, interrupt: c.interrupt.clone() })
        })?;
        let exit_rx = match instance::start(launch).await {
            Ok(rx) => rx,
            Err(e) => {
                let io = self.with(&req.id, |c| {
                    c.set_exited(instance::TRAP_EXIT_CODE);
                    Ok(c.io.clone())
                })?;
                io.abort().await;
                log::error!("start {}: {e:#}", req.id);
                return Err(ShimError::FailedPrecondition(format!("start container {}: {e:#}", req.id)));
            }
        };
        let pid = std::process::id();
        self.events.publish(topics::TASK_START_EVENT_TOPIC, TaskStart { container_id: req.id.clone(), pid, ..Default::default() }).await;
        tokio::spawn(self.clone().reap(req.id.clone(), exit_rx));
        log::info!("started container {}", req.id);
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    /// Waits for a guest to end, drains its output, then records the exit.
    async fn reap(self, id: String, exit_rx: tokio::sync::oneshot::Receiver<u32>) {
        let code = exit_rx.await.unwrap_or(instance::TRAP_EXIT_CODE);
        let io = self.with(&id, |c| Ok(c.io.clone()));
        if let Ok(io) = io {
            io.shutdown().await;
        }
        if let Ok(exit) = self.with(&id, |c| Ok(c.set_exited(code))) {
            log::info!("container {id} exited with status {code}");
            self.publish_exit(&id, exit).await;
        }
    }

    async fn publish_exit(&self, id: &str, exit: Exit) {
        self.events.publish(topics::TASK_EXIT_EVENT_TOPIC, TaskExit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: std::process::id(),
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        }).await;
    }

    async fn kill(&self, req: api::KillRequest) -> Result<()> {
        no_exec(&req.exec_id)?;
        let Some(code) = container::terminating(req.signal) else {
            log::debug!("container {}: ignoring signal {}", req.id, req.signal);
            return Ok(());
        };
        enum Action {
            Interrupt,
            Exited(Exit, containerd_shim::asynchronous::io::IoTasks),
        }
        let action = self.with(&req.id, |c| {
            if !c.status.can_kill() {
                return Err(ShimError::NotFound(format!("container {}: process already finished", c.id)));
            }
            Ok(match c.status {
                Status::Running => {
                    c.interrupt.raise(code as i32);
                    Action::Interrupt
                }
                _ => Action::Exited(c.set_exited(128 + code), c.io.clone()),
            })
        })?;
        match action {
            Action::Interrupt => self.engine.interrupt_guests(),
            Action::Exited(exit, io) => {
                io.abort().await;
                self.publish_exit(&req.id, exit).await;
            }
        }
        log::info!("container {}: signal {} delivered", req.id, req.signal);
        Ok(())
    }

    async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        no_exec(&req.exec_id)?;
        let container = {
            let mut map = self.lock();
            let c = map.get(&req.id).ok_or_else(|| ShimError::NotFound(format!("container {} not found", req.id)))?;
            if !c.status.can_delete() {
                return Err(ShimError::FailedPrecondition(format!("container {} is running; kill it first", req.id)));
            }
            map.remove(&req.id).ok_or_else(|| ShimError::NotFound(req.id.clone()))?
        };
        container.io.abort().await;
        let exit = container.exit.unwrap_or(Exit { code: 0, at: SystemTime::now() });
        let released = tokio::task::spawn_blocking(move || container.release().map(|_| container.id))
            .await
            .map_err(|e| anyhow::anyhow!("delete panicked: {e}"))?;
        if let Err(e) = released {
            log::warn!("delete {}: {e:#}", req.id);
        }
        let pid = std::process::id();
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
            let status = match c.status {
                Status::Created => ApiStatus::CREATED,
                Status::Running => ApiStatus::RUNNING,
                Status::Stopped => ApiStatus::STOPPED,
            };
            Ok(api::StateResponse {
                id: c.id.clone(),
                bundle: c.bundle.to_string_lossy().into_owned(),
                pid: std::process::id(),
                status: status.into(),
                stdin: c.stdio.stdin.clone(),
                stdout: c.stdio.stdout.clone(),
                stderr: c.stdio.stderr.clone(),
                terminal: c.stdio.terminal,
                exit_status: c.exit.map(|e| e.code).unwrap_or(0),
                exited_at: c.exit.map(|e| timestamp(e.at)).into(),
                ..Default::default()
            })
        })
    }

    async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        no_exec(&req.exec_id)?;
        let mut rx = self.with(&req.id, |c| Ok(c.exited.subscribe()))?;
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

    fn pids(&self, req: &api::PidsRequest) -> Result<api::PidsResponse> {
        self.with(&req.id, |_| Ok(()))?;
        let info = containerd_shim::protos::types::task::ProcessInfo { pid: std::process::id(), ..Default::default() };
        Ok(api::PidsResponse { processes: vec![info], ..Default::default() })
    }

    fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse> {
        self.with(&req.id, |_| Ok(()))?;
        // Guests run inside the shim, so the shim's cgroup is the container's.
        let cgroup = containerd_shim::cgroup::get_cgroup(std::process::id()).map_err(|e| anyhow::anyhow!("find cgroup: {e}"))?;
        let metrics = containerd_shim::cgroup::collect_metrics(&cgroup).map_err(|e| anyhow::anyhow!("collect metrics: {e}"))?;
        let any = containerd_shim::util::convert_to_any(Box::new(metrics)).map_err(|e| anyhow::anyhow!("encode metrics: {e}"))?;
        Ok(api::StatsResponse { stats: MessageField::some(any), ..Default::default() })
    }

    fn close_io(&self, req: &api::CloseIORequest) -> Result<()> {
        no_exec(&req.exec_id)?;
        self.with(&req.id, |c| {
            c.io.close_input();
            Ok(())
        })
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

/// Publishes task events to containerd; failures are logged, never fatal.
#[derive(Clone)]
struct Events {
    publisher: Arc<RemotePublisher>,
    namespace: String,
}

impl Events {
    async fn publish<E: Event>(&self, topic: &str, event: E) {
        if let Err(e) = self.publisher.publish(Context::default(), topic, &self.namespace, Box::new(event)).await {
            log::warn!("publish {topic}: {e}");
        }
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        Ok(TaskService::create(self, req).await?)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        Ok(TaskService::start(self, req).await?)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        Ok(TaskService::state(self, &req)?)
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        Ok(TaskService::wait(self, req).await?)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        TaskService::kill(self, req).await?;
        Ok(api::Empty::default())
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        Ok(TaskService::delete(self, req).await?)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        Ok(TaskService::pids(self, &req)?)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        Ok(TaskService::stats(self, &req)?)
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        TaskService::close_io(self, &req)?;
        Ok(api::Empty::default())
    }

    async fn connect(&self, _ctx: &TtrpcContext, _req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        let pid = std::process::id();
        Ok(api::ConnectResponse { shim_pid: pid, task_pid: pid, version: env!("CARGO_PKG_VERSION").into(), ..Default::default() })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.lock().is_empty() {
            log::info!("no containers left; shutting down");
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }

    async fn exec(&self, _ctx: &TtrpcContext, _req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        Err(ShimError::Unimplemented("Exec").into())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, _req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        Err(ShimError::Unimplemented("ResizePty (Wasm containers have no terminal)").into())
    }

    async fn pause(&self, _ctx: &TtrpcContext, _req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        Err(ShimError::Unimplemented("Pause").into())
    }

    async fn resume(&self, _ctx: &TtrpcContext, _req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        Err(ShimError::Unimplemented("Resume").into())
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, _req: api::CheckpointTaskRequest) -> TtrpcResult<api::Empty> {
        Err(ShimError::Unimplemented("Checkpoint").into())
    }

    async fn update(&self, _ctx: &TtrpcContext, _req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        Err(ShimError::Unimplemented("Update").into())
    }
}
