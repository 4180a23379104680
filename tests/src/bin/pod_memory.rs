//! Measures what Wasm containers add to a pod's shim in memory: runs a pod
//! through CRI, adds idle Wasm containers one by one and prints the shim's
//! RSS and PSS after each. Used by bench/pod-memory.sh (needs E2E_DIR).

use std::time::Duration;

use e2e::cri::{container_config, pod_config, Cri};
use e2e::{image, unique, wait_until};

fn pod_shim(pod_id: &str) -> Option<u32> {
    e2e::shim_pids().into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).split('\0').any(|a| a == pod_id)).unwrap_or(false)
    })
}

/// (RSS, PSS) in KiB from /proc/PID/smaps_rollup.
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let name = unique("density");
    let log_dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = pod_config(&name, &log_dir, &format!("/wasmtime-e2e/{name}"));
    let mut cri = Cri::connect();
    let pod = cri.run_pod(&config, "wasmtime").expect("RunPodSandbox");
    let shim = pod_shim(&pod).expect("the pod's shim");
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, pss0) = memory_kib(shim);
    println!("containers=0 shim_rss_kib={rss0} shim_pss_kib={pss0}");
    let mut prev = (rss0, pss0);
    for n in 1..=count {
        let c = container_config(&format!("idle-{n}"), &image("probe"), &["/probe.wasm", "sleep", "3600"], &format!("idle-{n}.log"));
        let id = cri.create_container(&pod, &c, &config).expect("CreateContainer");
        cri.start_container(&id).expect("StartContainer");
        assert!(cri.wait_running(&id, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(500));
        let now = memory_kib(shim);
        println!(
            "containers={n} shim_rss_kib={} shim_pss_kib={} added_rss_kib={} added_pss_kib={}",
            now.0,
            now.1,
            now.0 as i64 - prev.0 as i64,
            now.1 as i64 - prev.1 as i64
        );
        prev = now;
    }
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    let _ = wait_until(Duration::from_secs(10), || pod_shim(&pod).is_none());
    let _ = std::fs::remove_dir_all(log_dir);
}
