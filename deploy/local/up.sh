#!/usr/bin/env bash
# The chat application on this machine, in one command (Debian 12, as root):
#
#   deploy/local/up.sh
#
# Installs what is missing, builds the shim, the chat services, the web UI
# and the MariaDB/Redis images, then (re)starts a private containerd under
# /var/tmp/containerd-shim-wasmtime/chat with the fresh shim and runs
#   - MariaDB and Redis as Linux containers under runc,
#   - session, chat, message, user, truncator and gateway as Wasm containers
#     under containerd-shim-wasmtime-v1,
# all on the host network, listening on 127.0.0.1 only. Data lives in
# volumes under .../chat/volumes and survives restarts. Prints the URL
# (http://127.0.0.1:3000) when the gateway answers.
#
# Running it again is a clean restart (everything rebuilt if changed,
# every container recreated, the data kept). Stop with deploy/local/down.sh;
# restart one service with deploy/local/restart-service.sh NAME.
# Ports, directories and namespace can be overridden: see deploy/local/lib.sh.
# CHAT_SKIP_BUILD=1 skips installing and building and restarts the stack from
# the images already in $CHAT_DIR/images.
#
# With CHAT_REGISTRY=HOST:PORT the images are pulled from
# $CHAT_REGISTRY/chat/<name>:latest (put there by push-images.sh) instead of
# being built here; only the shim is built (or CHAT_SHIM_BIN=prebuilt).
set -euo pipefail

t_start=$SECONDS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "error: $0 needs root (containerd, runc, debootstrap)" >&2
    exit 1
fi

step() { chat_log "$* [$((SECONDS - t_start)) s]"; }
chat_step() { step "$@"; }

if [ "${CHAT_SKIP_BUILD:-0}" = 1 ]; then
    CHAT_SHIM_PATH=${CHAT_SHIM_BIN:-$CHAT_CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1}
    if [ -z "$CHAT_REGISTRY" ]; then
        for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
            if [ ! -f "$CHAT_DIR/images/$s.tar" ]; then
                echo "error: CHAT_SKIP_BUILD=1 but $CHAT_DIR/images/$s.tar is missing; run without it once" >&2
                exit 1
            fi
        done
    fi
elif [ -n "$CHAT_REGISTRY" ]; then
    # The images come from the registry: only the shim is built here.
    step "installing missing packages"
    chat_build_prereqs
    step "building the shim"
    chat_build_binaries shim
else
    step "installing missing packages"
    chat_build_prereqs ui
    step "building the shim and the image tool"
    chat_build_binaries shim wasm-oci
    chat_build_images
fi

step "stopping the previous stack, if any"
chat_down

for name in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
    port=$(chat_port_of "$name")
    if chat_port_busy "$port"; then
        echo "error: port $port (for $name) is already in use:" >&2
        ss -Hltnp "sport = :$port" >&2 || true
        exit 1
    fi
done

step "starting a private containerd in $CHAT_CONTAINERD"
chat_save_env
mkdir -p "$CHAT_DIR/bin" "$CHAT_DIR/logs" "$CONTAINERD_SHIM_WASMTIME_CACHE_DIR"
if [ "${CHAT_SKIP_BUILD:-0}" != 1 ] || [ ! -x "$CHAT_DIR/bin/containerd-shim-wasmtime-v1" ]; then
    cp --remove-destination "$CHAT_SHIM_PATH" "$CHAT_DIR/bin/containerd-shim-wasmtime-v1"
fi
containerd_up "$CHAT_CONTAINERD" "$CHAT_DIR/bin"
if [ -n "$CHAT_REGISTRY" ]; then
    step "pulling the images from $CHAT_REGISTRY (plain HTTP: $CHAT_REGISTRY_PLAIN_HTTP)"
    for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
        chat_pull "$s"
    done
else
    for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
        chat_import "$(chat_platform "$s")" "$CHAT_DIR/images/$s.tar"
    done
fi

# Container logs are appended to across restarts; keep them bounded.
for f in "$CHAT_DIR"/logs/*.log; do
    if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt $((10 * 1024 * 1024)) ]; then
        mv -f "$f" "$f.1"
    fi
done

step "starting MariaDB and Redis (runc)"
chat_start mariadb
chat_start redis
chat_wait_ready 180 mariadb redis
step "starting the Wasm services (containerd-shim-wasmtime-v1)"
for s in session chat message user truncator; do
    chat_start "$s"
done
# The first start compiles each module (tens of seconds on a busy machine);
# later starts map the shim's compile cache.
chat_wait_ready 600 session chat message user truncator
chat_start gateway
chat_wait_ready 300 gateway

step "ready"
cat <<EOF

  The chat is up:  $CHAT_URL

  containers:   ctr --address $CHAT_CONTAINERD/containerd.sock -n $CHAT_NAMESPACE tasks ls
  logs:         $CHAT_DIR/logs/<name>.log
  data:         $CHAT_VOLUMES (kept by down.sh)
  restart one:  $here/restart-service.sh <session|chat|message|user|truncator|gateway>
  stop:         $here/down.sh

EOF
echo "$CHAT_URL"
