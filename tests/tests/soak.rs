//! Soak: create/start/kill/delete cycles of mixed containers, up to ten at
//! a time — p1 modules, p2 commands and wasi:http servers on their own
//! shims (`ctr run -d`), and Wasm and Linux containers made and removed in
//! one long-lived pod (one shim throughout). Afterwards nothing is left
//! that was not there before, and the pod's shim has not grown.
//!
//! `SOAK_CYCLES` sets the count (default 100; `bench/soak.sh` runs 1000);
//! `SOAK_REPORT=FILE` appends the figures to FILE.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::cri::{container_config, v1, Cri};
use e2e::http::{get, wait_serving};
use e2e::pod::{pulled, Pod};
use e2e::*;

const WORKERS: usize = 10;

/// What a leak would show as; counted before and after.
fn census(pod_shim: u32) -> BTreeMap<&'static str, u64> {
    let count_dir = |p: &Path| std::fs::read_dir(p).map(|d| d.count() as u64).unwrap_or(0);
    let cgroups = |root: &str| -> u64 {
        let dir = Path::new("/sys/fs/cgroup/pids").join(root);
        std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().is_dir()).count() as u64).unwrap_or(0)
    };
    let cache = env().dir.join("state/io.containerd.wasmtime.v1/compile-cache");
    let temp_files = std::fs::read_dir(&cache)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains(".tmp")).count() as u64)
        .unwrap_or(0);
    let net_namespaces = {
        let mut seen = std::collections::HashSet::new();
        for proc in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(tasks) = std::fs::read_dir(proc.path().join("task")) {
                for t in tasks.flatten() {
                    if let Ok(link) = std::fs::read_link(t.path().join("ns/net")) {
                        seen.insert(link);
                    }
                }
            }
        }
        seen.len() as u64
    };
    BTreeMap::from([
        ("shim processes", shim_pids().len() as u64),
        ("mounts", mounts_under(&env().dir).len() as u64),
        ("task state dirs", task_dirs().len() as u64),
        ("cgroups under /wasm", cgroups("wasm")),
        ("network namespaces", net_namespaces),
        ("containerd FIFOs", count_dir(Path::new("/run/containerd/fifo"))),
        ("compile-cache temp files", temp_files),
        ("pod shim fds", count_dir(&Path::new("/proc").join(pod_shim.to_string()).join("fd"))),
    ])
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0)
}

/// One cycle of kind `n % 5`; panics (failing the test) on any misstep.
fn cycle(n: usize, pod: &Mutex<(v1::PodSandboxConfig, String)>) {
    match n % 5 {
        0 | 1 => {
            let (image_name, argv): (&str, &[&str]) = if n % 5 == 0 { ("probe", &["/probe.wasm", "sleep", "3600"]) } else { ("probe-p2", &["/probe-p2.wasm", "sleep", "3600"]) };
            let id = unique("soak");
            let out = run_detached(&[], image_name, &id, argv);
            assert!(out.status.success(), "cycle {n}: {}", stderr(&out));
            remove(&id);
            assert_eq!(task_status(&id), None, "cycle {n}: {id} left a task");
        }
        2 => {
            let id = unique("soak-http");
            let port = free_port();
            let env = format!("WASI_HTTP_PORT={port}");
            let out = run_detached(&["--net-host", "--env", &env], "http-hello", &id, &[]);
            assert!(out.status.success(), "cycle {n}: {}", stderr(&out));
            wait_serving(port);
            assert_eq!(get(port, "/").map(|(c, _)| c).ok(), Some(200), "cycle {n}");
            remove(&id);
        }
        kind => {
            let (config, pod_id) = pod.lock().unwrap().clone();
            let mut cri = Cri::connect();
            let (image_name, argv): (&str, &[&str]) = if kind == 3 { ("probe", &["/probe.wasm", "sleep", "3600"]) } else { ("busybox", &["/bin/busybox", "sleep", "3600"]) };
            let reference = pulled(&mut cri, image_name);
            let name = unique("soak-ctr");
            let id = cri.create_container(&pod_id, &container_config(&name, &reference, argv, &format!("{name}.log")), &config).unwrap_or_else(|e| panic!("cycle {n}: CreateContainer: {e}"));
            cri.start_container(&id).unwrap_or_else(|e| panic!("cycle {n}: StartContainer: {e}"));
            assert!(cri.wait_running(&id, Duration::from_secs(30)), "cycle {n}: {name} never ran");
            cri.stop_container(&id, 2).unwrap_or_else(|e| panic!("cycle {n}: StopContainer: {e}"));
            let status = cri.wait_exited(&id, Duration::from_secs(20));
            assert_eq!(status.state, v1::ContainerState::ContainerExited as i32, "cycle {n}: {status:?}");
            cri.remove_container(&id).unwrap_or_else(|e| panic!("cycle {n}: RemoveContainer: {e}"));
        }
    }
}

#[test]
fn soak_mixed_cycles_leave_nothing_behind() {
    let cycles: usize = std::env::var("SOAK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let mut pod = Pod::run("soak");
    // A resident container keeps the pod's shim (and its cgroup) in place.
    let resident = pod.start_running("resident", "probe", &["/probe.wasm", "sleep", "3600"], &[]);
    let pod_shim = thread_group_of(
        shim_pids().into_iter().find(|p| String::from_utf8_lossy(&std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default()).contains(&pod.id)).expect("the pod's shim"),
    );
    // Warm up once per kind, so what is measured is steady state.
    let shared = Arc::new(Mutex::new((pod.config.clone(), pod.id.clone())));
    for n in 0..5 {
        cycle(n, &shared);
    }
    let before = census(pod_shim);
    let rss_before = rss_kib(pod_shim);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (next, shared) = (next.clone(), shared.clone());
            std::thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= cycles {
                    break;
                }
                cycle(n, &shared);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a cycle failed");
    }
    let elapsed = started.elapsed();
    // Shims of removed containers exit on their own; give them (bounded) time.
    let settled = wait_until(Duration::from_secs(20), || census(pod_shim) == before);
    let after = census(pod_shim);
    let rss_after = rss_kib(pod_shim);
    let mut report = format!("soak: {cycles} cycles, {WORKERS} at a time, in {:.1} s (containerd {:?})\n", elapsed.as_secs_f64(), containerd_version());
    for (what, n) in &before {
        report += &format!("soak: {what}: {n} before, {} after\n", after[what]);
    }
    report += &format!("soak: pod shim RSS {rss_before} KiB before, {rss_after} KiB after\n");
    eprint!("{report}");
    if let Ok(file) = std::env::var("SOAK_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file).expect("open SOAK_REPORT");
        f.write_all(report.as_bytes()).expect("write SOAK_REPORT");
    }
    assert!(settled, "left behind: before {before:?}, after {after:?}");
    // Bounded: the shim that made and removed every pod container has not grown with them.
    assert!(rss_after <= rss_before + rss_before / 2 + 8 * 1024, "pod shim RSS grew from {rss_before} to {rss_after} KiB");
    assert!(pod.running(&resident), "the resident container stopped");
    pod.remove();
}
