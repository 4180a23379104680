# shellcheck shell=bash
# Helpers of bench/chat/run.sh: the chat API calls that prepare a run, the
# per-process CPU and memory readings, and one wrk measurement. Sourced after
# deploy/local/lib.sh (ctrc, CHAT_*).

CLK_TCK=$(getconf CLK_TCK)

# ---- processes ---------------------------------------------------------------

# The process (thread group) of a container's task: ctr lists a task pid,
# which for a Wasm container is the shim serving it (the guest is a thread of
# it); Tgid also covers a pid that names one of its threads.
task_process() { # CONTAINER
    local pid
    pid=$(ctrc tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }')
    [ -n "$pid" ] || { echo "no task for $1" >&2; return 1; }
    awk '/^Tgid:/ { print $2 }' "/proc/$pid/status"
}

# utime + stime of the processes, in clock ticks. Fields are counted after
# the last ')', since the command name may contain spaces.
cpu_ticks() { # PID...
    local pid total=0 t
    for pid in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
        total=$((total + t))
    done
    echo "$total"
}

ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# Resets the peak RSS (VmHWM) of the processes (clear_refs 5), so that a run's
# peak is its own.
reset_peak_rss() { # PID...
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs"; done
}

# Sum of VmHWM over the processes, KiB.
peak_rss_kib() { # PID...
    local pid total=0 v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
        total=$((total + v))
    done
    echo "$total"
}

# ---- chat API (through the gateway) -----------------------------------------

api() { # curl args...: fails on a non-2xx answer
    curl -fsS --max-time 30 "$@"
}

json_get() { # FIELD: reads JSON on stdin
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Empties every table (ids restart at 1): the truncator needs no session.
# Retried: INSERTs of the previous run still in flight (requests wrk gave up
# on when it stopped, or the not-durable Node mode's queue) can make
# TRUNCATE fail with a deadlock (500).
reset_db() {
    local i
    for i in $(seq 1 20); do
        if curl -fsS --max-time 30 -o /dev/null "$CHAT_URL/api/truncator" 2>/dev/null; then
            return 0
        fi
        sleep 1
    done
    echo "error: GET /api/truncator failed 20 times" >&2
    return 1
}

new_session() { api "$CHAT_URL/api/sessions" | json_get session_id; }

new_chat() { # SESSION
    api -X POST -H "Session-Id: $1" -H 'Content-Type: application/json' \
        --data '{"name":"bench","description":"bench/chat"}' "$CHAT_URL/api/chats" | json_get id
}

# SQL as root inside the MariaDB container (unix socket), tab-separated.
sql() { ctrc tasks exec --exec-id "bench-sql-$$-$RANDOM" mariadb mariadb -N -B chat -e "$1"; }

stored_rows() { # CHAT
    sql "SELECT COUNT(*) FROM messages WHERE chat_id = $1"
}

# Waits (at most 30 s) until the chat holds at least WANT rows, e.g. the
# INSERTs the not-durable Node mode runs after answering. Prints the count.
settle_rows() { # CHAT WANT
    local n i
    for i in $(seq 1 60); do
        n=$(stored_rows "$1")
        [ "$n" -lt "$2" ] || break
        sleep 0.5
    done
    echo "$n"
}

# ---- load --------------------------------------------------------------------

# One wrk run; its JSON summary (bench/chat/wrk.lua) goes to OUT_JSON.
#   mode seq:  -t1 -c1 until COUNT responses (an exact count; at most 600 s)
#   mode conc: -t2 -c CONNS for DURATION s
wrk_run() { # MODE METHOD URL SESSION CHAT OUT_JSON [COUNT]
    local mode=$1 method=$2 url=$3 session=$4 chat=$5 out=$6 count=${7:-0} args
    case $mode in
        seq) args=(-t1 -c1 -d600s) ;;
        conc) args=(-t2 -c "$CONNS" -d "${DURATION}s") ;;
        *) echo "wrk_run: unknown mode $mode" >&2; return 1 ;;
    esac
    BENCH_METHOD=$method BENCH_SESSION=$session BENCH_CHAT=$chat BENCH_COUNT=$count BENCH_OUT=$out \
        timeout 660 wrk "${args[@]}" --timeout 10s -s "$HERE/wrk.lua" "$url" >"$out.txt"
    [ -s "$out" ] || { echo "wrk wrote no summary for $url (see $out.txt)" >&2; return 1; }
}
