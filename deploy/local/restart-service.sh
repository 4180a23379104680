#!/usr/bin/env bash
# Restarts one service of the running local chat stack (deploy/local/up.sh):
# stops its container (SIGTERM), recreates it from the same image with the
# same settings and waits until it answers again. Data is in the volumes and
# in MariaDB, so nothing is lost.
#
#   deploy/local/restart-service.sh NAME
#
# NAME: session, chat, message, user, truncator, gateway (Wasm services),
# or mariadb, redis (Linux containers).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

name=${1:-}
if [ "$#" -ne 1 ] || ! chat_port_of "$name" >/dev/null 2>&1; then
    echo "usage: $0 {session|chat|message|user|truncator|gateway|mariadb|redis}" >&2
    exit 2
fi
if ! chat_containerd_alive; then
    echo "error: the chat stack in $CHAT_DIR is not running (start it with $here/up.sh)" >&2
    exit 1
fi

t0=$(date +%s%N)
timeout=10
case $name in mariadb | redis) timeout=60 ;; esac
chat_stop "$name" "$timeout"
chat_start "$name"
chat_wait_ready 300 "$name"
chat_log "$name restarted in $((($(date +%s%N) - t0) / 1000000)) ms"
