//! The Kubernetes path: pods driven through containerd's CRI plugin exactly
//! as kubelet drives them, with the runtime handler `wasmtime`.

use std::path::PathBuf;
use std::time::Duration;

use e2e::cri::{pod_config, v1, Cri};
use e2e::pod::{Pod, CGROUP_ROOT};
use e2e::*;

/// Shim processes serving pod `pod_id` (a pod's shim is named by its sandbox).
fn pod_shims(pod_id: &str) -> Vec<u32> {
    shim_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).split('\0').any(|a| a == pod_id))
                .unwrap_or(false)
        })
        .collect()
}

fn k8s_task_pid(id: &str) -> Option<u32> {
    let env = env();
    let out = std::process::Command::new("ctr")
        .arg("--address").arg(env.dir.join("containerd.sock"))
        .args(["--namespace", "k8s.io", "tasks", "ls"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[test]
fn cri_wasm_pod_runs_logs_and_exits_with_its_code() {
    let mut pod = Pod::run("logs");
    let ok = pod.start("ok", "probe", &["/probe.wasm", "args", "hello-cri"]);
    let failing = pod.start("failing", "probe", &["/probe.wasm", "exit", "7"]);
    let trapping = pod.start("trapping", "trap", &["/trap.wat"]);
    let status = pod.cri.wait_exited(&ok, Duration::from_secs(30));
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(status.reason, "Completed");
    let log = pod.log("ok");
    assert!(log.lines().any(|l| l.contains(" stdout F argv[2]=hello-cri")), "kubelet-format log expected: {log:?}");
    let status = pod.cri.wait_exited(&failing, Duration::from_secs(30));
    assert_eq!((status.exit_code, status.reason.as_str()), (7, "Error"), "{status:?}");
    let status = pod.cri.wait_exited(&trapping, Duration::from_secs(30));
    assert_eq!(status.exit_code, 134, "{status:?}");
    pod.remove();
}

#[test]
fn cri_wasm_http_server_answers_on_the_pod_network() {
    let mut pod = Pod::run("http");
    let server = pod.start("server", "probe-p2", &["/probe-p2.wasm", "listen", "8080"]);
    assert!(pod.cri.wait_running(&server, Duration::from_secs(30)));
    let ip = pod.ip();
    assert!(!ip.is_empty(), "pod has no IP");
    // The pod's IP is on this test's own bridge.
    let mut reply = None;
    assert!(wait_until(Duration::from_secs(15), || {
        reply = http_get(&ip, 8080, "/");
        reply.is_some()
    }), "nothing answered on {ip}:8080");
    assert!(reply.unwrap().contains("hello from probe"));
    // Not on the host's loopback: the server lives in the pod's namespace.
    assert!(http_get("127.0.0.1", 8080, "/").map_or(true, |r| !r.contains("hello from probe")));
    pod.remove();
}

#[test]
fn cri_wasi_http_component_serves_the_pod_and_drains_on_stop() {
    let mut pod = Pod::run("wasi-http");
    // The port comes from the container's environment, as a Deployment sets it.
    let server = pod.start_with_env("web", "http-hello", &["/http-hello.wasm"], &[("WASI_HTTP_PORT", "8081")]);
    assert!(pod.cri.wait_running(&server, Duration::from_secs(30)));
    let ip = pod.ip();
    assert!(!ip.is_empty(), "pod has no IP");
    assert!(wait_until(Duration::from_secs(15), || http_get(&ip, 8081, "/").is_some()), "nothing answered on {ip}:8081");
    // Concurrent clients, each a bounded number of requests.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let ip = ip.clone();
            std::thread::spawn(move || (0..10).filter(|_| http_get(&ip, 8081, "/").is_some_and(|r| ok_hello(&r))).count())
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(answered, 80, "every request answered 200 with the hello body");
    // A handler that traps costs its own request only.
    let trapped = http_get(&ip, 8081, "/trap").unwrap_or_default();
    assert!(trapped.starts_with("HTTP/1.0 500") || trapped.starts_with("HTTP/1.1 500"), "{trapped:?}");
    assert!(http_get(&ip, 8081, "/").is_some_and(|r| ok_hello(&r)));
    // Not on the host's loopback: the server lives in the pod's namespace.
    assert!(http_get("127.0.0.1", 8081, "/").is_none_or(|r| !r.contains("hello from wasi:http")));
    // StopContainer sends SIGTERM: a request in flight is answered, then the
    // container exits 0.
    let slow = {
        let ip = ip.clone();
        std::thread::spawn(move || http_get(&ip, 8081, "/sleep?ms=3000"))
    };
    // Ample time for the request to reach the handler, well inside its 3 s.
    std::thread::sleep(Duration::from_secs(1));
    pod.cri.stop_container(&server, 10).unwrap_or_else(|e| panic!("StopContainer: {e}"));
    let reply = slow.join().unwrap().unwrap_or_default();
    assert!(reply.contains(" 200 ") && reply.contains("slept 3000 ms"), "in-flight request was not drained: {reply:?}");
    let status = pod.cri.wait_exited(&server, Duration::from_secs(30));
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"), "{status:?}");
    pod.remove();
}

#[test]
fn cri_pull_resolves_the_registry_through_its_hosts_toml() {
    // The registry speaks plain HTTP: only the hosts.toml in the CRI
    // plugin's config_path lets PullImage reach it.
    let mut cri = Cri::connect();
    let reference = format!("{}/test/hello:latest", registry());
    let image_ref = cri.pull_image(&reference).unwrap_or_else(|e| panic!("PullImage {reference}: {e}"));
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let missing = format!("{}/test/no-such-image:latest", registry());
    let err = cri.pull_image(&missing).expect_err("pulled an image the registry does not have");
    assert!(err.message().contains("not found"), "{err}");
}

#[test]
fn cri_pull_unpacks_a_wasm_image_the_node_has_never_seen() {
    // What a kubelet does for `image:` on a fresh node: PullImage, then
    // CreateContainer on its snapshot. The image's layers exist nowhere
    // but in the registry, so only PullImage can have unpacked them (a
    // pull that fetched without unpacking fails CreateContainer with
    // "parent snapshot ... does not exist").
    let reference = format!("{}/test/registry-only:image", registry());
    let mut pod = Pod::run("pull-unpack");
    let hello = pod.start("hello", &reference, &["/registry-only.wat"]);
    let status = pod.cri.wait_exited(&hello, Duration::from_secs(30));
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"), "{status:?}");
    let log = pod.log("hello");
    assert!(log.contains(" stdout F hello from wat"), "{log:?}");
    pod.remove();
}

/// containerd before 1.6.25 / 1.7.7 cannot unpack a Wasm artifact: there,
/// checks that PullImage is refused and says so (true); elsewhere false.
fn refused_by_old_containerd(reference: &str) -> bool {
    if unpacks_wasm_artifacts() {
        return false;
    }
    let err = Cri::connect().pull_image(reference).expect_err("an old containerd unpacked a Wasm artifact");
    eprintln!("containerd {:?} refuses {reference}: {err}", containerd_version());
    true
}

#[test]
fn cri_wasm_artifact_module_pod_logs_and_exits() {
    let reference = format!("{}/test/hello:artifact", registry());
    if refused_by_old_containerd(&reference) {
        return;
    }
    let mut pod = Pod::run("artifact-p1");
    // The module is the image's layer 0; the command only names argv.
    let hello = pod.start("hello", &reference, &["hello", "from-an-artifact"]);
    let status = pod.cri.wait_exited(&hello, Duration::from_secs(30));
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"), "{status:?}");
    let log = pod.log("hello");
    assert!(log.contains(" stdout F hello from wasm") && log.contains(" stdout F argv[1]=from-an-artifact"), "{log:?}");
    pod.remove();
}

#[test]
fn cri_wasm_artifact_pod_is_served() {
    let reference = format!("{}/test/http-hello:artifact", registry());
    if refused_by_old_containerd(&reference) {
        return;
    }
    let mut pod = Pod::run("artifact");
    // CRI needs a command; the artifact's rootfs is empty, so it only names argv[0].
    let server = pod.start_with_env("web", &reference, &["http-hello"], &[("WASI_HTTP_PORT", "8082")]);
    assert!(pod.cri.wait_running(&server, Duration::from_secs(30)));
    let ip = pod.ip();
    assert!(wait_until(Duration::from_secs(15), || http_get(&ip, 8082, "/").is_some_and(|r| ok_hello(&r))), "nothing answered on {ip}:8082");
    pod.remove();
}

fn ok_hello(response: &str) -> bool {
    response.split_whitespace().nth(1) == Some("200") && response.ends_with("hello from wasi:http\n")
}

#[test]
fn cri_pod_mixes_a_linux_sidecar_and_wasm_containers_in_one_shim() {
    let mut pod = Pod::run("mixed");
    let sidecar = pod.start("sidecar", "busybox", &[
        "/bin/busybox", "sh", "-c",
        "/bin/busybox mkdir -p /tmp/www && echo sidecar-page > /tmp/www/index.html && exec /bin/busybox httpd -f -p 9000 -h /tmp/www",
    ]);
    assert!(pod.cri.wait_running(&sidecar, Duration::from_secs(30)));
    let sleeper = pod.start("sleeper", "probe", &["/probe.wasm", "sleep", "3600"]);
    assert!(pod.cri.wait_running(&sleeper, Duration::from_secs(30)));
    // The Wasm container reaches the sidecar over the pod's loopback.
    let mut client_log = String::new();
    assert!(wait_until(Duration::from_secs(20), || {
        let client = pod.start(&format!("client-{}", unique("c")), "probe-p2", &["/probe-p2.wasm", "connect", "127.0.0.1:9000"]);
        let status = pod.cri.wait_exited(&client, Duration::from_secs(20));
        client_log = std::fs::read_dir(&pod.log_dir).unwrap().flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("client-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect();
        status.exit_code == 0 && client_log.contains("sidecar-page")
    }), "wasm client never got the sidecar's page: {client_log}");

    // One shim serves the pod: the sandbox, the sidecar and the Wasm containers.
    let shims = pod_shims(&pod.id);
    assert_eq!(shims.len(), 1, "expected one shim for pod {}: {shims:?}", pod.id);
    let shim = shims[0];
    assert_eq!(k8s_task_pid(&sleeper), Some(shim), "Wasm containers run inside the pod's shim");
    // The sidecar is a real Linux container: its own process and PID namespace.
    let sidecar_pid = k8s_task_pid(&sidecar).expect("sidecar pid");
    assert_ne!(sidecar_pid, shim);
    assert_ne!(std::fs::read_link(format!("/proc/{sidecar_pid}/ns/pid")).unwrap(), std::fs::read_link(format!("/proc/{shim}/ns/pid")).unwrap());
    pod.remove();
    assert!(wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{shim}")).exists()), "pod shim {shim} outlived its pod");
}

#[test]
fn cri_wasm_containers_are_accounted_to_their_cgroups() {
    let mut pod = Pod::run("cgroups");
    let busy = pod.start("busy", "probe", &["/probe.wasm", "loop"]);
    assert!(pod.cri.wait_running(&busy, Duration::from_secs(30)));
    let shim = k8s_task_pid(&busy).expect("pid");
    // The guest thread sits in the container's cgroup...
    let cpu_dir = PathBuf::from("/sys/fs/cgroup/cpu").join(pod.cgroup_parent.trim_start_matches('/')).join(&busy);
    let tasks = std::fs::read_to_string(cpu_dir.join("tasks")).unwrap_or_default();
    let shim_threads: Vec<String> = std::fs::read_dir(format!("/proc/{shim}/task")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(tasks.lines().any(|t| shim_threads.iter().any(|s| s == t)), "no shim thread in {}: {tasks:?}", cpu_dir.display());
    // ...and the pod's limits cover the shim.
    let procs = std::fs::read_to_string(PathBuf::from("/sys/fs/cgroup/memory").join(pod.cgroup_parent.trim_start_matches('/')).join("cgroup.procs")).unwrap_or_default();
    assert!(procs.lines().any(|p| p == shim.to_string()), "shim not in the pod's memory cgroup: {procs:?}");
    // Stats report real CPU use of the busy guest, and its memory.
    let mut stats = v1::ContainerStats::default();
    assert!(wait_until(Duration::from_secs(20), || {
        stats = pod.cri.container_stats(&busy).unwrap();
        stats.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds.as_ref()).map_or(0, |v| v.value) > 10_000_000
    }), "no CPU usage reported: {stats:?}");
    let memory = stats.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).map_or(0, |v| v.value);
    assert!(memory > 0, "no memory reported: {stats:?}");
    // StopContainer: SIGTERM stops even a tight loop.
    pod.cri.stop_container(&busy, 5).unwrap();
    let status = pod.cri.wait_exited(&busy, Duration::from_secs(20));
    assert_eq!(status.exit_code, 143, "{status:?}");
    pod.remove();
    assert!(!cpu_dir.exists(), "container cgroup left behind: {}", cpu_dir.display());
}

#[test]
fn cri_unknown_handler_fails_clearly() {
    let name = unique("nohandler");
    let log_dir = std::env::temp_dir().join(&name);
    let config = pod_config(&name, &log_dir, &format!("/{CGROUP_ROOT}/{name}"));
    let err = Cri::connect().run_pod(&config, "no-such-handler").expect_err("an unknown handler must fail");
    assert!(err.message().contains("no-such-handler"), "{err}");
}

#[test]
fn cri_stop_and_remove_leave_nothing_twenty_times() {
    let netns_dir = env().dir.join("state/io.containerd.grpc.v1.cri/netns");
    let count = |dir: &std::path::Path| std::fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0);
    let (mounts_before, netns_before) = (mounts_under(&env().dir).len(), count(&netns_dir));
    for round in 0..20 {
        let mut pod = Pod::run("churn");
        let hello = pod.start("hello", "hello", &["/hello.wasm", &format!("round-{round}")]);
        let sleeper = pod.start("sleeper", "probe", &["/probe.wasm", "sleep", "3600"]);
        let status = pod.cri.wait_exited(&hello, Duration::from_secs(30));
        assert_eq!(status.exit_code, 0, "round {round}: {status:?}");
        assert!(pod.log("hello").contains(&format!("argv[1]=round-{round}")));
        let id = pod.id.clone();
        let shims = pod_shims(&id);
        assert_eq!(shims.len(), 1);
        pod.cri.stop_container(&sleeper, 2).unwrap();
        pod.remove();
        assert!(wait_until(Duration::from_secs(10), || pod_shims(&id).is_empty()), "round {round}: shim left running");
        assert!(wait_until(Duration::from_secs(10), || !mounts_under(&env().dir).iter().any(|m| m.contains(&id))), "round {round}: mounts left");
    }
    // Parallel tests may hold pods of their own; allow for them, but not for growth per round.
    assert!(wait_until(Duration::from_secs(15), || mounts_under(&env().dir).len() <= mounts_before + 6), "mounts grew: {:?}", mounts_under(&env().dir));
    assert!(wait_until(Duration::from_secs(15), || count(&netns_dir) <= netns_before + 2), "network namespaces left behind");
}

fn http_get(host: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The pod network's gateway: the host side of the test's CNI bridge (the
/// first address of the subnet in the conflist tests/lib/containerd.sh wrote).
fn pod_network_gateway() -> String {
    let conflist = std::fs::read_to_string(env().dir.join("cni/10-wasmtime-e2e.conflist")).expect("read the CNI conflist");
    let subnet = conflist.split("\"subnet\": \"").nth(1).and_then(|r| r.split('"').next()).expect("subnet in the conflist");
    let base = subnet.split('/').next().unwrap_or_default();
    let octets: Vec<&str> = base.split('.').collect();
    format!("{}.{}.{}.1", octets[0], octets[1], octets[2])
}

/// A process the test started, ended when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cri_wasm_guests_resolve_cluster_names_with_the_pods_resolv_conf() {
    let gateway = pod_network_gateway();
    let dns = v1::DnsConfig {
        servers: vec![gateway.clone()],
        searches: vec!["chat.svc.cluster.local".into(), "svc.cluster.local".into(), "cluster.local".into()],
        options: vec!["ndots:5".into()],
    };
    let mut pod = Pod::run_with_dns("dns", Some(dns));
    // A DNS server in the pod network (on the bridge this pod is attached
    // to), answering for one Service name, like CoreDNS would.
    let _dnsmasq = KillOnDrop(std::process::Command::new("dnsmasq")
        .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces", "--pid-file="])
        .arg(format!("--listen-address={gateway}"))
        // NXDOMAIN for the rest of cluster.local, as CoreDNS answers, so the
        // resolver goes on down the search list.
        .args(["--port=53", "--address=/message.chat.svc.cluster.local/10.96.0.42", "--address=/cluster.local/", "--log-facility=-"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dnsmasq"));
    std::thread::sleep(Duration::from_millis(300));
    // Short, namespaced and fully qualified names resolve through the search list.
    for (i, name) in ["message", "message.chat", "message.chat.svc.cluster.local"].iter().enumerate() {
        let container = format!("resolve{i}");
        let id = pod.start(&container, "probe-p2", &["/probe-p2.wasm", "resolve", name]);
        let status = pod.cri.wait_exited(&id, Duration::from_secs(30));
        let log = pod.log(&container);
        assert_eq!(status.exit_code, 0, "{name}: {log}");
        assert!(log.contains(" stdout F 10.96.0.42"), "{name} did not resolve to the Service address: {log}");
    }
    // A name the cluster DNS does not know fails, as in a Linux pod.
    let id = pod.start("unknown", "probe-p2", &["/probe-p2.wasm", "resolve", "nosuchservice"]);
    let status = pod.cri.wait_exited(&id, Duration::from_secs(30));
    // (WASI 0.2 exits carry only success or failure: 1.)
    assert_eq!(status.exit_code, 1, "{}", pod.log("unknown"));
    assert!(pod.log("unknown").contains("resolve failed"), "{}", pod.log("unknown"));
    pod.remove();
    // The bind mounts of the guests' resolver files stayed in their own namespaces.
    let host_mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    assert!(!host_mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/etc/resolv.conf")), "resolv.conf bind leaked to the host");
}
