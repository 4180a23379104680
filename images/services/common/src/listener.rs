//! A TCP listener that works with tokio on wasm32-wasip2.
//!
//! `tokio::net::TcpListener::accept()` fails there with EINVAL: mio accepts
//! the connection and then sets `O_NONBLOCK` with `fcntl(F_SETFL)`, which
//! wasi-libc rejects for sockets, so the connection is dropped and the error
//! returned. `ioctl(FIONBIO)` does work. Rather than carry a patched mio, we
//! accept with `std` and use tokio only to learn when to:
//!
//! * the listening socket is made non-blocking with `ioctl(FIONBIO)`, so a
//!   `std` accept returns `WouldBlock` instead of blocking the one thread;
//! * the same descriptor is registered with tokio's reactor through a
//!   `tokio::net::TcpStream` that is only ever used for readiness (`readable()`
//!   and `try_io`), never read, written or closed. Registration and readiness
//!   are just `poll()` on the descriptor, and wasi-libc's `poll()` reports a
//!   listening socket readable when a connection is waiting;
//! * an accepted socket is made non-blocking with `ioctl(FIONBIO)` and handed
//!   to tokio.
//!
//! The same code runs on Linux (epoll), so `cargo test` exercises it.

use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};

use tokio::io::Interest;

pub struct Listener {
    /// Owns the descriptor.
    std: std::net::TcpListener,
    /// An alias of `std`'s descriptor, registered with the reactor for
    /// readiness only. Never dropped normally: see `Drop`.
    readiness: ManuallyDrop<tokio::net::TcpStream>,
}

impl Listener {
    /// Binds `addr`. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let std = std::net::TcpListener::bind(addr)?;
        set_nonblocking(std.as_raw_fd())?;
        // SAFETY: the alias shares `std`'s descriptor, which stays open as
        // long as `std` does; `Listener` keeps both and its `Drop` releases
        // the alias without closing the descriptor.
        let alias = unsafe { std::net::TcpStream::from_raw_fd(std.as_raw_fd()) };
        match tokio::net::TcpStream::from_std(alias) {
            Ok(stream) => Ok(Self { std, readiness: ManuallyDrop::new(stream) }),
            Err(e) => {
                // tokio dropped (closed) the alias, so the descriptor is gone:
                // `std` must not close it a second time.
                std::mem::forget(std);
                Err(e)
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// Waits for and accepts one connection.
    pub async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        loop {
            self.readiness.readable().await?;
            // `try_io` clears the readiness when accept says WouldBlock, so
            // the next `readable()` waits for a new connection.
            match self.readiness.try_io(Interest::READABLE, || self.std.accept()) {
                Ok((stream, peer)) => {
                    set_nonblocking(stream.as_raw_fd())?;
                    return Ok((tokio::net::TcpStream::from_std(stream)?, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: `readiness` is taken once, here, and not used afterwards.
        let alias = unsafe { ManuallyDrop::take(&mut self.readiness) };
        // Deregister from the reactor, then give up the alias without closing
        // the descriptor; `std` closes it when it is dropped after this.
        match alias.into_std() {
            Ok(std_alias) => {
                let _ = std_alias.into_raw_fd();
            }
            Err(e) => log::warn!("deregistering listener: {e}"),
        }
    }
}

/// `ioctl(FIONBIO)`: the one way to make a socket non-blocking that
/// wasi-libc supports (it rejects `fcntl(F_SETFL, O_NONBLOCK)` for sockets).
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one c_int through the pointer; `fd` is open.
    let rc = unsafe { libc::ioctl(fd, libc::FIONBIO, &mut on) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "current_thread")]
    async fn accepts_many_connections_concurrently() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..20 {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    s.read_exact(&mut buf).await.unwrap();
                    s.write_all(&buf).await.unwrap();
                });
            }
        });
        let mut clients = Vec::new();
        for i in 0..20u8 {
            clients.push(tokio::spawn(async move {
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                c.write_all(&[i; 5]).await.unwrap();
                let mut buf = [0u8; 5];
                c.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, [i; 5]);
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
    }
}
