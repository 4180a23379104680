#!/usr/bin/env bash
# Start-up, throughput and idle-footprint benchmark of containerd-shim-wasmtime-v1
# against runc, on a private containerd (everything under one temp dir).
#
#   bash bench/startup.sh
#
# Builds the shim, wasm-oci and the fixtures, builds a Wasm hello image and a
# native static busybox image, then measures (all through `ctr`):
#   1. `ctr run --rm` wall time: Wasm cold (empty compile cache), Wasm warm,
#      runc busybox;
#   2. throughput: THROUGHPUT_RUNS runs, THROUGHPUT_PARALLEL at a time;
#   3. one idle long-running container: processes, RSS, PSS, idle CPU and
#      wakeups of its shim (and of runc's shim + process, for comparison);
#   4. IDLE_N idle containers: PSS per container and total idle CPU.
# The last lines are a machine-readable `key=value` summary.
#
# Knobs (environment): COLD_RUNS (10), WARM_RUNS (30), RUNC_RUNS (30),
# THROUGHPUT_RUNS (100), THROUGHPUT_PARALLEL (10), IDLE_SECONDS (5),
# IDLE_N (50; 0 skips step 4), SKIP_BUILD (1: reuse the built release binaries),
# CARGO_TARGET_DIR (/var/tmp/containerd-shim-wasmtime/target).
# Needs root, containerd, runc, busybox-static (installed with apt-get when missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
COLD_RUNS=${COLD_RUNS:-10}
WARM_RUNS=${WARM_RUNS:-30}
RUNC_RUNS=${RUNC_RUNS:-30}
THROUGHPUT_RUNS=${THROUGHPUT_RUNS:-100}
THROUGHPUT_PARALLEL=${THROUGHPUT_PARALLEL:-10}
IDLE_SECONDS=${IDLE_SECONDS:-5}
IDLE_N=${IDLE_N:-50}
SKIP_BUILD=${SKIP_BUILD:-0}
RUNTIME=io.containerd.wasmtime.v1
WASM_IMG=localhost/bench/hello:latest
PROBE_IMG=localhost/bench/probe:latest
BB_IMG=localhost/bench/busybox:latest
GOAL_MEM_KIB=$((10 * 1024))

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/startup.sh needs root (containerd, runc, mounts)" >&2
    exit 1
fi
if [ "${BASH_VERSINFO[0]}" -lt 5 ]; then
    echo "bench/startup.sh needs bash >= 5 (EPOCHREALTIME)" >&2
    exit 1
fi

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/bench/lib.sh"

WORK=$(mktemp -d /tmp/wasmtime-shim-bench.XXXXXX)
CD=$WORK/containerd
RUNC_ROOT=$WORK/runc
TAG="b$$"  # container ids: unique to this run

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -S "$CD/containerd.sock" ]; then
        echo "==> cleaning up" >&2
    fi
    containerd_down "$CD" >/dev/null 2>&1
    # Shims outlive containerd: end any of ours that is still around (found by
    # our private socket path on its command line), by pid.
    local p left i
    for i in $(seq 1 20); do
        left=()
        for p in /proc/[0-9]*; do
            p=${p#/proc/}
            [ "$p" = "$$" ] && continue
            if { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$CD/containerd.sock"; then
                left+=("$p")
            fi
        done
        [ "${#left[@]}" -eq 0 ] && break
        sleep 0.1
    done
    if [ "${#left[@]}" -gt 0 ]; then
        echo "    ending ${#left[@]} leftover process(es) of this run:" >&2
        for p in "${left[@]}"; do
            echo "      $p: $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-200)" >&2
        done
        kill -9 "${left[@]}" 2>/dev/null
        sleep 0.2
    fi
    unmount_under "$WORK"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
ctrp() { ctr_private "$CD" "$@"; }

# timed CMD...: runs CMD (stdout+stderr to $WORK/out, stdin /dev/null), sets
# LAST_US to its wall time in microseconds; fails loudly if CMD fails.
LAST_US=0
timed() {
    local t0 t1
    t0=${EPOCHREALTIME/./}
    if ! "$@" >"$WORK/out" 2>&1 </dev/null; then
        echo "command failed: $*" >&2
        cat "$WORK/out" >&2
        return 1
    fi
    t1=${EPOCHREALTIME/./}
    LAST_US=$((t1 - t0))
}

# expect_out KIND TEXT: the last timed command printed TEXT. ctr (containerd
# 1.6) now and then loses all of a short-lived container's output, with runc
# as with this shim (seen at ~0.3-1% of runs on a busy machine), so a run
# that exited 0 without output is counted and tolerated; many such runs mean
# a broken runtime.
LOST_wasm=0
LOST_runc=0
expect_out() {
    local kind=$1 text=$2 var
    grep -qF -- "$text" "$WORK/out" && return 0
    var=LOST_$kind
    printf -v "$var" '%d' $((${!var} + 1))
    echo "    warning: a $kind run exited 0 without its output (${!var} so far)" >&2
    if [ "${!var}" -gt 3 ]; then
        echo "too many $kind runs without output; last output:" >&2
        cat "$WORK/out" >&2
        return 1
    fi
}

wasm_run() { ctrp run --rm --runtime "$RUNTIME" --platform wasi/wasm "$WASM_IMG" "$1"; }
runc_run() { ctrp run --rm --runc-root "$RUNC_ROOT" "$BB_IMG" "$1" /bin/busybox echo hello; }

task_pid() { # ID -> the PID column of `ctr tasks ls`
    ctrp tasks ls | awk -v id="$1" '$1 == id { print $2 }'
}

descendants() { # PID -> all its descendants' pids
    local k
    for k in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        echo "$k"
        descendants "$k"
    done
}

thread_switches() { # PID... -> "TASKDIR COUNT" per thread: voluntary+involuntary context switches
    local p
    for p in "$@"; do
        grep -H ctxt_switches: /proc/"$p"/task/*/status 2>/dev/null || true
    done | awk -F: '{ s[$1] += $3 } END { for (f in s) print f, s[f] }'
}

wakeups_per_s() { # BEFORE AFTER (thread_switches outputs) -> switches/s over IDLE_SECONDS
    # Per thread, so that threads ending in the window do not count negative;
    # threads born in it count from zero.
    awk -v secs="$IDLE_SECONDS" 'NR == FNR { a[$1] = $2; next } { s += ($1 in a) ? $2 - a[$1] : $2 }
        END { printf "%.1f\n", s / secs }' "$1" "$2"
}

remove_containers() { # ID...: kill, wait, delete
    local id i
    for id in "$@"; do ctrp tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in "$@"; do
        for i in $(seq 1 100); do
            ctrp tasks ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING" { f = 1 } END { exit !f }' || break
            sleep 0.05
        done
        ctrp tasks delete "$id" >/dev/null 2>&1 || ctrp tasks delete -f "$id" >/dev/null 2>&1 || true
        ctrp containers delete "$id" >/dev/null 2>&1 || true
    done
}

# Converts Rust Duration Debug output (12.3ms, 1.2s, 800µs) to ms.
duration_ms() {
    awk '{ v = $1; if (v ~ /µs$/) { sub(/µs$/, "", v); v /= 1000 } else if (v ~ /ns$/) { sub(/ns$/, "", v); v /= 1e6 }
           else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
           printf "%.1f\n", v }'
}

# ---------------------------------------------------------------- prerequisites
missing=()
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x /bin/busybox ]; then
    echo "/bin/busybox is missing (busybox-static)" >&2
    exit 1
fi

# ---------------------------------------------------------------- 1. build
TOOL=$CARGO_TARGET_DIR/release/wasm-oci
SHIM=$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1
if [ "$SKIP_BUILD" = 1 ] && [ -x "$SHIM" ] && [ -x "$TOOL" ]; then
    echo "==> reusing the built shim and image tool (SKIP_BUILD=1)"
else
    echo "==> building the shim and the image tool (release)"
    (cd "$ROOT" && cargo build --release --locked -p containerd-shim-wasmtime -p wasm-oci)
fi
mkdir -p "$WORK/bin" "$WORK/images" "$RUNC_ROOT"
cp "$SHIM" "$WORK/bin/"

echo "==> building fixtures and images"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >/dev/null
"$TOOL" build --module "$WORK/fixtures/hello.wasm" --name "$WASM_IMG" -o "$WORK/images/hello.tar" >/dev/null
"$TOOL" build --module "$WORK/fixtures/probe.wasm" --name "$PROBE_IMG" -o "$WORK/images/probe.tar" >/dev/null

# 2. A native image for runc: one layer holding a static /bin/busybox, written
# as an OCI image layout by hand (uncompressed layer, reproducible tar).
build_busybox_image() {
    local out=$1 lay=$WORK/busybox-oci rootfs=$WORK/busybox-rootfs arch
    arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
    mkdir -p "$rootfs/bin" "$lay/blobs/sha256"
    cp /bin/busybox "$rootfs/bin/busybox"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$WORK/layer.tar" bin
    blob() { # FILE -> moves it into the layout, prints "digest size"
        local d s
        d=$(sha256sum "$1" | cut -d' ' -f1)
        s=$(stat -c %s "$1")
        mv "$1" "$lay/blobs/sha256/$d"
        echo "$d $s"
    }
    local layer lsize config csize manifest msize
    read -r layer lsize < <(blob "$WORK/layer.tar")
    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/busybox","echo","hello"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$arch" "$layer" >"$WORK/config.json"
    read -r config csize < <(blob "$WORK/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
        "$config" "$csize" "$layer" "$lsize" >"$WORK/manifest.json"
    read -r manifest msize < <(blob "$WORK/manifest.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
        "$manifest" "$msize" "$arch" "$BB_IMG" >"$lay/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$lay" -cf "$out" oci-layout index.json blobs
}
build_busybox_image "$WORK/images/busybox.tar"

# ---------------------------------------------------------------- 3. containerd
echo "==> starting a private containerd in $CD"
containerd_up "$CD" "$WORK/bin"
CACHE=$CD/state/$RUNTIME/compile-cache
ctrp images import --platform wasi/wasm "$WORK/images/hello.tar" >/dev/null
ctrp images import --platform wasi/wasm "$WORK/images/probe.tar" >/dev/null
ctrp images import "$WORK/images/busybox.tar" >/dev/null

# Environment facts the figures depend on.
SHIM_VERSION=$("$WORK/bin/containerd-shim-wasmtime-v1" --version | awk '/Version:/ { print $2 }')
WASMTIME_VERSION=$("$WORK/bin/containerd-shim-wasmtime-v1" --version | awk '/Wasmtime:/ { print $2 }')
CONTAINERD_VERSION=$(containerd --version | awk '{ print $3 }')
RUNC_VERSION=$(runc --version | awk 'NR == 1 { print $3 }')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
HELLO_BYTES=$(stat -c %s "$WORK/fixtures/hello.wasm")

# ---------------------------------------------------------------- 4. start-up
echo "==> start-up: $COLD_RUNS cold Wasm runs"
: >"$WORK/cold.us"
for i in $(seq 1 "$COLD_RUNS"); do
    [ -d "$CACHE" ] && find "$CACHE" -mindepth 1 -delete
    timed wasm_run "$TAG-cold-$i"
    expect_out wasm "hello from wasm"
    echo "$LAST_US" >>"$WORK/cold.us"
    [ "$i" = 1 ] && WASM_FIRST_US=$LAST_US
done
if ! ls "$CACHE"/*.cwasm >/dev/null 2>&1; then
    echo "the shim left no compiled code in $CACHE: is the cache somewhere else?" >&2
    exit 1
fi
COMPILE_MS=$(grep -o 'compiled sha256:[0-9a-f]* ([0-9]* bytes) in [^ ]* ' "$CD/containerd.log" \
    | awk '{ print $NF }' | duration_ms | awk '{ print $1 * 1000 }' | stats | cut -d' ' -f1 || true)

echo "==> start-up: warm runc preflight, then $WARM_RUNS warm Wasm and $RUNC_RUNS runc runs, interleaved"
timed runc_run "$TAG-runc-preflight"
expect_out runc "hello"
RUNC_FIRST_US=$LAST_US
: >"$WORK/warm.us"
: >"$WORK/runc.us"
n=$((WARM_RUNS > RUNC_RUNS ? WARM_RUNS : RUNC_RUNS))
for i in $(seq 1 "$n"); do
    if [ "$i" -le "$WARM_RUNS" ]; then
        timed wasm_run "$TAG-warm-$i"
        expect_out wasm "hello from wasm"
        echo "$LAST_US" >>"$WORK/warm.us"
    fi
    if [ "$i" -le "$RUNC_RUNS" ]; then
        timed runc_run "$TAG-runc-$i"
        expect_out runc "hello"
        echo "$LAST_US" >>"$WORK/runc.us"
    fi
done
read -r COLD_MED COLD_P90 COLD_MIN COLD_MAX < <(stats <"$WORK/cold.us")
read -r WARM_MED WARM_P90 WARM_MIN WARM_MAX < <(stats <"$WORK/warm.us")
read -r RUNC_MED RUNC_P90 RUNC_MIN RUNC_MAX < <(stats <"$WORK/runc.us")
WARM_OVER_RUNC=$(ratio "$WARM_MED" "$RUNC_MED")
COLD_OVER_RUNC=$(ratio "$COLD_MED" "$RUNC_MED")

# ---------------------------------------------------------------- 5. throughput
cat >"$WORK/run1.sh" <<EOF
#!/usr/bin/env bash
# run1.sh wasm|runc ID: one \`ctr run --rm\`; a failure or a run without its
# output is recorded, not fatal.
case "\$1" in
    wasm) args=(--runtime $RUNTIME --platform wasi/wasm $WASM_IMG "\$2") ;;
    runc) args=(--runc-root $RUNC_ROOT $BB_IMG "\$2" /bin/busybox echo hello) ;;
esac
if out=\$(ctr --address $CD/containerd.sock --namespace wasm run --rm "\${args[@]}" </dev/null 2>>$WORK/throughput-\$1.err); then
    case "\$out" in *hello*) ;; *) echo "\$2" >>$WORK/throughput-\$1.lost ;; esac
else
    echo "\$2" >>$WORK/throughput-\$1.failed
fi
EOF
throughput() { # KIND -> prints "tasks/s failures seconds lost_outputs"
    local kind=$1 t0 t1
    : >"$WORK/throughput-$kind.failed"
    : >"$WORK/throughput-$kind.lost"
    t0=${EPOCHREALTIME/./}
    seq 1 "$THROUGHPUT_RUNS" | xargs -P "$THROUGHPUT_PARALLEL" -I{} bash "$WORK/run1.sh" "$kind" "$TAG-tp-$kind-{}"
    t1=${EPOCHREALTIME/./}
    awk -v n="$THROUGHPUT_RUNS" -v us=$((t1 - t0)) -v f="$(wc -l <"$WORK/throughput-$kind.failed")" -v l="$(wc -l <"$WORK/throughput-$kind.lost")" \
        'BEGIN { printf "%.1f %d %.1f %d\n", (n - f) / (us / 1e6), f, us / 1e6, l }'
}
echo "==> throughput: $THROUGHPUT_RUNS runs, $THROUGHPUT_PARALLEL at a time (Wasm warm, then runc)"
throughput wasm >"$WORK/tp-wasm.res"
throughput runc >"$WORK/tp-runc.res"
read -r WASM_TPS WASM_TP_FAILED WASM_TP_S WASM_TP_LOST <"$WORK/tp-wasm.res"
read -r RUNC_TPS RUNC_TP_FAILED RUNC_TP_S RUNC_TP_LOST <"$WORK/tp-runc.res"
[ -n "${WASM_TPS:-}" ] && [ -n "${RUNC_TPS:-}" ] || { echo "throughput measurement failed" >&2; exit 1; }
TPS_RATIO=$(ratio "$WASM_TPS" "$RUNC_TPS")

# ---------------------------------------------------------------- 6. one idle container
echo "==> one idle container: Wasm probe (sleep 3600) with a cold then a warm cache, then runc busybox (sleep 3600)"
idle_one() { # KIND ID -> prints "procs threads rss pss pss_anon pss_file rss_anon rss_file ticks wakeups_per_s shim_pid"
    local kind=$1 id=$2 pid shim pids c0 c1 w0 w1 threads=0 p
    if [ "$kind" = wasm ]; then
        ctrp run -d --runtime "$RUNTIME" --platform wasi/wasm "$PROBE_IMG" "$id" /probe.wasm sleep 3600 </dev/null >/dev/null
    else
        ctrp run -d --runc-root "$RUNC_ROOT" "$BB_IMG" "$id" /bin/busybox sleep 3600 </dev/null >/dev/null
    fi
    pid=$(task_pid "$id")
    [ -n "$pid" ] || { echo "no task pid for $id" >&2; return 1; }
    # `ctr tasks ls` shows the shim's pid for Wasm (guests run inside it) and
    # the container's init for runc, whose shim is its parent.
    if [ "$kind" = wasm ]; then shim=$pid; else shim=$(ps -o ppid= -p "$pid" | tr -d ' '); fi
    sleep 1
    pids=("$shim" $(descendants "$shim"))
    for p in "${pids[@]}"; do threads=$((threads + $(status_kib "$p" Threads))); done
    c0=$(cpu_ticks "${pids[@]}"); thread_switches "${pids[@]}" >"$WORK/sw0"
    sleep "$IDLE_SECONDS"
    c1=$(cpu_ticks "${pids[@]}"); thread_switches "${pids[@]}" >"$WORK/sw1"
    echo "${#pids[@]} $threads $(sum_kib VmRSS "${pids[@]}") $(sum_kib Pss "${pids[@]}") $(sum_kib Pss_Anon "${pids[@]}") $(sum_kib Pss_File "${pids[@]}") $(status_kib "$shim" RssAnon) $(status_kib "$shim" RssFile) $((c1 - c0)) $(wakeups_per_s "$WORK/sw0" "$WORK/sw1") $shim"
}
# First with an empty compile cache, so this shim compiles the module itself
# (what the first container of a new image costs), then the steady state: the
# module is in the cache and the shim only loads it.
find "$CACHE" -mindepth 1 -delete
idle_one wasm "$TAG-idle-wasm-cold" >"$WORK/idle-idle-wasm-cold.res"
read -r COLDSHIM_PROCS COLDSHIM_THREADS COLDSHIM_RSS COLDSHIM_PSS _ _ COLDSHIM_RSS_ANON COLDSHIM_RSS_FILE COLDSHIM_TICKS COLDSHIM_WAKEUPS COLDSHIM_PID \
    <"$WORK/idle-idle-wasm-cold.res"
[ -n "${COLDSHIM_PID:-}" ] || { echo "measuring the idle Wasm container (cold cache) failed" >&2; exit 1; }
remove_containers "$TAG-idle-wasm-cold"
idle_one wasm "$TAG-idle-wasm" >"$WORK/idle-idle-wasm.res"
read -r SHIM_PROCS SHIM_THREADS SHIM_RSS SHIM_PSS SHIM_PSS_ANON SHIM_PSS_FILE SHIM_RSS_ANON SHIM_RSS_FILE SHIM_TICKS SHIM_WAKEUPS SHIM_PID \
    <"$WORK/idle-idle-wasm.res"
[ -n "${SHIM_PID:-}" ] || { echo "measuring the idle Wasm container failed" >&2; exit 1; }
# Keep the biggest mappings of the shim for the report (what the memory is).
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6) } /^Rss:/ { rss[name] += $2 }
     END { for (n in rss) if (rss[n] > 0) printf "%8d kB  %s\n", rss[n], n }' "/proc/$SHIM_PID/smaps" \
    | sort -rn | head -n 8 >"$WORK/smaps-top.txt"
remove_containers "$TAG-idle-wasm"
idle_one runc "$TAG-idle-runc" >"$WORK/idle-idle-runc.res"
read -r RUNC1_PROCS RUNC1_THREADS RUNC1_RSS RUNC1_PSS _ _ _ _ RUNC1_TICKS RUNC1_WAKEUPS _ \
    <"$WORK/idle-idle-runc.res"
[ -n "${RUNC1_WAKEUPS:-}" ] || { echo "measuring the idle runc container failed" >&2; exit 1; }
remove_containers "$TAG-idle-runc"
CLK_TCK=$(getconf CLK_TCK)
cpu_pct() { awk -v t="$1" -v hz="$CLK_TCK" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.1f", 100 * t / hz / s }'; }

# ---------------------------------------------------------------- 7. N idle containers
idle_many() { # KIND -> prints "pss_per_container_kib rss_per_container_kib cpu_pct wakeups_per_s procs start_first10_ms start_last10_ms"
    local kind=$1 i id pid shims=() pids=() c0 c1 w0 w1 s
    : >"$WORK/many-$kind.us"
    for i in $(seq 1 "$IDLE_N"); do
        id="$TAG-many-$kind-$i"
        if [ "$kind" = wasm ]; then
            timed ctrp run -d --runtime "$RUNTIME" --platform wasi/wasm "$PROBE_IMG" "$id" /probe.wasm sleep 3600
        else
            timed ctrp run -d --runc-root "$RUNC_ROOT" "$BB_IMG" "$id" /bin/busybox sleep 3600
        fi
        echo "$LAST_US" >>"$WORK/many-$kind.us"
    done
    for i in $(seq 1 "$IDLE_N"); do
        pid=$(task_pid "$TAG-many-$kind-$i")
        if [ "$kind" = wasm ]; then shims+=("$pid"); else shims+=("$(ps -o ppid= -p "$pid" | tr -d ' ')"); fi
    done
    # Distinct shims and everything under them.
    mapfile -t shims < <(printf '%s\n' "${shims[@]}" | sort -un)
    for s in "${shims[@]}"; do pids+=("$s" $(descendants "$s")); done
    sleep 1
    c0=$(cpu_ticks "${pids[@]}"); thread_switches "${pids[@]}" >"$WORK/sw0"
    sleep "$IDLE_SECONDS"
    c1=$(cpu_ticks "${pids[@]}"); thread_switches "${pids[@]}" >"$WORK/sw1"
    echo "$(( $(sum_kib Pss "${pids[@]}") / IDLE_N )) $(( $(sum_kib VmRSS "${pids[@]}") / IDLE_N )) $(cpu_pct $((c1 - c0))) $(wakeups_per_s "$WORK/sw0" "$WORK/sw1") ${#pids[@]} $(head -n 10 "$WORK/many-$kind.us" | stats | cut -d' ' -f1) $(tail -n 10 "$WORK/many-$kind.us" | stats | cut -d' ' -f1)"
    local ids=()
    for i in $(seq 1 "$IDLE_N"); do ids+=("$TAG-many-$kind-$i"); done
    remove_containers "${ids[@]}"
}
if [ "$IDLE_N" -gt 0 ]; then
    echo "==> $IDLE_N idle containers: Wasm, then runc"
    idle_many wasm >"$WORK/many-wasm.res"
    idle_many runc >"$WORK/many-runc.res"
    read -r MANY_WASM_PSS MANY_WASM_RSS MANY_WASM_CPU MANY_WASM_WAKE MANY_WASM_PROCS MANY_WASM_FIRST MANY_WASM_LAST <"$WORK/many-wasm.res"
    read -r MANY_RUNC_PSS MANY_RUNC_RSS MANY_RUNC_CPU MANY_RUNC_WAKE MANY_RUNC_PROCS MANY_RUNC_FIRST MANY_RUNC_LAST <"$WORK/many-runc.res"
    [ -n "${MANY_WASM_LAST:-}" ] && [ -n "${MANY_RUNC_LAST:-}" ] || { echo "measuring $IDLE_N idle containers failed" >&2; exit 1; }
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
GOAL_WARM=$(awk -v w="$WARM_MED" -v r="$RUNC_MED" 'BEGIN { print (w <= r) ? 1 : 0 }')
GOAL_MEM=$([ "$SHIM_RSS" -le "$GOAL_MEM_KIB" ] && echo 1 || echo 0)

cat <<REPORT

containerd-shim-wasmtime-v1 start-up benchmark
==============================================
shim $SHIM_VERSION (Wasmtime $WASMTIME_VERSION), containerd $CONTAINERD_VERSION, runc $RUNC_VERSION,
kernel $(uname -r), $(nproc) CPUs; load average before $LOAD_BEFORE, after $LOAD_AFTER
Wasm: hello.wasm ($HELLO_BYTES bytes, WASI p1); native: static busybox echo hello (runc, overlay snapshot)

ctr run --rm, wall time (ms)         runs   median      p90      min      max
REPORT
printf '  %-33s %4s %8s %8s %8s %8s\n' \
    "Wasm cold (empty compile cache)" "$COLD_RUNS" "$COLD_MED" "$COLD_P90" "$COLD_MIN" "$COLD_MAX" \
    "Wasm warm (cache populated)" "$WARM_RUNS" "$WARM_MED" "$WARM_P90" "$WARM_MIN" "$WARM_MAX" \
    "runc busybox" "$RUNC_RUNS" "$RUNC_MED" "$RUNC_P90" "$RUNC_MIN" "$RUNC_MAX"
cat <<REPORT
  very first Wasm run: $(awk -v u="$WASM_FIRST_US" 'BEGIN { printf "%.1f", u / 1000 }') ms; first runc run: $(awk -v u="$RUNC_FIRST_US" 'BEGIN { printf "%.1f", u / 1000 }') ms
  compile step (shim log, median of the cold runs): $COMPILE_MS ms
  warm/runc = $WARM_OVER_RUNC    cold/runc = $COLD_OVER_RUNC

throughput, $THROUGHPUT_RUNS runs of ctr run --rm, $THROUGHPUT_PARALLEL at a time
  Wasm (warm)   $WASM_TPS tasks/s  (${WASM_TP_S} s, $WASM_TP_FAILED failed, $WASM_TP_LOST exited 0 without output)
  runc busybox  $RUNC_TPS tasks/s  (${RUNC_TP_S} s, $RUNC_TP_FAILED failed, $RUNC_TP_LOST exited 0 without output)
  Wasm/runc = $TPS_RATIO

one idle long-running container (measured 1 s after start; CPU over ${IDLE_SECONDS} s)
                         procs  threads   RSS MiB   PSS MiB   CPU %core   wakeups/s
REPORT
printf '  %-22s %5s %8s %9s %9s %11s %11s\n' \
    "Wasm (probe sleep)" "$SHIM_PROCS" "$SHIM_THREADS" "$(mib "$SHIM_RSS")" "$(mib "$SHIM_PSS")" "$(cpu_pct "$SHIM_TICKS")" "$SHIM_WAKEUPS" \
    "Wasm, shim compiled it" "$COLDSHIM_PROCS" "$COLDSHIM_THREADS" "$(mib "$COLDSHIM_RSS")" "$(mib "$COLDSHIM_PSS")" "$(cpu_pct "$COLDSHIM_TICKS")" "$COLDSHIM_WAKEUPS" \
    "runc (busybox sleep)" "$RUNC1_PROCS" "$RUNC1_THREADS" "$(mib "$RUNC1_RSS")" "$(mib "$RUNC1_PSS")" "$(cpu_pct "$RUNC1_TICKS")" "$RUNC1_WAKEUPS"
cat <<REPORT
  Wasm shim (module loaded from the cache): RssAnon $SHIM_RSS_ANON kB, RssFile $SHIM_RSS_FILE kB, Pss_Anon $SHIM_PSS_ANON kB, Pss_File $SHIM_PSS_FILE kB
  Wasm shim that compiled the module itself: RssAnon $COLDSHIM_RSS_ANON kB, RssFile $COLDSHIM_RSS_FILE kB
  Wasm shim's largest mappings by RSS:
$(sed 's/^/    /' "$WORK/smaps-top.txt")
REPORT
if [ "$IDLE_N" -gt 0 ]; then
    cat <<REPORT

$IDLE_N idle containers            PSS/container  RSS/container  idle CPU %core  wakeups/s  procs  start -d ms (first 10 / last 10)
REPORT
    printf '  %-28s %10s MiB %10s MiB %14s %10s %6s   %s / %s\n' \
        "Wasm (probe sleep)" "$(mib "$MANY_WASM_PSS")" "$(mib "$MANY_WASM_RSS")" "$MANY_WASM_CPU" "$MANY_WASM_WAKE" "$MANY_WASM_PROCS" "$MANY_WASM_FIRST" "$MANY_WASM_LAST" \
        "runc (busybox sleep)" "$(mib "$MANY_RUNC_PSS")" "$(mib "$MANY_RUNC_RSS")" "$MANY_RUNC_CPU" "$MANY_RUNC_WAKE" "$MANY_RUNC_PROCS" "$MANY_RUNC_FIRST" "$MANY_RUNC_LAST"
fi
cat <<REPORT

goals
  warm start no slower than runc:       $(verdict "$GOAL_WARM")  ($WARM_MED ms vs $RUNC_MED ms, ratio $WARM_OVER_RUNC)
  <= 10 MiB shim memory, one container: $(verdict "$GOAL_MEM")  (RSS $(mib "$SHIM_RSS") MiB, PSS $(mib "$SHIM_PSS") MiB)

REPORT
echo "summary:"
summary=(
    "wasm_first_ms=$(awk -v u="$WASM_FIRST_US" 'BEGIN { printf "%.1f", u / 1000 }')"
    "wasm_cold_ms=$COLD_MED" "wasm_cold_p90_ms=$COLD_P90"
    "wasm_warm_ms=$WARM_MED" "wasm_warm_p90_ms=$WARM_P90"
    "runc_ms=$RUNC_MED" "runc_p90_ms=$RUNC_P90"
    "warm_over_runc=$WARM_OVER_RUNC" "cold_over_runc=$COLD_OVER_RUNC" "compile_ms=$COMPILE_MS"
    "wasm_tasks_per_s=$WASM_TPS" "runc_tasks_per_s=$RUNC_TPS" "wasm_tp_failed=$WASM_TP_FAILED" "runc_tp_failed=$RUNC_TP_FAILED"
    "wasm_lost_output=$((LOST_wasm + WASM_TP_LOST))" "runc_lost_output=$((LOST_runc + RUNC_TP_LOST))"
    "shim_procs=$SHIM_PROCS" "shim_threads=$SHIM_THREADS" "shim_rss_kib=$SHIM_RSS" "shim_pss_kib=$SHIM_PSS"
    "shim_idle_cpu_ticks=$SHIM_TICKS" "shim_idle_wakeups_per_s=$SHIM_WAKEUPS"
    "shim_compiled_rss_kib=$COLDSHIM_RSS" "shim_compiled_pss_kib=$COLDSHIM_PSS"
    "runc_idle_procs=$RUNC1_PROCS" "runc_idle_rss_kib=$RUNC1_RSS" "runc_idle_pss_kib=$RUNC1_PSS"
)
if [ "$IDLE_N" -gt 0 ]; then
    summary+=(
        "idle_n=$IDLE_N" "wasm_pss_per_container_kib=$MANY_WASM_PSS" "wasm_idle_cpu_pct=$MANY_WASM_CPU"
        "runc_pss_per_container_kib=$MANY_RUNC_PSS" "runc_idle_cpu_pct=$MANY_RUNC_CPU"
    )
fi
summary+=("goal_warm_le_runc=$(verdict "$GOAL_WARM")" "goal_shim_mem_le_10mib=$(verdict "$GOAL_MEM")")
printf '%s\n' "${summary[@]}"
