//! A small blocking CRI client over containerd's socket: the calls kubelet
//! makes to run pods, used by the Kubernetes-path tests.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

pub type CriResult<T> = Result<T, tonic::Status>;

impl Cri {
    pub fn connect() -> Cri {
        let sock = crate::env().dir.join("containerd.sock");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let channel = rt
            .block_on(async move {
                Endpoint::try_from("http://[::]")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let sock = sock.clone();
                        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?)) }
                    }))
                    .await
            })
            .expect("connect to containerd's CRI socket");
        Cri { rt, client: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
    }

    fn call<T, F>(&mut self, f: impl FnOnce(RuntimeServiceClient<Channel>) -> F) -> CriResult<T>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), f(client)).await })
            .map_err(|_| tonic::Status::deadline_exceeded("CRI call took over 60 s"))?
            .map(|r| r.into_inner())
    }

    /// PullImage, as kubelet sends it for a container's image; the image ref.
    pub fn pull_image(&mut self, image: &str) -> CriResult<String> {
        let req = PullImageRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
        let client = self.images.clone();
        self.rt
            .block_on(async move { tokio::time::timeout(Duration::from_secs(120), async move { client.clone().pull_image(req).await }).await })
            .map_err(|_| tonic::Status::deadline_exceeded("PullImage took over 120 s"))?
            .map(|r| r.into_inner().image_ref)
    }

    pub fn remove_image(&mut self, image: &str) -> CriResult<()> {
        let req = RemoveImageRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }) };
        let client = self.images.clone();
        self.rt.block_on(async move { client.clone().remove_image(req).await }).map(|_| ())
    }

    pub fn run_pod(&mut self, config: &PodSandboxConfig, handler: &str) -> CriResult<String> {
        let req = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
        self.call(|mut c| async move { c.run_pod_sandbox(req).await }).map(|r| r.pod_sandbox_id)
    }

    pub fn create_container(&mut self, pod_id: &str, config: &ContainerConfig, pod: &PodSandboxConfig) -> CriResult<String> {
        let req = CreateContainerRequest { pod_sandbox_id: pod_id.into(), config: Some(config.clone()), sandbox_config: Some(pod.clone()) };
        self.call(|mut c| async move { c.create_container(req).await }).map(|r| r.container_id)
    }

    pub fn start_container(&mut self, id: &str) -> CriResult<()> {
        let req = StartContainerRequest { container_id: id.into() };
        self.call(|mut c| async move { c.start_container(req).await }).map(|_| ())
    }

    pub fn stop_container(&mut self, id: &str, timeout: i64) -> CriResult<()> {
        let req = StopContainerRequest { container_id: id.into(), timeout };
        self.call(|mut c| async move { c.stop_container(req).await }).map(|_| ())
    }

    pub fn remove_container(&mut self, id: &str) -> CriResult<()> {
        let req = RemoveContainerRequest { container_id: id.into() };
        self.call(|mut c| async move { c.remove_container(req).await }).map(|_| ())
    }

    pub fn container_status(&mut self, id: &str) -> CriResult<ContainerStatus> {
        let req = ContainerStatusRequest { container_id: id.into(), verbose: false };
        self.call(|mut c| async move { c.container_status(req).await })
            .map(|r| r.status.unwrap_or_default())
    }

    pub fn container_stats(&mut self, id: &str) -> CriResult<ContainerStats> {
        let req = ContainerStatsRequest { container_id: id.into() };
        self.call(|mut c| async move { c.container_stats(req).await }).map(|r| r.stats.unwrap_or_default())
    }

    pub fn pod_status(&mut self, id: &str) -> CriResult<PodSandboxStatus> {
        let req = PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
        self.call(|mut c| async move { c.pod_sandbox_status(req).await }).map(|r| r.status.unwrap_or_default())
    }

    pub fn stop_pod(&mut self, id: &str) -> CriResult<()> {
        let req = StopPodSandboxRequest { pod_sandbox_id: id.into() };
        self.call(|mut c| async move { c.stop_pod_sandbox(req).await }).map(|_| ())
    }

    pub fn remove_pod(&mut self, id: &str) -> CriResult<()> {
        let req = RemovePodSandboxRequest { pod_sandbox_id: id.into() };
        self.call(|mut c| async move { c.remove_pod_sandbox(req).await }).map(|_| ())
    }

    /// ExecSync, as kubelet sends it for `kubectl exec` without a terminal
    /// and for exec probes: runs `cmd` in the container and waits up to
    /// `timeout` seconds for it (0: no limit); (stdout, stderr, exit code).
    pub fn exec_sync(&mut self, id: &str, cmd: &[&str], timeout: i64) -> CriResult<(String, String, i32)> {
        let req = ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout };
        self.call(|mut c| async move { c.exec_sync(req).await }).map(|r| {
            (String::from_utf8_lossy(&r.stdout).into_owned(), String::from_utf8_lossy(&r.stderr).into_owned(), r.exit_code)
        })
    }

    /// Waits (bounded) until the container has exited; returns its status.
    pub fn wait_exited(&mut self, id: &str, limit: Duration) -> ContainerStatus {
        let start = std::time::Instant::now();
        loop {
            let status = self.container_status(id).expect("container status");
            if status.state == ContainerState::ContainerExited as i32 || start.elapsed() > limit {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_running(&mut self, id: &str, limit: Duration) -> bool {
        crate::wait_until(limit, || {
            self.container_status(id).map(|s| s.state == ContainerState::ContainerRunning as i32).unwrap_or(false)
        })
    }
}

/// A pod sandbox config: log dir and cgroup parent under the test's own paths.
pub fn pod_config(name: &str, log_dir: &std::path::Path, cgroup_parent: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "e2e".into(), attempt: 0 }),
        hostname: name.into(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig { cgroup_parent: cgroup_parent.into(), ..Default::default() }),
        ..Default::default()
    }
}

/// A container config running `image` with the whole argv in `command`.
pub fn container_config(name: &str, image: &str, command: &[&str], log_path: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: log_path.into(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}
