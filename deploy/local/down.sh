#!/usr/bin/env bash
# Stops the local chat stack started by deploy/local/up.sh: the Wasm
# services, then Redis and MariaDB (SIGTERM, so MariaDB shuts down cleanly),
# then its private containerd. Keeps the volumes (database, Redis data), the
# images and the compile cache, so the next up.sh is quick and finds the data.
#
#   deploy/local/down.sh              stop, keep the data
#   deploy/local/down.sh --volumes    stop and delete the data volumes too
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

purge=false
case ${1:-} in
    "") ;;
    --volumes) purge=true ;;
    *)
        echo "usage: $0 [--volumes]" >&2
        exit 2
        ;;
esac

chat_log "stopping the chat stack in $CHAT_DIR"
chat_down
if $purge; then
    chat_log "deleting the volumes in $CHAT_VOLUMES"
    rm -rf "$CHAT_VOLUMES"
fi
chat_log "stopped"
