#!/usr/bin/env bash
# End-to-end tests of the chat application on containerd: MariaDB and Redis
# under runc, the six Wasm services under containerd-shim-wasmtime-v1.
#
#   tests/chat/run.sh
#
# Brings up its own stack with deploy/local/up.sh, apart from a developer's
# (CHAT_DIR /var/tmp/containerd-shim-wasmtime/chat-test, namespace chat-test,
# every port +20000: gateway 23000, MariaDB 23306, …), then runs
#   smoke      images/services/smoke.sh with the truncator (every status code)
#   load       100 concurrent clients post 1000 messages to one chat;
#              then exactly 1000 rows for it (SQL inside the MariaDB container)
#   abort      clients that hang up mid-request, under a posting load: waves
#              of 200 send a POST and all hang up at once (a quarter with a
#              RST; every tenth resets as soon as it has connected), at most
#              1000 in 10 s, to the message service directly
#              (abort-message), then through the gateway (abort-gateway);
#              right after, a GET and a POST each answered within 1 s (x3),
#              no load request failed, every acknowledged POST stored, no
#              service crashed, no "timed out" in their logs
#   restart    the message service is restarted under a bounded posting load;
#              every message acknowledged with 201 is in the database
#   containerd-restart
#              the stack's containerd is killed (SIGKILL), left down 3 s and
#              started again under a posting load: no request fails, every
#              acknowledged message is stored, the same tasks run, and a
#              service can be restarted through containerd afterwards
#   browser    chromium + playwright-core: session, online, chat, send, edit,
#              delete, a message from someone else appears without reload
#   persist    down.sh + up.sh (no rebuild): the data is still there
#   sizes      a report of every image's size
#   registry   deploy/local/push-images.sh to a loopback registry
#              (tests/lib/registry.sh), then a second stack (CHAT_DIR
#              …/chat-test-registry, namespace chat-test-reg, ports +21000)
#              pulled from it with CHAT_REGISTRY: its containers run the
#              registry's images and smoke.sh passes; then it is torn down
# prints "N passed, M failed" last and exits 1 on any failure. Tears the
# stack down and deletes its volumes on exit; keeps its images and compile
# cache under CHAT_DIR so the next run is quicker.
#
# Needs what up.sh needs, plus chromium (Debian) and node; installs
# playwright-core from tests/chat/package-lock.json with npm ci if missing.
# Overrides: CHAT_TEST_DIR, CHAT_TEST_PORT_OFFSET, CHAT_TEST_NAMESPACE,
# CHAT_TEST_REGISTRY_PORT_OFFSET; CHAT_TEST_REGISTRY=0 skips the registry test.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/chat"
PY=/usr/bin/python3

# The test stack: its own dir, namespace, ports and (unused) CNI bridge.
export CHAT_DIR=${CHAT_TEST_DIR:-/var/tmp/containerd-shim-wasmtime/chat-test}
export CHAT_NAMESPACE=${CHAT_TEST_NAMESPACE:-chat-test}
export CHAT_PORT_OFFSET=${CHAT_TEST_PORT_OFFSET:-20000}
export CHAT_TRUNCATOR_ENABLED=true CHAT_LOG_LEVEL=info
export CHAT_CNI_BRIDGE=chat-test0 CHAT_CNI_SUBNET=10.215.0.0/24
unset CHAT_GATEWAY_PORT CHAT_SESSION_PORT CHAT_CHAT_PORT CHAT_MESSAGE_PORT CHAT_USER_PORT \
    CHAT_TRUNCATOR_PORT CHAT_MYSQL_PORT CHAT_REDIS_PORT CHAT_SKIP_BUILD
rm -f "$CHAT_DIR/stack.env"
. "$ROOT/deploy/local/lib.sh"

OUT="$CHAT_DIR/test-output"
passed=0
failed=0
results=()
client_pid=

# The registry test's second stack and registry (torn down here too if the
# test was interrupted).
REG_STACK="$CHAT_DIR-registry"
REG_DIR="$CHAT_DIR/registry"
reg_started=

# Runs a command with the second stack's settings (they must all differ
# from the first's: the caller's CHAT_* win over a stack.env).
reg_stack() {
    env CHAT_DIR="$REG_STACK" CHAT_NAMESPACE=chat-test-reg \
        CHAT_PORT_OFFSET="${CHAT_TEST_REGISTRY_PORT_OFFSET:-21000}" \
        CHAT_CNI_BRIDGE=chat-test1 CHAT_CNI_SUBNET=10.216.0.0/24 "$@"
}

registry_teardown() {
    [ -n "$reg_started" ] || return 0
    # Both are made afresh by each run: delete them once stopped.
    if reg_stack bash "$ROOT/deploy/local/down.sh" --volumes >>"$OUT/registry-down.log" 2>&1; then
        rm -rf "$REG_STACK"
    else
        tail -n 20 "$OUT/registry-down.log"
    fi
    registry_down "$REG_DIR" && rm -rf "$REG_DIR"
    reg_started=
}

teardown() {
    if [ -n "$client_pid" ] && kill -0 "$client_pid" 2>/dev/null; then
        kill "$client_pid" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    registry_teardown
    echo "==> tearing the test stack down"
    bash "$ROOT/deploy/local/down.sh" --volumes >"$OUT/down.log" 2>&1 || tail -n 20 "$OUT/down.log"
}

finish() {
    local rc=$?
    teardown
    echo
    echo "==> results"
    printf '%s\n' "${results[@]}"
    echo "(logs: $OUT, container logs: $CHAT_DIR/logs)"
    echo "$passed passed, $failed failed"
    if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
    exit "$rc"
}
trap finish EXIT

record() { # NAME OK(0/1) DETAIL
    if [ "$2" = 0 ]; then
        passed=$((passed + 1))
        results+=("PASS $1: $3")
        echo "PASS $1: $3"
    else
        failed=$((failed + 1))
        results+=("FAIL $1: $3")
        echo "FAIL $1: $3"
    fi
}

# SQL as root inside the MariaDB container (unix socket), tab-separated.
sql() {
    ctrc tasks exec --exec-id "sql-$$-$RANDOM" mariadb mariadb -N -B chat -e "$1"
}
json_field() { $PY -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# A clean start even after an interrupted run.
bash "$ROOT/deploy/local/down.sh" --volumes >/dev/null 2>&1 || true
rm -rf "$OUT" "$CHAT_DIR/logs"
mkdir -p "$OUT"

# ---- stack up --------------------------------------------------------------
echo "==> starting the test stack (deploy/local/up.sh, log: $OUT/up.log)"
t0=$(date +%s%N)
if bash "$ROOT/deploy/local/up.sh" >"$OUT/up.log" 2>&1; then
    record up 0 "stack ready at $CHAT_URL in $(ms_since "$t0") ms"
else
    tail -n 40 "$OUT/up.log"
    record up 1 "deploy/local/up.sh failed (see $OUT/up.log)"
    exit 1
fi
grep -E '^==> ' "$OUT/up.log" | sed 's/^/    /'

# ---- smoke -----------------------------------------------------------------
echo "==> smoke test (images/services/smoke.sh, log: $OUT/smoke.log)"
t0=$(date +%s%N)
SMOKE_TRUNCATE=1 bash "$ROOT/images/services/smoke.sh" "$CHAT_URL" >"$OUT/smoke.log" 2>&1
rc=$?
summary=$(tail -n 1 "$OUT/smoke.log")
[ "$rc" = 0 ] || grep '^FAIL' "$OUT/smoke.log" | head -n 20
record smoke "$rc" "$summary in $(ms_since "$t0") ms"

# ---- load ------------------------------------------------------------------
echo "==> load test: 100 concurrent clients, 1000 messages to one chat"
load=$(timeout 180 $PY "$HERE/load.py" load "$CHAT_URL" --clients 100 --messages 1000 --timeout 120 2>"$OUT/load.err")
rc=$?
load=${load:-"{}"}
echo "    $load"
chat_id=$(json_field "$load" chat_id 2>/dev/null)
rows=$( [ -n "$chat_id" ] && sql "SELECT COUNT(*) FROM messages WHERE chat_id = $chat_id" 2>>"$OUT/load.err")
load_ok=1
if [ "$rc" = 0 ] && [ "$rows" = 1000 ]; then load_ok=0; fi
[ "$load_ok" = 0 ] || tail -n 5 "$OUT/load.err"
record load "$load_ok" "acked $(json_field "$load" acked 2>/dev/null)/1000, rows in chat $chat_id: ${rows:-?}, $(json_field "$load" seconds 2>/dev/null) s, $(json_field "$load" req_per_s 2>/dev/null) req/s, p50 $(json_field "$load" p50_ms 2>/dev/null) ms, p99 $(json_field "$load" p99_ms 2>/dev/null) ms"
load_chat=$chat_id

# ---- abort -----------------------------------------------------------------
# load.py abort: see its docstring. A service that crashed (it used to, on a
# client's RST) is restarted afterwards so that the later tests still run.
abort_summary() { # RESULT_JSON
    $PY -c 'import json, sys
d = json.loads(sys.argv[1]); k = d.get("by_kind") or {}; g = lambda key: d.get(key, "?")
print("%s hang-ups (%s with a RST, %s of them right after connecting; %s mid-body; %s answered before)"
      " in %s s under %s posting clients;"
      " load acked %s, failed %s (after the burst: %s); next GET+POST x%s: %s/%s ok, slowest %s ms"
      % (g("aborts"), k.get("reset", "?"), k.get("reset_at_connect", "?"), k.get("mid_body", "?"),
         g("answered_before_close"),
         g("burst_seconds"), g("clients"), g("load_acked"), g("load_failed"), g("load_failed_after"),
         d.get("probes", 0) // 2, g("probes_ok"), g("probes"), g("probe_max_ms")))' "$1" 2>/dev/null || echo "no result"
}

abort_check() { # NAME TARGET_URL SERVICE... (whose logs and tasks are checked)
    local name=$1 target=$2 result rc chat_id missing="?" stored="?" timed_out=0 down=() s i n traps0 traps ok
    shift 2
    local services=("$@") offsets=()
    for s in "${services[@]}"; do offsets+=("$(stat -c %s "$CHAT_DIR/logs/$s.log" 2>/dev/null || echo 0)"); done
    traps0=$(grep -c 'wasm trap' "$CHAT_CONTAINERD/containerd.log" 2>/dev/null)
    result=$(timeout 120 $PY "$HERE/load.py" abort "$CHAT_URL" --target "$target" --clients 2 --aborts 1000 \
        --abort-seconds 10 --wave 200 --reset-fraction 0.25 --probe-timeout 1 \
        --acked "$OUT/$name-acked.txt" 2>"$OUT/$name.err")
    rc=$?
    result=${result:-"{}"}
    echo "    $result"
    traps=$(($(grep -c 'wasm trap' "$CHAT_CONTAINERD/containerd.log" 2>/dev/null) - traps0))
    for i in "${!services[@]}"; do
        s=${services[$i]}
        n=$(tail -c +"$((offsets[i] + 1))" "$CHAT_DIR/logs/$s.log" 2>/dev/null | grep -c 'timed out')
        timed_out=$((timed_out + n))
        [ "$(chat_task_status "$s")" = RUNNING ] || down+=("$s")
    done
    chat_id=$(json_field "$result" chat_id 2>/dev/null)
    if [ -n "$chat_id" ] && sql "SELECT text FROM messages WHERE chat_id = $chat_id" >"$OUT/$name-db.txt" 2>>"$OUT/$name.err"; then
        missing=$(comm -23 <(sort -u "$OUT/$name-acked.txt" 2>/dev/null) <(sort -u "$OUT/$name-db.txt") | wc -l)
        # POSTs whose clients hung up may be stored or not; counted, not judged.
        stored=$(grep -c '^abort [0-9]' "$OUT/$name-db.txt")
    fi
    ok=1
    if [ "$rc" = 0 ] && [ "$timed_out" = 0 ] && [ "${#down[@]}" = 0 ] && [ "$traps" = 0 ] && [ "$missing" = 0 ]; then
        ok=0
    fi
    if [ "$ok" != 0 ]; then
        tail -n 5 "$OUT/$name.err"
        for i in "${!services[@]}"; do
            tail -c +"$((offsets[i] + 1))" "$CHAT_DIR/logs/${services[$i]}.log" | grep -E 'timed out|ERROR' | tail -n 3
        done
        grep 'wasm trap' "$CHAT_CONTAINERD/containerd.log" | tail -n "$((traps > 2 ? 2 : traps))" | cut -c1-400
        for s in "${down[@]}"; do
            bash "$ROOT/deploy/local/restart-service.sh" "$s" >>"$OUT/$name-restart.log" 2>&1 ||
                echo "    could not restart $s (see $OUT/$name-restart.log)"
        done
    fi
    record "$name" "$ok" "to $target: $(abort_summary "$result") (limit 1000 ms); 'timed out' in the logs of ${services[*]}: $timed_out; crashed: ${down[*]:-none} (wasm traps: $traps); acknowledged but missing from the DB: $missing; hung-up POSTs stored anyway: $stored"
}

echo "==> abort test: clients that hang up mid-request, under load (logs: $OUT/abort-*)"
abort_check abort-message "http://127.0.0.1:$CHAT_MESSAGE_PORT" message
abort_check abort-gateway "$CHAT_URL" gateway message

# ---- restart ---------------------------------------------------------------
echo "==> restart test: restart the message service during a posting load"
timeout 120 $PY "$HERE/load.py" restart "$CHAT_URL" --clients 20 --seconds 12 --max-messages 5000 \
    --retry-seconds 30 --acked "$OUT/restart-acked.txt" >"$OUT/restart.json" 2>"$OUT/restart.err" &
client_pid=$!
sleep 3
t0=$(date +%s%N)
bash "$ROOT/deploy/local/restart-service.sh" message >"$OUT/restart-service.log" 2>&1
restart_rc=$?
restart_ms=$(ms_since "$t0")
wait "$client_pid"
rc=$?
client_pid=
result=$(cat "$OUT/restart.json" 2>/dev/null)
result=${result:-"{}"}
echo "    $result"
chat_id=$(json_field "$result" chat_id 2>/dev/null)
missing="?"
dups="?"
if [ -n "$chat_id" ] && sql "SELECT text FROM messages WHERE chat_id = $chat_id" >"$OUT/restart-db.txt" 2>>"$OUT/restart.err"; then
    missing=$(comm -23 <(sort -u "$OUT/restart-acked.txt") <(sort -u "$OUT/restart-db.txt") | wc -l)
    dups=$(($(wc -l <"$OUT/restart-db.txt") - $(sort -u "$OUT/restart-db.txt" | wc -l)))
    extra=$(($(sort -u "$OUT/restart-db.txt" | wc -l) - $(sort -u "$OUT/restart-acked.txt" | wc -l)))
fi
late=$(json_field "$result" late_acked 2>/dev/null)
restart_ok=1
if [ "$restart_rc" = 0 ] && [ "$rc" = 0 ] && [ "$missing" = 0 ] && [ "${late:-0}" -gt 0 ]; then restart_ok=0; fi
[ "$restart_ok" = 0 ] || { tail -n 5 "$OUT/restart.err" "$OUT/restart-service.log"; }
record restart "$restart_ok" "message service restarted in $restart_ms ms under load; acked $(json_field "$result" acked 2>/dev/null), missing from the DB $missing, retried $(json_field "$result" retried 2>/dev/null), failed $(json_field "$result" failed 2>/dev/null), acked in the last 4 s $late, stored but unacknowledged ${extra:-?} (duplicates from retries: $dups)"

# ---- containerd restart ----------------------------------------------------
# Shims and their containers outlive containerd: while it is killed and
# down for 3 s, and after it is started again, the chat keeps answering,
# containerd lists the same running tasks, and it can still stop and start
# a container (restart-service.sh).
echo "==> containerd restart: containerd killed (SIGKILL), down 3 s and started again during a posting load"
running_tasks() { ctrc tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" { print $1 }' | sort | tr '\n' ' '; }
tasks_before=$(running_tasks)
timeout 120 $PY "$HERE/load.py" restart "$CHAT_URL" --clients 20 --seconds 12 --max-messages 5000 \
    --retry-seconds 30 --acked "$OUT/containerd-restart-acked.txt" >"$OUT/containerd-restart.json" 2>"$OUT/containerd-restart.err" &
client_pid=$!
sleep 3
cd_pid=$(cat "$CHAT_CONTAINERD/containerd.pid")
kill -9 "$cd_pid"
for _ in $(seq 1 50); do kill -0 "$cd_pid" 2>/dev/null || break; sleep 0.1; done
sleep 3
gone=$(kill -0 "$cd_pid" 2>/dev/null && echo no || echo yes)
t0=$(date +%s%N)
containerd_up "$CHAT_CONTAINERD" "$CHAT_DIR/bin" >"$OUT/containerd-restart.log" 2>&1
up_rc=$?
up_ms=$(ms_since "$t0")
wait "$client_pid"
rc=$?
client_pid=
tasks_after=$(running_tasks)
result=$(cat "$OUT/containerd-restart.json" 2>/dev/null)
result=${result:-"{}"}
echo "    $result"
chat_id=$(json_field "$result" chat_id 2>/dev/null)
missing="?"
if [ -n "$chat_id" ] && sql "SELECT text FROM messages WHERE chat_id = $chat_id" >"$OUT/containerd-restart-db.txt" 2>>"$OUT/containerd-restart.err"; then
    missing=$(comm -23 <(sort -u "$OUT/containerd-restart-acked.txt") <(sort -u "$OUT/containerd-restart-db.txt") | wc -l)
fi
bash "$ROOT/deploy/local/restart-service.sh" gateway >>"$OUT/containerd-restart.log" 2>&1
control_rc=$?
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$CHAT_URL/api/sessions")
crestart_ok=1
if [ "$up_rc" = 0 ] && [ "$rc" = 0 ] && [ "$missing" = 0 ] && [ "$(json_field "$result" failed 2>/dev/null)" = 0 ] &&
    [ "${#tasks_before}" -gt 0 ] && [ "$tasks_after" = "$tasks_before" ] && [ "$control_rc" = 0 ] && [ "$code" = 201 ]; then
    crestart_ok=0
fi
[ "$crestart_ok" = 0 ] || { tail -n 5 "$OUT/containerd-restart.err" "$OUT/containerd-restart.log"; echo "    tasks before: $tasks_before"; echo "    tasks after:  $tasks_after"; }
record containerd-restart "$crestart_ok" "containerd killed (gone: $gone) and down 3 s, up again in $up_ms ms; under load acked $(json_field "$result" acked 2>/dev/null), failed $(json_field "$result" failed 2>/dev/null), retried $(json_field "$result" retried 2>/dev/null), missing from the DB $missing; running tasks after = before ($(wc -w <<<"$tasks_after") of $(wc -w <<<"$tasks_before")); gateway restarted through containerd afterwards (rc $control_rc), then a new session: $code"

# ---- browser ---------------------------------------------------------------
echo "==> browser test (chromium + playwright-core, log: $OUT/browser.log)"
if [ ! -x /usr/bin/chromium ]; then
    (export DEBIAN_FRONTEND=noninteractive && apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends chromium) >"$OUT/apt.log" 2>&1 || tail -n 20 "$OUT/apt.log"
fi
if [ ! -d "$HERE/node_modules/playwright-core" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$OUT/npm.log" 2>&1 || tail -n 20 "$OUT/npm.log"
fi
t0=$(date +%s%N)
timeout 180 node "$HERE/browser.mjs" "$CHAT_URL" >"$OUT/browser.log" 2>&1
rc=$?
sed 's/^/    /' "$OUT/browser.log"
record browser "$rc" "$(tail -n 1 "$OUT/browser.log") in $(ms_since "$t0") ms"

# ---- persistence -----------------------------------------------------------
echo "==> persistence: down.sh, then up.sh (no rebuild); the data must still be there"
t0=$(date +%s%N)
persist_ok=1
detail="down.sh or up.sh failed (see $OUT/persist.log)"
if bash "$ROOT/deploy/local/down.sh" >"$OUT/persist.log" 2>&1 &&
    CHAT_SKIP_BUILD=1 bash "$ROOT/deploy/local/up.sh" >>"$OUT/persist.log" 2>&1; then
    rows=$( [ -n "$load_chat" ] && sql "SELECT COUNT(*) FROM messages WHERE chat_id = $load_chat" 2>>"$OUT/persist.log")
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$CHAT_URL/api/chats/$load_chat" -H "Session-Id: 00000000000000000000000000")
    [ "$rows" = 1000 ] && persist_ok=0
    detail="restarted in $(ms_since "$t0") ms; rows in chat $load_chat: ${rows:-?} (want 1000); gateway answers ($code)"
fi
[ "$persist_ok" = 0 ] || tail -n 20 "$OUT/persist.log"
record persist "$persist_ok" "$detail"

# ---- image sizes -----------------------------------------------------------
echo "==> image sizes"
sizes_ok=0
: >"$OUT/sizes.txt"
{
    printf '    %-34s %12s %12s\n' image "tar (bytes)" "unpacked"
    for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
        tar="$CHAT_DIR/images/$s.tar"
        if [ ! -f "$tar" ]; then
            sizes_ok=1
            continue
        fi
        unpacked=$(awk -v i="$s" '$1 == i { print $3 }' "$CHAT_DIR/images/linux-images.sizes" 2>/dev/null)
        if [ -z "$unpacked" ]; then
            # A Wasm image's one layer holds the module (and the gateway's www/).
            unpacked=$(wc -c <"$CHAT_DIR/wasm/$s.wasm")
            [ "$s" != gateway ] || unpacked=$((unpacked + $(find "$CHAT_DIR/wasm/www" -type f -exec cat {} + | wc -c)))
        fi
        printf '    %-34s %12d %12d\n' "localhost/chat/$s:latest" "$(wc -c <"$tar")" "$unpacked"
    done
} >"$OUT/sizes.txt"
cat "$OUT/sizes.txt"
record sizes "$sizes_ok" "8 images (table above; $OUT/sizes.txt)"

# ---- registry --------------------------------------------------------------
# The CHAT_REGISTRY path of up.sh: push-images.sh (warm: it rebuilds nothing)
# to a loopback registry, then a second stack that pulls every image. The
# first stack is stopped first (memory); its volumes stay for the teardown.
if [ "${CHAT_TEST_REGISTRY:-1}" != 0 ]; then
    echo "==> registry: push-images.sh to a loopback registry, a stack pulled from it (log: $OUT/registry.log)"
    t0=$(date +%s%N)
    reg_ok=1
    detail="see $OUT/registry.log"
    . "$ROOT/tests/lib/registry.sh"
    bash "$ROOT/deploy/local/down.sh" >"$OUT/registry.log" 2>&1 || true
    rm -rf "$REG_STACK"
    mkdir -p "$REG_STACK"
    # Same modules, same compiled code: the cache (keyed by module digest)
    # spares the second stack compiling the six services again.
    cp -a "$CHAT_DIR/compile-cache" "$REG_STACK/" 2>/dev/null || true
    reg_started=1
    if registry_up "$REG_DIR" >>"$OUT/registry.log" 2>&1; then
        reg=$(registry_address "$REG_DIR")
        t_push=$(date +%s%N)
        if bash "$ROOT/deploy/local/push-images.sh" "$reg" >>"$OUT/registry.log" 2>&1; then
            push_ms=$(ms_since "$t_push")
            t_up=$(date +%s%N)
            if CHAT_REGISTRY=$reg CHAT_SHIM_BIN="$CHAT_DIR/bin/containerd-shim-wasmtime-v1" \
                reg_stack bash "$ROOT/deploy/local/up.sh" >"$OUT/registry-up.log" 2>&1; then
                up_ms=$(ms_since "$t_up")
                reg_url=$(tail -n 1 "$OUT/registry-up.log")
                # Every container runs the image pulled from the registry.
                images=$(CTR_NAMESPACE=chat-test-reg ctr_private "$REG_STACK/containerd" containers ls 2>/dev/null |
                    awk 'NR > 1 { print $1 " " $2 }' | sort)
                want=$(for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do echo "$s $reg/chat/$s:latest"; done | sort)
                SMOKE_TRUNCATE=1 bash "$ROOT/images/services/smoke.sh" "$reg_url" >"$OUT/registry-smoke.log" 2>&1
                smoke_rc=$?
                if [ "$images" = "$want" ] && [ "$smoke_rc" = 0 ]; then reg_ok=0; fi
                [ "$images" = "$want" ] || printf 'containers and images:\n%s\nwanted:\n%s\n' "$images" "$want" | tee -a "$OUT/registry.log"
                detail="pushed 8 images to $reg in $push_ms ms; stack from it up in $up_ms ms at $reg_url; 8 containers from $reg/chat/*: $([ "$images" = "$want" ] && echo yes || echo NO); smoke: $(tail -n 1 "$OUT/registry-smoke.log")"
            else
                tail -n 30 "$OUT/registry-up.log"
                detail="up.sh with CHAT_REGISTRY=$reg failed (see $OUT/registry-up.log)"
            fi
        else
            tail -n 30 "$OUT/registry.log"
            detail="push-images.sh $reg failed (see $OUT/registry.log)"
        fi
    else
        detail="the registry did not start (see $OUT/registry.log)"
    fi
    registry_teardown
    record registry "$reg_ok" "$detail; $(ms_since "$t0") ms in all"
fi
