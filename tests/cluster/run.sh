#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && pass || fail` (pass never fails)
# Our kind-cluster e2e without Docker: a real single-node Kubernetes built
# from source (deploy/dev/build-k8s-tools.sh), run on this host as processes
# (tests/cluster/lib.sh) on a private containerd 2.x with the shim, then
#   - kubectl apply -k deploy/k8s/runtimeclass, and the pod checks shared
#     with deploy/kind/run-pod-checks.sh (deploy/kind/pod-checks.sh): logs,
#     exit codes, probes, Services, DNS, a runc + Wasm pod, churn, liveness
#     restarts of a hung Wasm container (HTTP and exec probes), namespace
#     deletion leaving nothing on the node;
#   - the chat app from a loopback registry (deploy/local/push-images.sh,
#     deploy/k8s/chat/registry-overlay.sh, and tests/cluster/chat-overlay.sh
#     for what a bare cluster lacks): every pod Running/Ready, smoke.sh
#     through the gateway's Service (ClusterIP, kube-proxy), kubectl logs;
#   - teardown: no process, mount, cgroup, bridge or iptables chain left.
# Prints "N passed, M failed" and exits 1 on any failure.
#
#   tests/run.sh cluster         (builds the workspace first)
#   tests/cluster/run.sh         (CLUSTER_SHIM=a prebuilt shim, else built here)
#
# Needs root, Go (for the first build of the cached Kubernetes, etcd, CoreDNS
# and containerd binaries), iptables, openssl, and what deploy/local/
# push-images.sh needs (debootstrap, node for the web UI).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"
. "$ROOT/tests/lib/registry.sh"
. "$ROOT/tests/cluster/pki.sh"
. "$ROOT/tests/cluster/lib.sh"

t0=$SECONDS
step() { echo "==> $* [$((SECONDS - t0)) s]"; }
die() { echo "error: $*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/wasmtime-cluster.XXXXXX)
CLUSTER=$WORK/cluster
cleanup() {
    cluster_down "$CLUSTER"
    registry_down "$WORK/registry" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step "installing missing packages (deploy/dev/install-deps.sh: iptables, conntrack, openssl, ...)"
bash "$ROOT/deploy/dev/install-deps.sh" || die "installing packages failed"
# KUBE-* chains on the host before the cluster: teardown must leave the same.
chains_before=$(iptables-save | grep -c '^:KUBE-' || true)

step "the shim and wasm-oci"
if [ -z "${CLUSTER_SHIM:-}" ]; then
    (cd "$ROOT" && cargo build --release --locked -p containerd-shim-wasmtime -p wasm-oci) || die "cargo build failed"
    CLUSTER_SHIM=$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1
fi
mkdir -p "$WORK/bin"
cp "$CLUSTER_SHIM" "$WORK/bin/containerd-shim-wasmtime-v1"
export CHAT_WASM_OCI=${CHAT_WASM_OCI:-$CARGO_TARGET_DIR/release/wasm-oci}

step "containerd 2.x and cri-tools (deploy/dev/build-go-tools.sh)"
bash "$ROOT/deploy/dev/build-go-tools.sh" || die "building the Go tools failed"
eval "$(bash "$ROOT/deploy/dev/build-go-tools.sh" --print-env)"
step "Kubernetes, etcd, CoreDNS (deploy/dev/build-k8s-tools.sh)"
bash "$ROOT/deploy/dev/build-k8s-tools.sh" || die "building Kubernetes failed"
eval "$(bash "$ROOT/deploy/dev/build-k8s-tools.sh" --print-env)"
export K8S_BIN_DIR ETCD_BIN_DIR COREDNS_BIN_DIR K8S_VERSION CRI_TOOLS_BIN_DIR
export CONTAINERD_BIN_DIR=$CONTAINERD2_BIN_DIR

step "test images"
# In the fixtures' own target dir (build.sh's default), not the workspace's:
# a concurrent build there (tests/run.sh, CI) would hold its lock for minutes.
env -u CARGO_TARGET_DIR bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >/dev/null || die "fixtures build failed"
build_test_images "$WORK/fixtures" "$WORK/images" || die "test images build failed"

step "a registry on loopback with the chat images (deploy/local/push-images.sh)"
registry_up "$WORK/registry" || die "registry_up failed"
REGISTRY=$(registry_address "$WORK/registry")
REGISTRY_HOSTS_DIR=$(registry_hosts_dir "$WORK/registry")
export REGISTRY_HOSTS_DIR
# Its own CHAT_DIR (the images are cached there between runs, apart from a
# developer's stack and tests/chat's) and its own services target dir: a
# build of another checkout in the shared one (tests/chat, CI) can replace
# the .wasm files cargo copies out between its build and the copy.
CHAT_DIR=${CLUSTER_CHAT_DIR:-/var/tmp/containerd-shim-wasmtime/chat-cluster} \
    CHAT_SERVICES_TARGET_DIR=${CLUSTER_SERVICES_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/services-target-cluster} \
    bash "$ROOT/deploy/local/push-images.sh" "$REGISTRY" >"$WORK/push-images.log" 2>&1 ||
    { tail -n 30 "$WORK/push-images.log"; die "deploy/local/push-images.sh failed"; }
bash "$ROOT/deploy/k8s/chat/registry-overlay.sh" "$REGISTRY" "$WORK/chat-registry" >/dev/null ||
    die "registry-overlay.sh failed"
bash "$ROOT/tests/cluster/chat-overlay.sh" "$REGISTRY" "$WORK/chat-registry" "$WORK/chat-cluster" "$WORK/volumes" >/dev/null ||
    die "chat-overlay.sh failed"

step "starting the cluster (Kubernetes $K8S_VERSION, containerd $(containerd_release "$CONTAINERD_BIN_DIR")) in $CLUSTER"
t_up=$SECONDS
cluster_up "$CLUSTER" "$WORK/bin" || die "the cluster did not come up (logs in $CLUSTER/logs)"
echo "cluster up in $((SECONDS - t_up)) s"
export KUBECONFIG=$CLUSTER/admin.kubeconfig
k() { "$K8S_BIN_DIR/kubectl" "$@"; }
node() { "$@"; }
node_crictl() { "$CRI_TOOLS_BIN_DIR/crictl" --runtime-endpoint "unix://$CLUSTER/containerd/containerd.sock" "$@"; }
# Shims of this cluster's containerd only (the CI's e2e run may have others).
SHIM_SCOPE=$CLUSTER/containerd/containerd.sock
. "$ROOT/deploy/kind/pod-checks.sh"

for tar in pause busybox hello probe probe-p2 http-hello trap; do
    case $tar in pause | busybox) platform=linux/amd64 ;; *) platform=wasi/wasm ;; esac
    CTR_NAMESPACE=k8s.io ctr_private "$CLUSTER/containerd" images import --platform "$platform" \
        "$WORK/images/$tar.tar" >/dev/null || die "importing $tar.tar failed"
done

echo "==> the cluster"
k version >"$WORK/version.txt" 2>&1 && grep -q "Server Version: $K8S_VERSION" "$WORK/version.txt" &&
    pass "cluster: kubectl and the apiserver are $K8S_VERSION" || fail "cluster: kubectl version" "$(cat "$WORK/version.txt")"
[ "$(k get node "$CLUSTER_NODE" -o jsonpath='{.status.nodeInfo.kubeletVersion}')" = "$K8S_VERSION" ] &&
    pass "cluster: node $CLUSTER_NODE is Ready, kubelet $K8S_VERSION" || fail "cluster: kubelet version"
runtime=$(k get node "$CLUSTER_NODE" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')
[[ $runtime == containerd://2.* ]] && pass "cluster: the kubelet runs on $runtime" || fail "cluster: runtime $runtime"

t_checks=$SECONDS
pod_checks_run
echo "pod checks took $((SECONDS - t_checks)) s"

echo "==> the chat app (deploy/k8s/chat through a registry overlay)"
t_chat=$SECONDS
# The kubelet pulls every image itself, the six Wasm images included: the
# node's containerd 2.x uses the CRI local pull (tests/lib/containerd.sh, as
# the node installer sets it), which unpacks wasi/wasm images.
if k apply -k "$WORK/chat-cluster" >"$WORK/chat-apply.log" 2>&1; then
    pass "chat: kubectl apply -k of the registry overlay"
    ip=$(k -n chat get service gateway -o jsonpath='{.spec.clusterIP}')
    chat_checks_run "http://$ip:3000"
else
    fail "chat: kubectl apply -k" "$(cat "$WORK/chat-apply.log")"
fi
k delete -f "$WORK/chat-cluster/pv.yaml" --ignore-not-found >/dev/null 2>&1 || true
echo "chat took $((SECONDS - t_chat)) s"

echo "==> teardown"
t_down=$SECONDS
pids=$(cat "$CLUSTER"/pids/* 2>/dev/null | tr '\n' ' ')
cluster_down "$CLUSTER"
echo "teardown took $((SECONDS - t_down)) s"
alive=""
for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
[ -z "$alive" ] && pass "teardown: every cluster process ended" || fail "teardown: still running:$alive"
left=$(SHIM_SCOPE=$CLUSTER/containerd/containerd.sock shim_pids | count)
[ "$left" = 0 ] && pass "teardown: no shim process left" || fail "teardown: $left shims left"
mounts=$(grep -c "$WORK" /proc/self/mounts || true)
[ "$mounts" = 0 ] && pass "teardown: no mount left under $WORK" || fail "teardown: $mounts mounts left"
ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1 && fail "teardown: bridge $CLUSTER_BRIDGE left" ||
    pass "teardown: bridge $CLUSTER_BRIDGE removed"
cg=$(for c in /sys/fs/cgroup/*/"$CLUSTER_CGROUP_ROOT"; do [ -d "$c" ] && echo "$c"; done | count)
[ "$cg" = 0 ] && pass "teardown: no cgroup left under /$CLUSTER_CGROUP_ROOT" || fail "teardown: $cg cgroup dirs left"
chains=$(iptables-save | grep -c '^:KUBE-' || true)
[ "$chains" = "$chains_before" ] && pass "teardown: no KUBE-* iptables chain left" ||
    fail "teardown: $chains KUBE-* chains (before: $chains_before)" "$(iptables-save | grep '^:KUBE-')"

echo "total: $((SECONDS - t0)) s"
pod_checks_summary
[ "$failed" = 0 ]
