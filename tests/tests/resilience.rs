//! Bad input fails clearly and alone; many containers at once all work; a
//! deleted container leaves nothing behind.

use std::time::Duration;

use e2e::*;

fn assert_fails_with(image_name: &str, args: &[&str], needle: &str) {
    let id = unique("bad");
    let out = run(&[], image_name, &id, args);
    assert!(!out.status.success(), "{image_name} ran");
    let err = stderr(&out);
    assert!(err.contains(needle), "{image_name}: expected {needle:?} in: {err}");
    let _ = ctr(&["containers", "delete", &id]);
}

#[test]
fn bad_modules_fail_clearly_and_alone() {
    // A long-running neighbour must be unaffected by every failure below.
    let neighbour = unique("neighbour");
    assert!(run_detached(&[], "probe", &neighbour, &["/probe.wasm", "sleep", "3600"]).status.success());

    assert_fails_with("corrupt", &[], "compile module");
    assert_fails_with("truncated", &[], "compile module");
    assert_fails_with("missing-import", &[], "no_such_function");
    assert_fails_with("hello", &["/nope.wasm"], "entrypoint \"/nope.wasm\" not found");

    assert_eq!(task_status(&neighbour).as_deref(), Some("RUNNING"));
    remove(&neighbour);
}

#[test]
fn native_entrypoints_run_under_runc_and_garbage_is_refused() {
    let rootfs = std::env::temp_dir().join(unique("native-rootfs"));
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
    std::fs::write(rootfs.join("garbage.bin"), b"MZ\x90\x00 neither wasm nor ELF").unwrap();
    // A native executable is a Linux container: the shim hands it to runc.
    let id = unique("native");
    let out = ctr(&["run", "--rm", "--runtime", RUNTIME, "--rootfs", rootfs.to_str().unwrap(), &id, "/busybox", "echo", "hello from runc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from runc\n");
    let id = unique("native");
    let out = ctr(&["run", "--rm", "--runtime", RUNTIME, "--rootfs", rootfs.to_str().unwrap(), &id, "/busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Anything else is refused with the reason.
    let id = unique("garbage");
    let out = ctr(&["run", "--rm", "--runtime", RUNTIME, "--rootfs", rootfs.to_str().unwrap(), &id, "/garbage.bin"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a WebAssembly module"), "{}", stderr(&out));
    let _ = ctr(&["containers", "delete", &id]);
    let _ = std::fs::remove_dir_all(rootfs);
}

#[test]
fn fifty_concurrent_containers_all_succeed_and_leave_nothing() {
    let ids: Vec<String> = (0..50).map(|_| unique("many")).collect();
    let handles: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| std::thread::spawn(move || {
            let out = run(&[], "hello", &id, &["/hello.wasm", &id]);
            (id, out)
        }))
        .collect();
    for h in handles {
        let (id, out) = h.join().unwrap();
        assert!(out.status.success(), "{id}: {:?} stdout={:?} stderr={:?}", out.status, stdout(&out), stderr(&out));
        assert!(stdout(&out).contains(&format!("argv[1]={id}")), "{id}: {}", stdout(&out));
    }
    assert_leaves_nothing(&ids);
}

#[test]
fn delete_leaves_no_process_mount_fifo_or_state() {
    let id = unique("clean");
    assert!(run_detached(&[], "probe", &id, &["/probe.wasm", "sleep", "3600"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("RUNNING")));
    let shim = thread_group_of(task_pid(&id).unwrap());
    assert!(task_dirs().contains(&id));
    assert!(mounts_under(&env().dir).iter().any(|m| m.contains(&id)), "rootfs not mounted while running");
    remove(&id);
    assert!(wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{shim}")).exists()), "shim {shim} still running");
    assert_leaves_nothing(&[id]);
}

fn assert_leaves_nothing(ids: &[String]) {
    let gone = wait_until(Duration::from_secs(15), || {
        let dirs = task_dirs();
        let mounts = mounts_under(&env().dir);
        ids.iter().all(|id| !dirs.contains(id) && !mounts.iter().any(|m| m.contains(id.as_str())))
    });
    assert!(gone, "state or mounts left behind: {:?} {:?}", task_dirs(), mounts_under(&env().dir));
    // FIFOs live in containerd's fifo dir, named by container id.
    let fifo_dir = std::path::Path::new("/run/containerd/fifo");
    if let Ok(rd) = std::fs::read_dir(fifo_dir) {
        for d in rd.flatten() {
            if let Ok(inner) = std::fs::read_dir(d.path()) {
                for f in inner.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    assert!(!ids.iter().any(|id| name.starts_with(id.as_str())), "fifo {name} left behind");
                }
            }
        }
    }
}
