//! A guest's stdin/stdout/stderr, connected to containerd's FIFOs through
//! in-memory pipes. The FIFO side is the shim crate's `IoTasks`, which holds
//! the FIFOs open across containerd restarts and drains output on exit.

use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use tokio::io::DuplexStream;

use crate::error::Result;

/// Pipe capacity between a guest and its FIFO copier.
const PIPE_CAPACITY: usize = 64 * 1024;

/// The guest's ends of its stdio pipes; `None` where containerd wants none.
#[derive(Default)]
pub struct GuestStdio {
    pub stdin: Option<DuplexStream>,
    pub stdout: Option<DuplexStream>,
    pub stderr: Option<DuplexStream>,
}

/// Starts copying between the FIFOs named in `stdio` and new pipes, and
/// returns the guest's ends.
pub fn connect(io: &IoTasks, stdio: &Stdio) -> Result<GuestStdio> {
    let mut guest = GuestStdio::default();
    if !stdio.stdin.is_empty() {
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        io.copy_from_fifo(&stdio.stdin, ours).map_err(|e| anyhow::anyhow!("connect stdin {}: {e}", stdio.stdin))?;
        guest.stdin = Some(theirs);
    }
    if !stdio.stdout.is_empty() {
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        io.copy_to_fifo(ours, &stdio.stdout).map_err(|e| anyhow::anyhow!("connect stdout {}: {e}", stdio.stdout))?;
        guest.stdout = Some(theirs);
    }
    if !stdio.stderr.is_empty() {
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        io.copy_to_fifo(ours, &stdio.stderr).map_err(|e| anyhow::anyhow!("connect stderr {}: {e}", stdio.stderr))?;
        guest.stderr = Some(theirs);
    }
    Ok(guest)
}
