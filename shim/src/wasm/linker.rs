//! Linking compiled code against WASI, once per engine: a module against
//! preview 1, a command against all of WASI 0.2 and wasi:http, a proxy by
//! `http`. Done at Create, so code that cannot run fails there, with the
//! reason in words.

use anyhow::{Context, Result};
use wasmtime::component;
use wasmtime::{Engine, InstancePre, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;

use super::engine::Compiled;
use super::http::{self, HttpPlan};
use super::imports::{link_component, unsatisfied_module_import};
use super::store::{P1Host, P2Host};
use super::wasi::Capabilities;
use super::wt;

/// Code linked against WASI and checked for an entry point: ready to start.
#[derive(Clone)]
pub enum Prepared {
    Module(InstancePre<P1Host>),
    Command(CommandPre<P2Host>),
    /// A wasi:http proxy, served by `http`.
    Http(HttpPlan),
}

/// The WASI linkers of the on-demand engine.
pub struct Linkers {
    p1: Linker<P1Host>,
    p2: component::Linker<P2Host>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> Result<Self> {
        let mut p1 = Linker::new(engine);
        wt(wasmtime_wasi::p1::add_to_linker_async(&mut p1, |h: &mut P1Host| &mut h.wasi)).context("link WASI preview 1")?;
        let mut p2 = component::Linker::new(engine);
        // WASI 0.2's exit carries only ok/err: a component exits 0 or 1.
        wt(wasmtime_wasi::p2::add_to_linker_async(&mut p2)).context("link WASI preview 2")?;
        wt(wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2)).context("link wasi:http")?;
        Ok(Self { p1, p2 })
    }

    /// Resolves imports and finds the entry point.
    pub fn prepare(&self, compiled: &Compiled, caps: &Capabilities) -> Result<Prepared> {
        match compiled {
            Compiled::Module(module) => {
                if !matches!(module.get_export("_start"), Some(wasmtime::ExternType::Func(_))) {
                    anyhow::bail!("module exports no `_start` function: it is not a WASI command");
                }
                Ok(Prepared::Module(self.p1.instantiate_pre(module).map_err(unsatisfied_module_import)?))
            }
            Compiled::Command(c) => {
                let pre = link_component(&self.p2, c)?;
                Ok(Prepared::Command(wt(CommandPre::new(pre)).context("component exports neither `wasi:cli/run` nor `wasi:http/incoming-handler`")?))
            }
            Compiled::Proxy(c) => Ok(Prepared::Http(http::prepare(c, caps)?)),
        }
    }
}
