#!/usr/bin/env bash
# The chat app's original evaluation, POST /api/messages and a read, against
#   gateway      the Wasm stack through its Wasm gateway (gateway -> message)
#   message      the Wasm message service directly
#   node         bench/chat/node: Node.js 20 + Express 4 + mysql2, the same
#                routes, queries and pool size, answering after the commit
#   node-early   the same Node service answering before its INSERT runs, as
#                the prototype did: NOT durable, shown for reference only
# all against one MariaDB (the stack's, under runc) on this machine:
#
#   bench/chat/run.sh [OUTDIR]      (default /tmp/bench-chat-<UTC time>)
#
# Scenarios, each run against every system in turn, ROUNDS times (the order
# of the systems rotates every round, so a slow spell of the machine does not
# always hit the same one), the database emptied (truncator) before each run:
#   seq    SEQ_COUNT (10000) POSTs one after the other (wrk -t1 -c1, an
#          exact count)
#   conc   CONNS (100) concurrent clients posting for DURATION (10) s
#   read   GET /api/messages?chat_id=N on a chat holding READ_MESSAGES (1000)
#          messages, CONNS clients for DURATION s (an answer is the latest
#          500 of them: the service's list limit); not node-early, whose
#          GET is node's
# SCENARIOS (default "seq conc read") picks some of them.
# Per run: req/s, latency p50/p90/p99/max (wrk), CPU seconds and peak RSS
# (VmHWM, reset before the run) of the server processes (the shims serving
# the gateway and message containers, node) and of MariaDB, and for POSTs
# the rows stored when the load stopped and a little later. The report
# (medians over rounds, ratios Wasm/Node, plots) is written by report.py to
# OUTDIR/results.md and OUTDIR/*.png and printed.
#
# The stack is deploy/local/up.sh with its own directory, namespace and
# ports (+30000: gateway 33000, message 38083, MariaDB 33306; Node on 38093
# and 38094), torn down (volumes deleted) on exit unless KEEP_STACK=1.
# SKIP_BUILD=1 reuses the images built by an earlier run. Traffic goes only
# to 127.0.0.1; every load is bounded in time (and count).
# Needs root, what deploy/local/up.sh needs, wrk, node >= 20 and npm.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/chat"
OUTDIR=${1:-/tmp/bench-chat-$(date -u +%Y%m%dT%H%M%SZ)}
ROUNDS=${ROUNDS:-3}
SEQ_COUNT=${SEQ_COUNT:-10000}
CONNS=${CONNS:-100}
DURATION=${DURATION:-10}
READ_MESSAGES=${READ_MESSAGES:-1000}
SCENARIOS=${SCENARIOS:-seq conc read}
NODE_PORT=${NODE_PORT:-38093}
NODE_EARLY_PORT=${NODE_EARLY_PORT:-38094}
VENV=${BENCH_VENV:-/var/tmp/containerd-shim-wasmtime/bench-venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}

# The bench's own stack, apart from a developer's (offset 0) and the chat
# tests' (20000, 21000).
export CHAT_DIR=${BENCH_CHAT_DIR:-/var/tmp/containerd-shim-wasmtime/chat-bench}
export CHAT_NAMESPACE=chat-bench CHAT_PORT_OFFSET=${BENCH_PORT_OFFSET:-30000}
export CHAT_TRUNCATOR_ENABLED=true CHAT_LOG_LEVEL=info
export CHAT_CNI_BRIDGE=chat-bench0 CHAT_CNI_SUBNET=10.217.0.0/24
unset CHAT_GATEWAY_PORT CHAT_SESSION_PORT CHAT_CHAT_PORT CHAT_MESSAGE_PORT CHAT_USER_PORT \
    CHAT_TRUNCATOR_PORT CHAT_MYSQL_PORT CHAT_REDIS_PORT CHAT_REGISTRY CHAT_SKIP_BUILD
rm -f "$CHAT_DIR/stack.env"
. "$ROOT/deploy/local/lib.sh"
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || { echo "error: $0 needs root" >&2; exit 1; }
for tool in wrk node npm curl python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done

SYSTEMS=(gateway message node node-early)
declare -A SYS_URL SYS_PIDS
NODE_PIDS=()
RUNS="$OUTDIR/runs"

log() { echo "==> $*" >&2; }

cleanup() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_STACK:-0}" != 1 ]; then
        bash "$ROOT/deploy/local/down.sh" --volumes >"$OUTDIR/down.log" 2>&1 || tail -n 20 "$OUTDIR/down.log" >&2
    fi
}

start_stack() {
    local skip=0
    [ "${SKIP_BUILD:-0}" != 1 ] || skip=1
    log "starting the chat stack (deploy/local/up.sh, log: $OUTDIR/up.log)"
    # A clean database for every bench.
    bash "$ROOT/deploy/local/down.sh" --volumes >/dev/null 2>&1 || true
    if ! CHAT_SKIP_BUILD=$skip bash "$ROOT/deploy/local/up.sh" >"$OUTDIR/up.log" 2>&1; then
        tail -n 40 "$OUTDIR/up.log" >&2
        return 1
    fi
}

# Starts the Node service; ACK_BEFORE_COMMIT=$2. Waits (bounded) until it
# answers (401 without a session).
start_node() { # PORT EARLY
    local port=$1 early=$2 i
    if chat_port_busy "$port"; then
        echo "error: port $port is in use" >&2
        return 1
    fi
    (cd "$HERE/node" && exec env DATABASE_URL="mysql://chat:$(chat_db_password)@127.0.0.1:$CHAT_MYSQL_PORT/chat" \
        LISTEN_ADDR=127.0.0.1 LISTEN_PORT="$port" ACK_BEFORE_COMMIT="$early" \
        node server.js) >"$OUTDIR/node-$port.log" 2>&1 &
    NODE_PIDS+=("$!")
    for i in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/messages")" != 401 ] || return 0
        sleep 0.1
    done
    echo "error: the Node service on $port did not start:" >&2
    tail -n 20 "$OUTDIR/node-$port.log" >&2
    return 1
}

# The MariaDB container's processes (its init and any children).
db_processes() {
    local init
    init=$(task_process mariadb)
    ps -e -o pid=,ppid= | awk -v root="$init" '
        { parent[$1] = $2 } END {
            for (p in parent) { q = p; while (q != "" && q != root && q in parent && q != 1) q = parent[q]
                if (q == root) print p } }'
}

# One measurement; appends one JSON line to $OUTDIR/runs.jsonl.
measure() { # ROUND SCENARIO SYSTEM
    local round=$1 scenario=$2 sys=$3 url=${SYS_URL[$3]} session chat out n
    local -a pids db_pids
    read -r -a pids <<<"${SYS_PIDS[$sys]}"
    mapfile -t db_pids < <(db_processes)
    out="$RUNS/r$round-$scenario-$sys.json"
    reset_db
    session=$(new_session)
    chat=$(new_chat "$session")
    if [ "$scenario" = read ]; then
        wrk_run seq POST "${SYS_URL[message]}" "$session" "$chat" "$RUNS/fill.json" "$READ_MESSAGES"
        n=$(stored_rows "$chat")
        [ "$n" = "$READ_MESSAGES" ] || { echo "error: the read chat holds $n messages, not $READ_MESSAGES" >&2; return 1; }
    fi
    reset_peak_rss "${pids[@]}" "${db_pids[@]}"
    local load cpu0 db0 cpu1 db1 rss db_rss rows_end=null rows_settled=null acked
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(cpu_ticks "${pids[@]}")
    db0=$(cpu_ticks "${db_pids[@]}")
    case $scenario in
        seq) wrk_run seq POST "$url" "$session" "$chat" "$out" "$SEQ_COUNT" ;;
        conc) wrk_run conc POST "$url" "$session" "$chat" "$out" ;;
        read) wrk_run conc GET "$url" "$session" "$chat" "$out" ;;
    esac
    cpu1=$(cpu_ticks "${pids[@]}")
    db1=$(cpu_ticks "${db_pids[@]}")
    rss=$(peak_rss_kib "${pids[@]}")
    db_rss=$(peak_rss_kib "${db_pids[@]}")
    if [ "$scenario" != read ]; then
        # Every acknowledged POST must be stored; answers in flight when wrk
        # stopped may add a few rows more.
        acked=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["requests"] - s["errors"]["status"])' "$out")
        rows_end=$(stored_rows "$chat")
        rows_settled=$(settle_rows "$chat" "$acked")
    fi
    printf '{"round":%d,"scenario":"%s","system":"%s","loadavg":%s,"cpu_s":%s,"rss_kib":%d,"db_cpu_s":%s,"db_rss_kib":%d,"rows_at_end":%s,"rows_settled":%s,"wrk":%s}\n' \
        "$round" "$scenario" "$sys" "$load" "$(ticks_to_s $((cpu1 - cpu0)))" "$rss" \
        "$(ticks_to_s $((db1 - db0)))" "$db_rss" "$rows_end" "$rows_settled" "$(cat "$out")" >>"$OUTDIR/runs.jsonl"
    python3 "$HERE/report.py" --line "$OUTDIR/runs.jsonl" >&2
}

warm_up() {
    local sys session chat
    log "warming up every system (2 s of posting at $CONNS connections each)"
    for sys in "${SYSTEMS[@]}"; do
        reset_db
        session=$(new_session)
        chat=$(new_chat "$session")
        BENCH_METHOD=POST BENCH_SESSION=$session BENCH_CHAT=$chat BENCH_OUT="$RUNS/warmup-$sys.json" \
            timeout 60 wrk -t2 -c "$CONNS" -d 2s --timeout 10s -s "$HERE/wrk.lua" "${SYS_URL[$sys]}" >/dev/null
        [ "$sys" != node-early ] || settle_rows "$chat" 1 >/dev/null
    done
}

# The answer of each system to a POST for a chat that does not exist: 404
# when the service waits for its INSERT (the foreign key refuses it), 201
# from the mode that answers first. Written to $OUTDIR/unknown-chat.txt.
unknown_chat_check() {
    local sys session code
    reset_db
    session=$(new_session)
    for sys in "${SYSTEMS[@]}"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H "Session-Id: $session" \
            -H 'Content-Type: application/json' --data '{"chat_id":999999,"text":"to nowhere"}' "${SYS_URL[$sys]}/api/messages")
        echo "$sys $code"
    done >"$OUTDIR/unknown-chat.txt"
    sleep 1
    echo "stored $(sql 'SELECT COUNT(*) FROM messages')" >>"$OUTDIR/unknown-chat.txt"
}

write_meta() {
    local commit
    commit=$(git -C "$ROOT" rev-parse --short HEAD)
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
    python3 - "$OUTDIR/meta.json" <<PY
import json, sys
json.dump({
    "date": "$(date -u +%FT%TZ)", "commit": "$commit",
    "cpu": "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)", "cores": $(nproc),
    "kernel": "$(uname -r)", "node": "$(node --version)", "wrk": "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)",
    "mariadb": "$(sql 'SELECT VERSION()')", "rounds": $ROUNDS, "seq_count": $SEQ_COUNT, "conns": $CONNS,
    "duration_s": $DURATION, "read_messages": $READ_MESSAGES, "loadavg_start": "$LOAD_START",
    "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
}, open(sys.argv[1], "w"), indent=1)
PY
}

main() {
    mkdir -p "$RUNS"
    : >"$OUTDIR/runs.jsonl"
    trap cleanup EXIT
    start_stack
    log "installing the Node service's packages (npm ci)"
    npm ci --prefix "$HERE/node" --no-audit --no-fund --loglevel=error >&2
    start_node "$NODE_PORT" false
    start_node "$NODE_EARLY_PORT" true

    SYS_URL[gateway]=$CHAT_URL
    SYS_URL[message]="http://127.0.0.1:$CHAT_MESSAGE_PORT"
    SYS_URL[node]="http://127.0.0.1:$NODE_PORT"
    SYS_URL[node-early]="http://127.0.0.1:$NODE_EARLY_PORT"
    SYS_PIDS[gateway]="$(task_process gateway) $(task_process message)"
    SYS_PIDS[message]=$(task_process message)
    SYS_PIDS[node]=${NODE_PIDS[0]}
    SYS_PIDS[node-early]=${NODE_PIDS[1]}

    warm_up
    unknown_chat_check
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    log "$ROUNDS rounds: seq $SEQ_COUNT POSTs, conc $CONNS clients x ${DURATION} s, read of $READ_MESSAGES messages; load average now: $LOAD_START"
    local round scenario i k
    for round in $(seq 1 "$ROUNDS"); do
        for scenario in $SCENARIOS; do
            for i in 0 1 2 3; do
                k=$(((i + round - 1) % 4))
                # node-early reads exactly as node does: nothing to learn.
                [ "$scenario:${SYSTEMS[$k]}" != read:node-early ] || continue
                measure "$round" "$scenario" "${SYSTEMS[$k]}"
            done
        done
    done
    write_meta
    log "report: $OUTDIR/results.md"
    local py=python3
    [ -x "$VENV/bin/python" ] || setup_venv
    [ -x "$VENV/bin/python" ] && py="$VENV/bin/python"
    "$py" "$HERE/report.py" "$OUTDIR"
}

# matplotlib for the plots, in a venv outside the clone; without it the
# report has no plots.
setup_venv() {
    log "creating $VENV with matplotlib (pinned) for the plots"
    { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "matplotlib==3.9.2"; } >&2 ||
        { echo "warning: no matplotlib; the report will have no plots" >&2; rm -rf "$VENV"; }
}

main "$@"
