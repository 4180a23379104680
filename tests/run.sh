#!/usr/bin/env bash
# Runs every test: unit tests, then end-to-end tests against a private
# containerd (Debian's 1.6) with the freshly built shim first on its PATH.
#
#   tests/run.sh            all tests
#   tests/run.sh NAME       only end-to-end tests whose name contains NAME
#
# Needs root, containerd, runc and the wasm32-wasip1/p2 Rust targets
# (.ci/run installs them on a fresh machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
FILTER=${1:-}

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"

WORK=$(mktemp -d /tmp/wasmtime-shim-e2e.XXXXXX)
cleanup() {
    containerd_down "$WORK/containerd" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> building the shim and the image tool"
cargo build --release --locked -p containerd-shim-wasmtime -p wasm-oci
mkdir -p "$WORK/bin"
cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$WORK/bin/"

echo "==> building test fixtures and their images"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures"
build_test_images "$WORK/fixtures" "$WORK/images"

if [ -z "$FILTER" ]; then
    echo "==> unit tests"
    cargo test --release --locked --no-fail-fast -p containerd-shim-wasmtime -p wasm-oci
fi

echo "==> end-to-end tests (private containerd in $WORK/containerd)"
containerd_up "$WORK/containerd" "$WORK/bin"
for tar in "$WORK"/images/*.tar; do
    ctr_private "$WORK/containerd" images import --platform wasi/wasm "$tar" >/dev/null
done
E2E_DIR="$WORK/containerd" E2E_FIXTURES="$WORK/fixtures" E2E_SHIM="$WORK/bin/containerd-shim-wasmtime-v1" \
    cargo test --release --locked --no-fail-fast -p e2e -- --test-threads=2 ${FILTER:+"$FILTER"}
