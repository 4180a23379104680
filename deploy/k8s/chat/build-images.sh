#!/usr/bin/env bash
# Builds the six chat service images the manifests here use,
# localhost/chat/<service>:latest (wasi/wasm OCI image tars, one module each;
# the gateway's also holds the web UI under /www), into OUTDIR/images/.
#
#   deploy/k8s/chat/build-images.sh OUTDIR
#
# Needs what images/services/build.sh needs (the wasm32-wasip2 Rust target,
# node ≥ 20.19 and npm for the web UI). Then load the tars onto every node
# that runs Wasm pods (imagePullPolicy is IfNotPresent and the names are
# local, so nothing is pulled):
#
#   kind:       kind load image-archive OUTDIR/images/<service>.tar --name CLUSTER
#   containerd: ctr -n k8s.io images import --platform wasi/wasm OUTDIR/images/<service>.tar
#
# or push them to a registry your nodes reach (push-images.sh REGISTRY) and
# deploy an overlay that renames them (registry-overlay.sh REGISTRY OUTDIR).
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}

# CHAT_WASM_OCI: a prebuilt wasm-oci (e.g. a dev build) instead of building it.
W=${CHAT_WASM_OCI:-$CARGO_TARGET_DIR/release/wasm-oci}
if [ -z "${CHAT_WASM_OCI:-}" ]; then
    echo "==> building wasm-oci"
    (cd "$ROOT" && cargo build --release --locked -p wasm-oci)
fi
echo "==> building the services and the web UI"
# build.sh must run in images/services (its .cargo/config.toml sets the
# wasm32-wasip2 flags) with a target dir of its own.
(cd "$ROOT/images/services" &&
    CARGO_TARGET_DIR=${CHAT_SERVICES_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/services-target} \
        bash ./build.sh "$OUT/wasm")
echo "==> writing the images"
mkdir -p "$OUT/images"
for s in session chat message user truncator gateway; do
    add=()
    [ "$s" != gateway ] || add=(--add "$OUT/wasm/www:/www")
    "$W" build --module "$OUT/wasm/$s.wasm" \
        --name "localhost/chat/$s:latest" -o "$OUT/images/$s.tar" "${add[@]}" >/dev/null
    echo "$OUT/images/$s.tar  localhost/chat/$s:latest"
done
