//! The entrypoint inside a rootfs: a name, a cwd and a PATH resolve to a
//! file inside the rootfs or to an error — never to a path outside it,
//! whatever `..` and symlinks say — and any bytes classify or fail cleanly.
#![no_main]

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shim_input::entrypoint::{self, Entrypoint, ENTRY_ENV};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    arg0: &'a str,
    cwd: &'a str,
    path_env: Option<&'a str>,
    wasi_entry: Option<&'a str>,
    bytes: &'a [u8],
}

/// A rootfs with files, nested directories and symlinks that point up, out
/// (absolute, to the host's /etc) and in circles.
fn rootfs() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = tempfile::tempdir().expect("temp dir").keep().join("rootfs");
        for dir in ["bin", "app/lib", "work"] {
            std::fs::create_dir_all(root.join(dir)).expect("rootfs dir");
        }
        std::fs::write(root.join("app.wasm"), b"\0asm\x01\0\0\0").expect("module");
        std::fs::write(root.join("app/lib/tool.wasm"), b"(module)").expect("text");
        for (link, target) in [
            ("bin/tool", "../app/lib/tool.wasm"),
            ("bin/up", "../../../../etc/passwd"),
            ("bin/abs", "/etc/passwd"),
            ("bin/hostdir", "/etc"),
            ("loop", "loop"),
            ("work/a", "b"),
            ("work/b", "a"),
            ("work/app", "/app.wasm"),
        ] {
            symlink(target, root.join(link)).expect("symlink");
        }
        root
    })
}

fuzz_target!(|input: Input| {
    let root = rootfs();
    if let Ok(found) = entrypoint::resolve(root, input.arg0, input.cwd, input.path_env) {
        assert!(found.starts_with(root), "{:?} resolved outside the rootfs to {}", input.arg0, found.display());
        assert!(found.is_file());
    }
    let env: Vec<(String, String)> = input.wasi_entry.map(|v| (ENTRY_ENV.to_string(), v.to_string())).into_iter().collect();
    if let Ok(e) = Entrypoint::classify("/fuzz.wasm", input.bytes.to_vec(), &env) {
        assert!(!e.bytes.is_empty());
    }
    let _ = Entrypoint::classify_command("/fuzz.wasm", input.bytes.to_vec());
    let _ = entrypoint::exports(input.bytes);
});
