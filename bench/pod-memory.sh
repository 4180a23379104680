#!/usr/bin/env bash
# What a Wasm container adds to its pod's shim: runs a pod through
# containerd's CRI plugin (as kubelet would), adds idle Wasm containers one
# at a time and prints the shim's RSS/PSS after each.
#
#   bash bench/pod-memory.sh [COUNT]     (default 5)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"
WORK=$(mktemp -d /tmp/wasmtime-pod-memory.XXXXXX)
trap 'containerd_down "$WORK/containerd"; rm -rf "$WORK"; find /sys/fs/cgroup/*/wasmtime-e2e -depth -type d -exec rmdir {} + 2>/dev/null || true' EXIT

cargo build --release --locked --workspace >/dev/null
mkdir -p "$WORK/bin" && cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$WORK/bin/"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >/dev/null
build_test_images "$WORK/fixtures" "$WORK/images"
containerd_up "$WORK/containerd" "$WORK/bin"
for img in pause probe; do
    platform=wasi/wasm; [ "$img" = pause ] && platform=linux/amd64
    CTR_NAMESPACE=k8s.io ctr_private "$WORK/containerd" images import --platform "$platform" "$WORK/images/$img.tar" >/dev/null
done
E2E_DIR="$WORK/containerd" E2E_FIXTURES="$WORK/fixtures" E2E_SHIM="$WORK/bin/containerd-shim-wasmtime-v1" \
    "$CARGO_TARGET_DIR/release/pod_memory" "${1:-5}"
