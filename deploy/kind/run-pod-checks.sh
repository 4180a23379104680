#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2016 # `check && pass || fail` (pass never fails); sh -c scripts
# Runs the pod checks of our CRI tests (tests/tests/kubernetes.rs) on a real
# Kubernetes: a kind cluster whose node has containerd-shim-wasmtime-v1
# (deploy/kind/kind-config.yaml). Where Docker, kind or kubectl is missing it
# says so and exits 0.
#
#   deploy/kind/run-pod-checks.sh [--keep] [--chat]
#
#   --keep   leave the cluster running afterwards (default: delete it)
#   --chat   also deploy the chat app (deploy/k8s/chat) and run
#            images/services/smoke.sh against its gateway (needs node ≥ 20.19
#            and npm to build the web UI, and the cluster must reach Docker Hub
#            for mysql:8 and redis:7)
#
# Environment: KIND_CLUSTER_NAME (default wasmtime-checks), KIND_NODE_IMAGE
# (a kindest/node image; default: kind's), CARGO_TARGET_DIR.
#
# Checks, as "PASS/FAIL name" lines, then "N passed, M failed": those of
# deploy/kind/pod-checks.sh (shared with tests/cluster/run.sh, the same
# checks on a cluster built from source without Docker): logs and exit
# codes, HTTP servers behind Services and probes, DNS, a mixed runc/Wasm pod,
# pod churn, liveness restarts (HTTP and exec probes), namespace deletion
# leaving nothing on the node; with --chat, the chat app.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/deploy/kind"
NAME=${KIND_CLUSTER_NAME:-wasmtime-checks}
NODE="$NAME-control-plane"
NS=wasm-checks
KEEP=0
CHAT=0
for arg in "$@"; do
    case $arg in
        --keep) KEEP=1 ;;
        --chat) CHAT=1 ;;
        *) echo "usage: $0 [--keep] [--chat]" >&2; exit 2 ;;
    esac
done

skip() {
    echo "kind pod checks skipped: $*"
    exit 0
}
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "no Docker daemon is reachable (docker info failed)"
command -v kind >/dev/null 2>&1 || skip "kind is not installed"
command -v kubectl >/dev/null 2>&1 || skip "kubectl is not installed"

die() { echo "error: $*" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
WORK=$(mktemp -d /tmp/wasmtime-kind.XXXXXX)
k() { kubectl --context "kind-$NAME" "$@"; }
node() { docker exec "$NODE" "$@"; }
node_crictl() { node crictl "$@"; }
# pass/fail, wait_for, shim_pids and the checks themselves.
. "$HERE/pod-checks.sh"

cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "cluster kept: kind delete cluster --name $NAME"
    else
        kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> building the shim, the image tool and the test images"
(cd "$ROOT" && cargo build --release --locked --workspace) || die "build failed"
. "$ROOT/tests/lib/images.sh"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >/dev/null || die "fixtures build failed"
build_test_images "$WORK/fixtures" "$WORK/images" || die "test images build failed"

# The binary goes where kind-config.yaml mounts it from.
shim_host_path=$(awk '/hostPath:/ && /containerd-shim-wasmtime-v1/ {print $NF; exit}' "$HERE/kind-config.yaml")
[ -n "$shim_host_path" ] || die "no shim hostPath in kind-config.yaml"
mkdir -p "$(dirname "$shim_host_path")" &&
    cp --remove-destination "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$shim_host_path" || die "cannot stage the shim at $shim_host_path"

echo "==> creating kind cluster $NAME"
kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
kind create cluster --name "$NAME" --config "$HERE/kind-config.yaml" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} || die "kind create cluster failed"

echo "==> checking the node"
if out=$(node containerd-shim-wasmtime-v1 --version 2>&1); then
    pass "node: the shim runs in the node ($(echo "$out" | head -n 1))"
else
    fail "node: the shim does not run in the node (built against a newer glibc than the node's Debian 12? build it in a rust:1-bookworm container)" "$out"
    pod_checks_summary
    exit 1
fi
if node containerd config dump 2>/dev/null | grep -Eq "runtimes\.[\"']?wasmtime[\"']?\]"; then
    pass "node: containerd has the wasmtime handler"
else
    fail "node: containerd has no wasmtime handler"
fi

echo "==> loading images (kind load image-archive)"
for img in hello probe probe-p2 http-hello trap busybox; do
    kind load image-archive "$WORK/images/$img.tar" --name "$NAME" || die "kind load image-archive $img.tar failed"
done
if node crictl images 2>/dev/null | grep -q 'localhost/test/probe-p2'; then
    pass "images: the CRI sees the loaded Wasm images"
else
    fail "images: localhost/test/probe-p2 not in crictl images" "$(node crictl images 2>&1 | head -20)"
fi

pod_checks_run

if [ "$CHAT" = 1 ]; then
    echo "==> the chat app (deploy/k8s/chat)"
    bash "$ROOT/deploy/k8s/chat/build-images.sh" "$WORK/chat"
    for s in session chat message user truncator gateway; do
        kind load image-archive "$WORK/chat/images/$s.tar" --name "$NAME"
    done
    k apply -k "$ROOT/deploy/k8s/chat"
    ok=1
    k -n chat rollout status statefulset/mysql --timeout=600s || ok=0
    for d in redis session chat message user truncator gateway; do
        k -n chat rollout status "deployment/$d" --timeout=600s || ok=0
    done
    if [ "$ok" = 1 ]; then
        pass "chat: every Deployment and MySQL are ready"
        k -n chat port-forward svc/gateway 13000:3000 >"$WORK/port-forward.log" 2>&1 &
        pf=$!
        wait_for 30 curl -fsS -o /dev/null http://127.0.0.1:13000/ || true
        if bash "$ROOT/images/services/smoke.sh" http://127.0.0.1:13000 >"$WORK/smoke.log" 2>&1; then
            pass "chat: smoke.sh through the gateway ($(tail -n 1 "$WORK/smoke.log"))"
        else
            fail "chat: smoke.sh" "$(grep FAIL "$WORK/smoke.log" | head -20; tail -n 1 "$WORK/smoke.log")"
        fi
        kill "$pf" 2>/dev/null || true
    else
        fail "chat: not ready" "$(k -n chat get pods -o wide; k -n chat describe pods | grep -A5 -i 'warning' | head -40)"
    fi
fi

pod_checks_summary
[ "$failed" = 0 ]
