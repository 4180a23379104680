//! A container's stdin/stdout/stderr. containerd names FIFOs (or, with
//! `--log-uri file://…`, a file). FIFOs are served by the shim crate's
//! `IoTasks`, which holds them open across containerd restarts and drains
//! output on exit; guests reach them through in-memory pipes.

use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};

use crate::error::{Result, ShimError};

/// Pipe capacity between a guest and its FIFO copier.
const PIPE_CAPACITY: usize = 64 * 1024;

/// Where a guest's output goes.
pub type GuestOutput = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// The guest's ends of its stdio; `None` where containerd wants none.
#[derive(Default)]
pub struct GuestStdio {
    pub stdin: Option<DuplexStream>,
    pub stdout: Option<GuestOutput>,
    pub stderr: Option<GuestOutput>,
}

/// Starts copying between what `stdio` names and new pipes, and returns the
/// guest's ends.
pub fn connect(io: &IoTasks, stdio: &Stdio) -> Result<GuestStdio> {
    let mut guest = GuestStdio::default();
    if !stdio.stdin.is_empty() {
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        io.copy_from_fifo(&stdio.stdin, ours).map_err(|e| anyhow::anyhow!("connect stdin {}: {e}", stdio.stdin))?;
        guest.stdin = Some(theirs);
    }
    guest.stdout = output(io, &stdio.stdout)?;
    guest.stderr = output(io, &stdio.stderr)?;
    Ok(guest)
}

fn output(io: &IoTasks, target: &str) -> Result<Option<GuestOutput>> {
    if target.is_empty() {
        return Ok(None);
    }
    if let Some(file) = log_file(target)? {
        return Ok(Some(Box::new(file)));
    }
    let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
    io.copy_to_fifo(ours, target).map_err(|e| anyhow::anyhow!("connect {target}: {e}"))?;
    Ok(Some(Box::new(theirs)))
}

/// Copies a Linux container's output stream to `target` (a FIFO or log file).
pub fn forward(io: &IoTasks, mut from: Box<dyn AsyncRead + Send + Sync + Unpin>, target: &str) -> Result<()> {
    if target.is_empty() {
        // Nobody wants this stream: drain it so the container never blocks.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
        });
        return Ok(());
    }
    if let Some(mut file) = log_file(target)? {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut file).await;
        });
        return Ok(());
    }
    io.copy_to_fifo(from, target).map_err(|e| anyhow::anyhow!("connect {target}: {e}").into())
}

/// A `file://` log URI opened for appending; `None` for a FIFO path.
fn log_file(target: &str) -> Result<Option<tokio::fs::File>> {
    if let Some(path) = target.strip_prefix("file://") {
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("create log dir {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("open log file {}: {e}", path.display()))?;
        return Ok(Some(tokio::fs::File::from_std(file)));
    }
    if let Some((scheme, _)) = target.split_once("://") {
        return Err(ShimError::invalid(format!("log URI scheme {scheme}:// is not supported (use file:// or a FIFO)")));
    }
    Ok(None)
}
