#!/usr/bin/env bash
# Runs every test: unit tests, then the end-to-end tests twice, each time
# against a private containerd with the freshly built shim first on its
# PATH: Debian's 1.6, then 2.x built from Go modules
# (deploy/dev/build-go-tools.sh, cached outside the clone).
#
#   tests/run.sh            all tests
#   tests/run.sh NAME       only end-to-end tests whose name contains NAME;
#                           `docker`, `critest`, `node` (the node VM),
#                           `fuzz` (cargo fuzz targets) and `chat` run
#                           those suites
#   tests/run.sh cluster    only the real Kubernetes cluster test
#                           (tests/cluster/run.sh; not in the default run)
#
# E2E_CONTAINERD="1.6 2" (default) chooses the passes: "1.6" is the
# containerd on PATH, "2" the Go-built one.
#
# Needs root, containerd, runc, Go and the wasm32-wasip1/p2 Rust targets
# (.ci/run installs them on a fresh machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
FILTER=${1:-}
E2E_CONTAINERD=${E2E_CONTAINERD:-1.6 2}

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"
. "$ROOT/tests/lib/registry.sh"

WORK=$(mktemp -d /tmp/wasmtime-shim-e2e.XXXXXX)
cleanup() {
    local d
    for d in "$WORK"/containerd*; do containerd_down "$d" || true; done
    registry_down "$WORK/registry" || true
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

if [ "$FILTER" = cluster ]; then
    # Not part of the default run: a cold build of Kubernetes, etcd and
    # CoreDNS alone takes longer than the CI budget leaves (see README).
    echo "==> a Kubernetes cluster built from source, on this host (tests/cluster/run.sh)"
    CLUSTER_SHIM="$WORK/bin/containerd-shim-wasmtime-v1" bash "$ROOT/tests/cluster/run.sh"
    exit $?
fi

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
echo "==> a registry on loopback, with the test images pushed (wasm-oci push)"
registry_up "$WORK/registry"
REGISTRY=$(registry_address "$WORK/registry")
# Both containerd passes pull from it over plain HTTP through this hosts dir.
REGISTRY_HOSTS_DIR=$(registry_hosts_dir "$WORK/registry")
export REGISTRY_HOSTS_DIR
push_test_images "$WORK/images" "$REGISTRY"

if [[ " $E2E_CONTAINERD " == *" 2 "* ]]; then
    echo "==> containerd 2.x and cri-tools from Go modules"
    bash "$ROOT/deploy/dev/build-go-tools.sh"
    # CONTAINERD2_BIN_DIR, CONTAINERD2_VERSION, CRI_TOOLS_BIN_DIR
    eval "$(bash "$ROOT/deploy/dev/build-go-tools.sh" --print-env)"
fi

# One pass: a private containerd from BIN_DIR (empty: the one on PATH) in
# DIR, the images imported, `cargo test ARGS...`, containerd stopped.
# The tests run `ctr` from PATH: BIN_DIR comes first, so it is the matching one.
e2e_pass() { # BIN_DIR DIR CARGO_TEST_ARGS...
    local bin_dir=$1 dir=$2 release tar platform ns
    shift 2
    release=$(CONTAINERD_BIN_DIR=$bin_dir containerd_release) || return 1
    echo "==> e2e on containerd $release (private containerd in $dir)"
    CONTAINERD_BIN_DIR=$bin_dir containerd_up "$dir" "$WORK/bin" || return 1
    # ctr tests use namespace "wasm", the CRI plugin "k8s.io".
    for tar in "$WORK"/images/*.tar; do
        case $(basename "$tar") in
            pause.tar | busybox.tar) platform=linux/amd64 ;;
            *) platform=wasi/wasm ;;
        esac
        for ns in wasm k8s.io; do
            CTR_NAMESPACE=$ns ctr_private "$dir" images import --platform "$platform" "$tar" >/dev/null || return 1
        done
    done
    local rc=0
    PATH="${bin_dir:+$bin_dir:}$PATH" CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=true \
        E2E_DIR="$dir" E2E_FIXTURES="$WORK/fixtures" E2E_SHIM="$WORK/bin/containerd-shim-wasmtime-v1" E2E_REGISTRY="$REGISTRY" \
        cargo test --release --locked --no-fail-fast "$@" -- --test-threads=2 ${FILTER:+"$FILTER"} || rc=$?
    containerd_down "$dir"
    return "$rc"
}

status=0
# Unit tests run once, with the first pass; later passes run only the e2e crate.
scope=(--workspace)
for flavor in $E2E_CONTAINERD; do
    case $flavor in
        1.6) e2e_pass "" "$WORK/containerd" "${scope[@]}" || status=1 ;;
        2) e2e_pass "$CONTAINERD2_BIN_DIR" "$WORK/containerd-2" "${scope[@]}" || status=1 ;;
        *) echo "E2E_CONTAINERD: unknown pass '$flavor' (use 1.6 and/or 2)" >&2; status=1; continue ;;
    esac
    scope=(-p e2e)
done
if [ -z "$FILTER" ] || [ "$FILTER" = docker ]; then
    echo "==> Docker: a private dockerd on containerd 2.x (tests/docker/run.sh)"
    E2E_FIXTURES="$WORK/fixtures" bash "$ROOT/tests/docker/run.sh" "$WORK/bin/containerd-shim-wasmtime-v1" || status=1
fi
if [ -z "$FILTER" ] || [ "$FILTER" = critest ]; then
    echo "==> critest (cri-tools) with --runtime-handler wasmtime on containerd 2.x (tests/critest/run.sh)"
    SHIM="$WORK/bin/containerd-shim-wasmtime-v1" bash "$ROOT/tests/critest/run.sh" || status=1
fi
if [ -z "$FILTER" ] || [ "$FILTER" = node ]; then
    # A systemd + cgroup v2 node in a QEMU VM (tests/node-vm/): the shim
    # installed by deploy/node-installer, then CRI pods on both cgroup drivers
    # with containerd 1.6, and on the systemd driver with containerd 2.x.
    # `tests/run.sh node` also runs the installer's smoke test.
    echo "==> node VM: systemd, cgroup v2, CRI on both cgroup drivers, containerd 1.6 and 2.x (tests/node-vm/cri-test.sh)"
    if [ -z "${CRI_TOOLS_BIN_DIR:-}" ]; then
        bash "$ROOT/deploy/dev/build-go-tools.sh"
        eval "$(bash "$ROOT/deploy/dev/build-go-tools.sh" --print-env)"
    fi
    node_env=(NODE_VM_SHIM="$WORK/bin/containerd-shim-wasmtime-v1" NODE_VM_WASM_OCI="$CARGO_TARGET_DIR/release/wasm-oci")
    if [ "$FILTER" = node ]; then
        env "${node_env[@]}" bash "$ROOT/tests/node-vm/smoke-test.sh" || status=1
    fi
    env "${node_env[@]}" NODE_VM_IMAGES="$WORK/images" CRICTL="$CRI_TOOLS_BIN_DIR/crictl" CONTAINERD2_BIN_DIR="$CONTAINERD2_BIN_DIR" \
        bash "$ROOT/tests/node-vm/cri-test.sh" || status=1
fi
if [ -z "$FILTER" ] || [ "$FILTER" = fuzz ]; then
    echo "==> fuzz: each cargo fuzz target for ${FUZZ_SECONDS:-60} s from its seed corpus (tests/fuzz.sh)"
    bash "$ROOT/tests/fuzz.sh" || status=1
fi
if [ -z "$FILTER" ] || [ "$FILTER" = chat ]; then
    echo "==> the chat application on containerd (tests/chat/run.sh)"
    bash "$ROOT/tests/chat/run.sh" || status=1
fi
exit "$status"
