//! The shim protocol (`start`, `delete`, the daemon) and the task API that
//! containerd calls: thin methods that delegate to the container layer.

mod events;
mod exec;
mod rpcs;
pub mod service;
mod task;
mod ttrpc;
