//! Runtime options (either protobuf message containerd sends, with any
//! bytes inside) and the environment settings the shim reads
//! (`WASI_HTTP_PORT`, `WASI_HTTP_TIMEOUT_MS`, `WASI_HTTP_ADDR`, `KEY=VALUE`
//! splitting): a
//! value or an error that names the variable, never a panic or a hang.
#![no_main]

use arbitrary::Arbitrary;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use libfuzzer_sys::fuzz_target;
use shim_input::env::pairs;
use shim_input::options::RuntimeOptions;
use shim_input::settings::{HttpSettings, ADDR_ENV, PORT_ENV, TIMEOUT_ENV};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Which message the bytes claim to be.
    type_url: u8,
    value: &'a [u8],
    env: Vec<String>,
    port: Option<&'a str>,
    timeout: Option<&'a str>,
    addr: Option<&'a str>,
}

const TYPE_URLS: [&str; 4] = [
    "runtimeoptions.v1.Options",
    "containerd.runc.v1.Options",
    "types.containerd.io/containerd.runc.v1.Options",
    "example.com/unknown.Options",
];

fuzz_target!(|input: Input| {
    let any = Any { type_url: TYPE_URLS[input.type_url as usize % TYPE_URLS.len()].to_string(), value: input.value.to_vec(), ..Default::default() };
    if let Err(e) = RuntimeOptions::parse(Some(&any)) {
        assert!(e.to_string().contains("runtime options"), "{e}");
    }
    let mut env = pairs(&input.env);
    for (k, _) in &env {
        assert!(!k.contains('='), "{k:?} kept an equals sign");
    }
    if let Some(p) = input.port {
        env.push((PORT_ENV.to_string(), p.to_string()));
    }
    if let Some(t) = input.timeout {
        env.push((TIMEOUT_ENV.to_string(), t.to_string()));
    }
    if let Some(a) = input.addr {
        env.push((ADDR_ENV.to_string(), a.to_string()));
    }
    match HttpSettings::from_env(&env) {
        Ok(s) => assert!(s.port != 0 && !s.timeout.is_zero()),
        Err(e) => assert!([PORT_ENV, TIMEOUT_ENV, ADDR_ENV].iter().any(|v| e.starts_with(v)), "{e}"),
    }
});
