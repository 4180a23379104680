#!/usr/bin/env bash
# One command on a fresh Debian 12 machine (as root): install what is
# missing, build the shim and the images, start a private containerd with
# the shim, import the images and run the demo containers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
DEMO=${DEMO_DIR:-/var/tmp/containerd-shim-wasmtime/demo}
PORT=${DEMO_PORT:-18080}

bash "$ROOT/deploy/dev/install-deps.sh"
. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"

echo "==> building the shim and the image tool"
cargo build --release --locked --workspace
containerd_down "$DEMO/containerd" || true
rm -rf "$DEMO"
mkdir -p "$DEMO/bin"
cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$DEMO/bin/"
echo "==> building guest programs and their images"
bash "$ROOT/images/fixtures/build.sh" "$DEMO/fixtures"
build_test_images "$DEMO/fixtures" "$DEMO/images"

echo "==> starting a private containerd in $DEMO/containerd"
containerd_up "$DEMO/containerd" "$DEMO/bin"
trap 'containerd_down "$DEMO/containerd"' EXIT
for img in hello probe-p2; do
    ctr_private "$DEMO/containerd" images import --platform wasi/wasm "$DEMO/images/$img.tar" >/dev/null
done
run() { ctr_private "$DEMO/containerd" run --runtime io.containerd.wasmtime.v1 --platform wasi/wasm "$@"; }

echo "==> a WASI preview 1 module"
run --rm localhost/test/hello:latest demo-hello /hello.wasm from the demo
echo "==> a WASI preview 2 component, sandboxed: the host's /etc/passwd is out of reach"
run --rm localhost/test/probe-p2:latest demo-fs /probe-p2.wasm cat /etc/passwd || echo "(exit $? as expected)"
echo "==> a Wasm HTTP server on 127.0.0.1:$PORT (host network)"
run -d --net-host localhost/test/probe-p2:latest demo-http /probe-p2.wasm listen "$PORT" >/dev/null
for _ in $(seq 1 50); do
    if out=$(curl -fsS "http://127.0.0.1:$PORT/" 2>/dev/null); then
        echo "$out"
        break
    fi
    sleep 0.1
done
ctr_private "$DEMO/containerd" tasks kill -s SIGTERM demo-http
sleep 0.3
ctr_private "$DEMO/containerd" tasks delete demo-http
ctr_private "$DEMO/containerd" containers delete demo-http
echo "==> done"
