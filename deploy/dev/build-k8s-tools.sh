#!/usr/bin/env bash
# Builds a single-node Kubernetes cluster's programs from the Go module proxy
# at pinned versions, for tests/cluster (no kind node image or Docker here):
#   Kubernetes: kubelet kube-apiserver kube-controller-manager kube-scheduler
#               kube-proxy kubectl
#   etcd, CoreDNS
#
#   deploy/dev/build-k8s-tools.sh              build what is missing (fast no-op otherwise)
#   deploy/dev/build-k8s-tools.sh --print-env  print K8S_BIN_DIR=… ETCD_BIN_DIR=…
#                                              COREDNS_BIN_DIR=… K8S_VERSION=… (no build)
#
# Like build-go-tools.sh, everything lives under $GO_TOOLS_DIR (default
# /var/tmp/containerd-shim-wasmtime/go), one directory per tool and version,
# sharing that script's module and build caches. A cold build of all of it
# takes tens of minutes on 2 cores; that is why it is not part of the default
# tests/run.sh.
set -euo pipefail

# v1.37.2: the newest release whose staging modules (k8s.io/api, … v0.37.2)
# the proxy serves; its go directive (1.26.0) suits the Go here. Its kubelet
# still supports cgroup v1 but refuses it by default (failCgroupV1 defaults
# to true since 1.35): tests/cluster's kubelet config sets it to false.
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
# etcd's server program is the main package of go.etcd.io/etcd/server/v3
# (upstream builds ./server). v3.6: the release line Kubernetes 1.37 is
# tested with.
ETCD_VERSION=v3.6.8
COREDNS_VERSION=v1.15.0

GO_TOOLS_DIR=${GO_TOOLS_DIR:-/var/tmp/containerd-shim-wasmtime/go}
k8s_dir=$GO_TOOLS_DIR/kubernetes-$K8S_VERSION
etcd_dir=$GO_TOOLS_DIR/etcd-$ETCD_VERSION
coredns_dir=$GO_TOOLS_DIR/coredns-$COREDNS_VERSION
k8s_programs=(kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)

if [ "${1:-}" = --print-env ]; then
    echo "K8S_BIN_DIR=$k8s_dir/bin"
    echo "K8S_VERSION=$K8S_VERSION"
    echo "ETCD_BIN_DIR=$etcd_dir/bin"
    echo "COREDNS_BIN_DIR=$coredns_dir/bin"
    exit 0
fi

have_all() { # DIR NAME...
    local d=$1 n
    shift
    for n in "$@"; do [ -x "$d/$n" ] || return 1; done
}

if have_all "$k8s_dir/bin" "${k8s_programs[@]}" && have_all "$etcd_dir/bin" etcd &&
    have_all "$coredns_dir/bin" coredns; then
    echo "==> k8s tools: kubernetes $K8S_VERSION, etcd $ETCD_VERSION, coredns $COREDNS_VERSION already built in $GO_TOOLS_DIR"
    exit 0
fi

. "$(dirname "${BASH_SOURCE[0]}")/go-build-lib.sh"
go_build_env build-k8s-tools
# GOWORK=off: Kubernetes ships a go.work tying in its staging dirs, which
# the module zip lacks; -mod=mod is refused in workspace mode.
export GOWORK=off
start=$(date +%s)

# Replaces every `M => ./path` or `M => ../path` directive of a replace
# block in ./go.mod by a requirement of M at VERSION: the nested or sibling
# modules are not inside the module's zip, but they are published on their
# own at matching versions. (One-line `replace M => ./FORBIDDEN_…` guards,
# as etcd has, stay.)
unreplace_local() { # VERSION
    local m
    for m in $(sed -n 's/^[[:space:]]\{1,\}\([^[:space:]]*\) => \.\{1,2\}\/.*/\1/p' go.mod); do
        go mod edit -dropreplace="$m" -require="$m@$1"
    done
}

# All six programs in one go build, so the packages they share compile once.
# CGO off as upstream builds them (static binaries); the -X flags give them
# the version they report, which kubectl and the kubelet's node status show.
build_kubernetes() {
    local src=$k8s_dir/src cv=k8s.io/component-base/version gv=k8s.io/client-go/pkg/version
    local minor ld p
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    ld="-s -w"
    for p in $cv $gv; do
        ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    echo "==> building kubernetes $K8S_VERSION (${k8s_programs[*]}) into $k8s_dir/bin"
    module_copy k8s.io/kubernetes "$K8S_VERSION" "$src"
    mkdir -p "$k8s_dir/bin.tmp"
    rm -f "$src/go.work" "$src/go.work.sum"
    (cd "$src" && unreplace_local "$STAGING_VERSION" &&
        CGO_ENABLED=0 go build -ldflags "$ld" -o "$k8s_dir/bin.tmp/" \
            $(printf './cmd/%s ' "${k8s_programs[@]}"))
    # Moved only once every link succeeded, so the fast path never trusts a
    # half-built set.
    rm -rf "$k8s_dir/bin"
    mv "$k8s_dir/bin.tmp" "$k8s_dir/bin"
    rm -rf "$src"
}

build_etcd() {
    local src=$etcd_dir/src
    echo "==> building etcd $ETCD_VERSION into $etcd_dir/bin"
    module_copy go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$src"
    mkdir -p "$etcd_dir/bin"
    (cd "$src" && unreplace_local "$ETCD_VERSION" &&
        CGO_ENABLED=0 go build -ldflags "-s -w" -o "$etcd_dir/bin/etcd.tmp" .)
    mv "$etcd_dir/bin/etcd.tmp" "$etcd_dir/bin/etcd"
    rm -rf "$src"
}

build_coredns() {
    echo "==> building coredns $COREDNS_VERSION into $coredns_dir/bin"
    mkdir -p "$coredns_dir/bin"
    CGO_ENABLED=0 GOBIN=$coredns_dir/bin go install -ldflags "-s -w" \
        "github.com/coredns/coredns@$COREDNS_VERSION"
}

have_all "$k8s_dir/bin" "${k8s_programs[@]}" || build_kubernetes
have_all "$etcd_dir/bin" etcd || build_etcd
have_all "$coredns_dir/bin" coredns || build_coredns

echo "==> k8s tools built in $(($(date +%s) - start)) s:"
"$k8s_dir/bin/kubectl" version --client
"$k8s_dir/bin/kubelet" --version
"$etcd_dir/bin/etcd" --version | sed -n 1p
"$coredns_dir/bin/coredns" -version | sed -n 1p
