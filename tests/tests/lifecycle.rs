//! Running Wasm containers through containerd: output, argv, env, stdin,
//! exit statuses, traps, Kill, events, and what the shim declines to do.

use std::time::Duration;

use e2e::*;

#[test]
fn version_flag_prints_version() {
    let out = std::process::Command::new(env().shim).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("containerd-shim-wasmtime-v1") && text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn info_flag_describes_the_runtime() {
    // containerd 2.x runs `<shim> -info` (options on stdin) before creating a task.
    let out = std::process::Command::new(env().shim).arg("-info").stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(RUNTIME), "RuntimeInfo names the runtime: {:?}", out.stdout);
}

#[test]
fn preview1_module_prints_hello_and_argv() {
    let id = unique("hello");
    let out = run(&[], "hello", &id, &["/hello.wasm", "one", "two words"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("hello from wasm"), "{text}");
    assert!(text.contains("argv[0]=/hello.wasm\n"), "argv[0] as given: {text}");
    assert!(text.contains("argv[2]=two words\n"), "{text}");
}

#[test]
fn image_entrypoint_runs_without_args() {
    let id = unique("entry");
    let out = run(&[], "hello", &id, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from wasm"));
}

#[test]
fn preview2_component_runs() {
    let id = unique("p2");
    let out = run(&[], "probe-p2", &id, &["/probe-p2.wasm", "args", "x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("argv[0]=/probe-p2.wasm\n") && text.contains("argv[2]=x\n"), "{text}");
}

#[test]
fn webassembly_text_runs() {
    let id = unique("wat");
    let out = run(&[], "hello-wat", &id, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from wat"));
}

#[test]
fn env_is_only_the_specs() {
    let id = unique("env");
    let out = run(&["--env", "GREETING=hi there"], "probe", &id, &["/probe.wasm", "env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l == "GREETING=hi there"), "{text}");
    // containerd (and so the shim) runs with this variable; the guest must not see it.
    assert!(!text.contains("HOST_ONLY_SECRET"), "host env leaked: {text}");
    assert!(!text.contains("TTRPC_ADDRESS"), "shim env leaked: {text}");
}

#[test]
fn proc_exit_code_is_the_exit_status() {
    for (name, args, code) in [("exit42", vec![], 42), ("probe", vec!["/probe.wasm", "exit", "7"], 7), ("probe-p2", vec!["/probe-p2.wasm", "exit", "0"], 0)] {
        let id = unique("exit");
        let out = run(&[], name, &id, &args);
        assert_eq!(out.status.code(), Some(code), "{name}: {}", stderr(&out));
    }
    // WASI 0.2's exit reports only success or failure; Rust's std uses it.
    let out = run(&[], "probe-p2", &unique("exit"), &["/probe-p2.wasm", "exit", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn trap_gives_134_and_is_logged() {
    for (name, args) in [("trap", vec![]), ("probe", vec!["/probe.wasm", "trap"]), ("probe-p2", vec!["/probe-p2.wasm", "trap"])] {
        let id = unique("trap");
        let out = run(&[], name, &id, &args);
        assert_eq!(out.status.code(), Some(134), "{name}: {}", stderr(&out));
        assert!(wait_until(Duration::from_secs(5), || containerd_log().contains(&format!("container {id}: wasm trap"))), "trap not logged for {id}");
    }
}

#[test]
fn stdin_is_wired_interactively() {
    let id = unique("stdin");
    let img = image("probe");
    let out = ctr_with_input(
        &["run", "--rm", "--runtime", RUNTIME, "--platform", "wasi/wasm", &img, &id, "/probe.wasm", "stdin"],
        b"line one\nline two\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line one\nline two\nstdin-eof\n");
}

#[test]
fn stderr_reaches_ctr() {
    let id = unique("stderr");
    let out = run(&[], "probe", &id, &["/probe.wasm", "cat", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
}

fn kill_and_wait(image_name: &str, args: &[&str], signal: &str, expected: i32) {
    let id = unique("kill");
    let out = run_detached(&[], image_name, &id, args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("RUNNING")));
    let killed = ctr(&["tasks", "kill", "-s", signal, &id]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("STOPPED")), "{id} did not stop on {signal}");
    // `ctr tasks delete` prints the exit status.
    // `ctr tasks delete` reports the exit status.
    let del = ctr(&["tasks", "delete", &id]);
    let said = format!("{}{}", stdout(&del), stderr(&del));
    assert!(said.contains(&format!("exit code {expected}")), "{signal}: {said}");
    let _ = ctr(&["containers", "delete", &id]);
}

#[test]
fn kill_stops_a_tight_loop() {
    kill_and_wait("spin", &[], "SIGTERM", 143);
    kill_and_wait("probe", &["/probe.wasm", "loop"], "SIGKILL", 137);
    kill_and_wait("probe-p2", &["/probe-p2.wasm", "loop"], "SIGINT", 130);
}

#[test]
fn kill_stops_a_guest_blocked_in_a_host_call() {
    kill_and_wait("probe", &["/probe.wasm", "sleep", "3600"], "SIGTERM", 143);
    kill_and_wait("probe-p2", &["/probe-p2.wasm", "stdin"], "SIGKILL", 137);
}

#[test]
fn ignored_signal_leaves_guest_running() {
    let id = unique("winch");
    assert!(run_detached(&[], "probe", &id, &["/probe.wasm", "sleep", "3600"]).status.success());
    assert!(ctr(&["tasks", "kill", "-s", "SIGWINCH", &id]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(task_status(&id).as_deref(), Some("RUNNING"));
    remove(&id);
}

#[test]
fn state_pids_and_metrics_answer() {
    let id = unique("state");
    assert!(run_detached(&[], "probe", &id, &["/probe.wasm", "sleep", "3600"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || task_status(&id).as_deref() == Some("RUNNING")));
    let pid = task_pid(&id).expect("task pid");
    let ps = ctr(&["tasks", "ps", &id]);
    assert!(stdout(&ps).contains(&pid.to_string()), "{}", stdout(&ps));
    let metrics = ctr(&["tasks", "metrics", &id]);
    assert!(metrics.status.success(), "{}", stderr(&metrics));
    assert!(stdout(&metrics).contains("memory"), "{}", stdout(&metrics));
    remove(&id);
}

#[test]
fn unsupported_operations_say_so() {
    let id = unique("unsup");
    assert!(run_detached(&[], "probe", &id, &["/probe.wasm", "sleep", "3600"]).status.success());
    // (Exec is supported: tests/tests/exec.rs.)
    let pause = ctr(&["tasks", "pause", &id]);
    assert!(!pause.status.success());
    assert!(stderr(&pause).contains("Pause of a Wasm container is not supported"), "{}", stderr(&pause));
    assert_eq!(task_status(&id).as_deref(), Some("RUNNING"));
    remove(&id);
}

#[test]
fn task_events_are_published() {
    let id = unique("events");
    let mut events = std::process::Command::new("ctr")
        .arg("--address").arg(env().dir.join("containerd.sock"))
        .args(["events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = run(&[], "hello", &id, &[]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let text = String::from_utf8_lossy(&events.wait_with_output().unwrap().stdout).into_owned();
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(&id)).collect();
    for topic in ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"] {
        assert!(ours.iter().any(|l| l.contains(topic)), "no {topic} for {id}: {ours:?}");
    }
}

#[test]
fn log_uri_file_receives_output() {
    let id = unique("logfile");
    let log = std::env::temp_dir().join(format!("{id}.log"));
    let uri = format!("file://{}", log.display());
    let out = run(&["--log-uri", &uri], "hello", &id, &["/hello.wasm", "to-a-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("hello from wasm") && text.contains("argv[1]=to-a-file"), "{text:?}");
    let _ = std::fs::remove_file(log);
}
