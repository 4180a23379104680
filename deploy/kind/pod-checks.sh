# shellcheck shell=bash disable=SC2015,SC2016 # `check && pass || fail` (pass never fails); sh -c scripts
# The pod checks shared by every real-cluster test: deploy/kind/run-pod-checks.sh
# (a kind cluster, where Docker is) and tests/cluster/run.sh (a cluster built
# from source on this host). Source this file, then call pod_checks_run.
#
# The caller defines, before pod_checks_run:
#   k ARGS...          kubectl for the cluster
#   node CMD...        run a command on the (single) node
#   node_crictl ARGS...  crictl against the node's containerd
# and may set SHIM_SCOPE: a string the command line of the shims to count
# must contain (e.g. the containerd socket, when other containerds run shims
# on the same host).
#
# The images localhost/test/{hello,probe,probe-p2,http-hello,trap,busybox}
# (tests/lib/images.sh) must be in the node's containerd, and the RuntimeClass
# `wasmtime` applied. Every check prints "PASS/FAIL name"; pod_checks_summary
# prints "N passed, M failed".
#
#   1. a Wasm pod runs, its logs reach the kubelet (kubectl logs), and its
#      containers exit with their codes (0 Completed, 7, 134 for a trap)
#   2. a Wasm HTTP server answers on its pod IP, passes a TCP readiness
#      probe, is reachable through a Service from a Linux pod, and a Wasm
#      guest resolves the Service's name through the cluster DNS
#   2b. a wasi:http proxy component (two replicas) passes an HTTP readiness
#      probe, answers on each pod IP and through its Service, and a trapping
#      handler gets 500
#   3. a pod mixing a busybox sidecar (runc) and Wasm containers works, with
#      one shim process for the pod
#   4. deleting pods leaves nothing: no shim process, no mounts (5 rounds)
#   5. liveness probes (HTTP, and exec: a Wasm command in the container)
#      restart a hung Wasm container, which then serves again
#   6. kubectl delete namespace leaves no shim, mount, pod cgroup or sandbox

PODS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/pods" && pwd)
HERE=$(dirname "$PODS_DIR")
NS=${NS:-wasm-checks}
SHIM_SCOPE=${SHIM_SCOPE:-}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/     | /'; }
pod_checks_summary() { echo; echo "$passed passed, $failed failed"; }
# wait_for SECONDS COMMAND...: polls COMMAND every second until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}
count() { grep -c . || true; }

# PIDs of shim processes on the node, all or those serving SANDBOX (its id is
# on the shim's command line), read from /proc (no procps needed).
shim_pids() { # [SANDBOX]
    node sh -c 'for f in /proc/[0-9]*/cmdline; do
        a0=$({ tr "\0" "\n" <"$f"; } 2>/dev/null | head -n 1)
        case $a0 in */containerd-shim-wasmtime-v1 | containerd-shim-wasmtime-v1) ;; *) continue ;; esac
        for want in "$1" "$2"; do
            [ -z "$want" ] || { tr "\0" " " <"$f"; } 2>/dev/null | grep -q -- "$want" || continue 2
        done
        p=${f%/cmdline}; echo "${p#/proc/}"
    done' sh "${1:-}" "$SHIM_SCOPE"
}

status_of() { # POD CONTAINER FIELD: a field of the container's terminated state
    k -n "$NS" get pod "$1" -o jsonpath="{.status.containerStatuses[?(@.name==\"$2\")].state.terminated.$3}"
}
terminated() { [ -n "$(status_of "$1" "$2" exitCode)" ]; }

check_logs() {
    k -n "$NS" apply -f "$HERE/pods/logs.yaml"
    if wait_for 180 terminated wasm-logs ok && wait_for 60 terminated wasm-logs failing && wait_for 60 terminated wasm-logs trapping; then
        [ "$(status_of wasm-logs ok exitCode)/$(status_of wasm-logs ok reason)" = 0/Completed ] &&
            pass "logs: exit 0 is Completed" || fail "logs: ok container: $(status_of wasm-logs ok exitCode)/$(status_of wasm-logs ok reason)"
        [ "$(status_of wasm-logs failing exitCode)/$(status_of wasm-logs failing reason)" = 7/Error ] &&
            pass "logs: proc_exit(7) is exit code 7, Error" || fail "logs: failing container: $(status_of wasm-logs failing exitCode)/$(status_of wasm-logs failing reason)"
        [ "$(status_of wasm-logs trapping exitCode)" = 134 ] &&
            pass "logs: a trap is exit code 134" || fail "logs: trapping container: $(status_of wasm-logs trapping exitCode)"
        log=$(k -n "$NS" logs wasm-logs -c ok 2>&1)
        # probe's `args` prints every argv entry: argv[1] is "args" itself.
        grep -qx 'argv\[2\]=hello-kind' <<<"$log" && pass "logs: kubectl logs shows the guest's stdout" || fail "logs: kubectl logs" "$log"
        # The phase follows the containers' states a status update later.
        pod_failed() { [ "$(k -n "$NS" get pod wasm-logs -o jsonpath='{.status.phase}')" = Failed ]; }
        wait_for 60 pod_failed && pass "logs: pod phase Failed (a container failed)" ||
            fail "logs: pod phase $(k -n "$NS" get pod wasm-logs -o jsonpath='{.status.phase}')"
    else
        fail "logs: containers did not terminate" "$(k -n "$NS" describe pod wasm-logs | tail -30)"
    fi
}

check_http() {
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
}

check_wasi_http() {
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
        # kube-proxy programs a new Service's rules within a few seconds.
        wait_for 30 node curl -fsS --max-time 5 -o /dev/null "http://$svc:8090/" || true
        reply=$(node curl -sS --max-time 5 "http://$svc:8090/" 2>&1 || true)
        grep -q 'hello from wasi:http' <<<"$reply" && pass "wasi-http: answers through its Service" || fail "wasi-http: Service $svc" "$reply"
    else
        fail "wasi-http: deployment never became Ready" "$(k -n "$NS" describe pods -l app.kubernetes.io/component=wasi-http | tail -30)"
    fi
}

check_mixed() {
    k -n "$NS" apply -f "$HERE/pods/mixed.yaml"
    if wait_for 180 terminated wasm-mixed client && [ "$(status_of wasm-mixed client exitCode)" = 0 ]; then
        out=$(k -n "$NS" logs wasm-mixed -c client)
        grep -q sidecar-page <<<"$out" && pass "mixed: the Wasm client got the sidecar's page over the pod's loopback" || fail "mixed: client output" "$out"
        running=$(k -n "$NS" get pod wasm-mixed -o jsonpath='{.status.containerStatuses[?(@.state.running)].name}')
        [[ $running == *sidecar* && $running == *sleeper* ]] && pass "mixed: sidecar and Wasm sleeper keep running" || fail "mixed: running containers: $running"
        sandbox=$(node_crictl pods --name wasm-mixed --namespace "$NS" -q | head -n 1)
        shims=$(shim_pids "$sandbox" | count)
        [ "$shims" = 1 ] && pass "mixed: one shim process serves the pod" || fail "mixed: $shims shim processes for sandbox $sandbox"
    else
        fail "mixed: the Wasm client never reached the sidecar" "$(k -n "$NS" logs wasm-mixed -c client 2>&1 | tail -5; k -n "$NS" describe pod wasm-mixed | tail -20)"
    fi
}

check_churn() {
    k -n "$NS" delete pod --all --wait=true --timeout=120s >/dev/null
    for round in 1 2 3 4 5; do
        sed "s/wasm-hello-0/wasm-hello-$round/; s/round-0/round-$round/" "$HERE/pods/hello.yaml" | k -n "$NS" apply -f - >/dev/null
        if ! wait_for 120 terminated "wasm-hello-$round" hello; then
            fail "churn round $round: hello did not finish" "$(k -n "$NS" describe pod "wasm-hello-$round" | tail -20)"
            continue
        fi
        sandbox=$(node_crictl pods --name "wasm-hello-$round" --namespace "$NS" -q | head -n 1)
        k -n "$NS" logs "wasm-hello-$round" -c hello | grep -q "argv\[1\]=round-$round" ||
            fail "churn round $round: log lacks argv[1]=round-$round"
        k -n "$NS" delete pod "wasm-hello-$round" --wait=true --timeout=120s >/dev/null
        no_shim() { [ -z "$(shim_pids "$sandbox")" ]; }
        no_mounts() { ! node grep -q "$sandbox" /proc/mounts; }
        no_sandbox() { [ -z "$(node_crictl pods --id "$sandbox" -q 2>/dev/null)" ]; }
        if [ -n "$sandbox" ] && wait_for 60 no_shim && wait_for 60 no_mounts && wait_for 60 no_sandbox; then
            pass "churn round $round: pod ran, then left no shim, mounts or sandbox"
        else
            fail "churn round $round: leftovers of sandbox '$sandbox'" "$(shim_pids; node grep "$sandbox" /proc/mounts | head -5)"
        fi
    done
    # The wasi-http Deployment's replicas came back and keep their shims:
    # a shim is left over if it serves no sandbox that still exists.
    local pid sandboxes orphans=""
    sandboxes=$(node_crictl pods -q)
    for pid in $(shim_pids); do
        [ -n "$sandboxes" ] && node cat "/proc/$pid/cmdline" 2>/dev/null | tr '\0' ' ' |
            grep -qF -f <(echo "$sandboxes") || orphans="$orphans $pid"
    done
    [ -z "$orphans" ] && pass "churn: every shim on the node serves a live pod ($(shim_pids | count) shims, for the wasi-http replicas)" ||
        fail "churn: shims serving no pod:$orphans"
}

restarts_of() { # POD
    k -n "$NS" get pod "$1" -o jsonpath='{.status.containerStatuses[0].restartCount}'
}
restarted() { [ "$(restarts_of "$1")" -ge 1 ] 2>/dev/null; }
ready() { k -n "$NS" wait --for=condition=Ready "pod/$1" --timeout=2s; }

# Hangs the single-threaded server at IP:8080 for at most SECONDS: a client
# on the node connects and sends nothing. Sets HOLDER, for release_server.
hang_server() { # IP SECONDS
    node timeout "$2" bash -c 'exec 3<>"/dev/tcp/$0/8080" && sleep "$1"' "$1" "$2" >/dev/null 2>&1 &
    HOLDER=$!
}
# Ends the client (by the PIDs started here: the background job and its
# child, e.g. `timeout` or `docker exec`; in a kind node the client itself
# then ends at its timeout).
release_server() {
    pkill -P "$HOLDER" 2>/dev/null || true
    kill "$HOLDER" 2>/dev/null || true
    wait "$HOLDER" 2>/dev/null || true
}

check_liveness() {
    local pod ip kind before reason events reply
    k -n "$NS" apply -f "$PODS_DIR/liveness.yaml" >/dev/null
    for pod in wasm-live-http wasm-live-exec; do
        kind=${pod#wasm-live-}
        if ! k -n "$NS" wait --for=condition=Ready "pod/$pod" --timeout=180s >/dev/null; then
            fail "liveness ($kind): pod never became Ready" "$(k -n "$NS" describe pod "$pod" | tail -20)"
            continue
        fi
        # A healthy server passes its liveness probe: several periods go by
        # without a restart (else a restart below would prove nothing).
        sleep 8
        before=$(restarts_of "$pod")
        [ "$before" = 0 ] && pass "liveness ($kind): a serving container passes its probe (no restart in 8 s)" ||
            { fail "liveness ($kind): restarted $before times while serving" "$(k -n "$NS" describe pod "$pod" | tail -15)"; continue; }
        ip=$(k -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
        hang_server "$ip" 90
        if wait_for 60 restarted "$pod"; then
            pass "liveness ($kind): the hung Wasm container was restarted"
            reason=$(k -n "$NS" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].lastState.terminated.reason}')
            [ -n "$reason" ] && pass "liveness ($kind): its last state is terminated ($reason)" ||
                fail "liveness ($kind): no terminated last state"
            events=$(k -n "$NS" get events --field-selector "involvedObject.name=$pod" -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}')
            grep -q 'Liveness probe failed' <<<"$events" && pass "liveness ($kind): the kubelet reports the failed liveness probe" ||
                fail "liveness ($kind): no 'Liveness probe failed' event" "$events"
        else
            fail "liveness ($kind): the hung container was not restarted in 60 s" "$(k -n "$NS" describe pod "$pod" | tail -20)"
        fi
        release_server
        if wait_for 60 ready "$pod"; then
            reply=$(node curl -sS --max-time 5 "http://$ip:8080/" 2>&1 || true)
            grep -q 'hello from probe' <<<"$reply" && pass "liveness ($kind): the restarted container serves again" ||
                fail "liveness ($kind): no answer after the restart" "$reply"
        else
            fail "liveness ($kind): not Ready again after the restart" "$(k -n "$NS" describe pod "$pod" | tail -20)"
        fi
    done
}

# What a pod leaves on the node once it is gone: its shim, mounts naming its
# sandbox, its pod cgroup (pod<UID> in every hierarchy) and the sandbox.
pod_leftovers() { # SANDBOX UID
    shim_pids "$1"
    node grep "$1" /proc/mounts
    node find /sys/fs/cgroup -mindepth 2 -maxdepth 7 -type d -name "pod$2"
    node_crictl pods --id "$1" -q 2>/dev/null
}

check_namespace_delete() {
    local pods pod uid sandbox entries=() e left
    k -n "$NS" apply -f "$PODS_DIR/hello.yaml" >/dev/null
    wait_for 120 terminated wasm-hello-0 hello || true
    pods=$(k -n "$NS" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid}{"\n"}{end}')
    while read -r pod uid; do
        [ -n "$pod" ] || continue
        sandbox=$(node_crictl pods --name "$pod" --namespace "$NS" -q | head -n 1)
        [ -n "$sandbox" ] && entries+=("$pod $uid $sandbox")
    done <<<"$pods"
    [ "${#entries[@]}" -ge 3 ] && pass "namespace: ${#entries[@]} pods with sandboxes before the delete" ||
        fail "namespace: only ${#entries[@]} pods with sandboxes in $NS" "$pods"
    if k delete namespace "$NS" --timeout=180s >/dev/null; then
        pass "namespace: kubectl delete namespace $NS finished"
    else
        fail "namespace: kubectl delete namespace $NS did not finish" "$(k -n "$NS" get pods 2>&1)"
    fi
    for e in "${entries[@]}"; do
        read -r pod uid sandbox <<<"$e"
        nothing_left() { [ -z "$(pod_leftovers "$sandbox" "$uid" 2>/dev/null)" ]; }
        if wait_for 60 nothing_left; then
            pass "namespace: $pod left no shim, mount, cgroup or sandbox"
        else
            fail "namespace: $pod left something behind" "$(pod_leftovers "$sandbox" "$uid" 2>&1 | head -10)"
        fi
    done
    left=$(shim_pids | count)
    [ "$left" = 0 ] && pass "namespace: no shim process left on the node" ||
        fail "namespace: $left shim processes left (pids $(shim_pids | tr '\n' ' '))"
}

pod_checks_run() {
    k apply -k "$HERE/../k8s/runtimeclass" >/dev/null || { fail "runtimeclass: kubectl apply -k deploy/k8s/runtimeclass"; return 1; }
    pass "runtimeclass: kubectl apply -k deploy/k8s/runtimeclass"
    k create namespace "$NS" >/dev/null || { fail "creating namespace $NS"; return 1; }
    # The default service account must exist before pods can be created.
    wait_for 60 k -n "$NS" get serviceaccount default
    local c
    for c in logs http wasi_http mixed churn liveness namespace_delete; do
        echo "==> $c"
        "check_$c"
    done
}

# The chat app, applied by the caller (kubectl apply -k of deploy/k8s/chat or
# an overlay of it): every workload becomes ready, smoke.sh passes through
# the gateway at URL, a Wasm service's output reaches kubectl logs, and
# deleting the namespace leaves no shim on the node.
chat_checks_run() { # GATEWAY_URL
    local url=$1 ok=1 log
    # MySQL's first start initialises its volume; the services wait for it.
    k -n chat rollout status statefulset/mysql --timeout=600s >/dev/null || ok=0
    [ "$ok" = 1 ] && k -n chat wait --for=condition=Available deployment --all --timeout=600s >/dev/null || ok=0
    if [ "$ok" != 1 ]; then
        fail "chat: not every workload became ready" "$(k -n chat get pods -o wide; k -n chat describe pods | grep -A5 -i 'warning' | head -40)"
        return 1
    fi
    pass "chat: MySQL, Redis and the six Wasm services are Running and Ready"
    wait_for 30 curl -fsS -o /dev/null "$url/" || true
    if bash "$HERE/../../images/services/smoke.sh" "$url" >"$WORK/smoke.log" 2>&1; then
        pass "chat: smoke.sh through the gateway at $url ($(tail -n 1 "$WORK/smoke.log"))"
    else
        fail "chat: smoke.sh through $url" "$(grep FAIL "$WORK/smoke.log" | head -20; tail -n 1 "$WORK/smoke.log")"
    fi
    # The message service (a wasi:cli server) logs at start; the gateway, a
    # wasi:http component, only when something fails.
    log=$(k -n chat logs deployment/message --tail=200 2>&1)
    grep -q 'listening on' <<<"$log" && grep -q 'database .* ready' <<<"$log" &&
        pass "chat: kubectl logs shows the message service's (Wasm) output" ||
        fail "chat: kubectl logs of the message service" "$(head -5 <<<"$log")"
    local sandboxes
    sandboxes=$(node_crictl pods --namespace chat -q)
    if k delete namespace chat --timeout=300s >/dev/null; then
        pass "chat: kubectl delete namespace chat finished"
    else
        fail "chat: kubectl delete namespace chat did not finish"
    fi
    no_chat_shims() {
        local s
        for s in $sandboxes; do [ -z "$(shim_pids "$s")" ] && ! node grep -q "$s" /proc/mounts || return 1; done
    }
    wait_for 60 no_chat_shims && pass "chat: its $(count <<<"$sandboxes") pods left no shim or mount" ||
        fail "chat: pods left shims or mounts" "$(shim_pids)"
}
