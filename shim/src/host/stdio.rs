//! A container's stdin/stdout/stderr. containerd names FIFOs (or, with
//! `--log-uri file://…`, a file). FIFOs are served by the shim crate's
//! `IoTasks`, which holds them open across containerd restarts and drains
//! output on exit; guests reach them through in-memory pipes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};

use crate::error::{Result, ShimError};

/// Pipe capacity between a guest and its FIFO copier.
const PIPE_CAPACITY: usize = 64 * 1024;
/// How long Start waits for containerd to open an output FIFO's reading end.
const READER_TIMEOUT: Duration = Duration::from_secs(5);

/// containerd opens its reading end of an output FIFO from a goroutine that
/// may not have run yet when Start arrives. A process that writes and exits
/// before then would leave its output in a FIFO nobody holds open — lost —
/// and containerd's open would then wait for a writer forever (an ExecSync
/// that never returns). Held until the outputs are connected, this proves
/// containerd's reader is in place: it is a writer that was opened before the
/// shim's own reader existed, so only containerd's could let it open.
pub struct ReadersReady(#[allow(dead_code)] Vec<File>);

/// Waits (bounded, without polling: a blocking open on the blocking pool)
/// until containerd reads each output FIFO `stdio` names.
pub async fn readers_ready(stdio: &Stdio) -> ReadersReady {
    let mut held = Vec::new();
    for target in [&stdio.stdout, &stdio.stderr] {
        if target.is_empty() || target.contains("://") {
            continue;
        }
        if let Some(writer) = reader_ready(target, READER_TIMEOUT).await {
            held.push(writer);
        }
    }
    ReadersReady(held)
}

async fn reader_ready(fifo: &str, timeout: Duration) -> Option<File> {
    // Nearly always the reader is there already: no thread needed.
    match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo) {
        Ok(writer) => return Some(writer),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
        // Not a FIFO we can open: connecting it reports why.
        Err(_) => return None,
    }
    let path = fifo.to_string();
    let mut open = tokio::task::spawn_blocking(move || OpenOptions::new().write(true).open(path));
    match tokio::time::timeout(timeout, &mut open).await {
        Ok(Ok(Ok(writer))) => Some(writer),
        Ok(_) => None,
        Err(_) => {
            log::warn!("nobody reads {fifo} after {timeout:?}: output written before a reader opens it may be lost");
            // Our own reader lets the blocked open return and frees its thread.
            let _unblock = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fifo);
            let _ = open.await;
            None
        }
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    fn fifo(dir: &tempfile::TempDir) -> String {
        let path = dir.path().join("stdout");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[tokio::test]
    async fn start_waits_for_containerds_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        let opening = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, opening) = (path.clone(), opening.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                opening.store(true, Ordering::SeqCst);
                std::fs::File::open(path).unwrap()
            })
        };
        let stdio = Stdio::new("", &path, "", false);
        let ready = readers_ready(&stdio).await;
        assert!(opening.load(Ordering::SeqCst), "returned before anyone read the FIFO");
        assert_eq!(ready.0.len(), 1);
        drop(reader.join().unwrap());
        // A reader already there: ready at once, no thread.
        let _reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
        assert_eq!(readers_ready(&stdio).await.0.len(), 1);
    }

    #[tokio::test]
    async fn a_fifo_nobody_reads_costs_only_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(&dir);
        assert!(reader_ready(&path, Duration::from_millis(100)).await.is_none());
        // Files and log URIs need no reader.
        let stdio = Stdio::new("", "file:///tmp/x.log", "/nonexistent/fifo", false);
        assert!(readers_ready(&stdio).await.0.is_empty());
    }
}
