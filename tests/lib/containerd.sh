# Private containerd for tests, benchmarks and the demo. Source this file.
# Everything lives under one directory, so nothing touches a system
# containerd: root, state, sockets and the opt plugin dir.
#
#   containerd_up DIR SHIM_DIR   start containerd with SHIM_DIR first on PATH
#   containerd_down DIR          stop it (by the pid we saved) and clean up
#   ctr_private DIR ARGS...      run ctr against it (namespace "wasm")
#
# The CRI plugin is on, as kubelet would use it: pause image imported
# locally, a CNI bridge with host-local IPAM under DIR, and the runtime
# handler `wasmtime` mapped to io.containerd.wasmtime.v1.

CNI_BRIDGE=${CNI_BRIDGE:-wasmtime-e2e0}
CNI_SUBNET=${CNI_SUBNET:-10.213.0.0/24}

containerd_up() {
    local dir=$1 shim_dir=$2
    mkdir -p "$dir/cni"
    cat >"$dir/cni/10-wasmtime-e2e.conflist" <<CONF
{
  "cniVersion": "0.4.0",
  "name": "wasmtime-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$CNI_SUBNET"}]],
        "dataDir": "$dir/cni-ipam"
      }
    }
  ]
}
CONF
    cat >"$dir/config.toml" <<CONF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/test/pause:latest"
  # This VM lacks CAP_SYS_RESOURCE; runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$dir/runc"
        SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmtime]
      runtime_type = "io.containerd.wasmtime.v1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
CONF
    # A marker in containerd's environment (and so the shim's): tests check
    # that it never reaches a guest.
    PATH="$shim_dir:$PATH" HOST_ONLY_SECRET=do-not-leak \
        setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
    echo $! >"$dir/containerd.pid"
    local i
    for i in $(seq 1 100); do
        if [ -S "$dir/containerd.sock" ] && ctr --address "$dir/containerd.sock" version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "containerd did not come up; log:" >&2
    tail -n 50 "$dir/containerd.log" >&2
    return 1
}

ctr_private() {
    local dir=$1
    shift
    ctr --address "$dir/containerd.sock" --namespace "${CTR_NAMESPACE:-wasm}" "$@"
}

containerd_down() {
    local dir=$1 pid
    [ -d "$dir" ] || return 0
    # Remove leftover tasks and containers first: shims outlive containerd.
    if [ -S "$dir/containerd.sock" ]; then
        local c ns
        for ns in wasm k8s.io; do
            for c in $(CTR_NAMESPACE=$ns ctr_private "$dir" tasks ls -q 2>/dev/null); do
                CTR_NAMESPACE=$ns ctr_private "$dir" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
            done
            sleep 0.2
            for c in $(CTR_NAMESPACE=$ns ctr_private "$dir" tasks ls -q 2>/dev/null); do
                CTR_NAMESPACE=$ns ctr_private "$dir" tasks delete -f "$c" >/dev/null 2>&1 || true
            done
            for c in $(CTR_NAMESPACE=$ns ctr_private "$dir" containers ls -q 2>/dev/null); do
                CTR_NAMESPACE=$ns ctr_private "$dir" containers delete "$c" >/dev/null 2>&1 || true
            done
        done
    fi
    if [ -f "$dir/containerd.pid" ]; then
        pid=$(cat "$dir/containerd.pid")
        if kill "$pid" 2>/dev/null; then
            local i
            for i in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/containerd.pid"
    fi
    ip link delete "$CNI_BRIDGE" 2>/dev/null || true
    # Unmount anything left under the directory, deepest first.
    local m
    for m in $(awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
