//! Images from a real registry (Debian's docker-registry on 127.0.0.1, filled
//! by `wasm-oci push` in tests/run.sh), pulled the way users pull with `ctr`,
//! and OCI Wasm artifacts — whose rootfs is empty: the shim reads the module
//! from containerd's content store. (CRI pulls are in kubernetes.rs.)

use e2e::*;

/// `ctr images pull --plain-http` of `<registry>/test/NAME:TAG`; the reference.
fn pull(name_tag: &str) -> (String, std::process::Output) {
    let reference = format!("{}/test/{name_tag}", registry());
    let out = ctr(&["images", "pull", "--plain-http", "--platform", "wasi/wasm", &reference]);
    (reference, out)
}

fn pulled(name_tag: &str) -> String {
    let (reference, out) = pull(name_tag);
    assert!(out.status.success(), "pull {reference}: {}{}", stdout(&out), stderr(&out));
    reference
}

#[test]
fn image_pulled_over_plain_http_runs() {
    let reference = pulled("hello:latest");
    let id = unique("pulled");
    let out = run(&[], &reference, &id, &["/hello.wasm", "from", "the registry"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("hello from wasm") && text.contains("argv[2]=the registry\n"), "{text}");
}

#[test]
fn legacy_wasm_layer_images_run_from_the_content_store() {
    if !unpacks_wasm_artifacts() {
        return artifact_refused_by_old_containerd("probe-p2:legacy");
    }
    // A component with args as given: the rootfs is empty, so args[0] only
    // names the program.
    let reference = pulled("probe-p2:legacy");
    let id = unique("legacy");
    let out = run(&[], &reference, &id, &["/probe-p2.wasm", "args", "legacy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("argv[2]=legacy\n"), "{}", stdout(&out));
    assert!(containerd_log().contains(&format!("container {id}: entrypoint is layer sha256:")), "layer not read via containerd");
    // A module, with the image's own entrypoint as args.
    let reference = pulled("hello:legacy");
    let id = unique("legacy-p1");
    let out = run(&[], &reference, &id, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from wasm\nargv[0]=/hello.wasm\n"), "{}", stdout(&out));
}

#[test]
fn wasm_artifact_is_pulled_but_ctr_itself_refuses_to_run_it() {
    // `ctr run` (1.7, 2.x) builds the spec from the image config client-side
    // and knows only OCI/Docker image configs; such artifacts run through
    // CRI (kubernetes.rs) and any client that leaves the config alone.
    if !unpacks_wasm_artifacts() {
        return artifact_refused_by_old_containerd("hello:artifact");
    }
    let reference = pulled("hello:artifact");
    let id = unique("artifact-ctr");
    let out = run(&[], &reference, &id, &[]);
    assert!(!out.status.success(), "ctr ran a Wasm artifact: {}", stdout(&out));
    assert!(stderr(&out).contains("unknown image config media type application/vnd.wasm.config.v0+json"), "{}", stderr(&out));
}

#[test]
fn a_missing_entrypoint_in_an_ordinary_image_is_still_named() {
    // The shim looks for an artifact layer only after the rootfs lookup
    // fails; an ordinary image gives the rootfs error.
    let reference = pulled("hello:latest");
    let id = unique("no-entry");
    let out = run(&[], &reference, &id, &["/nope.wasm"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("entrypoint \"/nope.wasm\" not found"), "{}", stderr(&out));
    let _ = ctr(&["containers", "delete", &id]);
}

/// containerd before 1.6.25 / 1.7.7 cannot unpack layers that are not
/// filesystem tars: the pull itself fails (the README says so).
fn artifact_refused_by_old_containerd(name_tag: &str) {
    let (reference, out) = pull(name_tag);
    assert!(!out.status.success(), "{reference} was pulled and unpacked by containerd {:?}", containerd_version());
    eprintln!("containerd {:?} refuses {reference}: {}", containerd_version(), stderr(&out).trim());
}
