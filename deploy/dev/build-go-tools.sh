#!/usr/bin/env bash
# Builds the Go tools the tests use that Debian does not ship at a current
# version: containerd 2.x (containerd, ctr, containerd-shim-runc-v2),
# cri-tools (crictl, critest) and Docker (dockerd, docker, the docker-compose
# CLI plugin), from the Go module proxy at pinned versions.
#
#   deploy/dev/build-go-tools.sh              build what is missing (fast no-op otherwise)
#   deploy/dev/build-go-tools.sh --print-env  print CONTAINERD2_BIN_DIR=… CRI_TOOLS_BIN_DIR=…
#                                             DOCKER_BIN_DIR=… CONTAINERD2_VERSION=…
#                                             (no build; for eval)
#
# Everything lives under $GO_TOOLS_DIR (default /var/tmp/containerd-shim-wasmtime/go),
# outside the clone, one directory per tool and version, so a fresh clone
# reuses earlier builds and a version bump builds next to the old one.
set -euo pipefail

CONTAINERD_VERSION=v2.4.2
CRI_TOOLS_VERSION=v1.37.0
# Docker 29's daemon lives in the Go module github.com/moby/moby/v2, which is
# published only as v2 betas (v2.0.0-beta.1 … beta.24 on the proxy; the
# docker-v29.x tags are not module versions). beta.24 is the newest, with API
# 1.56 like the 29.9 CLI.
MOBY_VERSION=v2.0.0-beta.24
DOCKER_CLI_VERSION=v29.9.3
# v5.6.0: v5.7.x needs Go >= 1.26.10, newer than the Go here.
COMPOSE_VERSION=v5.6.0

GO_TOOLS_DIR=${GO_TOOLS_DIR:-/var/tmp/containerd-shim-wasmtime/go}
containerd_dir=$GO_TOOLS_DIR/containerd-$CONTAINERD_VERSION
cri_tools_dir=$GO_TOOLS_DIR/cri-tools-$CRI_TOOLS_VERSION
# Named by the CLI's release; the stamp file records all three pins, so a
# bump of the daemon or compose rebuilds too.
docker_dir=$GO_TOOLS_DIR/docker-$DOCKER_CLI_VERSION
docker_stamp="moby $MOBY_VERSION, cli $DOCKER_CLI_VERSION, compose $COMPOSE_VERSION"

if [ "${1:-}" = --print-env ]; then
    echo "CONTAINERD2_BIN_DIR=$containerd_dir/bin"
    echo "CONTAINERD2_VERSION=${CONTAINERD_VERSION#v}"
    echo "CRI_TOOLS_BIN_DIR=$cri_tools_dir/bin"
    echo "DOCKER_BIN_DIR=$docker_dir/bin"
    exit 0
fi

have_all() { # DIR NAME...
    local d=$1 n
    shift
    for n in "$@"; do [ -x "$d/$n" ] || return 1; done
}

have_docker() {
    have_all "$docker_dir/bin" dockerd docker docker-compose &&
        [ "$(cat "$docker_dir/versions" 2>/dev/null)" = "$docker_stamp" ]
}

if have_all "$containerd_dir/bin" containerd ctr containerd-shim-runc-v2 &&
    have_all "$cri_tools_dir/bin" crictl critest && have_docker; then
    echo "==> go tools: containerd $CONTAINERD_VERSION, cri-tools $CRI_TOOLS_VERSION, docker ($docker_stamp) already built in $GO_TOOLS_DIR"
    exit 0
fi

. "$(dirname "${BASH_SOURCE[0]}")/go-build-lib.sh"
go_build_env build-go-tools
start=$(date +%s)

# go install writes to GOBIN only once the link succeeded, so a failed or
# interrupted build never leaves a binary that the fast path would trust.
build_containerd() {
    local pkg=github.com/containerd/containerd/v2 ld
    ld="-s -w -X $pkg/version.Version=${CONTAINERD_VERSION#v} -X $pkg/version.Package=$pkg"
    echo "==> building containerd $CONTAINERD_VERSION into $containerd_dir/bin"
    mkdir -p "$containerd_dir/bin"
    # The daemon and ctr as upstream's Makefile builds them (cgo on, for the
    # btrfs snapshotter's kernel headers).
    GOBIN=$containerd_dir/bin go install -tags urfave_cli_no_docs -ldflags "$ld" \
        "$pkg/cmd/containerd@$CONTAINERD_VERSION" "$pkg/cmd/ctr@$CONTAINERD_VERSION"
    # The runc shim static and without gRPC, as upstream ships it: it runs
    # once per pod and should not depend on the host's libc.
    CGO_ENABLED=0 GOBIN=$containerd_dir/bin go install -tags "urfave_cli_no_docs no_grpc" \
        -ldflags "$ld" "$pkg/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
}

build_cri_tools() {
    local mod=sigs.k8s.io/cri-tools ld
    ld="-s -w -X $mod/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
    echo "==> building cri-tools $CRI_TOOLS_VERSION into $cri_tools_dir/bin"
    mkdir -p "$cri_tools_dir/bin"
    CGO_ENABLED=0 GOBIN=$cri_tools_dir/bin go install -ldflags "$ld" "$mod/cmd/crictl@$CRI_TOOLS_VERSION"
    # critest is a ginkgo test binary (`go test -c`), which go install cannot
    # make: build it inside a writable copy of the module.
    module_copy "$mod" "$CRI_TOOLS_VERSION" "$cri_tools_dir/src"
    (cd "$cri_tools_dir/src" &&
        CGO_ENABLED=0 go test -c -ldflags "$ld" -o "$cri_tools_dir/bin/critest.tmp" ./cmd/critest)
    mv "$cri_tools_dir/bin/critest.tmp" "$cri_tools_dir/bin/critest"
    rm -rf "$cri_tools_dir/src"
}

build_docker() {
    local bin=$docker_dir/bin src=$docker_dir/src
    echo "==> building docker ($docker_stamp) into $bin"
    mkdir -p "$bin"
    rm -f "$docker_dir/versions"
    # dockerd installs as published (cgo on, as upstream's dynamic build).
    local moby=github.com/moby/moby/v2
    GOBIN=$bin go install \
        -ldflags "-s -w -X $moby/dockerversion.Version=${MOBY_VERSION#v} -X $moby/dockerversion.GitCommit=module-$MOBY_VERSION" \
        "$moby/cmd/dockerd@$MOBY_VERSION"
    # The CLI is a +incompatible module without go.mod: its dependencies are
    # pinned in vendor.mod/vendor.sum (the vendor/ tree is not in the module
    # zip). Plain go install resolves them afresh and fails (ambiguous
    # genproto imports, an unreachable dependency), so build in a copy with
    # vendor.mod as go.mod. swarmkit v2.1.3, which it pins, is not served by
    # the proxy; v2.0.0 is, and compiles.
    local cli=github.com/docker/cli
    module_copy "$cli" "$DOCKER_CLI_VERSION+incompatible" "$src/cli"
    (cd "$src/cli" && mv vendor.mod go.mod && mv vendor.sum go.sum &&
        go mod edit -require=github.com/moby/swarmkit/v2@v2.0.0 &&
        CGO_ENABLED=0 go build -ldflags "-s -w -X $cli/cli/version.Version=${DOCKER_CLI_VERSION#v} -X $cli/cli/version.GitCommit=module" \
            -o "$bin/docker.tmp" ./cmd/docker)
    mv "$bin/docker.tmp" "$bin/docker"
    # Compose's go.mod has exclude directives, which go install refuses: build
    # in a copy. It is a CLI plugin; tests link it into a cli-plugins dir.
    local compose=github.com/docker/compose/v5
    module_copy "$compose" "$COMPOSE_VERSION" "$src/compose"
    (cd "$src/compose" &&
        CGO_ENABLED=0 go build -ldflags "-s -w -X $compose/internal.Version=$COMPOSE_VERSION" \
            -o "$bin/docker-compose.tmp" ./cmd)
    mv "$bin/docker-compose.tmp" "$bin/docker-compose"
    rm -rf "$src"
    echo "$docker_stamp" >"$docker_dir/versions"
}

have_all "$containerd_dir/bin" containerd ctr containerd-shim-runc-v2 || build_containerd
have_all "$cri_tools_dir/bin" crictl critest || build_cri_tools
have_docker || build_docker

echo "==> go tools built in $(($(date +%s) - start)) s:"
# sed, not head: head closing the pipe early would fail the pipeline.
"$containerd_dir/bin/containerd" --version
"$containerd_dir/bin/ctr" --version
"$containerd_dir/bin/containerd-shim-runc-v2" -v | sed -n 's/^ *Version: */containerd-shim-runc-v2 /p'
"$cri_tools_dir/bin/crictl" --version
"$cri_tools_dir/bin/critest" --version 2>/dev/null | sed -n 1p
"$docker_dir/bin/dockerd" --version
"$docker_dir/bin/docker" --version
"$docker_dir/bin/docker-compose" version
