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
    # Empty cgroups the tests' pods and containers leave (as kubelet would remove them).
    find /sys/fs/cgroup/*/wasmtime-e2e /sys/fs/cgroup/*/wasm -depth -type d -exec rmdir {} + 2>/dev/null || true
}
trap cleanup EXIT

# One feature set for every build in the workspace (plain builds, unit and
# end-to-end tests), so dependencies compile once.
echo "==> building the workspace (shim, image tool, tests)"
cargo build --release --locked --workspace
cargo test --release --locked --workspace --no-run
mkdir -p "$WORK/bin"
cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$WORK/bin/"

if [ -z "$FILTER" ]; then
    echo "==> deploy/: node installer against fake node roots; manifests rendered offline"
    for t in installer_test render; do bash "$ROOT/tests/deploy/$t.sh"; done
    echo "==> chat services: unit tests on the host"
    (cd "$ROOT/images/services" &&
        CARGO_TARGET_DIR=/var/tmp/containerd-shim-wasmtime/services-target cargo test --locked --workspace)
fi

echo "==> building test fixtures and their images"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures"
build_test_images "$WORK/fixtures" "$WORK/images"

echo "==> unit and end-to-end tests (private containerd in $WORK/containerd)"
containerd_up "$WORK/containerd" "$WORK/bin"
# ctr tests use namespace "wasm", the CRI plugin "k8s.io".
for tar in "$WORK"/images/*.tar; do
    case $(basename "$tar") in
        pause.tar | busybox.tar) platform=linux/amd64 ;;
        *) platform=wasi/wasm ;;
    esac
    for ns in wasm k8s.io; do
        CTR_NAMESPACE=$ns ctr_private "$WORK/containerd" images import --platform "$platform" "$tar" >/dev/null
    done
done
status=0
E2E_DIR="$WORK/containerd" E2E_FIXTURES="$WORK/fixtures" E2E_SHIM="$WORK/bin/containerd-shim-wasmtime-v1" \
    cargo test --release --locked --no-fail-fast --workspace -- --test-threads=2 ${FILTER:+"$FILTER"} || status=$?
if [ -z "$FILTER" ] || [ "$FILTER" = chat ]; then
    echo "==> the chat application on containerd (tests/chat/run.sh)"
    bash "$ROOT/tests/chat/run.sh" || status=1
fi
exit "$status"
