//! Helpers for the end-to-end tests: drive a private containerd (started by
//! `tests/run.sh`) with `ctr`, the way a user would, and with CRI (`cri`),
//! the way kubelet does.

pub mod cri;
pub mod http;
pub mod pod;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const RUNTIME: &str = "io.containerd.wasmtime.v1";

/// Paths the runner exported.
pub struct Env {
    /// The private containerd's directory (socket, state, log).
    pub dir: PathBuf,
    /// Built fixtures (`hello.wasm`, `probe.wasm`, ...).
    pub fixtures: PathBuf,
    /// The shim binary under test.
    pub shim: PathBuf,
}

pub fn env() -> Env {
    let var = |k: &str| {
        std::env::var_os(k).map(PathBuf::from).unwrap_or_else(|| panic!("{k} is not set: run the end-to-end tests through tests/run.sh"))
    };
    Env { dir: var("E2E_DIR"), fixtures: var("E2E_FIXTURES"), shim: var("E2E_SHIM") }
}

/// A container id unique to this test run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// The reference of a test image: a bare name is one of the images
/// `tests/run.sh` imported; a full reference (with a registry) is used as is.
pub fn image(name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("localhost/test/{name}:latest")
    }
}

/// The test registry (`127.0.0.1:PORT`) that `tests/run.sh` started and pushed
/// the test images to, as `<registry>/test/NAME:TAG`.
pub fn registry() -> String {
    std::env::var("E2E_REGISTRY").expect("E2E_REGISTRY is not set: run the end-to-end tests through tests/run.sh")
}

/// The private containerd's version (`1.6.20`, `2.4.2`), from `ctr version`.
pub fn containerd_version() -> (u32, u32, u32) {
    let out = ctr(&["version"]);
    let text = stdout(&out);
    let server = text.split("Server:").nth(1).unwrap_or_default();
    let version = server.lines().find_map(|l| l.trim().strip_prefix("Version:")).unwrap_or_default().trim().trim_start_matches('v');
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether this containerd unpacks images whose layers are not filesystem
/// tars (OCI Wasm artifacts): 1.6.25+, 1.7.7+, 2.x.
pub fn unpacks_wasm_artifacts() -> bool {
    match containerd_version() {
        (1, 6, patch) => patch >= 25,
        (1, 7, patch) => patch >= 7,
        (major, minor, _) => (major, minor) > (1, 7),
    }
}

pub fn ctr_command(args: &[&str]) -> Command {
    let env = env();
    let mut cmd = Command::new("ctr");
    cmd.arg("--address").arg(env.dir.join("containerd.sock")).args(["--namespace", "wasm"]).args(args);
    cmd
}

/// `ctr ARGS` against the private containerd.
pub fn ctr(args: &[&str]) -> Output {
    ctr_command(args).stdin(Stdio::null()).output().expect("run ctr")
}

/// `ctr ARGS` with `input` on stdin.
pub fn ctr_with_input(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = ctr_command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run ctr");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `ctr run --rm` of a Wasm image under the shim; `opts` go before the
/// image, `args` (the whole argv, argv[0] included) after the id.
///
/// ctr (1.6 and 2.x) now and then returns having printed nothing for a
/// container that exits at once (a client-side race seen with runc too, see
/// bench/README.md); such a run is repeated once under a new id. A runtime
/// that really lost output fails the repeat as well.
pub fn run(opts: &[&str], image_name: &str, id: &str, args: &[&str]) -> Output {
    let out = run_once(opts, image_name, id, args);
    if out.stdout.is_empty() && out.stderr.is_empty() {
        eprintln!("ctr printed nothing for {id}; running it once more");
        return run_once(opts, image_name, &format!("{id}-again"), args);
    }
    out
}

fn run_once(opts: &[&str], image_name: &str, id: &str, args: &[&str]) -> Output {
    let img = image(image_name);
    let mut all = vec!["run", "--rm", "--runtime", RUNTIME, "--platform", "wasi/wasm"];
    all.extend_from_slice(opts);
    all.extend_from_slice(&[img.as_str(), id]);
    all.extend_from_slice(args);
    ctr(&all)
}

/// Starts a detached container; returns once its task is running.
pub fn run_detached(opts: &[&str], image_name: &str, id: &str, args: &[&str]) -> Output {
    let img = image(image_name);
    let mut all = vec!["run", "-d", "--runtime", RUNTIME, "--platform", "wasi/wasm"];
    all.extend_from_slice(opts);
    all.extend_from_slice(&[img.as_str(), id]);
    all.extend_from_slice(args);
    ctr(&all)
}

/// Removes a detached container whatever state it is in.
pub fn remove(id: &str) {
    let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
    let _ = wait_until(Duration::from_secs(10), || task_status(id).as_deref() != Some("RUNNING"));
    let _ = ctr(&["tasks", "delete", id]);
    let _ = ctr(&["containers", "delete", id]);
}

/// The STATUS column of `ctr tasks ls` for `id`.
pub fn task_status(id: &str) -> Option<String> {
    let out = ctr(&["tasks", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

/// The process (thread group) a task pid belongs to: a Wasm container's
/// task pid may be a thread of its shim.
pub fn thread_group_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Tgid:").map(|v| v.trim().parse().ok())).flatten())
        .unwrap_or(pid)
}

pub fn task_pid(id: &str) -> Option<u32> {
    let out = ctr(&["tasks", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Polls `cond` until it holds or `limit` passes (a bound, not a timing claim).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn containerd_log() -> String {
    std::fs::read_to_string(env().dir.join("containerd.log")).unwrap_or_default()
}

/// Pids of running shim processes of this containerd.
pub fn shim_pids() -> Vec<u32> {
    let sock = env().dir.join("containerd.sock");
    let sock = sock.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with("containerd-shim-wasmtime-v1") || cmdline.contains("/containerd-shim-wasmtime-v1\0") {
            if cmdline.contains(&sock) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Mount points under the private containerd's directory.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(d.as_ref()))
        .map(str::to_string)
        .collect()
}

/// Task state directories containerd keeps per container.
pub fn task_dirs() -> Vec<String> {
    let dir = env().dir.join("state/io.containerd.runtime.v2.task/wasm");
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

/// The guest thread of container `id` inside its shim, as `/proc/PID/task/TID`.
pub fn guest_thread(shim_pid: u32, id: &str) -> Option<PathBuf> {
    let name = format!("wasm-{}", id.chars().take(10).collect::<String>());
    // Thread names are cut at 15 bytes.
    let name: String = name.chars().take(15).collect();
    std::fs::read_dir(format!("/proc/{shim_pid}/task")).ok()?.flatten().map(|e| e.path()).find(|p| {
        std::fs::read_to_string(p.join("comm")).map(|c| c.trim() == name).unwrap_or(false)
    })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP GET to 127.0.0.1:port; `None` if nothing answers.
pub fn http_get_local(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// `times` HTTP/1.0 GETs to 127.0.0.1:`port` from inside the network
/// namespace at `netns` (a path under /proc or /var/run/netns); the bodies,
/// concatenated, or nothing if the namespace cannot be entered.
pub fn http_get_in_netns(netns: &Path, port: u16, times: u32) -> String {
    let script = format!(
        "for i in $(seq 1 {times}); do exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3; exec 3<&-; done"
    );
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["bash", "-c", &script])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
