#!/usr/bin/env bash
# Where a POST /api/messages through the Wasm gateway spends its CPU: perf
# samples (cpu-clock, call graphs) of the gateway's shim, the message
# service's shim and MariaDB while wrk posts through the gateway.
#
#   KEEP_STACK=1 bash bench/chat/run.sh …    (leaves the bench's stack up)
#   bash bench/chat/profile.sh [OUTDIR]      (default /tmp/bench-chat-profile)
#
# Prints the share of samples per process and per binary/library (kernel,
# the shim's Wasmtime runtime, the services' compiled Wasm code, mariadbd,
# libc), then the hottest symbols of each process; keeps perf.data in
# OUTDIR. PROFILE_SECONDS (10) of sampling at PROFILE_FREQ (499) Hz, CONNS
# (100) connections; the load runs 2 s longer on each side. Needs perf
# (Debian linux-perf) and the stack of bench/chat/run.sh (same CHAT_DIR and
# port offset).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/chat"
OUTDIR=${1:-/tmp/bench-chat-profile}
SECONDS_=${PROFILE_SECONDS:-10}
FREQ=${PROFILE_FREQ:-499}
CONNS=${CONNS:-100}
DURATION=$((SECONDS_ + 4))
export CHAT_DIR=${BENCH_CHAT_DIR:-/var/tmp/containerd-shim-wasmtime/chat-bench}
export CHAT_NAMESPACE=chat-bench CHAT_PORT_OFFSET=${BENCH_PORT_OFFSET:-30000}
. "$ROOT/deploy/local/lib.sh"
. "$HERE/lib.sh"

command -v perf >/dev/null || { echo "error: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
chat_containerd_alive || { echo "error: no bench stack in $CHAT_DIR (KEEP_STACK=1 bash bench/chat/run.sh)" >&2; exit 1; }
mkdir -p "$OUTDIR"

gw=$(task_process gateway)
msg=$(task_process message)
db=$(task_process mariadb)
reset_db
session=$(new_session)
chat=$(new_chat "$session")

echo "==> posting through the gateway ($CONNS connections, $DURATION s); perf on gateway shim $gw, message shim $msg, mariadbd $db" >&2
wrk_run conc POST "$CHAT_URL" "$session" "$chat" "$OUTDIR/wrk.json" &
load_pid=$!
sleep 2
perf record -q -F "$FREQ" -g -e cpu-clock -p "$gw,$msg,$db" -o "$OUTDIR/perf.data" -- sleep "$SECONDS_" 2>"$OUTDIR/perf-record.log"
wait "$load_pid"
requests=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["requests"])' "$OUTDIR/wrk.json")

report() { perf report -i "$OUTDIR/perf.data" --stdio --no-children -g none --percent-limit "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'; }
{
    echo "requests during the load: $requests ($((requests / DURATION)) req/s); processes: gateway shim $gw, message shim $msg, mariadbd $db"
    echo
    echo "== samples per process (thread names: wasm-<container> for a guest's threads)"
    report 0.5 --sort comm
    echo
    echo "== samples per process and binary (*.cwasm: a service's compiled Wasm code)"
    report 0.5 --sort comm,dso
    for c in wasm-gateway wasm-message mariadbd; do
        echo
        echo "== hottest symbols of $c"
        report 0.5 --comms "$c" --sort dso,sym | cut -c1-220 | head -n 25
    done
} | tee "$OUTDIR/profile.txt"
