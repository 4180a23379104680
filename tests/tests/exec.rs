//! Exec: further processes in a running container, the way kubelet starts
//! them (CRI ExecSync, for `kubectl exec` and exec probes) and the way
//! `ctr tasks exec` does — in Linux sidecars (runc exec) and in Wasm
//! containers (another Wasm command in the container's sandbox).

use std::time::Duration;

use e2e::cri::Cri;
use e2e::pod::Pod;
use e2e::*;

#[test]
fn cri_exec_in_a_linux_sidecar() {
    let mut pod = Pod::run("exec-linux");
    let sidecar = pod.start_running("sidecar", "busybox", &["/bin/busybox", "sleep", "3600"], &[]);
    let (out, err, code) = pod.exec(&sidecar, &["/bin/busybox", "sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    assert_eq!((out.as_str(), err.as_str(), code), ("hi\n", "oops\n", 3));
    // In the container's mount namespace: its rootfs holds busybox alone.
    let (out, _, code) = pod.exec(&sidecar, &["/bin/busybox", "ls", "/bin"]);
    assert_eq!((out.as_str(), code), ("busybox\n", 0));
    // An exec that runs past its timeout is killed; the container is not.
    let err = pod.cri.exec_sync(&sidecar, &["/bin/busybox", "sleep", "30"], 1).expect_err("a 30 s exec returned within its 1 s timeout");
    assert!(err.message().contains("timeout"), "{err}");
    let err = pod.cri.exec_sync(&sidecar, &["/no/such/binary"], 10).expect_err("exec of a missing binary succeeded");
    assert!(err.message().contains("/no/such/binary"), "{err}");
    assert!(pod.running(&sidecar), "the sidecar stopped");
    let (out, _, code) = pod.exec(&sidecar, &["/bin/busybox", "echo", "still here"]);
    assert_eq!((out.as_str(), code), ("still here\n", 0));
    pod.remove();
}

#[test]
fn cri_exec_in_a_wasm_container_runs_a_command_in_its_sandbox() {
    let mut pod = Pod::run("exec-wasm");
    let app = pod.start_running("app", "probe", &["/probe.wasm", "sleep", "3600"], &[("GREETING", "from-the-pod")]);
    // argv is the exec's, output and exit code come back as from a process.
    let (out, err, code) = pod.exec(&app, &["/probe.wasm", "args", "x y"]);
    assert_eq!((out.as_str(), err.as_str(), code), ("argv[0]=/probe.wasm\nargv[1]=args\nargv[2]=x y\n", "", 0));
    let (_, _, code) = pod.exec(&app, &["/probe.wasm", "exit", "5"]);
    assert_eq!(code, 5);
    let (_, err, code) = pod.exec(&app, &["/probe.wasm", "no-such-subcommand"]);
    assert_eq!(code, 2);
    assert!(err.contains("usage: probe"), "{err}");
    // The container's env, its rootfs (writes persist across execs).
    let (out, _, _) = pod.exec(&app, &["/probe.wasm", "env"]);
    assert!(out.lines().any(|l| l == "GREETING=from-the-pod"), "{out}");
    let (out, _, code) = pod.exec(&app, &["/probe.wasm", "ls", "/"]);
    assert!(code == 0 && out.lines().any(|l| l == "probe.wasm"), "{out}");
    let (out, _, code) = pod.exec(&app, &["/probe.wasm", "write", "/exec-was-here", "hello"]);
    assert_eq!((out.as_str(), code), ("wrote\n", 0));
    let (out, _, code) = pod.exec(&app, &["/probe.wasm", "cat", "/exec-was-here"]);
    assert_eq!((out.as_str(), code), ("hello", 0));
    // A name is looked up inside the rootfs, nowhere else.
    let err = pod.cri.exec_sync(&app, &["/nope.wasm"], 10).expect_err("exec of a missing file succeeded");
    assert!(err.message().contains("\"/nope.wasm\" not found in the container's rootfs"), "{err}");
    let err = pod.cri.exec_sync(&app, &["/bin/sh", "-c", "true"], 10).expect_err("exec of /bin/sh in a Wasm container succeeded");
    assert!(err.message().contains("/bin/sh"), "{err}");
    // Killed at its timeout: only the exec, a guest busy in a loop included.
    let err = pod.cri.exec_sync(&app, &["/probe.wasm", "loop"], 1).expect_err("an endless exec returned within its timeout");
    assert!(err.message().contains("timeout"), "{err}");
    // Probes and `kubectl exec` may overlap: each exec is a guest of its own.
    let execs: Vec<_> = (0..4)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || Cri::connect().exec_sync(&app, &["/probe.wasm", "args", &i.to_string()], 20))
        })
        .collect();
    for (i, exec) in execs.into_iter().enumerate() {
        let (out, _, code) = exec.join().unwrap().unwrap_or_else(|e| panic!("concurrent ExecSync {i}: {e}"));
        assert_eq!((out, code), (format!("argv[0]=/probe.wasm\nargv[1]=args\nargv[2]={i}\n"), 0));
    }
    // The init was never disturbed: it runs, and stops as ever.
    assert!(pod.running(&app), "the Wasm container stopped");
    let (out, _, code) = pod.exec(&app, &["/probe.wasm", "args"]);
    assert_eq!((out.as_str(), code), ("argv[0]=/probe.wasm\nargv[1]=args\n", 0));
    pod.cri.stop_container(&app, 5).unwrap();
    let status = pod.cri.wait_exited(&app, Duration::from_secs(20));
    assert_eq!(status.exit_code, 143, "{status:?}");
    pod.remove();
}

#[test]
fn cri_exec_of_a_component_shares_the_pods_network_and_proxies_are_refused() {
    let mut pod = Pod::run("exec-p2");
    let server = pod.start_running("server", "probe-p2", &["/probe-p2.wasm", "listen", "8080"], &[]);
    // A command component, reaching the init's server over the pod's loopback.
    let mut reply = (String::new(), String::new(), -1);
    assert!(
        wait_until(Duration::from_secs(15), || {
            reply = pod.exec(&server, &["/probe-p2.wasm", "connect", "127.0.0.1:8080"]);
            reply.2 == 0
        }),
        "exec could not reach the server: {reply:?}"
    );
    assert!(reply.0.contains("hello from probe"), "{reply:?}");
    let web = pod.start_running("web", "http-hello", &["/http-hello.wasm"], &[("WASI_HTTP_PORT", "8081")]);
    let err = pod.cri.exec_sync(&web, &["/http-hello.wasm"], 10).expect_err("exec of a wasi:http proxy succeeded");
    assert!(err.message().contains("wasi:http proxy component"), "{err}");
    assert!(pod.running(&web) && pod.running(&server));
    pod.remove();
}

#[test]
fn ctr_tasks_exec_in_a_detached_wasm_container() {
    let id = unique("exec-ctr");
    let out = run_detached(&[], "probe-p2", &id, &["/probe-p2.wasm", "listen", "8080"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("RUNNING")));
    let out = ctr(&["tasks", "exec", "--exec-id", "args-1", &id, "/probe-p2.wasm", "args", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "argv[0]=/probe-p2.wasm\nargv[1]=args\nargv[2]=hi\n");
    // A component exits 0 or 1 (WASI 0.2's exit carries only that); ctr exits with it.
    let out = ctr(&["tasks", "exec", "--exec-id", "exit-1", &id, "/probe-p2.wasm", "exit", "4"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // `ctr run` gives the container a network namespace of its own: the
    // exec is in it, with the init's server.
    let mut out = ctr(&["tasks", "exec", "--exec-id", "connect-0", &id, "/probe-p2.wasm", "connect", "127.0.0.1:8080"]);
    for attempt in 1..20 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        out = ctr(&["tasks", "exec", "--exec-id", &format!("connect-{attempt}"), &id, "/probe-p2.wasm", "connect", "127.0.0.1:8080"]);
    }
    assert!(stdout(&out).contains("hello from probe"), "{} {}", stdout(&out), stderr(&out));
    // Stdin reaches the exec, and its end too.
    let out = ctr_with_input(&["tasks", "exec", "--exec-id", "stdin-1", &id, "/probe-p2.wasm", "stdin"], b"piped in\n");
    assert_eq!(stdout(&out), "piped in\nstdin-eof\n", "{}", stderr(&out));
    let out = ctr(&["tasks", "exec", "--exec-id", "missing-1", &id, "/missing.wasm"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"/missing.wasm\" not found"), "{}", stderr(&out));
    assert_eq!(task_status(&id).as_deref(), Some("RUNNING"));
    remove(&id);
}

#[test]
fn ctr_tasks_exec_in_a_wasm_container_has_its_memory_limit() {
    let id = unique("exec-mem");
    let out = run_detached(&["--memory-limit", &(32u64 << 20).to_string()], "probe", &id, &["/probe.wasm", "sleep", "3600"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("RUNNING")));
    let out = ctr(&["tasks", "exec", "--exec-id", "grow-64", &id, "/probe.wasm", "grow", "64"]);
    assert_eq!(out.status.code(), Some(3), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("grow failed after"), "{}", stdout(&out));
    let out = ctr(&["tasks", "exec", "--exec-id", "grow-4", &id, "/probe.wasm", "grow", "4"]);
    assert_eq!((stdout(&out).as_str(), out.status.code()), ("grew 4 MiB\n", Some(0)), "{}", stderr(&out));
    // Kill reaches an exec by its id; the container keeps running.
    let out = ctr(&["tasks", "exec", "-d", "--exec-id", "sleeper", &id, "/probe.wasm", "sleep", "3600"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ctr(&["tasks", "kill", "--exec-id", "sleeper", "-s", "SIGTERM", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ctr(&["tasks", "exec", "--exec-id", "after", &id, "/probe.wasm", "args"]);
    assert_eq!(stdout(&out), "argv[0]=/probe.wasm\nargv[1]=args\n", "{}", stderr(&out));
    assert_eq!(task_status(&id).as_deref(), Some("RUNNING"));
    remove(&id);
}

#[test]
fn ctr_tasks_exec_with_a_terminal_in_a_linux_container() {
    let rootfs = std::env::temp_dir().join(unique("exec-rootfs"));
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
    let id = unique("exec-tty");
    let out = ctr(&["run", "-d", "--runtime", RUNTIME, "--rootfs", rootfs.to_str().unwrap(), &id, "/busybox", "sleep", "3600"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("RUNNING")));
    // Without a terminal: pipes.
    let out = ctr(&["tasks", "exec", "--exec-id", "plain", &id, "/busybox", "sh", "-c", "echo out; echo err >&2; exit 6"]);
    assert_eq!((stdout(&out).as_str(), out.status.code()), ("out\n", Some(6)));
    // (ctr 2.x adds a warning of its own to stderr on cgroup v1 hosts.)
    assert!(stderr(&out).ends_with("\nerr\n") || stderr(&out) == "err\n", "{}", stderr(&out));
    // With one: ctr needs a terminal of its own, which `script` gives it; the
    // window size it sets there reaches the exec through ResizePty.
    let env = env();
    let ctr_cmd = format!(
        "stty cols 91 rows 17; ctr --address {} --namespace wasm tasks exec -t --exec-id tty {id} /busybox sh -c 'sleep 1; tty; stty size'",
        env.dir.join("containerd.sock").display()
    );
    let out = std::process::Command::new("script").args(["-qec", &ctr_cmd, "/dev/null"]).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(text.contains("/dev/pts/"), "no terminal: {text:?}");
    assert!(text.contains("17 91"), "window size not passed on: {text:?}");
    remove(&id);
    let _ = std::fs::remove_dir_all(rootfs);
}
