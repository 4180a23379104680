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
//! Connections are accepted with `accept(fd, NULL, NULL)`, and on
//! wasm32-wasip2 the peer's address is never asked for. wasi-libc (up to at
//! least wasi-sdk 30) calls `abort()` when `tcp-socket.remote-address` fails
//! with `invalid-state`, and it does for a connection its client has reset:
//! std's `TcpListener::accept` asks for it (an address buffer), and so does
//! `getpeername`, so one client that connected and reset at once (a RST
//! before the accept, or between the accept and the question) killed the
//! whole service. There is no safe moment to ask, so the services do without
//! the peer's address there (it only fed the gateway's `X-Forwarded-For`).
//! Elsewhere (the host, in tests) it comes from `getpeername`, and a
//! connection whose peer is already gone is skipped.
//!
//! The same code runs on Linux (epoll), so `cargo test` exercises it.

use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::ptr;

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

    /// Waits for and accepts one connection, with its peer's address where
    /// that is safe to ask for (see the module docs). Connections that are
    /// gone by the time they are accepted (reset or aborted by the client)
    /// are skipped.
    pub async fn accept(&self) -> io::Result<(tokio::net::TcpStream, Option<SocketAddr>)> {
        loop {
            self.readiness.readable().await?;
            // `try_io` clears the readiness when accept says WouldBlock, so
            // the next `readable()` waits for a new connection.
            let stream = match self.readiness.try_io(Interest::READABLE, || accept_fd(self.std.as_raw_fd())) {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if client_gone(&e) => {
                    log::debug!("a connection was gone before it was accepted: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let peer = match peer_of(&stream) {
                Ok(peer) => peer,
                Err(e) => {
                    log::debug!("a connection was gone when it was accepted: {e}");
                    continue;
                }
            };
            set_nonblocking(stream.as_raw_fd())?;
            return Ok((tokio::net::TcpStream::from_std(stream)?, peer));
        }
    }
}

/// `accept(fd, NULL, NULL)`: without an address buffer, so that wasi-libc
/// does not ask for (and abort on) the remote address; see the module docs.
fn accept_fd(listener: RawFd) -> io::Result<std::net::TcpStream> {
    // SAFETY: `listener` is an open socket; NULL address and length are allowed.
    let fd = unsafe { libc::accept(listener, ptr::null_mut(), ptr::null_mut()) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by accept and is owned by nobody else.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// The peer's address: `getpeername`, except on wasm32-wasip2, where
/// wasi-libc aborts if the client has reset the connection (module docs).
#[cfg(not(target_os = "wasi"))]
fn peer_of(stream: &std::net::TcpStream) -> io::Result<Option<SocketAddr>> {
    stream.peer_addr().map(Some)
}

#[cfg(target_os = "wasi")]
fn peer_of(_stream: &std::net::TcpStream) -> io::Result<Option<SocketAddr>> {
    Ok(None)
}

/// Errors of one connection that its client already closed, not of the
/// listener (which keeps accepting).
fn client_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected)
        || e.raw_os_error() == Some(libc::EPROTO)
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

    /// Connects and resets at once (SO_LINGER 0, then close): the RST can
    /// arrive before the server accepts.
    fn connect_and_reset(addr: SocketAddr) {
        let s = std::net::TcpStream::connect(addr).unwrap();
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket and a `linger` of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_reset_before_accept_are_skipped() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Reset before the first accept: they wait in the backlog, gone.
        for _ in 0..20 {
            connect_and_reset(addr);
        }
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ping!").await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            buf
        });
        // Whatever the reset ones give (skipped, or accepted and then
        // failing), the listener keeps working and reaches the live client.
        let served = async {
            loop {
                let (mut s, peer) = listener.accept().await.unwrap();
                assert!(peer.unwrap().ip().is_loopback());
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).await.is_ok() {
                    s.write_all(&buf).await.unwrap();
                    return;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), served).await.expect("live client not served");
        assert_eq!(&client.await.unwrap(), b"ping!");
    }
}
