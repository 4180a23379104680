//! Faults: a shim killed with SIGKILL. containerd reports its tasks as
//! exited and runs `shim delete` for each of its containers, which must
//! release everything the daemon held: runc's processes and state, cgroups,
//! mounts, state dirs. Through CRI the pod can then be removed and made again.

use std::path::Path;
use std::process::{Command, Stdio};

const NAMESPACE: &str = "wasm";
use std::time::Duration;

use e2e::cri::v1;
use e2e::pod::{cgroup_dirs, Pod};
use e2e::*;

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// SIGKILL to a shim this test started.
fn kill9(pid: u32) {
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success(), "kill -9 {pid}");
}

/// The processes in a v1 cgroup (its pids hierarchy).
fn cgroup_procs(path: &str) -> Vec<u32> {
    let file = Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/')).join("cgroup.procs");
    std::fs::read_to_string(file).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[test]
fn killed_shim_of_a_standalone_container_reports_an_exit_and_leaves_nothing() {
    let id = unique("killed");
    // Attached, as a user's `ctr run` waits for its container.
    let mut attached = ctr_command(&["run", "--runtime", RUNTIME, &image("probe"), &id, "/probe.wasm", "sleep", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || task_status(&id).as_deref() == Some("RUNNING")), "never ran");
    let shim = thread_group_of(task_pid(&id).unwrap());
    assert!(cgroup_dirs(&format!("{NAMESPACE}/{id}")).len() > 0, "no cgroup for the container to leak");
    kill9(shim);

    // `ctr run` returns with an exit status instead of waiting forever.
    let returned = wait_until(Duration::from_secs(20), || attached.try_wait().unwrap().is_some());
    if !returned {
        let _ = attached.kill();
    }
    let status = attached.wait().unwrap();
    assert!(returned, "ctr run still waits 20 s after its shim was killed");
    assert!(!status.success(), "ctr run reported success for a killed container");
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).is_none()), "task still listed: {:?}", task_status(&id));
    assert!(ctr(&["containers", "delete", &id]).status.success());
    assert!(!alive(shim));
    assert_eq!(cgroup_dirs(&format!("{NAMESPACE}/{id}")), Vec::<std::path::PathBuf>::new(), "the container's cgroup leaked");
    assert!(mounts_under(&env().dir).iter().all(|m| !m.contains(&id)), "a mount leaked: {:?}", mounts_under(&env().dir));
    assert!(wait_until(Duration::from_secs(10), || !task_dirs().contains(&id)), "the task's state dir leaked");
}

#[test]
fn killed_shim_of_a_pod_is_cleaned_up_and_the_pod_made_again() {
    let mut pod = Pod::run("killed-pod");
    let wasm = pod.start_running("app", "probe", &["/probe.wasm", "sleep", "3600"], &[]);
    let sidecar = pod.start_running("sidecar", "busybox", &["/bin/busybox", "sleep", "3600"], &[]);
    let procs = cgroup_procs(&format!("{}/{sidecar}", pod.cgroup_parent));
    let sidecar_pid = *procs.first().expect("the sidecar's process in its cgroup");
    assert!(alive(sidecar_pid));
    let shims: Vec<u32> = shim_pids().into_iter().filter(|p| {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(&pod.id)
    }).collect();
    assert_eq!(shims.len(), 1, "one shim serves the pod: {shims:?}");
    kill9(shims[0]);

    // Both containers are reported exited, with a status.
    for id in [&wasm, &sidecar] {
        let status = pod.cri.wait_exited(id, Duration::from_secs(30));
        assert_eq!(status.state, v1::ContainerState::ContainerExited as i32, "{id}: {status:?}");
        assert_ne!(status.exit_code, 0, "{id}: {status:?}");
    }
    // runc's processes do not outlive the shim that owned them.
    assert!(wait_until(Duration::from_secs(10), || !alive(sidecar_pid)), "the sidecar (pid {sidecar_pid}) still runs");
    let parent = pod.cgroup_parent.clone();
    let name = pod.config.metadata.as_ref().unwrap().name.clone();
    // As kubelet does, RemovePodSandbox is retried until it succeeds
    // (containerd 2.x may still be cleaning up after the dead shim).
    pod.cri.stop_pod(&pod.id).unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
    let mut last = None;
    let removed = wait_until(Duration::from_secs(15), || match pod.cri.remove_pod(&pod.id) {
        Ok(()) => true,
        Err(e) => {
            last = Some(e);
            false
        }
    });
    assert!(removed, "RemovePodSandbox kept failing: {last:?}");
    if let Some(e) = last {
        eprintln!("RemovePodSandbox succeeded after retrying; first error: {e}");
    }
    // kubelet's housekeeping retries the pod cgroup's removal until its
    // containers' cgroups are gone; so does this.
    let removed = wait_until(Duration::from_secs(10), || {
        cgroup_dirs(&parent).into_iter().for_each(|d| drop(std::fs::remove_dir(d)));
        cgroup_dirs(&parent).is_empty()
    });
    assert!(removed, "the pod's cgroups leaked: {:?}", std::fs::read_dir(&cgroup_dirs(&parent)[0]).map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name()).collect::<Vec<_>>()));
    assert!(mounts_under(&env().dir).iter().all(|m| !m.contains(&wasm) && !m.contains(&sidecar)), "a mount leaked");

    // kubelet makes the pod again: it runs as before.
    let mut again = Pod::run(&name);
    let app = again.start_running("app", "probe", &["/probe.wasm", "sleep", "3600"], &[]);
    let (out, _, code) = again.exec(&app, &["/probe.wasm", "args", "again"]);
    assert_eq!((out.as_str(), code), ("argv[0]=/probe.wasm\nargv[1]=args\nargv[2]=again\n", 0));
    again.remove();
}
