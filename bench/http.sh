#!/usr/bin/env bash
# Throughput and latency of a wasi:http hello component served by the shim,
# next to a native hyper hello server doing the same work, on this machine in
# the same run.
#
#   bench/http.sh [SECONDS]     (default 10 s per measurement)
#
# ROUNDS (default 3): measurements per server and connection count, shim and
# native taking turns, so that a slow spell of the machine hits both; the
# summary gives the median of each.
#
# Builds the shim, the fixtures (http-hello.wasm) and bench/native-hello;
# starts a private containerd (tests/lib/containerd.sh) with the shim on its
# PATH; runs the component with `ctr run -d --net-host`; measures both servers
# with wrk at 1 and 50 connections; prints req/s, p50 and p99 and the ratio
# shim/native. Traffic goes only to 127.0.0.1. Needs root, containerd and wrk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/images.sh"

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/wasmtime-shim-bench.XXXXXX)
NATIVE_PID=
cleanup() {
    [ -n "$NATIVE_PID" ] && kill "$NATIVE_PID" 2>/dev/null || true
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

echo "==> building the shim, wasm-oci, native-hello and the fixtures" >&2
cargo build --release --locked -p containerd-shim-wasmtime -p wasm-oci -p native-hello >&2
mkdir -p "$WORK/bin"
cp "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$WORK/bin/"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >&2
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
wrk -t 2 -c 50 -d 2s "http://127.0.0.1:$SHIM_PORT/" >/dev/null
wrk -t 2 -c 50 -d 2s "http://127.0.0.1:$NATIVE_PORT/" >/dev/null

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "==> wrk, ${DURATION} s per measurement, $ROUNDS rounds; load average now: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A results
for conns in 1 50; do
    for round in $(seq 1 "$ROUNDS"); do
        # Assignments first, so that a failed measurement stops the script (set -e).
        shim=$(measure "$SHIM_PORT" "$conns")
        native=$(measure "$NATIVE_PORT" "$conns")
        echo "    $conns conns, round $round: shim $shim, native $native (req/s p50 p99)" >&2
        results[shim,$conns]+="$shim"$'\n'
        results[native,$conns]+="$native"$'\n'
    done
done

printf '\n%-12s %6s %10s %9s %9s\n' server conns "req/s" "p50 ms" "p99 ms"
for conns in 1 50; do
    for server in shim native; do
        col() { printf '%s' "${results[$server,$conns]}" | awk -v c="$1" 'NF { print $c }' | median; }
        printf '%-12s %6s %10s %9s %9s\n' "$server" "$conns" "$(col 1)" "$(col 2)" "$(col 3)"
        [ "$server" = shim ] && s_rps=$(col 1) || n_rps=$(col 1)
    done
    awk -v s="$s_rps" -v n="$n_rps" -v c="$conns" 'BEGIN { printf "%-12s %6s %9.1f%%\n", "shim/native", c, 100 * s / n }'
    [ "$conns" = 50 ] && ratio50=$(awk -v s="$s_rps" -v n="$n_rps" 'BEGIN { printf "%.1f", 100 * s / n }')
done
echo
awk -v r="$ratio50" 'BEGIN { printf "goal_50_conns_ge_30pct_of_native %s (%s%%)\n", (r >= 30 ? "PASS" : "FAIL"), r }'
