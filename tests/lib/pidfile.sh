# shellcheck shell=bash
# Stopping a process the tests started, by the pid file they wrote. Sourced
# by tests/lib/containerd.sh and tests/lib/registry.sh.
#
#   stop_pid_file FILE [SECONDS]   TERM the pid in FILE, wait up to SECONDS
#                                  (default 5) for it to exit, then KILL;
#                                  remove FILE. No FILE: nothing to do.

stop_pid_file() {
    local file=$1 tenths=$((${2:-5} * 10)) pid i
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 1 "$tenths"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}
