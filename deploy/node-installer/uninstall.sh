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
# The runc runtime install.sh wrote out with the handler (configs without a
# runtimes table) goes with it, so the file is as before; it stays if other
# runtimes were added since, as containerd 1.x would then have no runc. After
# the restart the CRI plugin must be ok (`ctr plugins ls`).
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
version=""
if [ -f "$main" ]; then
    files+=("$CONTAINERD_CONFIG")
    version=$(config_version "$main")
    while IFS= read -r f; do files+=("$f"); done < <(imported_files "$main" "$version")
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
        # The built-in runc that install.sh wrote out (config version 1/2
        # only) goes too (the file is then as before), unless runtimes were
        # added since: containerd 1.x would then have no runc, so it stays,
        # outside our markers. Any other version: the block is all there is,
        # whatever the version (even one install.sh does not know).
        if [ "$version" -le 2 ]; then
            runc_header=$(runtime_header "$version" "$BUILTIN_RUNTIME")
            default_rt=$(default_runtime_name "$new" "$version")
            if grep -qxF "$runc_header" "$hf" && ! grep -qxF "$runc_header" "$new" &&
                lists_runtimes "$new" "$version" && ! defines_runtime "$new" "$version" "$BUILTIN_RUNTIME" &&
                [ "$default_rt" = "$BUILTIN_RUNTIME" ]; then
                printf '\n# Written by deploy/node-installer, kept by uninstall.sh: the runtimes above\n# replace containerd 1.x'"'"'s built-in runc, which default_runtime_name needs.\n%s\n  runtime_type = "%s"\n' \
                    "$runc_header" "$BUILTIN_RUNTIME_TYPE" >>"$new"
                log "config: kept the '$BUILTIN_RUNTIME' runtime install.sh wrote in $f: other runtimes were added since, and containerd 1.x would have no '$BUILTIN_RUNTIME' without it"
            fi
        fi
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
    status=$(cri_plugin_status "$(containerd_address "${files[@]}")" "$CRI_WAIT")
    cri_check "$status" "after the restart" ||
        die "containerd's CRI plugin is not ok after the restart:"$'\n'"$status"$'\n'"$(containerd_log_hint)"
else
    log "restart: skipped (--no-restart); containerd keeps the handler until restarted"
fi
log "done"
