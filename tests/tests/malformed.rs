//! A corpus of malformed inputs — OCI spec fields, images, runtime options —
//! each run through the real containerd (`ctr run` of a test image, or
//! `ctr run --config` of a hand-made OCI spec). Each must get a clear error
//! naming the problem (or, where the input is legal, behave sanely), within
//! a time bound, without a panic in any shim, while a long-running neighbour
//! keeps running and still answers an exec.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::*;

/// No case may take longer (a hang is a failure, and is cleaned up).
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// How a case reaches the shim.
enum How {
    /// `ctr run --rm OPTS IMAGE ID ARGS...` (no ARGS: the image's entrypoint).
    Image { opts: Vec<String>, image: &'static str, args: Vec<String> },
    /// `ctr run --rm OPTS --config SPEC ID`: the spec, as bytes (it may be no valid UTF-8).
    Spec { opts: Vec<String>, json: Vec<u8> },
}

/// What must happen.
enum Expect {
    /// Create or Start fails, and ctr's error names the problem: every needle appears in it.
    Fails(Vec<String>),
    /// Legal input: the container runs and exits with `code`; `check` judges its stdout.
    Runs { code: i32, check: Box<dyn Fn(&str) -> Result<(), String>> },
}

struct Case {
    name: &'static str,
    how: How,
    expect: Expect,
}

fn fails(needles: &[&str]) -> Expect {
    Expect::Fails(needles.iter().map(|s| s.to_string()).collect())
}

fn runs(code: i32, check: impl Fn(&str) -> Result<(), String> + 'static) -> Expect {
    Expect::Runs { code, check: Box::new(check) }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn img(image: &'static str, opts: &[&str], args: &[&str]) -> How {
    How::Image { opts: strings(opts), image, args: strings(args) }
}

/// A JSON string literal for `s`.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn js_array<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| js(s.as_ref())).collect();
    format!("[{}]", parts.join(","))
}

/// A hand-made OCI spec: each field is JSON text, so a case can put anything there.
#[derive(Clone)]
struct Spec {
    args: String,
    env: String,
    cwd: String,
    /// The whole `"root": {...}` member, or empty for none.
    root: String,
    mounts: String,
    namespaces: String,
}

impl Spec {
    fn new(rootfs: &Path, args: &[&str]) -> Self {
        Self {
            args: js_array(args),
            env: js_array(&["PATH=/"]),
            cwd: js("/"),
            root: format!("\"root\": {{\"path\": {}}},", js(&rootfs.to_string_lossy())),
            mounts: "[]".into(),
            namespaces: r#"[{"type": "mount"}, {"type": "network"}]"#.into(),
        }
    }
    fn args(mut self, args: String) -> Self {
        self.args = args;
        self
    }
    fn env(mut self, env: String) -> Self {
        self.env = env;
        self
    }
    fn cwd(mut self, cwd: &str) -> Self {
        self.cwd = js(cwd);
        self
    }
    fn root(mut self, root: String) -> Self {
        self.root = root;
        self
    }
    fn mounts(mut self, mounts: String) -> Self {
        self.mounts = mounts;
        self
    }
    fn namespaces(mut self, ns: &str) -> Self {
        self.namespaces = ns.into();
        self
    }
    fn json(&self) -> Vec<u8> {
        format!(
            r#"{{"ociVersion": "1.0.2",
  "process": {{"user": {{"uid": 0, "gid": 0}}, "args": {}, "env": {}, "cwd": {}}},
  {}
  "mounts": {},
  "linux": {{"namespaces": {}}}}}"#,
            self.args, self.env, self.cwd, self.root, self.mounts, self.namespaces
        )
        .into_bytes()
    }
    fn how(&self) -> How {
        How::Spec { opts: vec![], json: self.json() }
    }
}

fn bind(source: &Path, destination: &str) -> String {
    format!(r#"{{"destination": {}, "type": "bind", "source": {}, "options": ["rbind", "ro"]}}"#, js(destination), js(&source.to_string_lossy()))
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = haystack.windows(needle.len()).position(|w| w == needle).expect("placeholder in spec");
    [&haystack[..at], with, &haystack[at + needle.len()..]].concat()
}

/// What a case did: exit status (None: killed at the time limit), stdout, stderr.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `ctr ARGS`, stopped at `limit`; output goes through files (it may be large).
fn ctr_bounded(args: &[String], dir: &Path, limit: Duration) -> Ran {
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut child = ctr_command(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run ctr");
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status.code().unwrap_or(-1));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Ran { code, stdout: read(&out_path), stderr: read(&err_path), took: started.elapsed() }
}

fn cleanup(id: &str) {
    if task_status(id).is_some() {
        let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
        let _ = wait_until(Duration::from_secs(10), || task_status(id).as_deref() != Some("RUNNING"));
        let _ = ctr(&["tasks", "delete", "-f", id]);
    }
    let _ = ctr(&["containers", "delete", id]);
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 400 {
        return s.to_string();
    }
    let mut end = 400;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

fn containers() -> Vec<String> {
    stdout(&ctr(&["containers", "ls", "-q"])).lines().map(str::to_string).collect()
}

/// Runs one case; `Err` says how it went wrong.
fn run_case(case: &Case, work: &Path, neighbour: &str) -> Result<String, String> {
    let id = unique(&format!("malf-{}", case.name));
    let dir = work.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = strings(&["run", "--rm", "--runtime", RUNTIME]);
    match &case.how {
        How::Image { opts, image: name, args: argv } => {
            args.extend(strings(&["--platform", "wasi/wasm"]));
            args.extend(opts.iter().cloned());
            args.push(image(name));
            args.push(id.clone());
            args.extend(argv.iter().cloned());
        }
        How::Spec { opts, json } => {
            let path = dir.join("config.json");
            std::fs::write(&path, json).unwrap();
            args.extend(opts.iter().cloned());
            args.extend(["--config".to_string(), path.to_string_lossy().into_owned(), id.clone()]);
        }
    }
    let log_before = containerd_log().len();
    let ran = ctr_bounded(&args, &dir, CASE_LIMIT);
    cleanup(&id);
    let _ = std::fs::remove_dir_all(&dir);
    let log = containerd_log();
    let new_log = log.get(log_before..).unwrap_or_default();
    let mut problems = Vec::new();
    if let Some(line) = new_log.lines().find(|l| l.contains("panicked")) {
        problems.push(format!("a panic in containerd's log: {line}"));
    }
    let outcome = match (ran.code, &case.expect) {
        (None, _) => {
            problems.push(format!("hung: killed after {CASE_LIMIT:?}; stderr: {}", short(&ran.stderr)));
            String::new()
        }
        (Some(0), Expect::Fails(_)) => {
            problems.push(format!("ran (status 0) but must fail; stdout: {}", short(&ran.stdout)));
            String::new()
        }
        (Some(_), Expect::Fails(needles)) => {
            let err = ran.stderr.trim().to_string();
            for n in needles {
                if !err.contains(n.as_str()) {
                    problems.push(format!("error lacks {n:?}: {}", short(&err)));
                }
            }
            format!("fails: {}", short(&err))
        }
        (Some(code), Expect::Runs { code: want, check }) => {
            if code != *want {
                problems.push(format!("exit status {code}, want {want}; stderr: {}", short(&ran.stderr)));
            }
            if let Err(why) = check(&ran.stdout) {
                problems.push(format!("stdout: {why}"));
            }
            format!("runs: status {code}, {} bytes of stdout", ran.stdout.len())
        }
    };
    if task_status(neighbour).as_deref() != Some("RUNNING") {
        problems.push(format!("the neighbour is {:?}, not RUNNING", task_status(neighbour)));
    }
    if containers().contains(&id) || task_status(&id).is_some() {
        problems.push("left a container or task behind".into());
    }
    let outcome = format!("{outcome} [{:.1}s]", ran.took.as_secs_f64());
    if problems.is_empty() {
        Ok(outcome)
    } else {
        Err(format!("{outcome}\n      {}", problems.join("\n      ")))
    }
}

/// The directories and files the spec cases point at.
struct Host {
    work: PathBuf,
    rootfs: PathBuf,
    vol_a: PathBuf,
    vol_b: PathBuf,
    vol_sub: PathBuf,
    /// A port on every IPv4 address, held for the whole run.
    held: std::net::TcpListener,
}

impl Host {
    fn new() -> Self {
        let work = std::env::temp_dir().join(unique("malformed"));
        let rootfs = work.join("rootfs");
        std::fs::create_dir_all(rootfs.join("data")).unwrap();
        for f in ["hello.wasm", "probe.wasm"] {
            std::fs::copy(env().fixtures.join(f), rootfs.join(f)).unwrap();
        }
        let vol = |name: &str| {
            let d = work.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("which"), name).unwrap();
            d
        };
        let (vol_a, vol_b, vol_sub) = (vol("vol-a"), vol("vol-b"), vol("vol-sub"));
        let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        Self { work, rootfs, vol_a, vol_b, vol_sub, held }
    }

    fn spec(&self, args: &[&str]) -> Spec {
        Spec::new(&self.rootfs, args)
    }

    /// A runtime options file with `body` (as given to `ctr run --runtime-config-path`).
    fn options_file(&self, name: &str, body: &[u8]) -> String {
        let path = self.work.join(name);
        std::fs::write(&path, body).unwrap();
        path.to_string_lossy().into_owned()
    }
}

fn lines_check(f: impl Fn(&[&str]) -> Result<(), String> + 'static) -> impl Fn(&str) -> Result<(), String> + 'static {
    move |out: &str| f(&out.lines().collect::<Vec<_>>())
}

fn cases(host: &Host) -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name: &'static str, how: How, expect: Expect| v.push(Case { name, how, expect });

    // ---- Images: modules and components that cannot run, and proposals.
    add("zero-byte-module", img("empty", &[], &["/empty.wasm"]), fails(&["/empty.wasm", "is empty"]));
    add("wrong-magic", img("wrong-magic", &[], &["/wrong-magic.wasm"]), fails(&["/wrong-magic.wasm", "is not a WebAssembly module or component"]));
    add("wrong-version", img("wrong-version", &[], &[]), fails(&["/wrong-version.wasm", "version [02, 00, 00, 00]"]));
    add("truncated-component", img("truncated-p2", &[], &[]), fails(&["/truncated-p2.wasm", "compile component", "out of bounds"]));
    add("data-segment-beyond-memory", img("data-oob", &[], &[]), fails(&["instantiate module", "out of bounds"]));
    add("memory-over-4gib", img("memory-too-big", &[], &[]), fails(&["compile module", "memory size must be at most"]));
    add("memory-min-over-limit", img("memory-1000", &["--memory-limit", "16777216"], &[]), fails(&["instantiate module", "memory minimum size of 1000 pages exceeds memory limits"]));
    // On cgroup v1 this once failed Start with "join the container's network namespace: ENOMEM":
    // the limit was also put on the guest thread's cgroup, which then charged its kernel memory.
    add("memory-limit-one-byte", img("hello", &["--memory-limit", "1"], &[]), fails(&["instantiate module", "memory minimum size of 17 pages exceeds memory limits"]));
    // A table of 10M elements is legal and allocated lazily: it runs.
    add("table-10m-elements", img("table-10m", &[], &[]), runs(0, |_| Ok(())));
    // memory64 is on in Wasmtime 48 (part of Wasm 3.0): the module runs.
    add("memory64", img("memory64", &[], &[]), runs(0, |_| Ok(())));
    // Shared memory needs the threads proposal, which the shim's Wasmtime is built without.
    add("threads-shared-memory", img("threads", &[], &[]), fails(&["compile module", "threads"]));
    // Exceptions need Wasmtime's gc feature, which the shim's Wasmtime is built without.
    add("exceptions", img("exceptions", &[], &[]), fails(&["compile module", "exceptions"]));
    add("start-wrong-signature", img("start-signature", &[], &[]), fails(&["`_start`", "signature"]));
    add("no-start-no-exports", img("no-exports", &[], &[]), fails(&["exports no `_start` function"]));
    add("start-section-traps", img("start-traps", &[], &[]), fails(&["instantiate module", "unreachable"]));
    add("wasi-preview0-import", img("wasi-unstable", &[], &[]), fails(&["`wasi_unstable::proc_exit`", "only WASI preview 1"]));
    add("unknown-interface-import", img("missing-import-p2", &[], &[]), fails(&["`acme:kv/store@1.0.0`", "not a WASI interface"]));
    add("wasi-0.3-import", img("wasi-p3-import", &[], &[]), fails(&["`wasi:cli/environment@0.3.0`", "not wasi:cli@0.3.0"]));
    add("component-without-exports", img("no-exports-p2", &[], &[]), fails(&["exports neither `wasi:cli/run` nor `wasi:http/incoming-handler`"]));
    add("wat-syntax-error", img("bad-syntax", &[], &[]), fails(&["parse WebAssembly text", "frobnicate"]));

    // ---- Environment variables the shim reads.
    add("http-port-99999", img("http-hello", &["--net-host", "--env", "WASI_HTTP_PORT=99999"], &[]), fails(&["WASI_HTTP_PORT=\"99999\"", "not a TCP port"]));
    add("http-timeout-negative", img("http-hello", &["--net-host", "--env", "WASI_HTTP_TIMEOUT_MS=-1"], &[]), fails(&["WASI_HTTP_TIMEOUT_MS=\"-1\""]));
    add("wasi-entry-bogus", img("probe-p2", &["--env", "WASI_ENTRY=bogus"], &[]), fails(&["WASI_ENTRY=\"bogus\""]));
    add("wasi-entry-cli-on-a-proxy", img("bindgen-proxy", &["--env", "WASI_ENTRY=cli"], &[]), fails(&["WASI_ENTRY=cli", "does not export wasi:cli/run"]));
    let port = host.held.local_addr().unwrap().port();
    let env = format!("WASI_HTTP_PORT={port}");
    add("http-port-in-use", img("http-hello", &["--net-host", "--env", &env], &[]), fails(&[&format!(":{port}"), "in use"]));
    add("wasi-entry-http-on-a-command", img("probe-p2", &["--env", "WASI_ENTRY=http"], &[]), fails(&["WASI_ENTRY=http", "does not export wasi:http/incoming-handler"]));

    // ---- Runtime options (`ctr run --runtime-config-path` sends runtimeoptions.v1.Options).
    let path = host.options_file("systemd-string.toml", b"SystemdCgroup = \"yes\"\n");
    add("options-wrong-type", img("hello", &["--runtime-config-path", &path], &[]), fails(&["runtimeoptions.v1.Options", "SystemdCgroup", "invalid type"]));
    let path = host.options_file("not-toml.toml", b"SystemdCgroup = = true\n[[[\n");
    add("options-not-toml", img("hello", &["--runtime-config-path", &path], &[]), fails(&["runtimeoptions.v1.Options", "bad TOML"]));
    let path = host.options_file("not-utf8.toml", b"SystemdCgroup = \xff\xfe\n");
    add("options-not-utf8", img("hello", &["--runtime-config-path", &path], &[]), fails(&["runtimeoptions.v1.Options", "not-utf8.toml", "UTF-8"]));
    add("options-missing-file", img("hello", &["--runtime-config-path", "/nonexistent/wasmtime-options.toml"], &[]), fails(&["/nonexistent/wasmtime-options.toml"]));
    let dir = host.work.to_string_lossy().into_owned();
    add("options-path-is-a-directory", img("hello", &["--runtime-config-path", &dir], &[]), fails(&["read ConfigPath", &dir]));
    // Control: a well-formed options file is accepted.
    let path = host.options_file("good.toml", b"SystemdCgroup = false\n");
    add("options-well-formed", img("hello", &["--runtime-config-path", &path], &["/hello.wasm", "ok"]), runs(0, |out| {
        out.contains("argv[1]=ok").then_some(()).ok_or_else(|| "no argv[1]=ok".into())
    }));

    // ---- Spec fields, through hand-made OCI specs.
    // 100k arguments: legal (a Wasm guest has no ARG_MAX); all arrive, in order.
    let many: Vec<String> = ["/probe.wasm".to_string(), "args".to_string()].into_iter().chain((0..100_000).map(|i| format!("a{i}"))).collect();
    add("args-100k-entries", host.spec(&[]).args(js_array(&many)).how(), runs(0, lines_check(|l| {
        (l.len() == 100_002 && l[100_001] == "argv[100001]=a99999").then_some(()).ok_or_else(|| format!("{} lines, last {:?}", l.len(), l.last()))
    })));
    // A 10 MiB argument: legal (no MAX_ARG_STRLEN in WASI); it arrives whole.
    let big = "x".repeat(10 << 20);
    add("arg-10mib", host.spec(&["/probe.wasm", "args", &big]).how(), runs(0, lines_check(|l| {
        (l.len() == 3 && l[2].len() == "argv[2]=".len() + (10 << 20)).then_some(()).ok_or_else(|| format!("{} lines", l.len()))
    })));
    // 20 MiB is more than containerd takes in one request: refused before any shim.
    let huge = "x".repeat(20 << 20);
    add("arg-20mib", host.spec(&["/probe.wasm", "args", &huge]).how(), fails(&["larger than max"]));
    let value = format!("BIG={}", "v".repeat(10 << 20));
    add("env-10mib-value", host.spec(&["/probe.wasm", "env"]).env(js_array(&["PATH=/", &value])).how(), runs(0, lines_check(|l| {
        l.iter().any(|l| l.len() == 4 + (10 << 20) && l.starts_with("BIG=vvv")).then_some(()).ok_or_else(|| "no 10 MiB BIG=".into())
    })));
    // Bytes that are no UTF-8: Go's JSON decoding (ctr, containerd) makes them U+FFFD before the shim sees them.
    let json = replace_bytes(&host.spec(&["/probe.wasm", "args", "@RAW@"]).json(), b"@RAW@", b"bad-\xff\xfe-utf8");
    add("arg-not-utf8", How::Spec { opts: vec![], json }, runs(0, |out| {
        out.contains("argv[2]=bad-\u{fffd}\u{fffd}-utf8").then_some(()).ok_or_else(|| "argv[2] not bad-\\ufffd\\ufffd-utf8".into())
    }));
    add("arg-with-nul", host.spec(&["/probe.wasm", "args", "before\0after"]).how(), fails(&["process.args[2]", "NUL"]));
    add("env-with-nul", host.spec(&["/probe.wasm", "env"]).env(js_array(&["PATH=/", "A=before\0after"])).how(), fails(&["process.env", "NUL"]));
    add("root-missing", host.spec(&["/hello.wasm"]).root(String::new()).how(), fails(&["/hello.wasm", "not found in the container's rootfs"]));
    add("root-path-nonexistent", host.spec(&["/hello.wasm"]).root(r#""root": {"path": "/nonexistent/rootfs"},"#.into()).how(), fails(&["root.path /nonexistent/rootfs does not exist"]));
    let file = host.rootfs.join("hello.wasm");
    add("root-path-is-a-file", host.spec(&["/hello.wasm"]).root(format!("\"root\": {{\"path\": {}}},", js(&file.to_string_lossy()))).how(), fails(&[&file.to_string_lossy(), "not a directory"]));
    add("mount-relative-destination", host.spec(&["/probe.wasm", "ls", "/"]).mounts(format!("[{}]", bind(&host.vol_a, "data"))).how(), fails(&["\"data\"", "absolute"]));
    // Two mounts at one destination: the later one is what the guest sees, as on Linux.
    add("mounts-same-destination", host.spec(&["/probe.wasm", "cat", "/data/which"]).mounts(format!("[{}, {}]", bind(&host.vol_a, "/data"), bind(&host.vol_b, "/data"))).how(), runs(0, |out| {
        (out == "vol-b").then_some(()).ok_or_else(|| format!("{out:?}, want the later mount's vol-b"))
    }));
    // Nested destinations: the deeper mount covers its subtree, as on Linux.
    add("mounts-nested-destinations", host.spec(&["/probe.wasm", "cat", "/data/sub/which"]).mounts(format!("[{}, {}]", bind(&host.vol_a, "/data"), bind(&host.vol_sub, "/data/sub"))).how(), runs(0, |out| {
        (out == "vol-sub").then_some(()).ok_or_else(|| format!("{out:?}, want the nested mount's vol-sub"))
    }));
    add("bind-source-missing", host.spec(&["/probe.wasm", "ls", "/"]).mounts(format!("[{}]", bind(Path::new("/nonexistent/volume"), "/data"))).how(), fails(&["bind mount source /nonexistent/volume (for /data) does not exist"]));
    add("namespace-type-unknown", host.spec(&["/hello.wasm"]).namespaces(r#"[{"type": "network"}, {"type": "bogus"}]"#).how(), fails(&["read OCI spec", "unknown variant `bogus`"]));
    add("netns-path-nonexistent", host.spec(&["/hello.wasm"]).namespaces(r#"[{"type": "network", "path": "/nonexistent/netns"}]"#).how(), fails(&["/nonexistent/netns"]));
    add("netns-path-not-a-netns", host.spec(&["/hello.wasm"]).namespaces(r#"[{"type": "network", "path": "/proc/self/ns/uts"}]"#).how(), fails(&["join network namespace /proc/self/ns/uts"]));
    add("args-empty", host.spec(&[]).how(), fails(&["process.args is empty"]));
    let json = format!(r#"{{"ociVersion": "1.0.2", "root": {{"path": {}}}}}"#, js(&host.rootfs.to_string_lossy())).into_bytes();
    add("process-missing", How::Spec { opts: vec![], json }, fails(&["process"]));
    add("cwd-relative", host.spec(&["/hello.wasm"]).cwd("work").how(), fails(&["process.cwd", "\"work\"", "absolute"]));
    v
}

#[test]
fn malformed_inputs_fail_clearly_and_alone() {
    let host = Host::new();
    let neighbour = unique("malf-neighbour");
    assert!(run_detached(&[], "probe", &neighbour, &["/probe.wasm", "sleep", "3600"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || task_status(&neighbour).as_deref() == Some("RUNNING")));
    let log_start = containerd_log().len();

    let cases = cases(&host);
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failed = Vec::new();
    let mut report = String::new();
    for case in &cases {
        let result = run_case(case, &host.work, &neighbour);
        let line = match &result {
            Ok(outcome) => format!("ok   {:32} {outcome}\n", case.name),
            Err(why) => format!("FAIL {:32} {why}\n", case.name),
        };
        eprint!("{line}");
        report.push_str(&line);
        if result.is_err() {
            failed.push(case.name);
        }
    }
    eprintln!("{} of {} cases passed", cases.len() - failed.len(), cases.len());

    // The neighbour ran through all of it and still answers.
    assert_eq!(task_status(&neighbour).as_deref(), Some("RUNNING"));
    let out = ctr(&["tasks", "exec", "--exec-id", "alive", &neighbour, "/probe.wasm", "args", "still-here"]);
    assert!(out.status.success() && stdout(&out).contains("argv[2]=still-here"), "exec in the neighbour: {} {}", stdout(&out), stderr(&out));
    remove(&neighbour);
    let log = containerd_log();
    let panics: Vec<&str> = log.get(log_start..).unwrap_or_default().lines().filter(|l| l.contains("panicked")).collect();
    let left: Vec<String> = containers().into_iter().filter(|c| c.starts_with("malf-")).collect();
    let _ = std::fs::remove_dir_all(&host.work);
    assert!(panics.is_empty(), "panics in containerd's log: {panics:#?}");
    assert!(left.is_empty(), "containers left behind: {left:?}");
    assert!(failed.is_empty(), "{} of {} cases failed: {failed:?}\n{report}", failed.len(), cases.len());
}
