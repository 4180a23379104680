//! Turns an OCI process spec into the WASI capabilities a guest gets: argv,
//! env, the rootfs and volumes as preopened directories, and the network the
//! spec's network namespace allows. Nothing of the host is granted beyond it.

use std::path::Path;

use anyhow::Context;
use oci_spec::runtime::Spec;
use shim_input::grants::Grants;
pub use shim_input::grants::Preopen;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::Result;
use crate::host::dns::NameService;
use crate::host::netns::Network;

/// Everything a guest may see, derived once at Create (see
/// `shim_input::grants`), with the network namespace as the shim holds it.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub network: Network,
    /// The resolver files the spec binds (a pod's), for the guest's lookups.
    pub name_service: NameService,
    /// Per-instance bound on linear memory, from `linux.resources.memory.limit`.
    pub memory_limit: Option<u64>,
}

impl Capabilities {
    /// `scratch` is a per-container directory for tmpfs mounts.
    pub fn from_spec(spec: &Spec, rootfs: &Path, scratch: &Path) -> Result<Self> {
        let g = Grants::from_spec(spec, rootfs, scratch)?;
        Ok(Self { args: g.args, env: g.env, preopens: g.preopens, network: g.network.into(), name_service: g.name_service, memory_limit: g.memory_limit })
    }

    /// The WASI context builder for these capabilities (stdio is added by the caller).
    pub fn builder(&self) -> anyhow::Result<WasiCtxBuilder> {
        let mut b = self.builder_without_preopens();
        for p in &self.preopens {
            let perms = if p.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
            super::wt(b.preopened_dir(&p.host, &p.guest, perms).map(|_| ()))
                .with_context(|| format!("grant {} at {}", p.host.display(), p.guest))?;
        }
        Ok(b)
    }

    /// All but the preopened directories: for wasi:http, which builds a
    /// context per request and shares directories opened once.
    pub fn builder_without_preopens(&self) -> WasiCtxBuilder {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.args);
        for (k, v) in &self.env {
            b.env(k, v);
        }
        // The network namespace is the boundary: inside it the guest may use
        // TCP, UDP and DNS like any process would.
        b.inherit_network().allow_tcp(true).allow_udp(true).allow_ip_name_lookup(true);
        b
    }
}
