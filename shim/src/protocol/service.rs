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

use super::events::Events;
use super::task::TaskService;
use crate::container::linux::Runc;
use crate::host::content::ImageContent;
use crate::wasm::engine::{cache_dir_for, WasmEngine};
use crate::wasm::linker::Linkers;

/// containerd's annotation naming a CRI container's pod sandbox.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct Service {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
    /// containerd's API socket, for image content (OCI Wasm artifacts).
    address: String,
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
        Service { exit: Arc::default(), id: args.id.clone(), namespace: args.namespace.clone(), address: args.address.clone(), bundle }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        start_daemon(opts, &self.bundle).await
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // The daemon is gone (crashed or killed): release what it held.
        crate::container::orphan::release(&self.bundle, &self.namespace, &self.id).await;
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

    /// The crate's queued publisher is not used: events are forwarded
    /// inline (see `protocol::events`), on a connection of their own.
    async fn create_task_service(&self, _publisher: RemotePublisher) -> TaskService {
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        match Events::connect(&address, self.namespace.clone()).await {
            Ok(events) => self.task_service(events),
            Err(e) => {
                log::error!("{e:#}");
                eprintln!("{e:#}");
                std::process::exit(1);
            }
        }
    }
}

impl Service {
    /// The daemon's task service, publishing with `events`.
    fn task_service(&self, events: Events) -> TaskService {
        let engine = WasmEngine::new(cache_dir_for(&self.bundle)).and_then(|e| Ok((Linkers::new(e.engine())?, e)));
        let runc = match Runc::new(&Runc::root_for(&self.bundle, &self.namespace)) {
            Ok(runc) => Some(runc),
            Err(e) => {
                log::warn!("Linux containers unavailable: {e:#}");
                None
            }
        };
        match engine {
            Ok((linkers, engine)) => {
                let content = ImageContent::new(&self.address, &self.namespace);
                TaskService::new(engine, linkers, runc, content, events, self.exit.clone())
            }
            Err(e) => {
                // Without an engine there is nothing this shim can serve.
                log::error!("cannot set up wasmtime: {e:#}");
                eprintln!("cannot set up wasmtime: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

/// Starts (or reuses, for a pod) the shim daemon and returns its address.
async fn start_daemon(opts: StartOpts, bundle: &Path) -> Result<String, Error> {
    let grouping = grouping_of(bundle).unwrap_or_else(|| opts.id.clone());
    let address = opts.socket_address(&grouping);
    if serves(&address) {
        // Another container of this pod: its daemon is running already.
        write_str_to_file("address", &address).await?;
        return Ok(address);
    }
    let address = spawn(opts, &grouping, Vec::new()).await?;
    write_str_to_file("address", &address).await?;
    Ok(address)
}

/// The `start` action, answered the way every containerd from 1.6 on reads
/// it: the bare socket address on stdout. (The shim crate answers with a
/// JSON document that containerd 1.6 cannot parse.)
pub async fn start_action(flags: Flags) -> Result<(), Error> {
    use std::io::Read;
    use containerd_shim::protos::protobuf::Message;
    let mut input = Vec::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        std::io::stdin().take(1 << 20).read_to_end(&mut input).map_err(|e| Error::IoError { context: "read start options".into(), err: e })?;
    }
    let mut extensions = Vec::new();
    // Runtime options, if containerd has any, arrive as a protobuf Any.
    if let Ok(any) = containerd_shim::protos::protobuf::well_known_types::any::Any::parse_from_bytes(&input) {
        if !any.type_url.is_empty() {
            extensions.push(any);
        }
    }
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        extensions,
        ..Default::default()
    };
    let bundle = std::env::current_dir().map_err(|e| Error::IoError { context: "current dir".into(), err: e })?;
    let address = start_daemon(opts, &bundle).await?;
    print!("{address}");
    Ok(())
}

/// Does a shim daemon answer on `address` (`unix://…` or a path)?
fn serves(address: &str) -> bool {
    std::os::unix::net::UnixStream::connect(address.strip_prefix("unix://").unwrap_or(address)).is_ok()
}

/// Containers of one pod share a shim: group by the pod's sandbox id.
fn grouping_of(bundle: &Path) -> Option<String> {
    let spec = crate::host::bundle::read_spec(bundle).ok()?;
    spec.annotations().as_ref()?.get(SANDBOX_ID_ANNOTATION).cloned()
}

/// containerd's FIFO logger, as `containerd_shim::logger::init` sets it up,
/// without the spans wasmtime-wasi opens for every WASI preview 1 call
/// (`#[instrument]`, level INFO). Those reach `log` whenever a crate built
/// alongside turns on tracing's `log` feature (oci-client does, in a
/// workspace build): then every write of a guest was a line in containerd's log.
struct ShimLogger(containerd_shim::logger::FifoLogger);

impl log::Log for ShimLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        let span_noise = metadata.level() > log::Level::Warn
            && ["wasmtime_wasi", "wiggle", "tracing::span"].iter().any(|t| metadata.target().starts_with(t));
        !span_noise && self.0.enabled(metadata)
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

fn init_logging(flags: &Flags) -> anyhow::Result<()> {
    let fifo = containerd_shim::logger::FifoLogger::new(&flags.namespace, &flags.id)?;
    // As the shim crate does: RUST_LOG, else info; at least debug when containerd's is.
    let level = std::env::var(containerd_shim::logger::LOG_ENV).ok().and_then(|l| l.parse().ok()).unwrap_or(log::LevelFilter::Info);
    log::set_max_level(if flags.debug { level.max(log::LevelFilter::Debug) } else { level });
    log::set_boxed_logger(Box::new(ShimLogger(fifo))).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The daemon: serves the task API on the socket `start` chose, under both
/// the v2 name (containerd 1.6/1.7) and the v3 name (containerd 2.x), until
/// containerd shuts it down. (The shim crate's own loop registers only v3.)
pub async fn serve(flags: Flags) -> anyhow::Result<()> {
    use anyhow::Context;
    use containerd_shim::protos::shim_async::create_task;
    use containerd_shim::protos::ttrpc::asynchronous::{transport::Listener, Server};

    if flags.socket.is_empty() {
        anyhow::bail!("-socket is required");
    }
    // Orphaned grandchildren (runc's) are ours to reap.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    init_logging(&flags).context("set up logging")?;
    let mut config = Config::default();
    let mut shim = <Service as Shim>::new(crate::RUNTIME_ID, &flags, &mut config).await;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").context("TTRPC_ADDRESS is not set")?;
    let events = Events::connect(&ttrpc_address, shim.namespace.clone()).await?;
    let task: Arc<dyn containerd_shim::protos::shim_async::Task + Send + Sync> = Arc::new(shim.task_service(events));
    let mut services = create_task(task.clone());
    for (name, service) in create_task(task) {
        services.insert(name.replace(".v3.", ".v2."), service);
    }
    let path = flags.socket.strip_prefix("unix://").unwrap_or(&flags.socket).to_string();
    if let Some(parent) = Path::new(&path).parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let listener = match std::os::unix::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        // Two starts of one pod raced: the other daemon serves it.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && serves(&path) => {
            log::info!("another shim serves {path} already");
            return Ok(());
        }
        // Left by a shim that was killed: nobody listens on it.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            log::warn!("removing the stale socket {path}");
            std::fs::remove_file(&path).with_context(|| format!("remove stale socket {path}"))?;
            std::os::unix::net::UnixListener::bind(&path).with_context(|| format!("listen on {path}"))?
        }
        Err(e) => return Err(anyhow::Error::from(e).context(format!("listen on {path}"))),
    };
    let listener = Listener::try_from(listener).context("ttrpc listener")?;
    let mut server = Server::new().add_listener(listener).register_service(services);
    server.start().await.map_err(|e| anyhow::anyhow!("start ttrpc server: {e}"))?;
    // Tell `start` we are serving: it waits for our stdout to close.
    // SAFETY: dup2 on the process's own standard descriptors.
    unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
    log::info!("shim serving on {path}");
    tokio::spawn(ignore_terminal_signals());
    shim.wait().await;
    log::info!("shim shutting down");
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// containerd stops shims with Shutdown, not signals; a stray SIGTERM or
/// SIGINT (say, from a terminal) must not take the containers down.
async fn ignore_terminal_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else { return };
    loop {
        tokio::select! {
            _ = term.recv() => log::debug!("ignoring SIGTERM"),
            _ = int.recv() => log::debug!("ignoring SIGINT"),
        }
    }
}
