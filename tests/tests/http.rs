//! wasi:http proxy components served by the shim: concurrency, isolation of
//! traps, endless loops and memory-hungry requests, outbound HTTP, drain on
//! SIGTERM and SIGKILL. Traffic goes only to 127.0.0.1; every loop is bounded
//! in count and time.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::http::{get, wait_serving, Client, Served};
use e2e::*;

/// `ctr run --rm` in the foreground: its exit status is the task's.
fn run_foreground(id: &str, port: u16) -> Child {
    let port_env = format!("WASI_HTTP_PORT={port}");
    let img = image("http-hello");
    Command::new("ctr")
        .arg("--address")
        .arg(env().dir.join("containerd.sock"))
        .args(["--namespace", "wasm", "run", "--rm", "--runtime", RUNTIME, "--platform", "wasi/wasm", "--net-host", "--env", &port_env, &img, id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctr")
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait for ctr") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn http_hello_serves_fifty_concurrent_keepalive_clients() {
    let served = Served::start("http-hello", &[]);
    let (clients, requests) = (50, 20);
    let port = served.port;
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = Client::connect(port).map_err(|e| format!("connect: {e}"))?;
                for i in 0..requests {
                    match client.get("/") {
                        Ok((200, body)) if body == "hello from wasi:http\n" => {}
                        other => return Err(format!("request {i}: {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread").expect("every request on a kept-alive connection gets 200");
    }
}

#[test]
fn http_trap_gives_500_and_the_server_keeps_serving() {
    let served = Served::start("http-hello", &[]);
    let mut client = Client::connect(served.port).unwrap();
    let (status, _) = client.get("/trap").unwrap();
    assert_eq!(status, 500);
    // Same connection, next request: a fresh instance answers.
    assert_eq!(client.get("/").unwrap(), (200, "hello from wasi:http\n".into()));
    assert_eq!(get(served.port, "/nope").unwrap().0, 404);
    assert!(wait_until(Duration::from_secs(5), || containerd_log().contains(&format!("container {}: GET /trap", served.id))), "trap not logged");
}

#[test]
fn http_endless_loop_is_cut_off_and_others_continue() {
    let served = Served::start("http-hello", &["--env", "WASI_HTTP_TIMEOUT_MS=1000"]);
    // A slow but well-behaved request alongside the looping one is unharmed.
    let port = served.port;
    let neighbour = std::thread::spawn(move || get(port, "/sleep?ms=300"));
    let (status, body) = get(served.port, "/loop").unwrap();
    assert!((500..600).contains(&status), "{status} {body}");
    assert_eq!(neighbour.join().unwrap().unwrap().0, 200);
    assert_eq!(get(served.port, "/").unwrap().0, 200);
    // A guest waiting in a host call past its deadline is cut off too.
    let (status, _) = get(served.port, "/sleep?ms=60000").unwrap();
    assert!((500..600).contains(&status), "{status}");
    assert_eq!(get(served.port, "/").unwrap().0, 200);
}

#[test]
fn http_memory_limit_applies_per_request() {
    let limit = (32u64 << 20).to_string();
    let served = Served::start("http-hello", &["--memory-limit", &limit]);
    assert_eq!(get(served.port, "/grow?mib=64").unwrap().0, 500);
    assert_eq!(get(served.port, "/grow?mib=4").unwrap(), (200, "grew 4 MiB\n".into()));
    // Each request starts from a fresh memory: growth does not accumulate.
    for _ in 0..3 {
        assert_eq!(get(served.port, "/grow?mib=16").unwrap().0, 200);
    }
    assert_eq!(get(served.port, "/").unwrap().0, 200);
}

#[test]
fn http_outbound_plain_http_reaches_loopback() {
    let (upstream_port, server) = e2e::http::upstream_once("from upstream\n");
    let served = Served::start("http-hello", &[]);
    let (status, body) = get(served.port, &format!("/fetch?port={upstream_port}")).unwrap();
    assert_eq!((status, body.as_str()), (200, "upstream 200\nfrom upstream\n"));
    let head = server.join().unwrap();
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains(&format!("host: 127.0.0.1:{upstream_port}")), "{head}");
}

#[test]
fn http_outbound_connections_are_kept_alive_and_reused() {
    let (upstream_port, server) = e2e::http::upstream_keepalive("pooled\n", 2, false);
    let served = Served::start("http-hello", &[]);
    // One client connection: its requests run on one worker, whose pool
    // holds the upstream connection between them.
    let mut client = Client::connect(served.port).unwrap();
    for i in 0..5 {
        let (status, body) = client.get(&format!("/fetch?port={upstream_port}")).unwrap();
        assert_eq!((status, body.as_str()), (200, "upstream 200\npooled\n"), "request {i}");
    }
    assert_eq!(server.join().unwrap(), vec![5], "all five requests on one upstream connection");
}

#[test]
fn http_outbound_survives_an_upstream_closing_its_idle_connection() {
    let (upstream_port, server) = e2e::http::upstream_keepalive("fresh\n", 3, true);
    let served = Served::start("http-hello", &[]);
    let mut client = Client::connect(served.port).unwrap();
    for i in 0..3 {
        // The upstream closed the last connection after its answer: the
        // pooled one is stale, and the request goes out on a new one.
        std::thread::sleep(Duration::from_millis(200));
        let (status, body) = client.get(&format!("/fetch?port={upstream_port}")).unwrap();
        assert_eq!((status, body.as_str()), (200, "upstream 200\nfresh\n"), "request {i}");
    }
    assert_eq!(server.join().unwrap(), vec![1, 1, 1]);
    // Nobody listens there any more: refused, reported to the guest.
    let (status, body) = client.get(&format!("/fetch?port={upstream_port}")).unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("ConnectionRefused"), "{body}");
}

#[test]
fn http_handler_uses_wasi_sockets_on_loopback() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        s.write_all(b"pong\n").unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    let served = Served::start("http-hello", &[]);
    let (status, body) = get(served.port, &format!("/tcp?port={upstream_port}")).unwrap();
    assert_eq!((status, body.as_str()), (200, "pong\n"));
    assert_eq!(server.join().unwrap(), "ping\n");
}

#[test]
fn http_sigterm_drains_in_flight_requests_then_exits_0() {
    let id = unique("http-term");
    let port = free_port();
    let mut ctr_run = run_foreground(&id, port);
    wait_serving(port);
    let mut client = Client::connect(port).unwrap();
    // Served once, so the connection is established before the signal.
    assert_eq!(client.get("/").unwrap().0, 200);
    client.send("/sleep?ms=1500").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed = ctr(&["tasks", "kill", "-s", "SIGTERM", &id]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    assert_eq!(client.read_response().unwrap(), (200, "slept 1500 ms\n".into()), "in-flight request cut short");
    assert_eq!(wait_exit(&mut ctr_run, Duration::from_secs(30)), Some(0));
    // Not accepting any more: the task is gone.
    assert!(get(port, "/").is_err());
    let _ = ctr(&["containers", "delete", &id]);
}

#[test]
fn http_sigkill_stops_at_once_with_137() {
    let id = unique("http-kill");
    let port = free_port();
    let mut ctr_run = run_foreground(&id, port);
    wait_serving(port);
    let mut spinning = Client::connect(port).unwrap();
    spinning.send("/loop").unwrap();
    let mut sleeping = Client::connect(port).unwrap();
    sleeping.send("/sleep?ms=60000").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed = ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    assert_eq!(wait_exit(&mut ctr_run, Duration::from_secs(30)), Some(137));
    // Neither request got an answer.
    assert!(sleeping.read_response().is_err());
    let _ = ctr(&["containers", "delete", &id]);
}

#[test]
fn http_invalid_port_fails_create_naming_the_variable() {
    let id = unique("http-bad");
    let out = run(&["--net-host", "--env", "WASI_HTTP_PORT=eighty"], "http-hello", &id, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("WASI_HTTP_PORT=\"eighty\""), "{}", stderr(&out));
    let _ = ctr(&["containers", "delete", &id]);
    let id = unique("http-bad-addr");
    let out = run(&["--net-host", "--env", "WASI_HTTP_ADDR=localhost"], "http-hello", &id, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("WASI_HTTP_ADDR=\"localhost\" is not an IP address"), "{}", stderr(&out));
    let _ = ctr(&["containers", "delete", &id]);
}

/// Threads of `shim_pid` whose name is `name` (cut to 15 bytes, as comm is).
fn threads_named(shim_pid: u32, name: &str) -> Vec<std::path::PathBuf> {
    let name: String = name.chars().take(15).collect();
    std::fs::read_dir(format!("/proc/{shim_pid}/task"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| std::fs::read_to_string(p.join("comm")).map(|c| c.trim() == name).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn http_serves_inside_a_private_network_namespace() {
    let port = free_port();
    let id = unique("http-ns");
    let env = format!("WASI_HTTP_PORT={port}");
    let out = run_detached(&["--env", &env], "http-hello", &id, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shim = thread_group_of(task_pid(&id).expect("pid"));
    // The guest thread and the HTTP runtime's workers all carry its name.
    let name = format!("wasm-{}", id.chars().take(10).collect::<String>());
    let mut threads = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        threads = threads_named(shim, &name);
        threads.len() >= 2
    }), "guest thread and workers not found: {threads:?}");
    let netns = threads[0].join("ns/net");
    let ns_of = |p: &std::path::Path| std::fs::read_link(p).unwrap();
    for t in &threads {
        assert_eq!(ns_of(&t.join("ns/net")), ns_of(&netns), "{} is outside the container's namespace", t.display());
    }
    assert_ne!(ns_of(std::path::Path::new(&format!("/proc/{shim}/ns/net"))), ns_of(&netns), "the shim left the host's namespace");
    // Inside the namespace the server answers on loopback, request after request.
    let inside = || http_get_in_netns(&netns, port, 6);
    let mut body = String::new();
    assert!(wait_until(Duration::from_secs(10), || {
        body = inside();
        body.matches("hello from wasi:http").count() == 6
    }), "no answers inside the namespace: {body:?}");
    // The host's loopback has nothing on that port.
    assert!(get(port, "/").is_err(), "the container's server is reachable from the host");
    remove(&id);
}

#[test]
fn http_component_that_cannot_be_instantiated_fails_start() {
    // 512 KiB is below the component's initial memory: no request could run.
    let id = unique("http-small");
    let port = format!("WASI_HTTP_PORT={}", free_port());
    let out = run(&["--net-host", "--env", &port, "--memory-limit", "524288"], "http-hello", &id, &[]);
    assert!(!out.status.success(), "started a server no request can run in");
    assert!(stderr(&out).contains("instantiate component"), "{}", stderr(&out));
    let _ = ctr(&["tasks", "delete", &id]);
    let _ = ctr(&["containers", "delete", &id]);
}
