#!/usr/bin/env bash
# Docker end to end: a private dockerd (built from Go modules by
# deploy/dev/build-go-tools.sh) on a private containerd 2.x whose PATH has the
# shim, Wasm images loaded with `docker load` and pulled from a loopback
# registry, run with `docker run --runtime=io.containerd.wasmtime.v1`.
#
#   tests/docker/run.sh [SHIM]      SHIM: a containerd-shim-wasmtime-v1 binary
#                                   (else $E2E_SHIM, else the one in
#                                   $CARGO_TARGET_DIR/release)
#
# E2E_FIXTURES=DIR reuses fixtures built by images/fixtures/build.sh.
# Then the chat app with docker compose (tests/docker/compose.sh; builds the
# chat images like deploy/local/up.sh and pushes them to the registry);
# DOCKER_E2E_COMPOSE=0 skips it. DOCKER_E2E_KEEP=1 keeps the work dir.
# Prints `ok - …` / `not ok - …` per check and `N passed, M failed` last;
# exits 1 if any check failed. Needs root. See tests/docker/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
SHIM=${1:-${E2E_SHIM:-$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1}}
WASM_OCI=${WASM_OCI:-$CARGO_TARGET_DIR/release/wasm-oci}
RUNTIME=io.containerd.wasmtime.v1
# containerd_down deletes this bridge: never another test's.
export CNI_BRIDGE=docker-e2e0 CNI_SUBNET=10.223.0.0/24

. "$ROOT/tests/lib/containerd.sh"
. "$ROOT/tests/lib/registry.sh"

for f in "$SHIM" "$WASM_OCI"; do
    [ -x "$f" ] || { echo "tests/docker: $f is missing (build the workspace first)" >&2; exit 1; }
done

echo "==> docker and containerd 2.x from Go modules"
bash "$ROOT/deploy/dev/build-go-tools.sh"
# CONTAINERD2_BIN_DIR, DOCKER_BIN_DIR, ...
eval "$(bash "$ROOT/deploy/dev/build-go-tools.sh" --print-env)"

WORK=$(mktemp -d /tmp/wasmtime-docker-e2e.XXXXXX)
CTRD=$WORK/containerd
DOCKER_SOCK=$WORK/docker/docker.sock
# Each container's cgroup goes under this parent, removed at the end.
CGROUP_PARENT=wasmtime-docker-e2e
passed=0 failed=0

ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# CHECK NAME COMMAND...: ok if COMMAND succeeds; its output only if not.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name: $out"; fi
}

# The CLI, with its own config dir (cli-plugins: compose) and our daemon.
dk() {
    DOCKER_CONFIG=$WORK/docker-config DOCKER_HOST=unix://$DOCKER_SOCK "$DOCKER_BIN_DIR/docker" "$@"
}
# dk with a time limit, for commands that wait on a container.
dkt() { # SECONDS ARGS...
    local t=$1
    shift
    DOCKER_CONFIG=$WORK/docker-config DOCKER_HOST=unix://$DOCKER_SOCK timeout "$t" "$DOCKER_BIN_DIR/docker" "$@"
}

# PIDs of shim processes running our copy of the shim binary (other agents'
# containerds run shims too; only ours have this exe).
our_shims() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [ "$exe" = "$WORK/bin/containerd-shim-wasmtime-v1" ] && echo "${p#/proc/}"
    done
    return 0
}

dockerd_down() {
    local pid
    [ -f "$WORK/docker/dockerd.pid" ] || return 0
    pid=$(cat "$WORK/docker/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        # Remove containers first: without live-restore dockerd stops them on
        # exit, but containers it cannot reach would keep their shims.
        local ids
        ids=$(dkt 30 ps -aq 2>/dev/null) || ids=
        # shellcheck disable=SC2086 # one word per id
        [ -z "$ids" ] || dkt 60 rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_pid_file "$WORK/docker/dockerd.pid" 15
}

cleanup() {
    if [ -n "${COMPOSE_CLEANUP:-}" ]; then $COMPOSE_CLEANUP; fi
    dockerd_down || true
    containerd_down "$CTRD" || true
    registry_down "$WORK/registry" || true
    # dockerd's overlay mounts and network namespaces live under WORK.
    local m
    for m in $(awk -v d="$WORK" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    find /sys/fs/cgroup/*/"$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    if [ -n "${DOCKER_E2E_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- setup -----------------------------------------------------------------

mkdir -p "$WORK/bin" "$WORK/docker" "$WORK/docker-config/cli-plugins" "$WORK/images"
cp "$SHIM" "$WORK/bin/containerd-shim-wasmtime-v1"
ln -s "$DOCKER_BIN_DIR/docker-compose" "$WORK/docker-config/cli-plugins/docker-compose"

FIXTURES=${E2E_FIXTURES:-}
if [ -z "$FIXTURES" ]; then
    echo "==> building test fixtures"
    FIXTURES=$WORK/fixtures
    bash "$ROOT/images/fixtures/build.sh" "$FIXTURES" >/dev/null
fi
img() { # NAME MODULE [wasm-oci args]
    local name=$1 module=$2
    shift 2
    "$WASM_OCI" build --module "$module" --name "localhost/test/$name:latest" -o "$WORK/images/$name.tar" "$@" >/dev/null
}
img hello "$FIXTURES/hello.wasm"
img probe "$FIXTURES/probe.wasm"
img http-hello "$FIXTURES/http-hello.wasm"
img busybox /bin/busybox --platform linux/amd64 --file-name bin/busybox

echo "==> loopback registry"
registry_up "$WORK/registry"
REGISTRY=$(registry_address "$WORK/registry")
for name in probe http-hello; do
    "$WASM_OCI" push "$WORK/images/$name.tar" "$REGISTRY/test/$name:latest" --plain-http >/dev/null
done

echo "==> containerd $(containerd_release "$CONTAINERD2_BIN_DIR") in $CTRD"
CONTAINERD_BIN_DIR=$CONTAINERD2_BIN_DIR containerd_up "$CTRD" "$WORK/bin"

echo "==> dockerd in $WORK/docker"
# A daemon.json of our own, so the machine's /etc/docker/daemon.json (if
# any) does not apply. Docker 29 gives every container a time namespace,
# which Debian 12's runc 1.1.5 rejects ("namespace {"time" ""} does not
# exist"): the feature flag turns that off. No iptables and no default
# default bridge: the test must not change the host's firewall; the bridge
# network check makes a bridge of its own and removes it.
echo '{"features": {"time-namespaces": false}}' >"$WORK/docker/daemon.json"
# The shim is deliberately not on dockerd's PATH: containerd resolves the
# runtime name to a binary on its own PATH. DOCKERD_ONLY_SECRET must not
# reach a guest either.
(PATH="$DOCKER_BIN_DIR:$CONTAINERD2_BIN_DIR:$PATH" DOCKERD_ONLY_SECRET=do-not-leak exec setsid \
    "$DOCKER_BIN_DIR/dockerd" --config-file "$WORK/docker/daemon.json" \
    --containerd "$CTRD/containerd.sock" \
    --data-root "$WORK/docker/data" --exec-root "$WORK/docker/exec" \
    --pidfile "$WORK/docker/docker.pid" -H "unix://$DOCKER_SOCK" \
    --iptables=false --ip6tables=false --bridge=none --userland-proxy=false \
    --cgroup-parent "$CGROUP_PARENT" --insecure-registry "$REGISTRY" \
    >"$WORK/docker/dockerd.log" 2>&1 </dev/null) &
echo $! >"$WORK/docker/dockerd.pid"
for i in $(seq 1 300); do
    dkt 5 version >/dev/null 2>&1 && break
    if ! kill -0 "$(cat "$WORK/docker/dockerd.pid")" 2>/dev/null || [ "$i" = 300 ]; then
        echo "dockerd did not come up; log:" >&2
        tail -n 40 "$WORK/docker/dockerd.log" >&2
        exit 1
    fi
    sleep 0.1
done
dk version --format 'docker {{.Client.Version}}, dockerd {{.Server.Version}} (API {{.Server.APIVersion}})'

# ---- checks ----------------------------------------------------------------

echo "==> checks"
info=$(dk info 2>&1) || true
if grep -q 'driver-type: io.containerd.snapshotter.v1' <<<"$info"; then
    ok "docker info: the containerd image store (driver-type io.containerd.snapshotter.v1)"
else
    not_ok "docker info: the containerd image store; got: $(grep -i -A2 'storage driver' <<<"$info" | tr '\n' ' ')"
fi

check "docker load of a wasm-oci image tar (wasi/wasm)" \
    dkt 60 load --platform wasi/wasm -i "$WORK/images/hello.tar" -q
out=$(dkt 60 run --rm --runtime=$RUNTIME --platform wasi/wasm localhost/test/hello:latest 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && [ "$(sed -n 1p <<<"$out")" = "hello from wasm" ]; then
    ok "docker run --rm hello: 'hello from wasm', exit 0"
else
    not_ok "docker run --rm hello: exit $rc, output: $out"
fi

check "docker pull --platform wasi/wasm from the loopback registry" \
    dkt 60 pull -q --platform wasi/wasm "$REGISTRY/test/probe:latest"
PROBE=$REGISTRY/test/probe:latest
dkt 60 run --rm --runtime=$RUNTIME --platform wasi/wasm "$PROBE" exit 7 >/dev/null 2>&1 && rc=0 || rc=$?
if [ "$rc" = 7 ]; then ok "probe exit 7: docker run exits 7"; else not_ok "probe exit 7: docker run exited $rc"; fi

out=$(dkt 60 run --rm --runtime=$RUNTIME --platform wasi/wasm -e GREETING=hi "$PROBE" env 2>&1) || true
if grep -qx 'GREETING=hi' <<<"$out" && ! grep -q 'do-not-leak' <<<"$out"; then
    ok "env: -e GREETING=hi reaches the guest, containerd's and dockerd's env do not"
else
    not_ok "env: got: $(tr '\n' ' ' <<<"$out")"
fi
out=$(dkt 60 run --rm --runtime=$RUNTIME --platform wasi/wasm "$PROBE" args one "two words" 2>&1) || true
want=$(printf 'argv[0]=/probe.wasm\nargv[1]=args\nargv[2]=one\nargv[3]=two words')
if [ "$out" = "$want" ]; then ok "args: entrypoint + docker run args reach the guest as argv"; else not_ok "args: got: $out"; fi

# A wasi:http server on the host network; docker stop sends SIGTERM, the
# shim drains and exits 0.
port=
for p in $(seq 18480 18579); do
    registry_port_busy "$p" || { port=$p; break; }
done
if dkt 60 run -d --name http --runtime=$RUNTIME --platform wasi/wasm --network host \
    -e "WASI_HTTP_PORT=$port" "$REGISTRY/test/http-hello:latest" >/dev/null 2>&1; then
    body='' code=''
    for i in $(seq 1 100); do
        resp=$(curl -s --max-time 2 -w '\n%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null) || resp=
        code=$(tail -n 1 <<<"$resp")
        body=$(sed '$d' <<<"$resp")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    if [ "$code" = 200 ] && [ "$body" = "hello from wasi:http" ]; then
        ok "wasi:http server (docker run -d --network host): 200 'hello from wasi:http'"
    else
        not_ok "wasi:http server: HTTP $code, body '$body'"
    fi
    dkt 60 stop -t 10 http >/dev/null 2>&1 || true
    code=$(dk inspect -f '{{.State.Status}} {{.State.ExitCode}}' http 2>&1) || true
    if [ "$code" = "exited 0" ]; then ok "docker stop of the wasi:http server: exit 0 (drained)"; else not_ok "docker stop: state '$code'"; fi
    dkt 30 rm -f http >/dev/null 2>&1 || true
else
    not_ok "wasi:http server: docker run -d failed"
    not_ok "docker stop of the wasi:http server: not started"
fi

# docker logs of a finished detached Wasm container.
if dkt 60 run -d --name logs --runtime=$RUNTIME --platform wasi/wasm localhost/test/hello:latest >/dev/null 2>&1 &&
    [ "$(dkt 30 wait logs 2>/dev/null)" = 0 ]; then
    out=$(dkt 30 logs logs 2>&1) || true
    if grep -qx 'hello from wasm' <<<"$out" && grep -qx 'argv\[0\]=/hello.wasm' <<<"$out"; then
        ok "docker logs of a Wasm container shows its output"
    else
        not_ok "docker logs: got: $out"
    fi
else
    not_ok "docker logs: the container did not run to exit 0"
fi
dkt 30 rm -f logs >/dev/null 2>&1 || true

# A Wasm container on a Docker bridge network. Docker configures the
# network namespace at /proc/<task pid>/ns/net: it must be the container's
# (the shim reports a thread parked in it), never the host's. The bridge
# and its subnet are this test's own; --iptables=false leaves the firewall.
if dkt 30 network create --driver bridge -o com.docker.network.bridge.name=wdk-e2e0 \
    --subnet 10.226.0.0/24 e2enet >/dev/null 2>&1 &&
    dkt 60 run -d --name br --network e2enet --runtime=$RUNTIME --platform wasi/wasm \
        -e WASI_HTTP_PORT=8080 "$REGISTRY/test/http-hello:latest" >/dev/null 2>&1; then
    ip_addr=$(dk inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' br 2>/dev/null) || ip_addr=
    body=
    for i in $(seq 1 100); do
        [ -n "$ip_addr" ] && body=$(curl -s --max-time 2 "http://$ip_addr:8080/" 2>/dev/null) && [ -n "$body" ] && break
        sleep 0.1
    done
    # The host holds the bridge's address only; the container's is not on it.
    host_addrs=$(ip -o -4 addr show | awk '$4 ~ /^10\.226\.0\./ {print $2 "=" $4}' | tr '\n' ' ')
    if [ "$body" = "hello from wasi:http" ] && [ "$host_addrs" = "wdk-e2e0=10.226.0.1/24 " ]; then
        ok "bridge network: the Wasm container answers on $ip_addr:8080; the host holds only the bridge's address"
    else
        not_ok "bridge network: ip '$ip_addr', body '$body', host's addresses in the subnet: $host_addrs"
    fi
else
    not_ok "bridge network: network create or run failed: $(tail -n 3 "$WORK/docker/dockerd.log" | tr '\n' ' ')"
fi
dkt 30 rm -f br >/dev/null 2>&1 || true
dkt 30 network rm e2enet >/dev/null 2>&1 || true

# A Linux container under runc next to the Wasm ones, same daemon.
check "docker load + run of a linux/amd64 image (runc)" dkt 60 load -q -i "$WORK/images/busybox.tar"
out=$(dkt 60 run --rm localhost/test/busybox:latest echo from-runc 2>&1) || true
if [ "$out" = from-runc ]; then ok "runc container: echo from-runc"; else not_ok "runc container: got: $out"; fi

# docker rm -f of a running guest leaves no shim process behind.
if dkt 60 run -d --name sleeper --runtime=$RUNTIME --platform wasi/wasm "$PROBE" sleep 300 >/dev/null 2>&1; then
    before=$(our_shims | wc -l)
    dkt 30 rm -f sleeper >/dev/null 2>&1 || true
    for i in $(seq 1 100); do
        [ -z "$(our_shims)" ] && break
        sleep 0.1
    done
    left=$(our_shims | tr '\n' ' ')
    if [ "$before" -ge 1 ] && [ -z "$left" ]; then
        ok "docker rm -f: no shim process of this containerd left ($before before)"
    else
        not_ok "docker rm -f: $before shim(s) before, left: '$left'"
    fi
else
    not_ok "docker rm -f: docker run -d sleeper failed"
fi

if [ "${DOCKER_E2E_COMPOSE:-1}" != 0 ]; then
    . "$ROOT/tests/docker/compose.sh"
    compose_checks
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
