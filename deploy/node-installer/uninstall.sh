#!/usr/bin/env bash
# Undoes install.sh on a node: removes the node label (first, so no new Wasm
# pods are scheduled here), the handler that install.sh added to containerd's
# config (its marked block, or its drop-in file), restarts containerd, and
# removes the shim binary. A handler configured by someone else is left alone.
# Drain Wasm pods first: pods already running keep their shim process, but
# containerd no longer knows the handler for new ones.
#
#   uninstall.sh [options]
#
#   --host-root DIR     where the host's / is mounted (default $HOST_ROOT or /)
#   --bin-dir DIR       host directory holding the shim (default /usr/local/bin)
#   --config FILE       host path of containerd's config (default /etc/containerd/config.toml)
#   --keep-binary       leave the shim binary in place
#   --no-restart        do not restart containerd
#   --restart-cmd CMD   restart with CMD instead of systemctl
#   --label-node        remove the node label wasmtime.containerd.io/enabled
#                       (in a pod: NODE_NAME, service account with patch on nodes)
#
# The backup install.sh made (<config>.pre-wasmtime) is left where it is.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

RESTART=1
LABEL=0
KEEP_BINARY=0

while [ "$#" -gt 0 ]; do
    case $1 in
        --host-root) HOST_ROOT=${2:?}; shift ;;
        --bin-dir) BIN_DIR=${2:?}; shift ;;
        --config) CONTAINERD_CONFIG=${2:?}; shift ;;
        --keep-binary) KEEP_BINARY=1 ;;
        --no-restart) RESTART=0 ;;
        --restart-cmd) RESTART_CMD=${2:?}; shift ;;
        --label-node) LABEL=1 ;;
        -h | --help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
    shift
done
check_common_args

if [ "$LABEL" = 1 ]; then
    patch_node_label null
    log "node: removed label $NODE_LABEL from ${NODE_NAME}"
fi

changed=0
main=$(hostpath "$CONTAINERD_CONFIG")
files=()
if [ -f "$main" ]; then
    files+=("$CONTAINERD_CONFIG")
    while IFS= read -r f; do files+=("$f"); done < <(imported_files "$main" "$(config_version "$main")")
fi
new=$(mktemp)
trap 'rm -f "$new"' EXIT
for f in "${files[@]}"; do
    hf=$(hostpath "$f")
    if [ "$f" != "$CONTAINERD_CONFIG" ] && [ "$(head -n 1 "$hf")" = "$MARK_BEGIN" ]; then
        rm -f "$hf"
        log "config: removed drop-in $f"
        changed=1
    elif has_our_block "$hf"; then
        strip_our_blocks "$hf" >"$new"
        replace_file "$hf" "$new"
        log "config: removed the handler block from $f"
        changed=1
    fi
done
[ "$changed" = 1 ] || log "config: nothing of install.sh's in $CONTAINERD_CONFIG or its imports"

if [ "$KEEP_BINARY" = 0 ]; then
    bin=$(hostpath "$BIN_DIR/$SHIM_NAME")
    if [ -e "$bin" ]; then
        # Running shims keep their (unlinked) file.
        rm -f "$bin"
        log "binary: removed $BIN_DIR/$SHIM_NAME"
    else
        log "binary: $BIN_DIR/$SHIM_NAME is not there"
    fi
fi

if [ "$changed" = 0 ]; then
    log "restart: not needed"
elif [ "$RESTART" = 1 ]; then
    restart_containerd
else
    log "restart: skipped (--no-restart); containerd keeps the handler until restarted"
fi
log "done"
