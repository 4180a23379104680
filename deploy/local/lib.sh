# shellcheck shell=bash disable=SC2034
# The local chat stack on a private containerd: configuration and container
# helpers shared by up.sh, down.sh, restart-service.sh and tests/chat/run.sh.
# Source this file (after setting any CHAT_* overrides).
#
# Configuration (environment; up.sh saves the resolved values to
# $CHAT_DIR/stack.env, which down.sh and restart-service.sh read back):
#
#   CHAT_DIR          everything of the stack     /var/tmp/containerd-shim-wasmtime/chat
#   CHAT_NAMESPACE    containerd namespace        chat
#   CHAT_PORT_OFFSET  added to every default port 0 (tests use 20000)
#   CHAT_GATEWAY_PORT, CHAT_SESSION_PORT, CHAT_CHAT_PORT, CHAT_MESSAGE_PORT,
#   CHAT_USER_PORT, CHAT_TRUNCATOR_PORT, CHAT_MYSQL_PORT, CHAT_REDIS_PORT
#                     3000, 8081…8085, 3306, 6379 (+ offset)
#   CHAT_TRUNCATOR_ENABLED  true
#   CHAT_LOG_LEVEL    services' LOG_LEVEL         info
#   CHAT_CNI_BRIDGE, CHAT_CNI_SUBNET  for the CRI plugin's (unused) CNI
#                     config; distinct from the e2e tests' bridge
#   CHAT_REGISTRY     empty: up.sh builds the images and imports them. Set
#                     (e.g. 127.0.0.1:5000, or host/prefix): up.sh pulls
#                     $CHAT_REGISTRY/chat/<name>:latest instead (push them
#                     there with push-images.sh) and builds only the shim
#   CHAT_REGISTRY_PLAIN_HTTP  true/false: pull (and push) over plain HTTP;
#                     default true for 127.0.0.1, localhost and [::1], else false
#
# Build settings (not saved in stack.env):
#   CHAT_SHIM_BIN     a prebuilt containerd-shim-wasmtime-v1 to run instead
#                     of building the workspace's (e.g. a non-LTO dev build)
#   CHAT_WASM_OCI     a prebuilt wasm-oci to write and push images with
#   CHAT_CARGO_TARGET_DIR  where the workspace is built   $CARGO_TARGET_DIR,
#                     else /var/tmp/containerd-shim-wasmtime/target
#   CHAT_SERVICES_TARGET_DIR  where the services are built
#                     /var/tmp/containerd-shim-wasmtime/services-target
#
# Everything listens on 127.0.0.1 (host network). Layout under CHAT_DIR:
#   containerd/  private containerd (root, state, socket, log)
#   bin/         the shim containerd runs      images/  image tars
#   wasm/        service modules and www/      logs/    one log per container
#   volumes/     mariadb/, redis/, db-password (kept by down.sh)
#   compile-cache/  the shim's compiled modules (CONTAINERD_SHIM_WASMTIME_CACHE_DIR)

CHAT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHAT_DIR=${CHAT_DIR:-/var/tmp/containerd-shim-wasmtime/chat}

# Values of a running stack win over defaults, never over the caller's env.
# A registry the caller names gets its own plain-HTTP default, not the one
# saved for the stack's registry.
chat_load_env() {
    local line var registry_given=${CHAT_REGISTRY+x}
    [ -f "$CHAT_DIR/stack.env" ] || return 0
    while IFS= read -r line; do
        var=${line%%=*}
        [[ $var =~ ^CHAT_[A-Z_]+$ ]] || continue
        [ "$var" != CHAT_REGISTRY_PLAIN_HTTP ] || [ -z "$registry_given" ] || continue
        # shellcheck disable=SC2163 # exports VAR=value
        [ -n "${!var+x}" ] || export "$line"
    done <"$CHAT_DIR/stack.env"
}

chat_config() {
    CHAT_NAMESPACE=${CHAT_NAMESPACE:-chat}
    CHAT_PORT_OFFSET=${CHAT_PORT_OFFSET:-0}
    local o=$CHAT_PORT_OFFSET
    CHAT_GATEWAY_PORT=${CHAT_GATEWAY_PORT:-$((3000 + o))}
    CHAT_SESSION_PORT=${CHAT_SESSION_PORT:-$((8081 + o))}
    CHAT_CHAT_PORT=${CHAT_CHAT_PORT:-$((8082 + o))}
    CHAT_MESSAGE_PORT=${CHAT_MESSAGE_PORT:-$((8083 + o))}
    CHAT_USER_PORT=${CHAT_USER_PORT:-$((8084 + o))}
    CHAT_TRUNCATOR_PORT=${CHAT_TRUNCATOR_PORT:-$((8085 + o))}
    CHAT_MYSQL_PORT=${CHAT_MYSQL_PORT:-$((3306 + o))}
    CHAT_REDIS_PORT=${CHAT_REDIS_PORT:-$((6379 + o))}
    CHAT_TRUNCATOR_ENABLED=${CHAT_TRUNCATOR_ENABLED:-true}
    CHAT_LOG_LEVEL=${CHAT_LOG_LEVEL:-info}
    CHAT_CNI_BRIDGE=${CHAT_CNI_BRIDGE:-chat-cni0}
    CHAT_CNI_SUBNET=${CHAT_CNI_SUBNET:-10.214.0.0/24}
    CHAT_REGISTRY=${CHAT_REGISTRY:-}
    CHAT_REGISTRY=${CHAT_REGISTRY%/}
    if [ -z "${CHAT_REGISTRY_PLAIN_HTTP:-}" ]; then
        CHAT_REGISTRY_PLAIN_HTTP=false
        if [ -n "$CHAT_REGISTRY" ] && chat_registry_is_loopback "$CHAT_REGISTRY"; then
            CHAT_REGISTRY_PLAIN_HTTP=true
        fi
    fi
    CHAT_CARGO_TARGET_DIR=${CHAT_CARGO_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}}
    CHAT_URL="http://127.0.0.1:$CHAT_GATEWAY_PORT"
    CHAT_CONTAINERD="$CHAT_DIR/containerd"
    CHAT_VOLUMES="$CHAT_DIR/volumes"
    # containerd.sh reads these when sourced; containerd_down deletes
    # $CNI_BRIDGE, so it must never be the e2e tests' bridge.
    export CNI_BRIDGE=$CHAT_CNI_BRIDGE CNI_SUBNET=$CHAT_CNI_SUBNET
    # Inherited by containerd and so by the shim: compiled services survive
    # restarts of the stack.
    export CONTAINERD_SHIM_WASMTIME_CACHE_DIR="$CHAT_DIR/compile-cache"
}

# Whether a registry (HOST[:PORT][/PREFIX]) is on this machine's loopback.
chat_registry_is_loopback() {
    local host=${1%%/*}
    case $host in
        \[::1\] | \[::1\]:*) return 0 ;;
    esac
    host=${host%:*}
    case $host in
        localhost | 127.*) return 0 ;;
    esac
    return 1
}

chat_save_env() {
    local v
    mkdir -p "$CHAT_DIR"
    for v in CHAT_NAMESPACE CHAT_PORT_OFFSET CHAT_GATEWAY_PORT CHAT_SESSION_PORT CHAT_CHAT_PORT \
        CHAT_MESSAGE_PORT CHAT_USER_PORT CHAT_TRUNCATOR_PORT CHAT_MYSQL_PORT CHAT_REDIS_PORT \
        CHAT_TRUNCATOR_ENABLED CHAT_LOG_LEVEL CHAT_CNI_BRIDGE CHAT_CNI_SUBNET \
        CHAT_REGISTRY CHAT_REGISTRY_PLAIN_HTTP; do
        printf '%s=%s\n' "$v" "${!v}"
    done >"$CHAT_DIR/stack.env"
}

chat_load_env
chat_config
. "$CHAT_ROOT/tests/lib/containerd.sh"

CHAT_WASM_SERVICES=(session chat message user truncator gateway)
CHAT_LINUX_SERVICES=(mariadb redis)

chat_log() { echo "==> $*" >&2; }
# A build step's message; up.sh redefines it to add the elapsed time.
chat_step() { chat_log "$@"; }

ctrc() { CTR_NAMESPACE=$CHAT_NAMESPACE ctr_private "$CHAT_CONTAINERD" "$@"; }

chat_containerd_alive() {
    [ -S "$CHAT_CONTAINERD/containerd.sock" ] &&
        ctr --address "$CHAT_CONTAINERD/containerd.sock" version >/dev/null 2>&1
}

# STATUS of a task (RUNNING, STOPPED, …), empty if there is none.
chat_task_status() {
    ctrc tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'
}

chat_port_of() {
    case $1 in
        session) echo "$CHAT_SESSION_PORT" ;;
        chat) echo "$CHAT_CHAT_PORT" ;;
        message) echo "$CHAT_MESSAGE_PORT" ;;
        user) echo "$CHAT_USER_PORT" ;;
        truncator) echo "$CHAT_TRUNCATOR_PORT" ;;
        gateway) echo "$CHAT_GATEWAY_PORT" ;;
        mariadb) echo "$CHAT_MYSQL_PORT" ;;
        redis) echo "$CHAT_REDIS_PORT" ;;
        *) return 1 ;;
    esac
}

# Imports an image tar. Retried: when a re-import moves a tag, containerd's
# garbage collector can remove a layer snapshot shared with the old image
# while the new one unpacks ("parent snapshot ... does not exist"); the next
# attempt unpacks it again.
chat_import() { # PLATFORM TAR
    local i
    for i in 1 2 3; do
        if ctrc images import --platform "$1" "$2" >"$CHAT_DIR/logs/import.log" 2>&1; then
            return 0
        fi
        chat_log "importing $(basename "$2") failed (attempt $i): $(tail -n 1 "$CHAT_DIR/logs/import.log")"
        sleep 1
    done
    cat "$CHAT_DIR/logs/import.log" >&2
    return 1
}

# The reference a service's container runs from: the pulled
# $CHAT_REGISTRY/chat/NAME:latest, or the imported localhost/chat/NAME:latest.
chat_image() { # NAME
    if [ -n "$CHAT_REGISTRY" ]; then
        echo "$CHAT_REGISTRY/chat/$1:latest"
    else
        echo "localhost/chat/$1:latest"
    fi
}

chat_platform() { # NAME
    case $1 in
        mariadb | redis) echo linux/amd64 ;;
        *) echo wasi/wasm ;;
    esac
}

# Pulls NAME's image from CHAT_REGISTRY and unpacks it for its platform.
# Retried like chat_import (a moved tag can race the garbage collector).
chat_pull() { # NAME
    local ref i args=(--platform "$(chat_platform "$1")")
    ref=$(chat_image "$1")
    [ "$CHAT_REGISTRY_PLAIN_HTTP" != true ] || args+=(--plain-http)
    for i in 1 2 3; do
        if ctrc images pull "${args[@]}" "$ref" >"$CHAT_DIR/logs/pull.log" 2>&1; then
            return 0
        fi
        chat_log "pulling $ref failed (attempt $i): $(tail -n 1 "$CHAT_DIR/logs/pull.log")"
        sleep 1
    done
    cat "$CHAT_DIR/logs/pull.log" >&2
    return 1
}

# ---- building (up.sh, push-images.sh) ---------------------------------------

# What building needs: deploy/dev/install-deps.sh (containerd, runc, Rust
# targets, ...), curl, debootstrap, python3; with `ui`, also node and npm.
chat_build_prereqs() { # [ui]
    local extra=() p
    bash "$CHAT_ROOT/deploy/dev/install-deps.sh"
    for p in curl debootstrap python3; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || extra+=("$p")
    done
    if [ "${#extra[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
    fi
    if [ "${1:-}" = ui ] && { ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; }; then
        echo "error: node (>= 20.19) and npm are needed to build the web UI (Debian 12's nodejs 18 is too old for vite 7)" >&2
        return 1
    fi
}

# Builds the workspace binaries asked for (shim, wasm-oci) unless
# CHAT_SHIM_BIN / CHAT_WASM_OCI name prebuilt ones; sets CHAT_SHIM_PATH and
# CHAT_WASM_OCI_PATH. Both from source: the whole workspace, as before.
chat_build_binaries() { # shim|wasm-oci...
    local what pkgs=() n=0
    CHAT_SHIM_PATH=${CHAT_SHIM_BIN:-$CHAT_CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1}
    CHAT_WASM_OCI_PATH=${CHAT_WASM_OCI:-$CHAT_CARGO_TARGET_DIR/release/wasm-oci}
    for what in "$@"; do
        n=$((n + 1))
        case $what in
            shim) [ -n "${CHAT_SHIM_BIN:-}" ] || pkgs+=(-p containerd-shim-wasmtime) ;;
            wasm-oci) [ -n "${CHAT_WASM_OCI:-}" ] || pkgs+=(-p wasm-oci) ;;
            *) echo "chat_build_binaries: unknown binary '$what'" >&2; return 1 ;;
        esac
    done
    [ "$n" = 2 ] && [ "${#pkgs[@]}" = 4 ] && pkgs=(--workspace)
    if [ "${#pkgs[@]}" -gt 0 ]; then
        (cd "$CHAT_ROOT" && CARGO_TARGET_DIR=$CHAT_CARGO_TARGET_DIR cargo build --release --locked "${pkgs[@]}") || return 1
    fi
    for what in "$@"; do
        case $what in
            shim) [ -x "$CHAT_SHIM_PATH" ] || { echo "error: no shim binary at $CHAT_SHIM_PATH" >&2; return 1; } ;;
            wasm-oci) [ -x "$CHAT_WASM_OCI_PATH" ] || { echo "error: no wasm-oci at $CHAT_WASM_OCI_PATH" >&2; return 1; } ;;
        esac
    done
}

# The eight image tars in $CHAT_DIR/images: the services and the web UI
# (images/services/build.sh into $CHAT_DIR/wasm), MariaDB and Redis
# (images/linux/build.sh), one wasm-oci image per service. Needs
# chat_build_binaries wasm-oci first.
chat_build_images() {
    local s add
    chat_step "building the chat services and the web UI"
    # build.sh must run inside images/services: cargo reads that directory's
    # .cargo/config.toml (tokio_unstable for wasm32-wasip2) from the cwd.
    # Its own target dir, not the workspace's (other flags, other target).
    (cd "$CHAT_ROOT/images/services" &&
        CARGO_TARGET_DIR=${CHAT_SERVICES_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/services-target} \
            bash ./build.sh "$CHAT_DIR/wasm") >&2 || return 1
    chat_step "building the MariaDB and Redis images"
    bash "$CHAT_ROOT/images/linux/build.sh" "$CHAT_DIR/images" >&2 || return 1
    chat_step "building the service images"
    for s in "${CHAT_WASM_SERVICES[@]}"; do
        add=()
        [ "$s" != gateway ] || add=(--add "$CHAT_DIR/wasm/www:/www")
        "$CHAT_WASM_OCI_PATH" build --module "$CHAT_DIR/wasm/$s.wasm" --name "localhost/chat/$s:latest" \
            -o "$CHAT_DIR/images/$s.tar" "${add[@]}" >/dev/null || return 1
    done
}

chat_port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

chat_db_password() {
    local f="$CHAT_VOLUMES/db-password"
    if [ ! -s "$f" ]; then
        mkdir -p "$CHAT_VOLUMES"
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$f")
    fi
    cat "$f"
}

# Runs NAME detached; the runtime's shim appends its output to
# logs/NAME.log (a file:// log URI, which runc's shim and ours support).
chat_run() { # NAME CTR_RUN_ARGS... IMAGE
    local name=$1
    shift
    mkdir -p "$CHAT_DIR/logs"
    printf '\n--- %s: starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$CHAT_DIR/logs/$name.log"
    ctrc run -d --net-host --log-uri "file://$CHAT_DIR/logs/$name.log" "$@" "$name" >/dev/null
}

chat_start() { # NAME
    local name=$1 db redis
    db="mysql://chat:$(chat_db_password)@127.0.0.1:$CHAT_MYSQL_PORT/chat"
    redis="redis://127.0.0.1:$CHAT_REDIS_PORT/0"
    local wasm=(--runtime io.containerd.wasmtime.v1 --platform wasi/wasm
        --env LISTEN_ADDR=127.0.0.1 --env "LISTEN_PORT=$(chat_port_of "$name")" --env "LOG_LEVEL=$CHAT_LOG_LEVEL")
    # The gateway is a wasi:http component: the shim serves it on WASI_HTTP_*.
    local http=(--runtime io.containerd.wasmtime.v1 --platform wasi/wasm
        --env WASI_HTTP_ADDR=127.0.0.1 --env "WASI_HTTP_PORT=$(chat_port_of "$name")")
    case $name in
        mariadb)
            mkdir -p "$CHAT_VOLUMES/mariadb"
            chat_run mariadb --mount "type=bind,src=$CHAT_VOLUMES/mariadb,dst=/var/lib/mysql,options=rbind:rw" \
                --env MARIADB_DATABASE=chat --env MARIADB_USER=chat --env "MARIADB_PASSWORD=$(chat_db_password)" \
                --env MARIADB_BIND_ADDRESS=127.0.0.1 --env "MARIADB_PORT=$CHAT_MYSQL_PORT" \
                "$(chat_image mariadb)"
            ;;
        redis)
            mkdir -p "$CHAT_VOLUMES/redis"
            chat_run redis --mount "type=bind,src=$CHAT_VOLUMES/redis,dst=/data,options=rbind:rw" \
                --env REDIS_BIND_ADDRESS=127.0.0.1 --env "REDIS_PORT=$CHAT_REDIS_PORT" \
                "$(chat_image redis)"
            ;;
        session | chat | message)
            chat_run "$name" "${wasm[@]}" --env "DATABASE_URL=$db" "$(chat_image "$name")"
            ;;
        user)
            chat_run user "${wasm[@]}" --env "DATABASE_URL=$db" --env "REDIS_URL=$redis" "$(chat_image user)"
            ;;
        truncator)
            chat_run truncator "${wasm[@]}" --env "DATABASE_URL=$db" --env "REDIS_URL=$redis" \
                --env "TRUNCATOR_ENABLED=$CHAT_TRUNCATOR_ENABLED" "$(chat_image truncator)"
            ;;
        gateway)
            chat_run gateway "${http[@]}" --env STATIC_DIR=/www \
                --env "SESSION_URL=http://127.0.0.1:$CHAT_SESSION_PORT" \
                --env "CHAT_URL=http://127.0.0.1:$CHAT_CHAT_PORT" \
                --env "MESSAGE_URL=http://127.0.0.1:$CHAT_MESSAGE_PORT" \
                --env "USER_URL=http://127.0.0.1:$CHAT_USER_PORT" \
                --env "TRUNCATOR_URL=http://127.0.0.1:$CHAT_TRUNCATOR_PORT" \
                "$(chat_image gateway)"
            ;;
        *)
            echo "unknown service '$name'" >&2
            return 1
            ;;
    esac
}

# Is NAME ready? Linux services: their port accepts connections (MariaDB's
# first-start initialisation runs without networking). Wasm services: they
# answer HTTP (they open their port after migrating the schema). Gateway:
# it serves the UI and reaches the chat service (401 without a session).
chat_ready() {
    local name=$1 port code
    port=$(chat_port_of "$name")
    case $name in
        mariadb | redis) (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ;;
        gateway)
            [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/")" = 200 ] &&
                [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/api/chats")" = 401 ]
            ;;
        *)
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/api/none")
            [ "$code" != 000 ]
            ;;
    esac
}

chat_wait_ready() { # TIMEOUT_SECONDS NAME...
    local timeout=$1 name deadline
    shift
    deadline=$((SECONDS + timeout))
    for name in "$@"; do
        until chat_ready "$name"; do
            if [ "$(chat_task_status "$name")" != RUNNING ]; then
                echo "error: $name exited; last lines of $CHAT_DIR/logs/$name.log:" >&2
                tail -n 20 "$CHAT_DIR/logs/$name.log" >&2
                return 1
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "error: $name not ready after ${timeout}s; last lines of $CHAT_DIR/logs/$name.log:" >&2
                tail -n 20 "$CHAT_DIR/logs/$name.log" >&2
                return 1
            fi
            sleep 0.2
        done
    done
}

# Stops NAME: SIGTERM, SIGKILL after TIMEOUT seconds, then removes the task
# and the container (and its snapshot; volumes are bind mounts and stay).
chat_stop() { # NAME [TIMEOUT]
    local name=$1 timeout=${2:-10} status deadline i
    status=$(chat_task_status "$name")
    if [ -n "$status" ] && [ "$status" != STOPPED ]; then
        ctrc tasks kill -s SIGTERM "$name" >/dev/null 2>&1 || true
        deadline=$((SECONDS + timeout))
        while status=$(chat_task_status "$name") && [ -n "$status" ] && [ "$status" != STOPPED ]; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                chat_log "$name did not stop in ${timeout}s; SIGKILL"
                ctrc tasks kill -s SIGKILL "$name" >/dev/null 2>&1 || true
                deadline=$((SECONDS + 10))
            fi
            sleep 0.1
        done
    fi
    ctrc tasks delete -f "$name" >/dev/null 2>&1 || true
    for i in $(seq 1 50); do
        ctrc containers delete "$name" >/dev/null 2>&1 || true
        ctrc containers info "$name" >/dev/null 2>&1 || break
        sleep 0.1
    done
}

# Stops every container of the stack (Wasm services first, the gateway
# before them, the databases last and gracefully), then containerd.
chat_down() {
    if [ ! -d "$CHAT_CONTAINERD" ]; then
        return 0
    fi
    if ! chat_containerd_alive && [ -d "$CHAT_CONTAINERD/state" ] && [ -x "$CHAT_DIR/bin/containerd-shim-wasmtime-v1" ]; then
        # containerd is gone but shims may still run containers: start it
        # again (it reconnects to them) so they can be stopped cleanly.
        containerd_up "$CHAT_CONTAINERD" "$CHAT_DIR/bin" >/dev/null 2>&1 || true
    fi
    if chat_containerd_alive; then
        local name
        for name in gateway session chat message user truncator; do
            chat_stop "$name" 10
        done
        for name in redis mariadb; do
            chat_stop "$name" 60
        done
        # Anything else left in the namespace (e.g. a test's exec or a
        # container started by hand).
        for name in $(ctrc containers ls -q 2>/dev/null); do
            chat_stop "$name" 10
        done
    fi
    containerd_down "$CHAT_CONTAINERD"
}
