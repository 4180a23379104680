//! `containerd-shim-wasmtime-v1`: a containerd shim (runtime `io.containerd.wasmtime.v1`)
//! that runs WASI modules and components inside Wasmtime.
//!
//! Layers, each using only the ones below it:
//! - `protocol`: the shim protocol and the task API (containerd's side);
//! - `container`: container lifecycle — Wasm guests, and Linux containers via runc;
//! - `wasm`: Wasmtime — engine, compile cache, linking, WASI capabilities, wasi:http;
//! - `host`: the node — bundle and entrypoint, containerd's content store,
//!   cgroups, network namespaces, stdio.

mod busy;
mod container;
mod error;
mod host;
mod protocol;
mod wasm;

use protocol::service;

/// The runtime name containerd resolves to this binary.
pub const RUNTIME_ID: &str = "io.containerd.wasmtime.v1";
fn main() {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("--version" | "-version" | "-v")) {
        println!("containerd-shim-wasmtime-v1");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        println!("  Wasmtime: {}", wasm::engine::WASMTIME_VERSION);
        return;
    }
    // The shim's own RPCs are light; guests run on threads of their own, so
    // two workers keep the footprint of an idle shim small.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match containerd_shim::parse(&args) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: {e}");
            std::process::exit(2);
        }
    };
    if flags.action == "start" {
        if let Err(e) = runtime.block_on(service::start_action(flags)) {
            eprintln!("{RUNTIME_ID}: start: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `-info` (containerd 2.x asks before each create) and `delete` are
    // answered by the shim crate.
    if flags.action.is_empty() && !flags.info {
        if let Err(e) = runtime.block_on(service::serve(flags)) {
            log::error!("{e:#}");
            eprintln!("{RUNTIME_ID}: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    runtime.block_on(containerd_shim::asynchronous::run::<service::Service>(RUNTIME_ID, None));
}
