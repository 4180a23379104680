//! Container lifecycle: a Wasm container (its guest running in this process)
//! or a Linux container (delegated to runc), with the status machine and
//! exit record the task API sees for both, and the exec processes each may
//! have.

pub mod exec;
pub mod instance;
pub mod linux;
pub mod orphan;
pub mod wasm;

use std::time::SystemTime;

use containerd_shim::asynchronous::io::{IoTasks, Stdio};
use tokio::sync::watch;

use crate::host::bundle::Bundle;
use self::exec::{ExecProcess, Execs};
use self::linux::LinuxContainer;
use self::wasm::WasmContainer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    pub fn can_delete(self) -> bool {
        self != Status::Running
    }
    pub fn can_kill(self) -> bool {
        self != Status::Stopped
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

/// A container of either kind, as the task API sees it.
pub enum Container {
    Wasm(WasmContainer),
    Linux(LinuxContainer),
}

impl Container {
    pub fn status(&self) -> Status {
        match self {
            Container::Wasm(c) => c.status,
            Container::Linux(c) => c.status,
        }
    }
    pub fn exit(&self) -> Option<Exit> {
        match self {
            Container::Wasm(c) => c.exit,
            Container::Linux(c) => c.exit,
        }
    }
    pub fn exited(&self) -> &watch::Sender<Option<Exit>> {
        match self {
            Container::Wasm(c) => &c.exited,
            Container::Linux(c) => &c.exited,
        }
    }
    pub fn io(&self) -> &IoTasks {
        match self {
            Container::Wasm(c) => &c.io,
            Container::Linux(c) => &c.io,
        }
    }
    pub fn stdio(&self) -> &Stdio {
        match self {
            Container::Wasm(c) => &c.stdio,
            Container::Linux(c) => &c.stdio,
        }
    }
    pub fn bundle(&self) -> &Bundle {
        match self {
            Container::Wasm(c) => &c.bundle,
            Container::Linux(c) => &c.bundle,
        }
    }
    /// A Wasm container runs in the shim; a Linux one is its own process.
    pub fn pid(&self) -> u32 {
        match self {
            Container::Wasm(c) => c.caps.network.task_pid(),
            Container::Linux(c) => c.pid,
        }
    }
    pub fn set_exited(&mut self, code: u32) -> Exit {
        match self {
            Container::Wasm(c) => c.set_exited(code),
            Container::Linux(c) => c.set_exited(code),
        }
    }
    pub fn execs(&self) -> &Execs {
        match self {
            Container::Wasm(c) => &c.execs,
            Container::Linux(c) => &c.execs,
        }
    }
    pub fn execs_mut(&mut self) -> &mut Execs {
        match self {
            Container::Wasm(c) => &mut c.execs,
            Container::Linux(c) => &mut c.execs,
        }
    }
    /// The exec process `exec_id`, or NotFound.
    pub fn exec_mut(&mut self, id: &str, exec_id: &str) -> crate::error::Result<&mut ExecProcess> {
        self.execs_mut()
            .get_mut(exec_id)
            .ok_or_else(|| crate::error::ShimError::NotFound(format!("exec process {exec_id} not found in container {id}")))
    }
}

/// Exit status for a signal that ends a process, or `None` for signals whose
/// default action is to be ignored (or that have no meaning for a guest).
pub fn terminating(signal: u32) -> Option<u32> {
    use libc::{SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH};
    match signal as i32 {
        SIGCHLD | SIGCONT | SIGURG | SIGWINCH | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => None,
        s if s > 0 && s < 65 => Some(s as u32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_predicates() {
        assert!(Status::Created.can_start() && !Status::Running.can_start() && !Status::Stopped.can_start());
        assert!(Status::Created.can_delete() && !Status::Running.can_delete() && Status::Stopped.can_delete());
        assert!(Status::Created.can_kill() && Status::Running.can_kill() && !Status::Stopped.can_kill());
    }

    #[test]
    fn which_signals_terminate() {
        assert_eq!(terminating(15), Some(15));
        assert_eq!(terminating(9), Some(9));
        assert_eq!(terminating(2), Some(2));
        assert_eq!(terminating(libc::SIGWINCH as u32), None);
        assert_eq!(terminating(0), None);
        assert_eq!(terminating(99), None);
    }
}
