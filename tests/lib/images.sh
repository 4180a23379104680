# Builds the OCI image tars the tests use from the fixtures. Source this file.
#   build_test_images FIXTURES_DIR OUT_DIR

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
    # Linux images for runc: the pod sandbox and a busybox sidecar.
    bash "$(dirname "${BASH_SOURCE[0]}")/../../images/pause/build.sh" "$fx/pause"
    img pause "$fx/pause" --platform linux/amd64 --file-name pause
    img busybox /bin/busybox --platform linux/amd64 --file-name bin/busybox
}
