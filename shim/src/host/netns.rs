//! Puts the calling thread into a container's network namespace. Guests run
//! on a thread of their own, so sockets they open live in that namespace
//! while the shim itself stays in the host's.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use shim_input::grants::NetworkSpec;

#[derive(Debug, Clone)]
pub enum Network {
    /// No network namespace in the spec: the host's (`ctr run --net-host`).
    Host,
    /// Join an existing namespace, e.g. a pod's.
    Join(PathBuf),
    /// A fresh namespace with only loopback, as runc would create.
    Private,
    /// A fresh namespace the shim made for one container (see `held`), so
    /// that every guest of the container — its init and its execs — is in it.
    Held(Arc<HeldNetns>),
}

impl From<NetworkSpec> for Network {
    fn from(spec: NetworkSpec) -> Self {
        match spec {
            NetworkSpec::Host => Self::Host,
            NetworkSpec::Join(path) => Self::Join(path),
            NetworkSpec::Private => Self::Private,
        }
    }
}

/// A container's own network namespace, kept by a parked thread of the
/// shim that lives in it: the thread's id is the container's task pid, so
/// `/proc/<pid>/ns/net` names the container's namespace, as it does for a
/// runc container (Docker configures the network there). Dropping the last
/// handle lets the thread end.
#[derive(Debug)]
pub struct HeldNetns {
    ns: OwnedFd,
    tid: u32,
    _release: std::sync::mpsc::Sender<()>,
}

impl PartialEq for Network {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Network::Host, Network::Host) | (Network::Private, Network::Private) => true,
            (Network::Join(a), Network::Join(b)) => a == b,
            (Network::Held(a), Network::Held(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Network {}

impl Network {
    /// For `Private`, creates the namespace now and holds it open, so that
    /// later guests can join the same one; other networks are returned as
    /// they are. Blocking (a short-lived thread makes the namespace, so no
    /// thread of the shim's runtime ever leaves the host's).
    pub fn held(self) -> Result<Network> {
        if self != Network::Private {
            return Ok(self);
        }
        let (made_tx, made_rx) = std::sync::mpsc::channel::<Result<(OwnedFd, u32)>>();
        let (release, parked) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("netns-holder".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let made = enter(&Network::Private).and_then(|()| {
                    let ns = File::open("/proc/thread-self/ns/net").context("open the new network namespace")?;
                    Ok((OwnedFd::from(ns), nix::unistd::gettid().as_raw() as u32))
                });
                let ok = made.is_ok();
                let _ = made_tx.send(made);
                if ok {
                    // Parked until the container lets go of its namespace.
                    let _ = parked.recv();
                }
            })
            .context("spawn a thread to hold a network namespace")?;
        let (ns, tid) = made_rx.recv().map_err(|_| anyhow::anyhow!("the thread creating a network namespace ended early"))??;
        Ok(Network::Held(Arc::new(HeldNetns { ns, tid, _release: release })))
    }

    /// The task pid a container on this network reports: a thread in its
    /// namespace when the shim made one, else the shim's own pid.
    pub fn task_pid(&self) -> u32 {
        match self {
            Network::Held(held) => held.tid,
            _ => std::process::id(),
        }
    }
}

/// Moves the current thread (and threads it spawns later) into `net`.
pub fn enter(net: &Network) -> Result<()> {
    match net {
        Network::Host => Ok(()),
        Network::Join(path) => {
            let ns = File::open(path).with_context(|| format!("open network namespace {}", path.display()))?;
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("join network namespace {}", path.display()))
        }
        Network::Held(held) => nix::sched::setns(&held.ns, CloneFlags::CLONE_NEWNET).context("join the container's network namespace"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn current_netns() -> PathBuf {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    }

    #[test]
    fn a_held_namespace_is_shared_by_every_thread_that_enters_it() {
        assert_eq!(Network::Host.held().unwrap(), Network::Host);
        let Ok(held) = Network::Private.held() else {
            eprintln!("skipped: creating a network namespace needs CAP_SYS_ADMIN");
            return;
        };
        assert!(matches!(held, Network::Held(_)));
        let enter_and_look = |net: Network| std::thread::spawn(move || enter(&net).map(|()| current_netns()).unwrap()).join().unwrap();
        let (a, b) = (enter_and_look(held.clone()), enter_and_look(held.clone()));
        assert_eq!(a, b, "both guests are in one namespace");
        assert_ne!(a, current_netns(), "not the host's");
        assert_ne!(Network::Private.held().unwrap(), held, "each container gets its own");
    }
}
