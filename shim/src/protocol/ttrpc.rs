//! The ttrpc face of the task service: each RPC is counted while served
//! (`rpcs`: activity for the idle trim, and what Shutdown lets finish) and
//! calls the method of `TaskService` that does the work.

use async_trait::async_trait;
use containerd_shim::api;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::{TtrpcContext, TtrpcResult};

use super::task::TaskService;
use crate::container::linux;
use crate::error::ShimError;

/// How long Shutdown waits for other calls to answer.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl Task for TaskService {
    async fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::create(self, req).await?)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::start(self, req).await?)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::state(self, &req)?)
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::wait(self, req).await?)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        TaskService::kill(self, req).await?;
        Ok(api::Empty::default())
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::delete(self, req).await?)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::pids(self, &req).await?)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        let _serving = self.rpcs.serve();
        Ok(TaskService::stats(self, &req)?)
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        TaskService::close_io(self, &req)?;
        Ok(api::Empty::default())
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        let _serving = self.rpcs.serve();
        let shim_pid = std::process::id();
        // containerd 2.x takes a task's pid from here (Docker then configures
        // the network at /proc/<pid>/ns/net): the container's, not the shim's.
        let task_pid = self.with(&req.id, |c| Ok(c.pid())).unwrap_or(shim_pid);
        Ok(api::ConnectResponse { shim_pid, task_pid, version: env!("CARGO_PKG_VERSION").into(), ..Default::default() })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        self.rpcs.touch();
        if self.lock().is_empty() {
            // Calls still being served answer first (see `rpcs`); a Create
            // that arrives meanwhile keeps the shim.
            if !self.rpcs.drained(SHUTDOWN_DRAIN).await {
                log::warn!("shutting down with RPCs still in flight after {SHUTDOWN_DRAIN:?}");
            }
            if self.lock().is_empty() {
                log::info!("no containers left; shutting down");
                self.exit.signal();
            }
        }
        Ok(api::Empty::default())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        TaskService::exec(self, req).await?;
        Ok(api::Empty::default())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        TaskService::resize_pty(self, &req)?;
        Ok(api::Empty::default())
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        self.linux_only(&req.id, "Pause of a Wasm container")?;
        linux::pause(&self.runc_of(&req.id)?, &req.id).await?;
        Ok(api::Empty::default())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        self.linux_only(&req.id, "Resume of a Wasm container")?;
        linux::resume(&self.runc_of(&req.id)?, &req.id).await?;
        Ok(api::Empty::default())
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, _req: api::CheckpointTaskRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        Err(ShimError::Unimplemented("Checkpoint").into())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let _serving = self.rpcs.serve();
        self.linux_only(&req.id, "Update of a Wasm container")?;
        // containerd sends the resources as JSON inside an Any.
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&req.resources.value)
            .map_err(|e| ShimError::invalid(format!("update {}: bad resources: {e}", req.id)))?;
        linux::update(&self.runc_of(&req.id)?, &req.id, &resources).await?;
        Ok(api::Empty::default())
    }
}
