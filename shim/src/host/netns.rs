//! Puts the calling thread into a container's network namespace. Guests run
//! on a thread of their own, so sockets they open live in that namespace
//! while the shim itself stays in the host's.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// No network namespace in the spec: the host's (`ctr run --net-host`).
    Host,
    /// Join an existing namespace, e.g. a pod's.
    Join(PathBuf),
    /// A fresh namespace with only loopback, as runc would create.
    Private,
}

/// Moves the current thread (and threads it spawns later) into `net`.
pub fn enter(net: &Network) -> Result<()> {
    match net {
        Network::Host => Ok(()),
        Network::Join(path) => {
            let ns = File::open(path).with_context(|| format!("open network namespace {}", path.display()))?;
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("join network namespace {}", path.display()))
        }
        Network::Private => {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).context("create a network namespace")?;
            loopback_up()
        }
    }
}

/// A new namespace's loopback starts down; runc brings it up, so do we.
fn loopback_up() -> Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).context("socket for ioctl")?;
    // SAFETY: ifreq is plain old data; the ioctls read/write only it.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error()).context("read loopback flags");
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error()).context("bring loopback up");
        }
    }
    Ok(())
}
