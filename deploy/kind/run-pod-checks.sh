#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2016 # `check && pass || fail` (pass never fails); sh -c scripts
# Runs the pod checks of our CRI tests (tests/tests/kubernetes.rs) on a real
# Kubernetes: a kind cluster whose node has containerd-shim-wasmtime-v1
# (deploy/kind/kind-config.yaml). Where Docker, kind or kubectl is missing it
# says so and exits 0.
#
#   deploy/kind/run-pod-checks.sh [--keep] [--chat]
#
#   --keep   leave the cluster running afterwards (default: delete it)
#   --chat   also deploy the chat app (deploy/k8s/chat) and run
#            images/services/smoke.sh against its gateway (needs node ≥ 20.19
#            and npm to build the web UI, and the cluster must reach Docker Hub
#            for mysql:8 and redis:7)
#
# Environment: KIND_CLUSTER_NAME (default wasmtime-checks), KIND_NODE_IMAGE
# (a kindest/node image; default: kind's), CARGO_TARGET_DIR.
#
# Checks, as "PASS/FAIL name" lines, then "N passed, M failed":
#   1. a Wasm pod runs, its logs reach the kubelet, and its containers exit
#      with their codes (0 Completed, 7, 134 for a trap)
#   2. a Wasm HTTP server answers on its pod IP, passes a TCP readiness
#      probe, and is reachable through a Service from a Linux pod
#   2b. a wasi:http proxy component (two replicas) passes an HTTP readiness
#      probe, answers on each pod IP and through its Service, and a trapping
#      handler gets 500
#   3. a pod mixing a busybox sidecar (runc) and Wasm containers works, with
#      one shim process for the pod
#   4. deleting pods leaves nothing: no shim process, no mounts (5 rounds)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/deploy/kind"
NAME=${KIND_CLUSTER_NAME:-wasmtime-checks}
NODE="$NAME-control-plane"
NS=wasm-checks
KEEP=0
CHAT=0
for arg in "$@"; do
    case $arg in
        --keep) KEEP=1 ;;
        --chat) CHAT=1 ;;
        *) echo "usage: $0 [--keep] [--chat]" >&2; exit 2 ;;
    esac
done

skip() {
    echo "kind pod checks skipped: $*"
    exit 0
}
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "no Docker daemon is reachable (docker info failed)"
command -v kind >/dev/null 2>&1 || skip "kind is not installed"
command -v kubectl >/dev/null 2>&1 || skip "kubectl is not installed"

die() { echo "error: $*" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
WORK=$(mktemp -d /tmp/wasmtime-kind.XXXXXX)
k() { kubectl --context "kind-$NAME" "$@"; }
node() { docker exec "$NODE" "$@"; }
# PIDs of shim processes in the node, all or those serving SANDBOX (its id is
# on the shim's command line), read from /proc (no procps needed).
shim_pids() { # [SANDBOX]
    node sh -c 'for f in /proc/[0-9]*/cmdline; do
        a0=$({ tr "\0" "\n" <"$f"; } 2>/dev/null | head -n 1)
        case $a0 in */containerd-shim-wasmtime-v1 | containerd-shim-wasmtime-v1) ;; *) continue ;; esac
        [ -z "$1" ] || { tr "\0" " " <"$f"; } 2>/dev/null | grep -q -- "$1" || continue
        p=${f%/cmdline}; echo "${p#/proc/}"
    done' sh "${1:-}"
}
count() { grep -c . || true; }

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/     | /'; }
# wait_for SECONDS COMMAND...: polls COMMAND every second until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}

cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "cluster kept: kind delete cluster --name $NAME"
    else
        kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> building the shim, the image tool and the test images"
(cd "$ROOT" && cargo build --release --locked --workspace) || die "build failed"
. "$ROOT/tests/lib/images.sh"
bash "$ROOT/images/fixtures/build.sh" "$WORK/fixtures" >/dev/null || die "fixtures build failed"
build_test_images "$WORK/fixtures" "$WORK/images" || die "test images build failed"

# The binary goes where kind-config.yaml mounts it from.
shim_host_path=$(awk '/hostPath:/ && /containerd-shim-wasmtime-v1/ {print $NF; exit}' "$HERE/kind-config.yaml")
[ -n "$shim_host_path" ] || die "no shim hostPath in kind-config.yaml"
mkdir -p "$(dirname "$shim_host_path")" &&
    cp --remove-destination "$CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1" "$shim_host_path" || die "cannot stage the shim at $shim_host_path"

echo "==> creating kind cluster $NAME"
kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
kind create cluster --name "$NAME" --config "$HERE/kind-config.yaml" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} || die "kind create cluster failed"

echo "==> checking the node"
if out=$(node containerd-shim-wasmtime-v1 --version 2>&1); then
    pass "node: the shim runs in the node ($(echo "$out" | head -n 1))"
else
    fail "node: the shim does not run in the node (built against a newer glibc than the node's Debian 12? build it in a rust:1-bookworm container)" "$out"
    echo "$passed passed, $failed failed"
    exit 1
fi
if node containerd config dump 2>/dev/null | grep -Eq "runtimes\.[\"']?wasmtime[\"']?\]"; then
    pass "node: containerd has the wasmtime handler"
else
    fail "node: containerd has no wasmtime handler"
fi

echo "==> loading images (kind load image-archive)"
for img in hello probe probe-p2 http-hello trap busybox; do
    kind load image-archive "$WORK/images/$img.tar" --name "$NAME" || die "kind load image-archive $img.tar failed"
done
if node crictl images 2>/dev/null | grep -q 'localhost/test/probe-p2'; then
    pass "images: the CRI sees the loaded Wasm images"
else
    fail "images: localhost/test/probe-p2 not in crictl images" "$(node crictl images 2>&1 | head -20)"
fi

k apply -k "$ROOT/deploy/k8s/runtimeclass" || die "applying the RuntimeClass failed"
k create namespace "$NS" || die "creating namespace $NS failed"
# The default service account must exist before pods can be created.
wait_for 60 k -n "$NS" get serviceaccount default

status_of() { # POD CONTAINER FIELD: a field of the container's terminated state
    k -n "$NS" get pod "$1" -o jsonpath="{.status.containerStatuses[?(@.name==\"$2\")].state.terminated.$3}"
}
terminated() { [ -n "$(status_of "$1" "$2" exitCode)" ]; }

echo "==> 1. a Wasm pod runs, logs and exits with its codes"
k -n "$NS" apply -f "$HERE/pods/logs.yaml"
if wait_for 180 terminated wasm-logs ok && wait_for 60 terminated wasm-logs failing && wait_for 60 terminated wasm-logs trapping; then
    [ "$(status_of wasm-logs ok exitCode)/$(status_of wasm-logs ok reason)" = 0/Completed ] &&
        pass "logs: exit 0 is Completed" || fail "logs: ok container: $(status_of wasm-logs ok exitCode)/$(status_of wasm-logs ok reason)"
    [ "$(status_of wasm-logs failing exitCode)/$(status_of wasm-logs failing reason)" = 7/Error ] &&
        pass "logs: proc_exit(7) is exit code 7, Error" || fail "logs: failing container: $(status_of wasm-logs failing exitCode)/$(status_of wasm-logs failing reason)"
    [ "$(status_of wasm-logs trapping exitCode)" = 134 ] &&
        pass "logs: a trap is exit code 134" || fail "logs: trapping container: $(status_of wasm-logs trapping exitCode)"
    log=$(k -n "$NS" logs wasm-logs -c ok 2>&1)
    grep -qx 'argv\[1\]=hello-kind' <<<"$log" && pass "logs: kubectl logs shows the guest's stdout" || fail "logs: kubectl logs" "$log"
    phase=$(k -n "$NS" get pod wasm-logs -o jsonpath='{.status.phase}')
    [ "$phase" = Failed ] && pass "logs: pod phase Failed (a container failed)" || fail "logs: pod phase $phase"
else
    fail "logs: containers did not terminate" "$(k -n "$NS" describe pod wasm-logs | tail -30)"
fi

echo "==> 2. a Wasm HTTP server answers in its pod"
k -n "$NS" apply -f "$HERE/pods/http.yaml"
if k -n "$NS" wait --for=condition=Ready pod/wasm-http --timeout=180s >/dev/null; then
    pass "http: TCP readiness probe passed"
    ip=$(k -n "$NS" get pod wasm-http -o jsonpath='{.status.podIP}')
    reply=$(node curl -sS --max-time 5 "http://$ip:8080/" 2>&1 || true)
    grep -q 'hello from probe' <<<"$reply" && pass "http: answers on the pod IP $ip" || fail "http: pod IP $ip" "$reply"
    k -n "$NS" apply -f "$HERE/pods/client.yaml"
    if wait_for 120 terminated linux-client wget && [ "$(status_of linux-client wget exitCode)" = 0 ]; then
        out=$(k -n "$NS" logs linux-client)
        grep -q 'hello from probe' <<<"$out" && pass "http: a Linux pod reaches it through its Service" || fail "http: via Service" "$out"
    else
        fail "http: the Linux client pod did not succeed" "$(k -n "$NS" logs linux-client 2>&1 | tail -5)"
    fi
    # Wasm guests resolve with the pod's /etc/resolv.conf (cluster DNS,
    # search domains), so a Service's short name works as from a Linux pod.
    k -n "$NS" run wasm-resolve --restart=Never --image=localhost/test/probe-p2:latest --image-pull-policy=Never \
        --overrides='{"spec":{"runtimeClassName":"wasmtime"}}' --command -- /probe-p2.wasm resolve wasm-http >/dev/null
    wait_for 120 terminated wasm-resolve wasm-resolve || true
    if [ "$(status_of wasm-resolve wasm-resolve exitCode)" = 0 ]; then
        pass "dns: a Wasm guest resolves the Service name wasm-http"
    else
        fail "dns: a Wasm guest resolves the Service name wasm-http" "$(k -n "$NS" logs wasm-resolve 2>&1 | head -n 5)"
    fi
else
    fail "http: pod never became Ready" "$(k -n "$NS" describe pod wasm-http | tail -30)"
fi

echo "==> 2b. a wasi:http component served by the shim"
k -n "$NS" apply -f "$HERE/pods/wasi-http.yaml"
if k -n "$NS" rollout status deployment/wasi-http --timeout=180s >/dev/null; then
    pass "wasi-http: two replicas Ready (HTTP readiness probe on /)"
    for ip in $(k -n "$NS" get pods -l app.kubernetes.io/component=wasi-http -o jsonpath='{.items[*].status.podIP}'); do
        reply=$(node curl -sS --max-time 5 "http://$ip:8090/" 2>&1 || true)
        grep -q 'hello from wasi:http' <<<"$reply" && pass "wasi-http: answers on the pod IP $ip" || fail "wasi-http: pod IP $ip" "$reply"
        code=$(node curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ip:8090/trap" 2>&1 || true)
        [ "$code" = 500 ] && pass "wasi-http: a trapping handler gets 500 on $ip" || fail "wasi-http: /trap on $ip gave $code"
    done
    svc=$(k -n "$NS" get service wasi-http -o jsonpath='{.spec.clusterIP}')
    reply=$(node curl -sS --max-time 5 "http://$svc:8090/" 2>&1 || true)
    grep -q 'hello from wasi:http' <<<"$reply" && pass "wasi-http: answers through its Service" || fail "wasi-http: Service $svc" "$reply"
else
    fail "wasi-http: deployment never became Ready" "$(k -n "$NS" describe pods -l app.kubernetes.io/component=wasi-http | tail -30)"
fi

echo "==> 3. a pod mixing busybox and Wasm"
k -n "$NS" apply -f "$HERE/pods/mixed.yaml"
if wait_for 180 terminated wasm-mixed client && [ "$(status_of wasm-mixed client exitCode)" = 0 ]; then
    out=$(k -n "$NS" logs wasm-mixed -c client)
    grep -q sidecar-page <<<"$out" && pass "mixed: the Wasm client got the sidecar's page over the pod's loopback" || fail "mixed: client output" "$out"
    running=$(k -n "$NS" get pod wasm-mixed -o jsonpath='{.status.containerStatuses[?(@.state.running)].name}')
    [[ $running == *sidecar* && $running == *sleeper* ]] && pass "mixed: sidecar and Wasm sleeper keep running" || fail "mixed: running containers: $running"
    sandbox=$(node crictl pods --name wasm-mixed --namespace "$NS" -q | head -n 1)
    shims=$(shim_pids "$sandbox" | count)
    [ "$shims" = 1 ] && pass "mixed: one shim process serves the pod" || fail "mixed: $shims shim processes for sandbox $sandbox"
else
    fail "mixed: the Wasm client never reached the sidecar" "$(k -n "$NS" logs wasm-mixed -c client 2>&1 | tail -5; k -n "$NS" describe pod wasm-mixed | tail -20)"
fi

echo "==> 4. deleting pods leaves nothing behind"
k -n "$NS" delete pod --all --wait=true --timeout=120s >/dev/null
for round in 1 2 3 4 5; do
    sed "s/wasm-hello-0/wasm-hello-$round/; s/round-0/round-$round/" "$HERE/pods/hello.yaml" | k -n "$NS" apply -f - >/dev/null
    if ! wait_for 120 terminated "wasm-hello-$round" hello; then
        fail "churn round $round: hello did not finish" "$(k -n "$NS" describe pod "wasm-hello-$round" | tail -20)"
        continue
    fi
    sandbox=$(node crictl pods --name "wasm-hello-$round" --namespace "$NS" -q | head -n 1)
    k -n "$NS" logs "wasm-hello-$round" -c hello | grep -q "argv\[1\]=round-$round" ||
        fail "churn round $round: log lacks argv[1]=round-$round"
    k -n "$NS" delete pod "wasm-hello-$round" --wait=true --timeout=120s >/dev/null
    no_shim() { [ -z "$(shim_pids "$sandbox")" ]; }
    no_mounts() { ! node grep -q "$sandbox" /proc/mounts; }
    no_sandbox() { [ -z "$(node crictl pods --id "$sandbox" -q 2>/dev/null)" ]; }
    if [ -n "$sandbox" ] && wait_for 60 no_shim && wait_for 60 no_mounts && wait_for 60 no_sandbox; then
        pass "churn round $round: pod ran, then left no shim, mounts or sandbox"
    else
        fail "churn round $round: leftovers of sandbox '$sandbox'" "$(shim_pids; node grep "$sandbox" /proc/mounts | head -5)"
    fi
done
left=$(shim_pids | count)
[ "$left" = 0 ] && pass "churn: no shim process left on the node" || fail "churn: $left shim processes left (pids $(shim_pids | tr '\n' ' '))"

if [ "$CHAT" = 1 ]; then
    echo "==> the chat app (deploy/k8s/chat)"
    bash "$ROOT/deploy/k8s/chat/build-images.sh" "$WORK/chat"
    for s in session chat message user truncator gateway; do
        kind load image-archive "$WORK/chat/images/$s.tar" --name "$NAME"
    done
    k apply -k "$ROOT/deploy/k8s/chat"
    ok=1
    k -n chat rollout status statefulset/mysql --timeout=600s || ok=0
    for d in redis session chat message user truncator gateway; do
        k -n chat rollout status "deployment/$d" --timeout=600s || ok=0
    done
    if [ "$ok" = 1 ]; then
        pass "chat: every Deployment and MySQL are ready"
        k -n chat port-forward svc/gateway 13000:3000 >"$WORK/port-forward.log" 2>&1 &
        pf=$!
        wait_for 30 curl -fsS -o /dev/null http://127.0.0.1:13000/ || true
        if bash "$ROOT/images/services/smoke.sh" http://127.0.0.1:13000 >"$WORK/smoke.log" 2>&1; then
            pass "chat: smoke.sh through the gateway ($(tail -n 1 "$WORK/smoke.log"))"
        else
            fail "chat: smoke.sh" "$(grep FAIL "$WORK/smoke.log" | head -20; tail -n 1 "$WORK/smoke.log")"
        fi
        kill "$pf" 2>/dev/null || true
    else
        fail "chat: not ready" "$(k -n chat get pods -o wide; k -n chat describe pods | grep -A5 -i 'warning' | head -40)"
    fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
