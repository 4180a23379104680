# Private containerd for tests, benchmarks and the demo. Source this file.
# Everything lives under one directory, so nothing touches a system
# containerd: root, state, sockets and the opt plugin dir.
#
#   containerd_up DIR SHIM_DIR   start containerd with SHIM_DIR first on PATH
#   containerd_down DIR          stop it (by the pid we saved) and clean up
#   ctr_private DIR ARGS...      run ctr against it (namespace "wasm")
#
# The CRI plugin is off here; the Kubernetes tests configure their own.

containerd_up() {
    local dir=$1 shim_dir=$2
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<CONF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
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
    ctr --address "$dir/containerd.sock" --namespace wasm "$@"
}

containerd_down() {
    local dir=$1 pid
    [ -d "$dir" ] || return 0
    # Remove leftover tasks and containers first: shims outlive containerd.
    if [ -S "$dir/containerd.sock" ]; then
        local c
        for c in $(ctr_private "$dir" tasks ls -q 2>/dev/null); do
            ctr_private "$dir" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
        done
        sleep 0.2
        for c in $(ctr_private "$dir" tasks ls -q 2>/dev/null); do
            ctr_private "$dir" tasks delete -f "$c" >/dev/null 2>&1 || true
        done
        for c in $(ctr_private "$dir" containers ls -q 2>/dev/null); do
            ctr_private "$dir" containers delete "$c" >/dev/null 2>&1 || true
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
    # Unmount anything left under the directory, deepest first.
    local m
    for m in $(awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
