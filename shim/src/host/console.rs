//! Terminals for processes runc starts with `-t`: runc makes the pty inside
//! the container and hands its master to the shim over a console socket
//! (`--console-socket`), as an SCM_RIGHTS message; the shim copies between
//! the master and containerd's FIFOs and resizes it on ResizePty.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::UnixListener;

/// How long runc may take to connect once `runc exec` has returned (it has
/// sent the master by then; this only bounds a runc that never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening socket runc sends a terminal's master to. Its directory is
/// removed when it is dropped.
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens in a fresh private directory under /tmp (socket paths are
    /// limited to 108 bytes, which a bundle path can exceed).
    pub fn new() -> Result<Self> {
        let dir = private_dir()?;
        let path = dir.join("pty.sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(Self { dir, path, listener }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(anyhow::Error::from(e).context(format!("listen on {}", path.display())))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal master runc sent.
    pub async fn receive(&self) -> Result<File> {
        let (stream, _) = tokio::time::timeout(CONNECT_TIMEOUT, self.listener.accept())
            .await
            .context("runc did not connect to the console socket")?
            .context("accept on the console socket")?;
        let stream = stream.into_std().context("console connection")?;
        stream.set_nonblocking(false).context("console connection")?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT)).context("console connection")?;
        let fd = tokio::task::spawn_blocking(move || receive_fd(stream.as_raw_fd()))
            .await
            .context("receive the terminal")??;
        Ok(File::from(fd))
    }
}

/// A new directory only root can enter, named by this process and a counter.
fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut last = None;
    // A crashed shim of the same pid may have left some behind: skip those.
    for _ in 0..64 {
        let dir = PathBuf::from(format!("/tmp/wasmtime-shim-pty-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(anyhow::Error::from(e).context(format!("create {}", dir.display()))),
        }
    }
    Err(anyhow::anyhow!("create a directory for the console socket: {last:?}"))
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One descriptor passed over a connected unix socket.
fn receive_fd(socket: RawFd) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    // runc sends the terminal's name as the payload; only the descriptor matters.
    let mut name = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).context("receive the terminal from runc")?;
    let mut received = None;
    for cmsg in msg.cmsgs().context("read the console message")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor in this
                // process for us; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                // Keep the first, close any others.
                received.get_or_insert(fd);
            }
        }
    }
    received.context("runc's console message carried no descriptor")
}

/// Sets a terminal's window size (ResizePty).
pub fn resize(master: BorrowedFd<'_>, width: u32, height: u32) -> Result<()> {
    let size = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which lives
    // across the call; the descriptor is borrowed, so it is open.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error()).context("resize the terminal");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn receives_a_terminal_and_resizes_it() {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let socket = ConsoleSocket::new().unwrap();
        let dir = socket.dir.clone();
        let pty = nix::pty::openpty(None, None).unwrap();
        // What runc does: connect, send the master with the terminal's name.
        let client = std::os::unix::net::UnixStream::connect(socket.path()).unwrap();
        let fds = [pty.master.as_raw_fd()];
        let iov = [std::io::IoSlice::new(b"/dev/pts/x")];
        sendmsg::<UnixAddr>(client.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).unwrap();
        let master = socket.receive().await.unwrap();
        resize(master.as_fd(), 120, 40).unwrap();
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize through the pointer.
        assert_eq!(unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) }, 0);
        assert_eq!((size.ws_col, size.ws_row), (120, 40));
        drop(socket);
        assert!(!dir.exists(), "the socket's directory is removed");
    }
}
