//! The shim process: `start` (spawn or reuse the daemon for a container or
//! pod), `delete` (clean up after a daemon that is gone) and the daemon's
//! task service.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::DeleteResponse;
use containerd_shim::asynchronous::util::write_str_to_file;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, Flags, StartOpts};

use crate::engine::{cache_dir_for, WasmEngine};
use crate::instance::Linkers;
use crate::task::TaskService;

/// containerd's annotation naming a CRI container's pod sandbox.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct Service {
    exit: Arc<ExitSignal>,
    namespace: String,
    bundle: PathBuf,
}

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        Service { exit: Arc::default(), namespace: args.namespace.clone(), bundle }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let grouping = grouping_of(&self.bundle).unwrap_or_else(|| opts.id.clone());
        let address = spawn(opts, &grouping, Vec::new()).await?;
        write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // The daemon is gone (crashed or killed): release what it held.
        if let Err(e) = crate::bundle::unmount_rootfs(&self.bundle) {
            log::warn!("delete: {e:#}");
        }
        let _ = std::fs::remove_dir_all(self.bundle.join("wasm-scratch"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let engine = WasmEngine::new(cache_dir_for(&self.bundle)).and_then(|e| Ok((Linkers::new(e.engine())?, e)));
        match engine {
            Ok((linkers, engine)) => TaskService::new(engine, linkers, publisher, self.namespace.clone(), self.exit.clone()),
            Err(e) => {
                // Without an engine there is nothing this shim can serve.
                log::error!("cannot set up wasmtime: {e:#}");
                eprintln!("cannot set up wasmtime: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

/// Containers of one pod share a shim: group by the pod's sandbox id.
fn grouping_of(bundle: &Path) -> Option<String> {
    let spec = crate::bundle::read_spec(bundle).ok()?;
    spec.annotations().as_ref()?.get(SANDBOX_ID_ANNOTATION).cloned()
}
