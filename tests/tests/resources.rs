//! The compile cache and the memory limit.

use std::time::Duration;

use e2e::*;

fn cache_entries() -> Vec<std::path::PathBuf> {
    let dir = env().dir.join("state/io.containerd.wasmtime.v1/compile-cache");
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect()).unwrap_or_default()
}

fn compiled_lines(digest_prefix: &str) -> usize {
    containerd_log().lines().filter(|l| l.contains("msg=\"compiled sha256:") && l.contains(digest_prefix)).count()
}

#[test]
fn second_run_compiles_nothing_and_corrupt_entries_are_rebuilt() {
    let before: std::collections::HashSet<_> = cache_entries().into_iter().collect();
    let first = run(&[], "cache-probe", &unique("cache"), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let new: Vec<_> = cache_entries().into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "expected one new cache entry, got {new:?}");
    let entry = new[0].clone();
    let digest = entry.file_name().unwrap().to_string_lossy().split('-').next().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(5), || compiled_lines(&digest) == 1));
    let mtime = std::fs::metadata(&entry).unwrap().modified().unwrap();

    // Warm: another shim process loads the entry instead of compiling.
    let second = run(&[], "cache-probe", &unique("cache"), &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(compiled_lines(&digest), 1, "the second run compiled again");
    assert_eq!(std::fs::metadata(&entry).unwrap().modified().unwrap(), mtime);

    // Corrupt the entry behind the shim's back: detected, rebuilt, still runs.
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let third = run(&[], "cache-probe", &unique("cache"), &[]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(wait_until(Duration::from_secs(5), || compiled_lines(&digest) == 2), "corrupt entry was not rebuilt");
    assert!(containerd_log().contains("fails its checksum; rebuilding it"));

    // Truncated to nothing: the same.
    std::fs::write(&entry, b"").unwrap();
    let fourth = run(&[], "cache-probe", &unique("cache"), &[]);
    assert!(fourth.status.success(), "{}", stderr(&fourth));
    assert!(wait_until(Duration::from_secs(5), || compiled_lines(&digest) == 3));

    // A shim killed mid-write: the entry cut short and the writer's
    // temporary file left behind. Rebuilt, and the temporary file removed.
    let whole = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &whole[..whole.len() / 3]).unwrap();
    let partial = entry.with_extension("tmp4194303");
    std::fs::write(&partial, &whole[..whole.len() / 2]).unwrap();
    let fifth = run(&[], "cache-probe", &unique("cache"), &[]);
    assert!(fifth.status.success(), "{}", stderr(&fifth));
    assert!(wait_until(Duration::from_secs(5), || compiled_lines(&digest) == 4), "cut-short entry was not rebuilt");
    assert!(!partial.exists(), "the killed writer's temporary file is still there");
    assert_eq!(std::fs::read(&entry).unwrap(), whole, "the rebuilt entry differs");

    // The cache's filesystem is full (a 4 KiB tmpfs over it): the code is
    // compiled and kept in memory, the container runs, nothing is left there.
    let dir = entry.parent().unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"]).arg(dir).status().unwrap();
    assert!(mounted.success(), "mount a small tmpfs over {}", dir.display());
    let sixth = run(&[], "cache-probe", &unique("cache"), &[]);
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(std::process::Command::new("umount").arg(dir).status().unwrap().success());
    assert!(sixth.status.success(), "{}", stderr(&sixth));
    assert!(wait_until(Duration::from_secs(5), || containerd_log().contains("No space left on device")), "the full cache was not reported");
    assert!(left.iter().all(|n| n.ends_with(".lock")), "left in the full cache: {left:?}");
}

#[test]
fn memory_limit_bounds_linear_memory() {
    let id = unique("mem");
    let out = run(&["--memory-limit", &(32u64 << 20).to_string()], "probe", &id, &["/probe.wasm", "grow", "64"]);
    assert_eq!(out.status.code(), Some(3), "{} {}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("grow failed after"), "{text}");
    let grown: u64 = text.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or(999);
    assert!(grown < 32, "grew {grown} MiB past a 32 MiB limit");
    assert!(wait_until(Duration::from_secs(5), || containerd_log().contains(&format!("container {id}: memory.grow"))), "denial not logged");

    // Without a limit the same growth succeeds, and the shim survived the denial above.
    let id = unique("mem");
    let out = run(&[], "probe", &id, &["/probe.wasm", "grow", "64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "grew 64 MiB");
}
