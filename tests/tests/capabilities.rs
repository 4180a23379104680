//! What a guest can reach: its rootfs and mounts, nothing else of the host;
//! the network its spec names.

use std::time::Duration;

use e2e::*;

#[test]
fn host_files_are_out_of_reach() {
    for path in ["/etc/passwd", "/tmp/../etc/passwd", "/../../../etc/passwd", "/proc/self/environ", "/proc/1/cmdline", "/sys/kernel/hostname"] {
        let id = unique("fs");
        let out = run(&[], "probe", &id, &["/probe.wasm", "cat", path]);
        assert_eq!(out.status.code(), Some(1), "{path} was readable: {}", stdout(&out));
        assert!(!stdout(&out).contains("root:"), "{path} leaked host content");
    }
}

#[test]
fn rootfs_is_slash_and_kernel_mounts_are_not_granted() {
    let id = unique("ls");
    let out = run(&[], "probe", &id, &["/probe.wasm", "ls", "/"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.lines().any(|l| l == "probe.wasm"), "{listing}");
    for kernel_fs in ["proc", "sys"] {
        let id = unique("ls");
        let out = run(&[], "probe", &id, &["/probe.wasm", "ls", &format!("/{kernel_fs}")]);
        assert!(!out.status.success() || stdout(&out).trim().is_empty(), "/{kernel_fs} is visible: {}", stdout(&out));
    }
}

#[test]
fn symlinks_to_host_paths_do_not_escape() {
    let vol = tempdir("links");
    std::os::unix::fs::symlink("/etc/passwd", vol.join("abs-file")).unwrap();
    std::os::unix::fs::symlink("/etc", vol.join("abs-dir")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", vol.join("rel-escape")).unwrap();
    std::fs::write(vol.join("inside.txt"), "inside\n").unwrap();
    std::os::unix::fs::symlink("inside.txt", vol.join("rel-inside")).unwrap();
    let mount = format!("type=bind,src={},dst=/data,options=rbind:ro", vol.display());
    for link in ["/data/abs-file", "/data/abs-dir/passwd", "/data/rel-escape"] {
        let id = unique("link");
        let out = run(&["--mount", &mount], "probe", &id, &["/probe.wasm", "cat", link]);
        assert!(!stdout(&out).contains("root:"), "{link} reached the host's passwd");
        assert_eq!(out.status.code(), Some(1), "{link}: {}", stdout(&out));
    }
    let id = unique("link");
    let out = run(&["--mount", &mount], "probe", &id, &["/probe.wasm", "cat", "/data/rel-inside"]);
    assert_eq!(stdout(&out), "inside\n", "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(vol);
}

#[test]
fn bind_mounts_keep_their_mode() {
    let vol = tempdir("vol");
    let rw = format!("type=bind,src={},dst=/rw,options=rbind:rw", vol.display());
    let ro = format!("type=bind,src={},dst=/ro,options=rbind:ro", vol.display());
    let id = unique("rw");
    let out = run(&["--mount", &rw], "probe", &id, &["/probe.wasm", "write", "/rw/note.txt", "written by wasm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(vol.join("note.txt")).unwrap(), "written by wasm");
    let id = unique("ro");
    let out = run(&["--mount", &ro], "probe", &id, &["/probe.wasm", "write", "/ro/other.txt", "nope"]);
    assert_eq!(out.status.code(), Some(1), "write to a read-only mount succeeded");
    assert!(!vol.join("other.txt").exists());
    let id = unique("ro");
    let out = run(&["--mount", &ro], "probe", &id, &["/probe.wasm", "cat", "/ro/note.txt"]);
    assert_eq!(stdout(&out), "written by wasm");
    let _ = std::fs::remove_dir_all(vol);
}

#[test]
fn host_network_serves_on_loopback() {
    let port = free_port();
    let id = unique("nethost");
    let out = run_detached(&["--net-host"], "probe-p2", &id, &["/probe-p2.wasm", "listen", &port.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut reply = None;
    assert!(wait_until(Duration::from_secs(10), || {
        reply = http_get_local(port);
        reply.is_some()
    }));
    assert!(reply.unwrap().contains("hello from probe"));
    remove(&id);
}

#[test]
fn default_network_is_a_private_namespace() {
    let port = free_port();
    let id = unique("netns");
    let out = run_detached(&[], "probe-p2", &id, &["/probe-p2.wasm", "listen", &port.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let task = task_pid(&id).expect("pid");
    let shim = thread_group_of(task);
    let mut thread = None;
    assert!(wait_until(Duration::from_secs(10), || {
        thread = guest_thread(shim, &id);
        thread.is_some()
    }));
    let netns = thread.unwrap().join("ns/net");
    // The task pid names the container's namespace, as a runc container's
    // does (Docker configures the network at /proc/<pid>/ns/net).
    assert_eq!(std::fs::read_link(format!("/proc/{task}/ns/net")).unwrap(), std::fs::read_link(&netns).unwrap());
    // Inside the container's namespace the server answers on loopback...
    let inside = || http_get_in_netns(&netns, port, 1);
    let mut body = String::new();
    assert!(wait_until(Duration::from_secs(10), || {
        body = inside();
        body.contains("hello from probe")
    }), "no answer inside the namespace: {body:?}");
    // ...while the host's loopback has nothing on that port.
    assert!(http_get_local(port).is_none(), "the private server is reachable from the host");
    // The shim itself stays in the host's namespace.
    assert_ne!(std::fs::read_link(format!("/proc/{shim}/ns/net")).unwrap(), std::fs::read_link(&netns).unwrap());
    remove(&id);
}

#[test]
fn joins_a_network_namespace_named_in_the_spec() {
    let ns = format!("e2e-{}", std::process::id());
    assert!(std::process::Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let _ = std::process::Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]).status();
    // The host listens on the port; the container's namespace does not.
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_listener.local_addr().unwrap().port();
    let id = unique("withns");
    let with_ns = format!("network:/var/run/netns/{ns}");
    let out = run(&["--with-ns", &with_ns], "probe-p2", &id, &["/probe-p2.wasm", "connect", &format!("127.0.0.1:{port}")]);
    drop(host_listener);
    let _ = std::process::Command::new("ip").args(["netns", "delete", &ns]).status();
    assert!(!out.status.success(), "connected to the host's listener from another namespace: {}", stdout(&out));
    assert!(stderr(&out).contains("connect failed"), "{}", stderr(&out));
}

#[test]
fn outbound_connect_works_with_host_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nfrom the host test\n").unwrap();
    });
    let id = unique("connect");
    let out = run(&["--net-host"], "probe-p2", &id, &["/probe-p2.wasm", "connect", &format!("127.0.0.1:{port}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("from the host test"));
    server.join().unwrap();
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("e2e-{tag}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
