#!/usr/bin/env bash
# Runs critest (cri-tools' CRI validation suite) against a private
# containerd 2.x whose runtime handler `wasmtime` is our shim, with critest's
# Linux images served by a loopback registry (tests/critest/images.sh).
#
#   tests/critest/run.sh [CRITEST ARGS...]     e.g. -ginkgo.focus='Streaming'
#
# critest runs its specs one at a time (its --parallel needs the ginkgo CLI,
# which is not installed; two cores would not gain much anyway).
#
# Environment:
#   HANDLER=wasmtime   runtime handler under test; "" or runc: containerd's
#                      default runc handler (for comparison)
#   ENV_SKIPS=1        skip the specs that cannot pass on this machine
#                      whatever the runtime (list below); 0 runs all
#   CRITEST_OUT=DIR    where the logs are kept (default
#                      /var/tmp/containerd-shim-wasmtime/critest-out)
#   CRITEST_TIMEOUT    ginkgo suite timeout (default 14m)
#   SHIM=PATH          shim binary (default the dev build)
#   REGISTRY_PORT      loopback registry port (default 5088)
#
# Prints critest's summary ("Ran N of M Specs … X Passed | Y Failed …") and
# the failed specs; exits with critest's status. Everything it starts is
# stopped on exit (pods through CRI first, then containerd, the registry).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
HANDLER=${HANDLER-wasmtime}
ENV_SKIPS=${ENV_SKIPS:-1}
CRITEST_OUT=${CRITEST_OUT:-/var/tmp/containerd-shim-wasmtime/critest-out}
CRITEST_TIMEOUT=${CRITEST_TIMEOUT:-14m}
GO_TOOLS=${GO_TOOLS_DIR:-/var/tmp/containerd-shim-wasmtime/go}
CONTAINERD_BIN_DIR=${CONTAINERD_BIN_DIR:-$GO_TOOLS/containerd-v2.4.2/bin}
CRI_TOOLS_BIN=${CRI_TOOLS_BIN:-$GO_TOOLS/cri-tools-v1.37.0/bin}
SHIM=${SHIM:-/var/tmp/containerd-shim-wasmtime/dev-target/release/containerd-shim-wasmtime-v1}
export REGISTRY_PORT=${REGISTRY_PORT:-5088}
# Our own bridge and subnet: other agents' containerd instances use others.
export CNI_BRIDGE=${CNI_BRIDGE:-critest0} CNI_SUBNET=${CNI_SUBNET:-10.221.0.0/24}
export CONTAINERD_BIN_DIR

for b in "$CONTAINERD_BIN_DIR/containerd" "$CRI_TOOLS_BIN/critest" "$CRI_TOOLS_BIN/crictl" "$SHIM"; do
    [ -x "$b" ] || { echo "run.sh: missing $b (deploy/dev/build-go-tools.sh builds the Go tools)" >&2; exit 1; }
done
command -v ipcmk >/dev/null || { echo "run.sh: critest needs ipcmk (util-linux)" >&2; exit 1; }
# critest binds these host ports (port mapping, port-forward, hostnet nginx).
for p in 12000 12001 12002 12003; do
    if ss -Hltn "sport = :$p" | grep -q .; then
        echo "run.sh: host port $p is in use; critest needs 12000-12003 free" >&2
        exit 1
    fi
done

# shellcheck source=../lib/registry.sh
. "$repo/tests/lib/registry.sh"
# shellcheck source=../lib/containerd.sh
. "$repo/tests/lib/containerd.sh"

# A short path: containerd's socket paths must stay under 108 bytes.
T=$(mktemp -d /tmp/critest.XXXXXX)
mkdir -p "$CRITEST_OUT"
shm_before=$T/shm-before
ipcs -m | awk '$2 ~ /^[0-9]+$/ {print $2}' | sort >"$shm_before"

# Both tools read /etc/crictl.yaml (absent: a warning) unless given a config.
: >"$T/crictl.yaml"
crictl() {
    "$CRI_TOOLS_BIN/crictl" --config "$T/crictl.yaml" --runtime-endpoint "unix://$T/containerd/containerd.sock" \
        --image-endpoint "unix://$T/containerd/containerd.sock" --timeout 30s "$@"
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    if [ -S "$T/containerd/containerd.sock" ]; then
        # Pods first, through CRI, as kubelet would: shims outlive containerd.
        crictl rmp -fa >/dev/null 2>&1
        cp "$T/containerd/containerd.log" "$CRITEST_OUT/containerd.log" 2>/dev/null
    fi
    # Cgroups runc left behind for this run's pods and containers (their IDs
    # are in our containerd's log; rmdir removes only empty ones).
    local id d
    while read -r id; do
        for d in /sys/fs/cgroup/*/"$id" /sys/fs/cgroup/*/*/"$id"; do
            [ -d "$d" ] && rmdir "$d" 2>/dev/null
        done
    done < <(grep -oE '\b[0-9a-f]{64}\b' "$T/containerd/containerd.log" 2>/dev/null | sort -u)
    containerd_down "$T/containerd"
    registry_down "$T/registry"
    # The HostIpc specs create a 1 MiB SysV segment on the host with ipcmk
    # and never remove it: remove new, unattached segments of that size.
    local shmid
    for shmid in $(ipcs -m | awk '$2 ~ /^[0-9]+$/ && $5 == 1048576 && $6 == 0 {print $2}' | sort | comm -13 "$shm_before" -); do
        ipcrm -m "$shmid" 2>/dev/null
    done
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
registry_up "$T/registry" "$REGISTRY_PORT"
reg=$(registry_address "$T/registry")
bash "$here/images.sh" "$T/images" "$reg"

mkdir -p "$T/shim"
cp -p "$SHIM" "$T/shim/containerd-shim-wasmtime-v1"
REGISTRY_HOSTS_DIR=$T/images/hosts containerd_up "$T/containerd" "$T/shim"
# containerd's sandbox image (localhost/test/pause:latest in
# tests/lib/containerd.sh), pulled from the registry through the hosts dir.
crictl pull localhost/test/pause:latest >/dev/null
echo "==> critest: containerd $(containerd_release "$CONTAINERD_BIN_DIR") in $T, handler '${HANDLER}', images from $reg ($(($(date +%s) - start)) s setup)" >&2
# The shim changes under active development: say which build was tested.
echo "==> critest: shim copied from $SHIM (built $(date -r "$T/shim/containerd-shim-wasmtime-v1" -u +%FT%TZ)), sha256 $(sha256sum "$T/shim/containerd-shim-wasmtime-v1" | cut -c1-16)" | tee "$CRITEST_OUT/shim.txt" >&2

skips=()
if [ "$ENV_SKIPS" = 1 ]; then
    skips=(
        # No AppArmor on this kernel: the specs load profiles with
        # apparmor_parser and expect them enforced.
        -ginkgo.skip='AppArmor'
        # The upstream image is pulled by its manifest digest; no image built
        # here can have that digest, and the upstream registry is not reachable.
        -ginkgo.skip='public image with digest should be pulled'
        # tests/lib/containerd.sh's CNI conflist has no portmap plugin (it
        # would rewrite the host's iptables); host ports are not mapped.
        -ginkgo.skip='port mapping with host port and container port'
    )
fi

log=$CRITEST_OUT/critest.log
echo "==> critest: output in $log" >&2
rc=0
# The outer timeout backs up ginkgo's own (which also runs the cleanups).
timeout --kill-after=30s 15m "$CRI_TOOLS_BIN/critest" \
    --runtime-endpoint "unix://$T/containerd/containerd.sock" \
    --image-endpoint "unix://$T/containerd/containerd.sock" \
    --runtime-handler "$HANDLER" \
    --test-images-file "$T/images/test-images.yaml" \
    -config "$T/crictl.yaml" \
    -ginkgo.timeout="$CRITEST_TIMEOUT" -ginkgo.no-color \
    -ginkgo.junit-report="$CRITEST_OUT/junit.xml" \
    "${skips[@]}" "$@" >"$log" 2>&1 || rc=$?

echo "==> critest: exit $rc after $(($(date +%s) - start)) s" >&2
grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$log" || echo "(no summary line: see $log)"
grep -E '^(SUCCESS|FAIL)! ' "$log" || true
if grep -q '^Summarizing [0-9]* Failure' "$log"; then
    sed -n '/^Summarizing [0-9]* Failure/,/^Ran /p' "$log" | grep -E '^\s*\[(FAIL|PANICKED|TIMEDOUT|INTERRUPTED)\]' || true
fi
exit "$rc"
