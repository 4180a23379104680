//! containerd restarts (killed with SIGKILL, or stopped cleanly) while Wasm
//! containers and a wasi:http server run: the shims outlive it, and once it
//! is back its tasks are listed and still serve, a container that exited
//! while containerd was down is reported stopped, and kill and delete work.
//! Through CRI, exits after the restart still reach containerd (events).
//!
//! These tests restart the private containerd the suite runs against, so
//! they run one at a time.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use e2e::cri::v1;
use e2e::http::{get, wait_serving, Served};
use e2e::pod::Pod;
use e2e::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Stops the private containerd with `signal`, keeps it down for `down`,
/// and starts it again as tests/lib/containerd.sh did: same command line,
/// environment and directory, output appended to its log, its pid file
/// updated (containerd_down stops the new one).
fn restart_containerd(signal: &str, down: Duration) {
    let dir = env().dir;
    let pid: u32 = std::fs::read_to_string(dir.join("containerd.pid")).unwrap().trim().parse().unwrap();
    let split = |file: &str| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        raw.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    };
    let argv = split("cmdline");
    let environ: Vec<(String, String)> = split("environ").iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
    assert!(wait_until(Duration::from_secs(20), || !alive(pid)), "containerd (pid {pid}) did not stop on {signal}");
    std::thread::sleep(down);
    let log = std::fs::OpenOptions::new().append(true).open(dir.join("containerd.log")).unwrap();
    let child = Command::new("setsid")
        .args(&argv)
        .env_clear()
        .envs(environ)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(dir.join("containerd.pid"), format!("{}\n", child.id())).unwrap();
    assert!(wait_until(Duration::from_secs(30), || ctr(&["version"]).status.success()), "containerd did not come back");
}

fn survives_a_containerd_restart(signal: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sleeper = unique("restart-sleeper");
    assert!(run_detached(&[], "probe", &sleeper, &["/probe.wasm", "sleep", "3600"]).status.success());
    let brief = unique("restart-brief");
    assert!(run_detached(&[], "probe", &brief, &["/probe.wasm", "sleep", "2"]).status.success());
    let served = Served::start("http-hello", &[]);
    wait_serving(served.port);
    let shims: Vec<u32> = [&sleeper, &served.id].iter().map(|id| thread_group_of(task_pid(id).unwrap())).collect();

    // Down long enough for `brief` to exit meanwhile.
    restart_containerd(signal, Duration::from_secs(3));

    assert!(shims.iter().all(|p| alive(*p)), "a shim died with containerd");
    assert_eq!(task_status(&sleeper).as_deref(), Some("RUNNING"));
    assert_eq!(task_status(&served.id).as_deref(), Some("RUNNING"));
    assert_eq!(get(served.port, "/").map(|(code, _)| code).ok(), Some(200), "the server stopped answering");
    assert!(wait_until(Duration::from_secs(10), || task_status(&brief).as_deref() == Some("STOPPED")), "exit while containerd was down: {:?}", task_status(&brief));
    // Kill and delete work on the restored tasks.
    for id in [&sleeper, &served.id, &brief] {
        remove(id);
        assert_eq!(task_status(id), None, "{id} still listed");
    }
    assert!(wait_until(Duration::from_secs(10), || shims.iter().all(|p| !alive(*p))), "a shim outlived its containers");
}

#[test]
fn tasks_survive_containerd_being_killed() {
    survives_a_containerd_restart("-KILL");
}

#[test]
fn tasks_survive_containerd_being_stopped() {
    survives_a_containerd_restart("-TERM");
}

#[test]
fn cri_sees_exits_after_a_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut pod = Pod::run("restart-pod");
    let app = pod.start_running("app", "probe", &["/probe.wasm", "sleep", "3600"], &[]);
    let sidecar = pod.start_running("sidecar", "busybox", &["/bin/busybox", "sleep", "3600"], &[]);
    restart_containerd("-KILL", Duration::from_secs(1));
    // containerd learns of these exits only from the shim's events.
    pod.cri = e2e::cri::Cri::connect();
    // The sidecar ends on SIGTERM or, had it ignored that, at the timeout's SIGKILL.
    for (id, want) in [(&app, &[143][..]), (&sidecar, &[143, 137][..])] {
        assert!(pod.cri.wait_running(id, Duration::from_secs(20)), "{id} not running after the restart");
        let (out, _, code) = pod.exec(id, if *id == app { &["/probe.wasm", "args", "x"] } else { &["/bin/busybox", "echo", "x"] });
        assert_eq!(code, 0, "exec after the restart: {out}");
        pod.cri.stop_container(id, 5).unwrap_or_else(|e| panic!("StopContainer {id}: {e}"));
        let status = pod.cri.wait_exited(id, Duration::from_secs(20));
        assert_eq!(status.state, v1::ContainerState::ContainerExited as i32, "{id}: {status:?}");
        assert!(want.contains(&status.exit_code), "{id}: exit {} (want {want:?}): {status:?}", status.exit_code);
    }
    pod.remove();
}
