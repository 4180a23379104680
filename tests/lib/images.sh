# Builds the OCI image tars the tests use from the fixtures, and pushes them
# to the test registry. Source this file.
#   build_test_images FIXTURES_DIR OUT_DIR   OUT_DIR/*.tar (imported and
#       pushed as NAME:latest) and OUT_DIR/registry/NAME@TAG.tar (Wasm
#       artifact formats, only pushed: containerd 1.6 cannot import them)
#   push_test_images OUT_DIR REGISTRY        to REGISTRY/test/NAME:TAG

build_test_images() {
    local fx=$1 out=$2 tool="${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}/release/wasm-oci"
    mkdir -p "$out"
    img() { # NAME MODULE [more wasm-oci args]
        local name=$1 module=$2
        shift 2
        "$tool" build --module "$module" --name "localhost/test/$name:latest" -o "$out/$name.tar" "$@" >/dev/null
    }
    img hello "$fx/hello.wasm"
    img probe "$fx/probe.wasm"
    img probe-p2 "$fx/probe-p2.wasm"
    img http-hello "$fx/http-hello.wasm"
    img hello-wat "$fx/hello.wat"
    img exit42 "$fx/exit42.wat"
    img trap "$fx/trap.wat"
    img spin "$fx/spin.wat"
    img missing-import "$fx/missing-import.wat"
    img corrupt "$fx/corrupt.wasm"
    img truncated "$fx/truncated.wasm"
    # A module no other test runs, so the compile-cache test starts cold.
    printf '(module (memory 1) (data (i32.const 0) "cache-probe %s") (func (export "_start")))\n' "$$-$RANDOM" >"$fx/cache-probe.wat"
    img cache-probe "$fx/cache-probe.wat"
    # A component importing an interface that is not WASI.
    printf '%s\n' '(component (import "acme:kv/store@1.0.0" (instance (export "get" (func)))))' >"$fx/missing-import-p2.wat"
    img missing-import-p2 "$fx/missing-import-p2.wat"
    # Malformed modules and components (tests/tests/malformed.rs).
    # wasm-oci refuses an empty module or one without the magic: those two
    # are files beside hello.wasm, run by naming them.
    local bad
    for bad in empty wrong-magic; do
        img "$bad" "$fx/hello.wasm" --add "$fx/$bad.wasm:/$bad.wasm"
    done
    for bad in wrong-version truncated-p2; do
        img "$bad" "$fx/$bad.wasm"
    done
    for bad in data-oob memory-too-big memory-1000 memory64 threads exceptions start-signature no-exports \
        wasi-unstable wasi-p3-import no-exports-p2 bad-syntax start-traps table-10m; do
        img "$bad" "$fx/$bad.wat"
    done
    # Made with the ecosystem's usual toolchains (images/fixtures/README.md).
    img wstd-http "$fx/wstd-http.wasm"
    img bindgen-proxy "$fx/bindgen-proxy.wasm"
    img http-fetch "$fx/http-fetch.wasm"
    img go-p1 "$fx/go-p1.wasm"
    # Linux images for runc: the pod sandbox and a busybox sidecar.
    bash "$(dirname "${BASH_SOURCE[0]}")/../../images/pause/build.sh" "$fx/pause"
    img pause "$fx/pause" --platform linux/amd64 --file-name pause
    img busybox /bin/busybox --platform linux/amd64 --file-name bin/busybox
    # OCI Wasm artifacts: the CNCF format and runwasi's older Wasm layers.
    mkdir -p "$out/registry"
    artifact() { # NAME TAG MODULE FORMAT
        "$tool" build --module "$3" --format "$4" --name "localhost/test/$1:$2" -o "$out/registry/$1@$2.tar" >/dev/null
    }
    artifact hello artifact "$fx/hello.wasm" artifact
    # An ordinary image (layer tar, platform wasi/wasm) that is only ever in
    # the registry, with a module no other image has: no layer of it is on
    # a node until a CRI PullImage unpacks it (tests/tests/kubernetes.rs).
    sed "s|(data (i32.const 16)|(data (i32.const 64) \"registry-only $$-$RANDOM\")\n  &|" "$fx/hello.wat" >"$fx/registry-only.wat"
    artifact registry-only image "$fx/registry-only.wat" image
    artifact http-hello artifact "$fx/http-hello.wasm" artifact
    artifact hello legacy "$fx/hello.wasm" artifact-legacy
    artifact probe-p2 legacy "$fx/probe-p2.wasm" artifact-legacy
}

push_test_images() {
    local out=$1 registry=$2 tool="${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}/release/wasm-oci" tar name
    for tar in "$out"/*.tar; do
        name=$(basename "$tar" .tar)
        "$tool" push "$tar" "$registry/test/$name:latest" --plain-http >/dev/null || return 1
    done
    for tar in "$out"/registry/*.tar; do
        name=$(basename "$tar" .tar)
        "$tool" push "$tar" "$registry/test/${name%@*}:${name#*@}" --plain-http >/dev/null || return 1
    done
}
