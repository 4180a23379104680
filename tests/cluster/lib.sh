# shellcheck shell=bash
# A single-node Kubernetes cluster on this host, the way Kubernetes'
# hack/local-up-cluster.sh runs one: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and CoreDNS as
# plain processes, everything under one directory. The kubelet talks to a
# private containerd 2.x (tests/lib/containerd.sh) whose CRI runs Wasm pods
# with our shim (runtime handler `wasmtime`) and Linux pods with runc.
# Source this file (after tests/lib/containerd.sh and tests/cluster/pki.sh).
#
#   cluster_up DIR SHIM_DIR   start it all; kubectl then works with
#                             KUBECONFIG=DIR/admin.kubeconfig
#   cluster_down DIR          stop it all and clean up the host (idempotent)
#
# Binaries: K8S_BIN_DIR, ETCD_BIN_DIR, COREDNS_BIN_DIR
# (deploy/dev/build-k8s-tools.sh) and CONTAINERD_BIN_DIR (containerd 2.x).
#
# Everything here is apart from tests/run.sh's e2e run, which may run at the
# same time: its own CNI bridge and subnets, its own ports (all on
# 127.0.0.1 or on the bridge's own address), its own cgroup root.
CLUSTER_NODE=${CLUSTER_NODE:-wasmtime-node}
CLUSTER_BRIDGE=${CLUSTER_BRIDGE:-wasmtime-k8s0}
CLUSTER_POD_CIDR=${CLUSTER_POD_CIDR:-10.230.0.0/24}
# The bridge's (gateway's) address: the node's IP, where the kubelet and
# CoreDNS listen, so pods and the apiserver reach them.
CLUSTER_NODE_IP=${CLUSTER_NODE_IP:-10.230.0.1}
CLUSTER_SERVICE_CIDR=${CLUSTER_SERVICE_CIDR:-10.231.0.0/24}
CLUSTER_API_SERVICE_IP=${CLUSTER_API_SERVICE_IP:-10.231.0.1}
# Pods' cgroups go under this root in every v1 hierarchy (kubelet cgroupRoot).
CLUSTER_CGROUP_ROOT=${CLUSTER_CGROUP_ROOT:-wasmtime-cluster}
# 32xxx: clear of tests/chat (ports +20000 and +21000: 23000, 26379, 28081…)
# and below the ephemeral range.
CLUSTER_PORT_BASE=${CLUSTER_PORT_BASE:-32000}
_cp() { echo $((CLUSTER_PORT_BASE + $1)); } # a port of ours by offset
CLUSTER_API_PORT=$(_cp 443)
# Sysctls the kubelet sets at start (vm.overcommit_memory=1, kernel.panic=10,
# ...) when protectKernelDefaults is false; with it true it refuses to start
# on a host whose values differ. cluster_up records them, cluster_down puts
# them back.
CLUSTER_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

_cluster_log() { echo "cluster: $*" >&2; }

# Starts NAME (a program and its arguments) detached in its own session,
# logging to DIR/logs/NAME.log; its PID goes to DIR/pids/NAME.
_cluster_start() { # DIR NAME PROGRAM ARGS...
    local dir=$1 name=$2
    shift 2
    mkdir -p "$dir/logs" "$dir/pids"
    setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/$name"
}

# Stops NAME by its recorded PID: TERM, up to 10 s, then KILL.
_cluster_stop() { stop_pid_file "$1/pids/$2" 10; } # DIR NAME

# Polls COMMAND until it succeeds, at most SECONDS; on failure prints the
# tail of LOG.
_cluster_wait() { # SECONDS WHAT LOG COMMAND...
    local deadline=$((SECONDS + $1)) what=$2 log=$3
    shift 3
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _cluster_log "$what did not come up in time; last lines of $log:"
            tail -n 30 "$log" >&2
            return 1
        fi
        sleep 0.5
    done
}

_cluster_alive() { kill -0 "$(cat "$1/pids/$2")" 2>/dev/null; }

# An HTTPS health endpoint answers "ok" (kubectl as the admin user).
_cluster_healthy() { # DIR URL_PATH
    [ "$("$K8S_BIN_DIR/kubectl" --kubeconfig "$1/admin.kubeconfig" get --raw "$2" 2>/dev/null)" = ok ]
}

_cluster_cgroup_dirs() { # every v1 hierarchy's dir for the cgroup root
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -L "${h%/}" ] && continue # cpu -> cpu,cpuacct and friends
        [ -e "$h/cgroup.procs" ] || continue
        echo "${h}$CLUSTER_CGROUP_ROOT"
    done
}

_cluster_bridge_up() {
    # Created here, not by the CNI plugin on the first pod: the kubelet,
    # the apiserver's advertised address and CoreDNS need the node IP before
    # any pod exists. The bridge plugin adopts it (same name, same gateway).
    ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1 || ip link add "$CLUSTER_BRIDGE" type bridge || return 1
    ip addr replace "$CLUSTER_NODE_IP/${CLUSTER_POD_CIDR#*/}" dev "$CLUSTER_BRIDGE" || return 1
    ip link set "$CLUSTER_BRIDGE" up || return 1
    # ClusterIPs only ever exist on this bridge: a connection from the host
    # to one never leaves by the default route, even before kube-proxy's
    # DNAT rules exist. The route goes with the bridge.
    ip route replace "$CLUSTER_SERVICE_CIDR" dev "$CLUSTER_BRIDGE" src "$CLUSTER_NODE_IP"
}

_cluster_kubelet_config() { # DIR
    local dir=$1
    cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host is cgroup v1 without systemd. Kubelets since 1.35 refuse v1
# unless told otherwise; v1 still works in $K8S_VERSION.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CLUSTER_CGROUP_ROOT
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: $CLUSTER_NODE_IP
port: $(_cp 250)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(_cp 248)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDNS: [$CLUSTER_NODE_IP]
clusterDomain: cluster.local
podLogsDir: $dir/pod-logs
failSwapOn: false
# A shared build machine's disk may be fuller than the defaults allow; the
# test must not evict pods or delete images for that.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

_cluster_corefile() {
    cat <<EOF
.:53 {
    bind $CLUSTER_NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $1/admin.kubeconfig wasmtime-cluster
        pods insecure
    }
}
EOF
}

_cluster_kubeconfigs() { # DIR
    local dir=$1 n server="https://127.0.0.1:$CLUSTER_API_PORT"
    for n in admin kubelet controller-manager scheduler kube-proxy; do
        kubeconfig_write "$dir/$n.kubeconfig" "$server" "$dir/pki/ca.crt" "$dir/pki/$n"
    done
}

# The controller manager runs each controller as its own service account
# (--use-service-account-credentials), as kubeadm does: the default RBAC
# roles grant the controllers' rights to those accounts, not to the
# manager's own user (without it, no EndpointSlices, no node taint removal).
_cluster_control_plane() { # DIR
    local dir=$1 k=$K8S_BIN_DIR
    _cluster_start "$dir" etcd "$ETCD_BIN_DIR/etcd" --name wasmtime-cluster --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$(_cp 379)" --advertise-client-urls "http://127.0.0.1:$(_cp 379)" \
        --listen-peer-urls "http://127.0.0.1:$(_cp 380)" --initial-advertise-peer-urls "http://127.0.0.1:$(_cp 380)" \
        --initial-cluster "wasmtime-cluster=http://127.0.0.1:$(_cp 380)" --log-level warn
    _cluster_wait 60 etcd "$dir/logs/etcd.log" curl -fsS "http://127.0.0.1:$(_cp 379)/health" || return 1

    _cluster_start "$dir" kube-apiserver "$k/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$(_cp 379)" \
        --bind-address 127.0.0.1 --secure-port "$CLUSTER_API_PORT" --advertise-address "$CLUSTER_NODE_IP" \
        --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
        --client-ca-file "$dir/pki/ca.crt" \
        --kubelet-preferred-address-types InternalIP \
        --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
        --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range "$CLUSTER_SERVICE_CIDR" \
        --authorization-mode Node,RBAC --allow-privileged=true --profiling=false
    _cluster_wait 120 kube-apiserver "$dir/logs/kube-apiserver.log" _cluster_healthy "$dir" /readyz || return 1

    _cluster_start "$dir" kube-controller-manager "$k/kube-controller-manager" \
        --kubeconfig "$dir/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$(_cp 257)" --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
        --service-cluster-ip-range "$CLUSTER_SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false
    _cluster_start "$dir" kube-scheduler "$k/kube-scheduler" --kubeconfig "$dir/scheduler.kubeconfig" \
        --authentication-kubeconfig "$dir/scheduler.kubeconfig" --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$(_cp 259)" --leader-elect=false --profiling=false
}

_cluster_node() { # DIR
    local dir=$1 c s
    # The kubelet wants its cgroup root to exist in every hierarchy.
    for c in $(_cluster_cgroup_dirs); do mkdir -p "$c"; done
    for s in $CLUSTER_SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$dir/sysctls.saved"
    mkdir -p "$dir/kubelet" "$dir/pod-logs"
    _cluster_kubelet_config "$dir" >"$dir/kubelet-config.yaml"
    _cluster_start "$dir" kubelet "$K8S_BIN_DIR/kubelet" --config "$dir/kubelet-config.yaml" \
        --kubeconfig "$dir/kubelet.kubeconfig" --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
        --hostname-override "$CLUSTER_NODE" --node-ip "$CLUSTER_NODE_IP" \
        --node-labels wasmtime.containerd.io/enabled=true
    # iptables mode, as most clusters run it. The conntrack sysctls and
    # route_localnet are left alone (flags below): nothing here needs them.
    _cluster_start "$dir" kube-proxy "$K8S_BIN_DIR/kube-proxy" --kubeconfig "$dir/kube-proxy.kubeconfig" \
        --hostname-override "$CLUSTER_NODE" --proxy-mode iptables --cluster-cidr "$CLUSTER_POD_CIDR" \
        --metrics-bind-address "127.0.0.1:$(_cp 249)" --healthz-bind-address "127.0.0.1:$(_cp 256)" \
        --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
        --iptables-localhost-nodeports=false
    _cluster_corefile "$dir" >"$dir/Corefile"
    _cluster_start "$dir" coredns "$COREDNS_BIN_DIR/coredns" -conf "$dir/Corefile"
}

_cluster_node_ready() { # DIR
    [ "$("$K8S_BIN_DIR/kubectl" --kubeconfig "$1/admin.kubeconfig" get node "$CLUSTER_NODE" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

cluster_up() { # DIR SHIM_DIR
    local dir=$1 shim_dir=$2
    mkdir -p "$dir"
    # Chains iptables had before: cluster_down removes only newer KUBE-* ones.
    iptables-save | sed -n 's/^:\([^ ]*\) .*/\1/p' | sort -u >"$dir/iptables-chains.before"
    pki_make "$dir/pki" "$CLUSTER_NODE" "127.0.0.1,$CLUSTER_API_SERVICE_IP,$CLUSTER_NODE_IP" || return 1
    _cluster_kubeconfigs "$dir"
    _cluster_bridge_up || return 1
    _cluster_log "containerd ($(containerd_release)) in $dir/containerd"
    # Pods reach Services through the gateway (the node), where kube-proxy's
    # rules translate ClusterIPs; nothing else is routed.
    CNI_BRIDGE=$CLUSTER_BRIDGE CNI_SUBNET=$CLUSTER_POD_CIDR CNI_ROUTES=$CLUSTER_SERVICE_CIDR containerd_up "$dir/containerd" "$shim_dir" || return 1
    _cluster_log "etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
    _cluster_control_plane "$dir" || return 1
    _cluster_log "kubelet, kube-proxy, coredns on node $CLUSTER_NODE ($CLUSTER_NODE_IP)"
    _cluster_node "$dir"
    _cluster_wait 180 "node $CLUSTER_NODE Ready" "$dir/logs/kubelet.log" _cluster_node_ready "$dir" || return 1
    _cluster_wait 60 coredns "$dir/logs/coredns.log" _cluster_alive "$dir" coredns || return 1
    _cluster_wait 60 kube-proxy "$dir/logs/kube-proxy.log" curl -fsS "http://127.0.0.1:$(_cp 256)/healthz" || return 1
}

# Removes the iptables chains named KUBE-* that appeared since cluster_up
# (kube-proxy's leftovers, the kubelet's canaries), with the rules that
# jump to them.
_cluster_iptables_clean() { # DIR
    local dir=$1 t chain rule
    [ -f "$dir/iptables-chains.before" ] || return 0
    for t in filter nat mangle; do
        for chain in $(iptables -t "$t" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
            grep -qx -- "$chain" "$dir/iptables-chains.before" && continue
            iptables -t "$t" -S | grep -- "-j $chain\( \|$\)" | grep '^-A ' | while read -r rule; do
                # shellcheck disable=SC2086 # a rule is words
                iptables -t "$t" ${rule/-A /-D } 2>/dev/null || true
            done
            iptables -t "$t" -F "$chain" 2>/dev/null || true
        done
        for chain in $(iptables -t "$t" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
            grep -qx -- "$chain" "$dir/iptables-chains.before" || iptables -t "$t" -X "$chain" 2>/dev/null || true
        done
    done
}

# The pods still on the node, removed through CRI as the kubelet would
# (shims outlive containerd, and CNI must free the pods' addresses).
_cluster_remove_pods() { # DIR
    local dir=$1 crictl=${CRI_TOOLS_BIN_DIR:+$CRI_TOOLS_BIN_DIR/}crictl
    [ -S "$dir/containerd/containerd.sock" ] || return 0
    command -v "$crictl" >/dev/null 2>&1 || return 0
    timeout 120 "$crictl" --runtime-endpoint "unix://$dir/containerd/containerd.sock" rmp -fa >/dev/null 2>&1 || true
}

cluster_down() { # DIR
    local dir=$1 n m c line
    [ -d "$dir" ] || return 0
    # The kubelet first, so it restarts nothing while the rest goes.
    for n in kubelet kube-proxy coredns kube-scheduler kube-controller-manager; do _cluster_stop "$dir" "$n"; done
    _cluster_remove_pods "$dir"
    for n in kube-apiserver etcd; do _cluster_stop "$dir" "$n"; done
    [ -x "$K8S_BIN_DIR/kube-proxy" ] && "$K8S_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
    _cluster_iptables_clean "$dir"
    CNI_BRIDGE=$CLUSTER_BRIDGE containerd_down "$dir/containerd" || true
    ip link delete "$CLUSTER_BRIDGE" 2>/dev/null || true
    # Volume mounts (secrets, projected tokens) under the kubelet's root.
    for m in $(awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    for c in $(_cluster_cgroup_dirs); do
        [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    if [ -f "$dir/sysctls.saved" ]; then
        while IFS= read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || true; done <"$dir/sysctls.saved"
    fi
    rm -rf "$dir"
}
