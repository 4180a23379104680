#!/usr/bin/env bash
# Throughput and latency of a wasi:http hello component served by the shim,
# next to `wasmtime serve` (the Wasmtime CLI at the shim's Wasmtime version)
# serving the same component, and a native hyper hello server doing the same
# work (the ceiling), on this machine in the same run.
#
#   bench/http.sh [SECONDS]     (default 10 s per measurement)
#
# ROUNDS (default 3): measurements per server and connection count, the
# servers taking turns, so that a slow spell of the machine hits all; the
# summary gives the median of each. SKIP_BUILD=1 reuses the release binaries.
# SERVE=0 leaves out `wasmtime serve`. PROFILE=1 adds a perf profile of the
# shim at 50 connections (see the end).
# (wasmtime-cli is built once from crates.io, pinned, into
# /var/tmp/containerd-shim-wasmtime/tools).
#
# Builds the shim, the fixtures (http-hello.wasm) and bench/native-hello;
# starts a private containerd (tests/lib/containerd.sh) with the shim on its
# PATH; runs the component with `ctr run -d --net-host`; measures both servers
# with wrk at 1 and 50 connections; prints req/s, p50 and p99, the ratios
# shim/native and shim/serve, and whether the shim reaches `wasmtime serve`'s
# req/s with a p99 no worse. Traffic goes only to 127.0.0.1. Needs root,
# containerd and wrk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
SERVE=${SERVE:-1}
# The Wasmtime the shim links (shim/Cargo.toml), so the peer runs the same engine.
WASMTIME_CLI_VERSION=48.0.8
WASMTIME_CLI_DIR=/var/tmp/containerd-shim-wasmtime/tools/wasmtime-cli-$WASMTIME_CLI_VERSION

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/wasmtime-shim-bench.XXXXXX)
NATIVE_PID=
SERVE_PID=
cleanup() {
    [ -n "$NATIVE_PID" ] && kill "$NATIVE_PID" 2>/dev/null || true
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
    containerd_down "$WORK/containerd" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # PORT: waits (bounded) until / answers 200
    local i
    for i in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    return 1
}

if [ "${SKIP_BUILD:-0}" = 1 ]; then
    echo "==> reusing the built shim, wasm-oci and native-hello (SKIP_BUILD=1); building the fixtures" >&2
else
    echo "==> building the workspace (shim, wasm-oci, native-hello) and the fixtures" >&2
    # The whole workspace, as tests/run.sh builds it: one feature set, so the
    # dependencies it compiled are reused.
    cargo build --release --locked --workspace >&2
fi
mkdir -p "$WORK/bin"
cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$WORK/bin/"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >&2
if [ "$SERVE" = 1 ] && [ ! -x "$WASMTIME_CLI_DIR/bin/wasmtime" ]; then
    echo "==> building wasmtime-cli $WASMTIME_CLI_VERSION (serve) into $WASMTIME_CLI_DIR" >&2
    cargo install --locked wasmtime-cli --version "$WASMTIME_CLI_VERSION" --no-default-features \
        --features serve,run,component-model-async,cranelift,pooling-allocator,parallel-compilation,wat --root "$WASMTIME_CLI_DIR" >&2
fi
"$CARGO_TARGET_DIR/release/wasm-oci" build --module "$WORK/fixtures/http-hello.wasm" \
    --name localhost/bench/http-hello:latest -o "$WORK/http-hello.tar" >/dev/null

echo "==> starting a private containerd and the servers" >&2
containerd_up "$WORK/containerd" "$WORK/bin"
ctr_private "$WORK/containerd" images import --platform wasi/wasm "$WORK/http-hello.tar" >/dev/null
SHIM_PORT=$(free_port)
ctr_private "$WORK/containerd" run -d --runtime io.containerd.wasmtime.v1 --platform wasi/wasm \
    --net-host --env "WASI_HTTP_PORT=$SHIM_PORT" localhost/bench/http-hello:latest bench-http >/dev/null
wait_http "$SHIM_PORT"
NATIVE_PORT=$(free_port)
"$CARGO_TARGET_DIR/release/native-hello" "$NATIVE_PORT" 2>/dev/null &
NATIVE_PID=$!
wait_http "$NATIVE_PORT"
SERVERS=(shim native)
declare -A PORT=([shim]=$SHIM_PORT [native]=$NATIVE_PORT)
if [ "$SERVE" = 1 ]; then
    SERVE_PORT=$(free_port)
    # -Scli: the component's wasi:cli imports (environment, stdio), as the shim grants.
    "$WASMTIME_CLI_DIR/bin/wasmtime" serve -Scli --addr "127.0.0.1:$SERVE_PORT" "$WORK/fixtures/http-hello.wasm" >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    wait_http "$SERVE_PORT" || { cat "$WORK/serve.log" >&2; exit 1; }
    SERVERS=(shim serve native)
    PORT[serve]=$SERVE_PORT
fi

# wrk's latency lines ("50%  123.45us") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

measure() { # PORT CONNECTIONS -> "req/s p50_ms p99_ms"
    local port=$1 conns=$2 threads=1 out
    [ "$conns" -gt 1 ] && threads=2
    out=$(wrk -t "$threads" -c "$conns" -d "${DURATION}s" --latency "http://127.0.0.1:$port/")
    if echo "$out" | grep -q "Non-2xx"; then
        echo "non-2xx responses from port $port:" >&2
        echo "$out" >&2
        return 1
    fi
    local rps p50 p99
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
    p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
    p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    echo "$rps $p50 $p99"
}

echo "==> warming up (pool slots, caches)" >&2
for server in "${SERVERS[@]}"; do wrk -t 2 -c 50 -d 2s "http://127.0.0.1:${PORT[$server]}/" >/dev/null; done

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "==> wrk, ${DURATION} s per measurement, $ROUNDS rounds; load average now: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A results
for conns in 1 50; do
    for round in $(seq 1 "$ROUNDS"); do
        line="    $conns conns, round $round (req/s p50 p99):"
        for server in "${SERVERS[@]}"; do
            # Assignment first, so that a failed measurement stops the script (set -e).
            m=$(measure "${PORT[$server]}" "$conns")
            results[$server,$conns]+="$m"$'\n'
            line+=" $server $m;"
        done
        echo "$line" >&2
    done
done

col() { printf '%s' "${results[$1,$2]}" | awk -v c="$3" 'NF { print $c }' | median; } # SERVER CONNS COLUMN
printf '\n%-12s %6s %10s %9s %9s\n' server conns "req/s" "p50 ms" "p99 ms"
for conns in 1 50; do
    for server in "${SERVERS[@]}"; do
        printf '%-12s %6s %10s %9s %9s\n' "$server" "$conns" "$(col "$server" "$conns" 1)" "$(col "$server" "$conns" 2)" "$(col "$server" "$conns" 3)"
    done
    for peer in "${SERVERS[@]:1}"; do
        awk -v s="$(col shim "$conns" 1)" -v n="$(col "$peer" "$conns" 1)" -v c="$conns" -v p="shim/$peer" 'BEGIN { printf "%-12s %6s %9.1f%%\n", p, c, 100 * s / n }'
    done
done
echo
ratio50=$(awk -v s="$(col shim 50 1)" -v n="$(col native 50 1)" 'BEGIN { printf "%.1f", 100 * s / n }')
awk -v r="$ratio50" 'BEGIN { printf "goal_50_conns_ge_30pct_of_native %s (%s%%)\n", (r >= 30 ? "PASS" : "FAIL"), r }'
if [ "$SERVE" = 1 ]; then
    for conns in 1 50; do
        awk -v s="$(col shim "$conns" 1)" -v w="$(col serve "$conns" 1)" -v sp="$(col shim "$conns" 3)" -v wp="$(col serve "$conns" 3)" -v c="$conns" \
            'BEGIN { printf "goal_%s_conns_ge_wasmtime_serve %s (req/s %.1f%% of serve, p99 %s vs %s ms)\n", c, (s >= w && sp <= wp ? "PASS" : "FAIL"), 100 * s / w, sp, wp }'
    done
fi

# PROFILE=1: where the shim's CPU goes at 50 connections — perf samples
# (cpu-clock, call graphs) of the shim process for PROFILE_SECONDS (10) while
# wrk loads it, shares by binary (kernel, the shim with Wasmtime and its WASI
# host, the component's compiled code mapped from the compile cache, libc)
# and the hottest symbols; perf.data and profile.txt in PROFILE_DIR.
if [ "${PROFILE:-0}" = 1 ]; then
    command -v perf >/dev/null || { echo "PROFILE=1: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
    PROFILE_DIR=${PROFILE_DIR:-/tmp/bench-http-profile}
    PROFILE_SECONDS=${PROFILE_SECONDS:-10}
    mkdir -p "$PROFILE_DIR"
    shim_pid=$(ctr_private "$WORK/containerd" tasks ls | awk '$1 == "bench-http" { print $2 }')
    [ -n "$shim_pid" ] || { echo "PROFILE=1: no task bench-http" >&2; exit 1; }
    echo "==> profiling the shim (pid $shim_pid) at 50 connections for $PROFILE_SECONDS s" >&2
    wrk -t 2 -c 50 -d "$((PROFILE_SECONDS + 4))s" "http://127.0.0.1:$SHIM_PORT/" >"$PROFILE_DIR/wrk.txt" &
    load_pid=$!
    sleep 2
    perf record -q -F 499 -g -e cpu-clock -p "$shim_pid" -o "$PROFILE_DIR/perf.data" -- sleep "$PROFILE_SECONDS" 2>"$PROFILE_DIR/perf-record.log"
    wait "$load_pid"
    report() { perf report -i "$PROFILE_DIR/perf.data" --stdio --no-children -g none --percent-limit "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' || true; }
    {
        echo "load: $(awk '/^Requests\/sec:/ {print $2}' "$PROFILE_DIR/wrk.txt") req/s over $((PROFILE_SECONDS + 4)) s; samples of the shim, pid $shim_pid"
        echo
        echo "== samples per thread"
        report 1 --sort comm
        echo
        echo "== samples per binary (*.cwasm: the component's compiled code)"
        report 0.5 --sort dso
        echo
        echo "== hottest symbols"
        report 0.7 --sort dso,sym | cut -c1-200 | head -n 40
    } | tee "$PROFILE_DIR/profile.txt"
fi
