# shellcheck shell=bash disable=SC2034 # COMPOSE_CLEANUP is read by run.sh
# The chat app with docker compose on tests/docker/run.sh's daemon: sourced
# by run.sh when DOCKER_E2E_COMPOSE=1, after its own checks. Uses run.sh's
# dk/dkt, ok/not_ok/check, ROOT, WORK, WASM_OCI and REGISTRY.
#
# The images come from run.sh's loopback registry, pushed there by
# deploy/local/push-images.sh (building the services on first use), and
# compose runs deploy/compose/compose.yaml with compose.registry.yaml and
# compose.hostnet.yaml on top: the Wasm services on the host's network (on
# a bridge network Docker would configure the shim's own namespace, see
# compose.hostnet.yaml), MariaDB and Redis on network "chat", a user bridge
# that dockerd makes without iptables.

COMPOSE_PROJECT=wasm-chat-e2e
# A /24 of its own for network "chat", away from compose.yaml's default.
COMPOSE_NET_PREFIX=${DOCKER_E2E_CHAT_NET_PREFIX:-10.224.0}
# Ports on 127.0.0.1, away from deploy/local's 3000 and 8081-8085.
COMPOSE_PORT_BASE=${DOCKER_E2E_CHAT_PORT_BASE:-23000}

dc() { # SECONDS ARGS...
    local t=$1 b=$COMPOSE_PORT_BASE
    shift
    CHAT_REGISTRY=$REGISTRY CHAT_NET_PREFIX=$COMPOSE_NET_PREFIX CHAT_HTTP_PORT=$b \
        CHAT_SESSION_PORT=$((b + 81)) CHAT_CHAT_PORT=$((b + 82)) CHAT_MESSAGE_PORT=$((b + 83)) \
        CHAT_USER_PORT=$((b + 84)) CHAT_TRUNCATOR_PORT=$((b + 85)) \
        dkt "$t" compose -p "$COMPOSE_PROJECT" -f "$ROOT/deploy/compose/compose.yaml" \
        -f "$ROOT/deploy/compose/compose.registry.yaml" -f "$ROOT/deploy/compose/compose.hostnet.yaml" "$@"
}

# run.sh's cleanup calls this first: the stack down with its volumes.
compose_cleanup() {
    dc 120 down -v --timeout 10 >/dev/null 2>&1 || true
}

# HTTP status of METHOD URL [Session-Id]; the body in $WORK/compose-body.
compose_http() {
    local args=(-s -o "$WORK/compose-body" -w '%{http_code}' --max-time 5 -X "$1")
    [ -z "${3:-}" ] || args+=(-H "Session-Id: $3")
    curl "${args[@]}" "$2" 2>/dev/null || true
}

compose_checks() {
    local t0=$SECONDS base code session p deadline out
    for p in 0 81 82 83 84 85; do
        if registry_port_busy $((COMPOSE_PORT_BASE + p)); then
            not_ok "compose: port $((COMPOSE_PORT_BASE + p)) is in use (DOCKER_E2E_CHAT_PORT_BASE moves them)"
            return 0
        fi
    done
    echo "==> chat images: deploy/local/push-images.sh $REGISTRY"
    # Its own CHAT_DIR: never the files of a stack deploy/local/up.sh runs.
    if ! CHAT_DIR=${DOCKER_E2E_CHAT_DIR:-/var/tmp/containerd-shim-wasmtime/docker-chat} CHAT_WASM_OCI=$WASM_OCI \
        bash "$ROOT/deploy/local/push-images.sh" "$REGISTRY" >"$WORK/push-images.log" 2>&1; then
        not_ok "compose: push-images.sh failed: $(tail -n 5 "$WORK/push-images.log" | tr '\n' ' ')"
        return 0
    fi
    echo "==> docker compose (pushed in $((SECONDS - t0)) s)"
    COMPOSE_CLEANUP=compose_cleanup
    check "docker compose config (compose.yaml + compose.registry.yaml + compose.hostnet.yaml)" dc 30 config -q
    # --wait: Linux services healthy, Wasm services running (they have no
    # healthcheck; see deploy/compose/README.md).
    check "docker compose up -d --wait: 8 services" dc 300 up -d --wait --wait-timeout 240 --quiet-pull
    base=http://127.0.0.1:$COMPOSE_PORT_BASE
    # The gateway answers once it listens; the services behind it once they
    # have migrated the schema.
    deadline=$((SECONDS + 90))
    while code=$(compose_http GET "$base/api/sessions") && [ "$code" != 201 ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.3
    done
    session=$(grep -o '"session_id":"[^"]*"' "$WORK/compose-body" 2>/dev/null | head -n 1 | cut -d'"' -f4) || session=
    if [ "$code" = 201 ] && [ -n "$session" ]; then
        ok "compose: GET /api/sessions through the gateway: 201, session $session"
    else
        not_ok "compose: GET /api/sessions: HTTP $code, body $(head -c 200 "$WORK/compose-body" 2>/dev/null)"
        dc 30 logs --tail 15 session gateway 2>&1 | sed 's/^/    /' || true
    fi
    code=$(compose_http GET "$base/")
    if [ "$code" = 200 ] && grep -qi '<html' "$WORK/compose-body"; then
        ok "compose: the web UI (GET /): 200"
    else
        not_ok "compose: GET /: HTTP $code"
    fi
    code=$(compose_http GET "$base/api/chats" "$session")
    if [ "$code" = 200 ]; then ok "compose: GET /api/chats with the session: 200"; else not_ok "compose: GET /api/chats: HTTP $code"; fi
    # Every route and status code of the app (images/services/smoke.sh).
    if out=$(timeout 120 bash "$ROOT/images/services/smoke.sh" "$base" 2>&1); then
        ok "compose: images/services/smoke.sh through the gateway: $(tail -n 1 <<<"$out")"
    else
        not_ok "compose: smoke.sh: $(grep -E '^FAIL' <<<"$out" | head -n 5 | tr '\n' ' ') $(tail -n 1 <<<"$out")"
    fi
    out=$(dc 60 ps --format '{{.Service}} {{.State}}' 2>&1) || true
    if [ "$(grep -c ' running$' <<<"$out")" = 8 ]; then
        ok "compose ps: 8 services running"
    else
        not_ok "compose ps: $(tr '\n' ' ' <<<"$out")"
    fi
    check "docker compose down -v" dc 180 down -v --timeout 20
    COMPOSE_CLEANUP=
    echo "==> compose checks took $((SECONDS - t0)) s"
}
