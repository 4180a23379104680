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
set -euo pipefail

t_start=$SECONDS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
ROOT=$CHAT_ROOT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}

if [ "$(id -u)" != 0 ]; then
    echo "error: $0 needs root (containerd, runc, debootstrap)" >&2
    exit 1
fi

step() { chat_log "$* [$((SECONDS - t_start)) s]"; }

if [ "${CHAT_SKIP_BUILD:-0}" = 1 ]; then
    for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
        if [ ! -f "$CHAT_DIR/images/$s.tar" ]; then
            echo "error: CHAT_SKIP_BUILD=1 but $CHAT_DIR/images/$s.tar is missing; run without it once" >&2
            exit 1
        fi
    done
else
    step "installing missing packages"
    bash "$ROOT/deploy/dev/install-deps.sh"
    extra=()
    for p in curl debootstrap python3; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || extra+=("$p")
    done
    if [ "${#extra[@]}" -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "error: node (>= 20.19) and npm are needed to build the web UI (Debian 12's nodejs 18 is too old for vite 7)" >&2
        exit 1
    fi

    step "building the shim and the image tool"
    (cd "$ROOT" && cargo build --release --locked --workspace)
    step "building the chat services and the web UI"
    # build.sh must run inside images/services: cargo reads that directory's
    # .cargo/config.toml (tokio_unstable for wasm32-wasip2) from the cwd.
    # Its own target dir, not the workspace's (other flags, other target).
    (cd "$ROOT/images/services" &&
        CARGO_TARGET_DIR=${CHAT_SERVICES_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/services-target} \
            bash ./build.sh "$CHAT_DIR/wasm") >&2
    step "building the MariaDB and Redis images"
    bash "$ROOT/images/linux/build.sh" "$CHAT_DIR/images" >&2
    step "building the service images"
    W="$CARGO_TARGET_DIR/release/wasm-oci"
    for s in "${CHAT_WASM_SERVICES[@]}"; do
        add=()
        [ "$s" = gateway ] && add=(--add "$CHAT_DIR/wasm/www:/www")
        "$W" build --module "$CHAT_DIR/wasm/$s.wasm" --name "localhost/chat/$s:latest" \
            -o "$CHAT_DIR/images/$s.tar" "${add[@]}" >/dev/null
    done
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
    cp --remove-destination "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$CHAT_DIR/bin/"
fi
containerd_up "$CHAT_CONTAINERD" "$CHAT_DIR/bin"
for s in "${CHAT_LINUX_SERVICES[@]}"; do
    chat_import linux/amd64 "$CHAT_DIR/images/$s.tar"
done
for s in "${CHAT_WASM_SERVICES[@]}"; do
    chat_import wasi/wasm "$CHAT_DIR/images/$s.tar"
done

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
