//! Guests as the ecosystem's toolchains make them (images/fixtures): a wstd
//! `http_server` binary, which exports both `wasi:http/incoming-handler` and
//! `wasi:cli/run`; a wit-bindgen proxy library; a wasi:cli command making an
//! outgoing HTTP request; a module from Go's own wasip1 port. And imports
//! the shim cannot satisfy, named in words. Traffic stays on 127.0.0.1.

use std::time::Duration;

use e2e::http::{get, upstream_once, Served};
use e2e::*;

#[test]
fn wstd_http_server_binary_is_served_not_run() {
    let served = Served::start("wstd-http", &["--env", "GREETING=hi from env"]);
    assert_eq!(get(served.port, "/").unwrap(), (200, "hello from wstd\n".into()));
    assert_eq!(get(served.port, "/echo?x=1").unwrap(), (200, "GET /echo?x=1\n".into()));
    assert_eq!(get(served.port, "/env?name=GREETING").unwrap(), (200, "hi from env\n".into()));
    // Nothing of the shim's own environment reaches the guest.
    assert_eq!(get(served.port, "/env?name=HOST_ONLY_SECRET").unwrap().0, 404);
    assert_eq!(get(served.port, "/missing").unwrap().0, 404);
}

#[test]
fn wasi_entry_cli_runs_the_command_export_instead() {
    // The same binary as a command: `run` of a wstd http_server binary does
    // not serve, so nothing listens on the port and the task ends.
    let id = unique("wstd-cli");
    let port = free_port();
    let port_env = format!("WASI_HTTP_PORT={port}");
    let out = run(&["--net-host", "--env", "WASI_ENTRY=cli", "--env", &port_env], "wstd-http", &id, &[]);
    assert!(get(port, "/").is_err(), "served although WASI_ENTRY=cli");
    // wstd's generated `run` is `unreachable!()`: a trap.
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    let log = containerd_log();
    assert!(!log.contains(&format!("container {id}: serving wasi:http")), "served as a proxy");
    // A value that is neither choice fails Create, naming the variable.
    let bad = unique("wstd-bad");
    let out = run(&["--env", "WASI_ENTRY=serve"], "wstd-http", &bad, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("WASI_ENTRY=\"serve\""), "{}", stderr(&out));
    let _ = ctr(&["containers", "delete", &bad]);
}

#[test]
fn wit_bindgen_proxy_library_is_served() {
    let served = Served::start("bindgen-proxy", &[]);
    let mut client = e2e::http::Client::connect(served.port).unwrap();
    assert_eq!(client.get("/").unwrap(), (200, "hello from wit-bindgen\n".into()));
    // Keep-alive: the next request on the connection gets a fresh instance.
    assert_eq!(client.get("/").unwrap().0, 200);
}

#[test]
fn command_makes_outgoing_http_requests() {
    let (port, upstream) = upstream_once("from the loopback upstream\n");
    let id = unique("fetch");
    let url = format!("http://127.0.0.1:{port}/some/path");
    let out = run(&["--net-host"], "http-fetch", &id, &["/http-fetch.wasm", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("200 OK\n") && text.contains("from the loopback upstream"), "{text}");
    let head = upstream.join().unwrap();
    assert!(head.starts_with("GET /some/path HTTP/1.1\r\n"), "{head}");

    // Refused: the guest sees the error and fails; the shim reports its exit.
    let closed = free_port();
    let id = unique("fetch-refused");
    let out = run(&["--net-host"], "http-fetch", &id, &["/http-fetch.wasm", &format!("http://127.0.0.1:{closed}/")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn command_without_network_cannot_reach_the_host() {
    // Plain `ctr run` gives a private network namespace with only loopback:
    // the host's loopback server is not reachable from it.
    let (port, _upstream) = upstream_once("unreachable\n");
    let id = unique("fetch-private");
    let out = run(&[], "http-fetch", &id, &["/http-fetch.wasm", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!stdout(&out).contains("unreachable"));
}

#[test]
fn go_wasip1_module_runs_with_args_env_preopens_and_exit_code() {
    let id = unique("go");
    let out = run(&["--env", "GREETING=hey"], "go-p1", &id, &["/go-p1.wasm", "/", "two words"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("hello from go\n"), "{text}");
    assert!(text.contains("argv[0]=/go-p1.wasm\n") && text.contains("argv[2]=two words\n"), "{text}");
    assert!(text.contains("GREETING=hey\n"), "{text}");
    // The rootfs is `/`: the module itself is listed there.
    assert!(text.contains("entry=go-p1.wasm\n"), "{text}");

    let id = unique("go-exit");
    let out = run(&[], "go-p1", &id, &["/go-p1.wasm", "exit3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn unsatisfiable_component_import_is_named_in_words() {
    let id = unique("p2-import");
    let out = run(&[], "missing-import-p2", &id, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("the component imports `acme:kv/store@1.0.0`"), "{err}");
    assert!(err.contains("not a WASI interface"), "{err}");
    assert!(!err.contains("matching implementation was not found"), "linker dump in: {err}");
    let _ = ctr(&["containers", "delete", &id]);
    assert!(wait_until(Duration::from_secs(5), || !task_dirs().contains(&id)));
}
