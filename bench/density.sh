#!/usr/bin/env bash
# Density: COUNT long-running Wasm containers at once on this machine, on a
# private containerd, started two ways, against runc doing the same:
#   1. `ctr run -d`, one shim each: COUNT Wasm containers (a WASI p1 module
#      sleeping), then COUNT runc containers (busybox sleep);
#   2. through CRI (crictl, as kubelet would), COUNT/5 pods of five wasi:http
#      servers (ports 8081-8085 in each pod's network), every server asked
#      for a page through its pod's IP;
#   3. idle memory of one container per kind of guest: p1 module, p2 command,
#      wasi:http server, socket server (wasi:sockets), 1.5 s / 6 s / 15 s
#      after its start (its code already in the compile cache).
# For 1 and 2 it prints the start time per container as the count grows (per
# BATCH), that every container is running (and answering), total and
# per-container PSS once idle, and the CPU all shims (and runc's containers)
# use over IDLE_SECONDS.
#
#   bash bench/density.sh [COUNT]      (default 500)
#
# Knobs: BATCH (50), IDLE_SECONDS (10), SETTLE_SECONDS (8: after the last
# start, before measuring; idle shims trim themselves after 2 s), RUNC=0 and
# CRI=0 skip those parts, SKIP_BUILD=1 reuses the release binaries.
# Needs root, containerd, runc, busybox-static; crictl from
# deploy/dev/build-go-tools.sh (built when missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
COUNT=${1:-500}
BATCH=${BATCH:-50}
IDLE_SECONDS=${IDLE_SECONDS:-10}
SETTLE_SECONDS=${SETTLE_SECONDS:-8}
RUNC=${RUNC:-1}
CRI=${CRI:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
RUNTIME=io.containerd.wasmtime.v1
GOAL_PSS_KIB=2048
# Its own bridge and subnet: tests may run beside it.
export CNI_BRIDGE=wasmtime-dens0 CNI_SUBNET=10.218.0.0/24

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"
. "$ROOT/bench/lib.sh"

WORK=$(mktemp -d /tmp/wasmtime-density.XXXXXX)
CD=$WORK/containerd
CLK_TCK=$(getconf CLK_TCK)

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [ -S "$CD/containerd.sock" ] && [ "$CRI" = 1 ] && remove_pods
    containerd_down "$CD" >/dev/null 2>&1
    # Shims outlive containerd: end ours (found by our socket path), by pid.
    local left
    left=$(our_pids "")
    [ -n "$left" ] && kill -9 $left 2>/dev/null
    find /sys/fs/cgroup/*/wasmtime-density -depth -type d -exec rmdir {} + 2>/dev/null
    unmount_under "$WORK"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctrp() { ctr_private "$CD" "$@"; }

# Pids of processes started for our containerd (their command line names its
# socket, as every shim's does) whose command line also contains PATTERN.
our_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        [[ "$cmd" == *"$CD/containerd.sock"* && "$cmd" == *"$1"* ]] && echo "${p#/proc/}"
    done
    return 0
}

descendants() { # PID... -> those pids and all their descendants
    local p
    for p in "$@"; do
        echo "$p"
        # shellcheck disable=SC2046
        descendants $(ps -o pid= --ppid "$p" 2>/dev/null)
    done
}

running_count() { # NAMESPACE PREFIX -> tasks RUNNING whose id starts with PREFIX
    CTR_NAMESPACE=$1 ctr_private "$CD" tasks ls 2>/dev/null | awk -v p="$2" 'index($1, p) == 1 && $3 == "RUNNING"' | wc -l
}

# start_times FILE: µs values, one per start -> per BATCH, median/p90/max ms.
start_times() {
    local n from to med p90 max
    n=$(wc -l <"$1")
    for ((from = 1; from <= n; from += BATCH)); do
        to=$((from + BATCH - 1 < n ? from + BATCH - 1 : n))
        read -r med p90 _ max < <(sed -n "${from},${to}p" "$1" | stats)
        printf '    %4d-%-4d  median %7.1f ms  p90 %7.1f ms  max %7.1f ms\n' "$from" "$to" "$med" "$p90" "$max"
    done
}

# idle PIDS...: sets IDLE_CPU_S (CPU seconds over IDLE_SECONDS) and PSS_KIB.
idle() {
    local t0 t1
    t0=$(cpu_ticks "$@")
    sleep "$IDLE_SECONDS"
    t1=$(cpu_ticks "$@")
    IDLE_CPU_S=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    PSS_KIB=$(sum_kib Pss "$@")
}

# report_idle LABEL N PROCS: prints the figures of the last `idle`; sets PER_KIB.
report_idle() {
    PER_KIB=$((PSS_KIB / $2))
    printf '    %s: %d processes, PSS %.1f MiB in all, %d KiB per container; idle CPU %s s over %s s (%s%% of a core)\n' \
        "$1" "$3" "$(awk -v k="$PSS_KIB" 'BEGIN { print k / 1024 }')" "$PER_KIB" "$IDLE_CPU_S" "$IDLE_SECONDS" \
        "$(awk -v c="$IDLE_CPU_S" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.1f", 100 * c / s }')"
}

remove_tasks() { # NAMESPACE PREFIX: kill, then delete tasks and containers
    local ids id
    ids=$(CTR_NAMESPACE=$1 ctr_private "$CD" containers ls -q 2>/dev/null | grep "^$2" || true)
    for id in $ids; do CTR_NAMESPACE=$1 ctr_private "$CD" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 1
    for id in $ids; do
        CTR_NAMESPACE=$1 ctr_private "$CD" tasks delete -f "$id" >/dev/null 2>&1 || true
        CTR_NAMESPACE=$1 ctr_private "$CD" containers delete "$id" >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- build
if [ "$SKIP_BUILD" != 1 ]; then
    echo "==> building the shim and the image tool (release)"
    (cd "$ROOT" && cargo build --release --locked -p containerd-shim-wasmtime -p wasm-oci)
fi
mkdir -p "$WORK/bin"
cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$WORK/bin/"
echo "==> building fixtures and images"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >/dev/null
build_test_images "$WORK/fixtures" "$WORK/images"
containerd_up "$CD" "$WORK/bin"
for img in probe probe-p2 http-hello busybox pause; do
    platform=wasi/wasm
    case $img in busybox | pause) platform=linux/amd64 ;; esac
    for ns in wasm k8s.io; do
        CTR_NAMESPACE=$ns ctr_private "$CD" images import --platform "$platform" "$WORK/images/$img.tar" >/dev/null
    done
done
echo "    containerd $(containerd_release), runc $(runc --version | awk 'NR == 1 { print $3 }'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 1. ctr run -d
# start_many KIND: COUNT containers, each timed; µs per start in $WORK/KIND.us
start_many() {
    local kind=$1 i t0
    : >"$WORK/$kind.us"
    for i in $(seq 1 "$COUNT"); do
        t0=${EPOCHREALTIME/./}
        case $kind in
            wasm) ctrp run -d --runtime "$RUNTIME" --platform wasi/wasm localhost/test/probe:latest "d-wasm-$i" /probe.wasm sleep 1000000 >/dev/null ;;
            runc) ctrp run -d --runc-root "$WORK/runc" localhost/test/busybox:latest "d-runc-$i" /bin/busybox sleep 1000000 >/dev/null ;;
        esac
        echo $((${EPOCHREALTIME/./} - t0)) >>"$WORK/$kind.us"
    done
}

one_shim_each() { # KIND
    local kind=$1 pids n
    echo "==> $COUNT $kind containers with ctr run -d, one shim each"
    start_many "$kind"
    start_times "$WORK/$kind.us"
    n=$(running_count wasm "d-$kind-")
    echo "    running: $n of $COUNT"
    [ "$n" = "$COUNT" ] || { echo "not every $kind container is running" >&2; return 1; }
    # Listing tasks asks every shim for its state: let them go idle again.
    sleep "$SETTLE_SECONDS"
    # The shims, and for runc the container processes under them.
    # shellcheck disable=SC2046
    pids=$(descendants $(our_pids "-id d-$kind-") | sort -u)
    # shellcheck disable=SC2086
    idle $pids
    report_idle "$kind" "$COUNT" "$(wc -w <<<"$pids")"
    printf -v "${kind}_pss" '%s' "$PER_KIB"
    printf -v "${kind}_cpu" '%s' "$IDLE_CPU_S"
    remove_tasks wasm "d-$kind-"
}

one_shim_each wasm
if [ "$RUNC" = 1 ]; then one_shim_each runc; fi

# ---------------------------------------------------------------- 2. CRI pods of five
CRICTL=
if [ "$CRI" = 1 ]; then
    bash "$ROOT/deploy/dev/build-go-tools.sh" >/dev/null
    eval "$(bash "$ROOT/deploy/dev/build-go-tools.sh" --print-env)"
    CRICTL="$CRI_TOOLS_BIN_DIR/crictl --runtime-endpoint unix://$CD/containerd.sock --image-endpoint unix://$CD/containerd.sock --timeout 60s"
fi

remove_pods() {
    local p
    for p in $($CRICTL pods -q --label density=1 2>/dev/null); do
        $CRICTL stopp "$p" >/dev/null 2>&1 || true
        $CRICTL rmp "$p" >/dev/null 2>&1 || true
    done
}

pods_of_five() {
    local pods=$((COUNT / 5)) i j t0 pod c ip ok=0 total=0 sandbox_us
    echo "==> $pods pods of five wasi:http servers through CRI (crictl runp/create/start)"
    mkdir -p "$WORK/cri"
    : >"$WORK/cri.us"
    for i in $(seq 1 "$pods"); do
        printf '{"metadata":{"name":"dens-%d","namespace":"density","uid":"dens-%d"},"labels":{"density":"1"},"log_directory":"%s","linux":{"cgroup_parent":"/wasmtime-density/dens-%d"}}' \
            "$i" "$i" "$WORK/cri/logs-$i" "$i" >"$WORK/cri/pod-$i.json"
        mkdir -p "$WORK/cri/logs-$i"
        t0=${EPOCHREALTIME/./}
        pod=$($CRICTL runp --runtime wasmtime "$WORK/cri/pod-$i.json")
        sandbox_us=$(((${EPOCHREALTIME/./} - t0) / 5))
        for j in 1 2 3 4 5; do
            printf '{"metadata":{"name":"web-%d"},"image":{"image":"localhost/test/http-hello:latest"},"envs":[{"key":"WASI_HTTP_PORT","value":"808%d"}],"log_path":"web-%d.log","linux":{}}' \
                "$j" "$j" "$j" >"$WORK/cri/c-$j.json"
            t0=${EPOCHREALTIME/./}
            c=$($CRICTL create "$pod" "$WORK/cri/c-$j.json" "$WORK/cri/pod-$i.json")
            $CRICTL start "$c" >/dev/null
            echo $((${EPOCHREALTIME/./} - t0 + sandbox_us)) >>"$WORK/cri.us"
        done
        echo "$pod" >>"$WORK/cri/pods"
    done
    echo "    start per container (CreateContainer + StartContainer, and a fifth of its pod's RunPodSandbox):"
    start_times "$WORK/cri.us"
    local running
    running=$($CRICTL ps -q --state Running | wc -l)
    echo "    running: $running of $COUNT containers"
    for pod in $(cat "$WORK/cri/pods"); do
        ip=$($CRICTL inspectp -o go-template --template '{{.status.network.ip}}' "$pod")
        for j in 1 2 3 4 5; do
            total=$((total + 1))
            curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ip:808$j/" | grep -q '^200$' && ok=$((ok + 1))
        done
    done
    echo "    answering: $ok of $total servers (GET / on each pod IP, ports 8081-8085)"
    sleep "$SETTLE_SECONDS"
    # Pod shims only: the pause processes are runc's, as for any pod.
    local pids
    pids=$(our_pids "-id ")
    # shellcheck disable=SC2086
    idle $pids
    report_idle "pod shims" "$COUNT" "$(wc -w <<<"$pids")"
    cri_pss=$PER_KIB
    cri_cpu=$IDLE_CPU_S
    cri_ok="$running/$COUNT running, $ok/$total answering"
    remove_pods
}
if [ "$CRI" = 1 ]; then pods_of_five; fi

# ---------------------------------------------------------------- 3. per kind of guest
echo "==> idle memory of one container per kind of guest (RSS of its shim)"
kind_rss() { # ID LABEL IMAGE ARGS...
    local id=k-$1 name=$2 image=$3 pid r1 r6 r15
    shift 3
    # Once before, so that the measured one loads its code from the compile
    # cache, as every start after a node's first does.
    ctrp run -d --runtime "$RUNTIME" --platform wasi/wasm "localhost/test/$image:latest" "$id-warm" "$@" >/dev/null
    sleep 1
    remove_tasks wasm "$id-warm"
    ctrp run -d --runtime "$RUNTIME" --platform wasi/wasm "localhost/test/$image:latest" "$id" "$@" >/dev/null
    pid=$(our_pids "-id $id ")
    sleep 1.5; r1=$(status_kib "$pid" VmRSS)
    sleep 4.5; r6=$(status_kib "$pid" VmRSS)
    sleep 9; r15=$(status_kib "$pid" VmRSS)
    printf '    %-20s RSS %6.1f MiB at 1.5 s, %6.1f MiB at 6 s, %6.1f MiB at 15 s (PSS %.1f MiB)\n' "$name" \
        "$(awk -v k="$r1" 'BEGIN { print k / 1024 }')" "$(awk -v k="$r6" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$r15" 'BEGIN { print k / 1024 }')" "$(awk -v k="$(rollup_kib "$pid" Pss)" 'BEGIN { print k / 1024 }')"
    remove_tasks wasm "$id"
}
kind_rss p1 "p1 module (sleep)" probe /probe.wasm sleep 1000000
kind_rss p2 "p2 command (sleep)" probe-p2 /probe-p2.wasm sleep 1000000
kind_rss http "wasi:http server" http-hello
kind_rss socket "socket server" probe-p2 /probe-p2.wasm listen 9000

# ---------------------------------------------------------------- summary
echo
echo "==> summary ($COUNT containers)"
printf '    ctr run -d, Wasm: %s KiB PSS per container (goal <= %s KiB: %s), idle CPU %s s\n' "$wasm_pss" "$GOAL_PSS_KIB" \
    "$([ "$wasm_pss" -le "$GOAL_PSS_KIB" ] && echo PASS || echo FAIL)" "$wasm_cpu"
if [ "$RUNC" = 1 ]; then
    printf '    ctr run -d, runc: %s KiB PSS per container, idle CPU %s s; Wasm/runc PSS %s, idle CPU Wasm <= runc: %s\n' \
        "$runc_pss" "$runc_cpu" "$(ratio "$wasm_pss" "$runc_pss")" \
        "$(awk -v w="$wasm_cpu" -v r="$runc_cpu" 'BEGIN { print (w <= r) ? "PASS" : "FAIL" }')"
fi
if [ "$CRI" = 1 ]; then
    printf '    CRI, pods of five: %s KiB PSS per container (goal <= %s KiB: %s), idle CPU %s s; %s\n' "$cri_pss" "$GOAL_PSS_KIB" \
        "$([ "$cri_pss" -le "$GOAL_PSS_KIB" ] && echo PASS || echo FAIL)" "$cri_cpu" "$cri_ok"
fi
