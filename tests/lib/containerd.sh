# shellcheck shell=bash
# Private containerd for tests, benchmarks and the demo. Source this file.
# Everything lives under one directory, so nothing touches a system
# containerd: root, state, sockets and the opt plugin dir.
#
#   containerd_up DIR SHIM_DIR   start containerd with SHIM_DIR first on PATH
#   containerd_down DIR          stop it (by the pid we saved) and clean up
#   ctr_private DIR ARGS...      run ctr against it (namespace "wasm")
#   containerd_release [BIN_DIR] print the release of that containerd (e.g. 1.6.20, 2.4.2)
#
# Which containerd: CONTAINERD_BIN_DIR names a directory with `containerd`
# and `ctr` (for 2.x also its `containerd-shim-runc-v2`, e.g. the one
# deploy/dev/build-go-tools.sh builds); unset, the ones on PATH (Debian's
# 1.6). The major version decides the config: version 2 for 1.x, version 3
# (CRI plugin split into io.containerd.cri.v1.{runtime,images}) for 2.x.
# containerd_up records the binaries in DIR, so ctr_private and
# containerd_down use the matching ctr whatever CONTAINERD_BIN_DIR is later,
# and instances of both versions can run one after the other (different DIRs).
#
# The CRI plugin is on, as kubelet would use it: pause image imported
# locally, a CNI bridge with host-local IPAM under DIR, and the runtime
# handler `wasmtime` mapped to io.containerd.wasmtime.v1. If
# REGISTRY_HOSTS_DIR is set, the CRI registry config_path points there
# (a hosts.toml per registry host, e.g. for a plain-HTTP loopback registry).

. "$(dirname "${BASH_SOURCE[0]}")/pidfile.sh"

CNI_BRIDGE=${CNI_BRIDGE:-wasmtime-e2e0}
CNI_SUBNET=${CNI_SUBNET:-10.213.0.0/24}

# The directory of the containerd binary to use: CONTAINERD_BIN_DIR, or the
# one on PATH.
_containerd_bin_dir() {
    if [ -n "${CONTAINERD_BIN_DIR:-}" ]; then
        echo "$CONTAINERD_BIN_DIR"
    else
        local c
        c=$(command -v containerd) || { echo "containerd is not on PATH" >&2; return 1; }
        dirname "$c"
    fi
}

containerd_release() {
    local bin_dir=${1:-} out v
    [ -n "$bin_dir" ] || bin_dir=$(_containerd_bin_dir) || return 1
    # "containerd <package> <version> <revision>"; Debian's version reads
    # 1.6.20~ds1, a Go build's 2.4.2 or v2.4.2.
    out=$("$bin_dir/containerd" --version) || return 1
    v=$(awk '{print $3}' <<<"$out")
    v=${v#v}
    echo "${v%%[~+-]*}"
}

# CNI_ROUTES (CIDRs, space separated): routes the pods get through the
# bridge's gateway, e.g. a cluster's Service range. None by default: pods
# then reach only their own subnet.
_containerd_cni_routes() {
    local r sep=""
    [ -n "${CNI_ROUTES:-}" ] || return 0
    printf '\n        "routes": ['
    for r in $CNI_ROUTES; do
        printf '%s{"dst": "%s"}' "$sep" "$r"
        sep=", "
    done
    printf '],'
}

_containerd_cni_conflist() {
    local dir=$1
    cat <<CONF
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
        "ranges": [[{"subnet": "$CNI_SUBNET"}]],$(_containerd_cni_routes)
        "dataDir": "$dir/cni-ipam"
      }
    }
  ]
}
CONF
}

# Settings both versions share: paths under DIR and the log level.
_containerd_config_common() {
    local dir=$1
    cat <<CONF
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
CONF
}

# containerd 1.x: config version 2, one CRI plugin.
_containerd_config_v2() {
    local dir=$1
    echo "version = 2"
    _containerd_config_common "$dir"
    cat <<CONF
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
    if [ -n "${REGISTRY_HOSTS_DIR:-}" ]; then
        cat <<CONF
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$REGISTRY_HOSTS_DIR"
CONF
    fi
}

# GOARCH of this machine, as OCI platforms name it.
_containerd_host_arch() {
    case $(uname -m) in
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        *) uname -m ;;
    esac
}

# containerd 2.x: config version 3; the CRI settings of the 1.x config,
# under the plugins they moved to.
_containerd_config_v3() {
    local dir=$1
    echo "version = 3"
    _containerd_config_common "$dir"
    cat <<CONF
# 2.x would open its NRI socket at /var/run/nri/nri.sock, shared by every
# instance on the machine; the tests use no NRI plugin.
[plugins."io.containerd.nri.v1.nri"]
  disable = true
# 2.x ctr imports and pulls through the transfer service, which unpacks only
# the platforms listed here (default: the host's alone, so wasi/wasm images
# would fail with "no unpack platforms defined"). The differ is named: none
# declares wasi/wasm, so none would be matched by platform.
[plugins."io.containerd.transfer.v1.local"]
CONF
    if [ -n "${REGISTRY_HOSTS_DIR:-}" ]; then
        echo "  config_path = \"$REGISTRY_HOSTS_DIR\""
    fi
    local p
    for p in "linux/$(_containerd_host_arch)" wasi/wasm; do
        cat <<CONF
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "$p"
    snapshotter = "overlayfs"
    differ = "walking"
CONF
    done
    cat <<CONF
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  # CRI pulls through the transfer service unpack only the host's platform
  # (whatever unpack_config says), so a kubelet's pull of a wasi/wasm image
  # would leave it without a snapshot: "parent snapshot ... does not exist".
  # The local pull unpacks every platform it fetched.
  use_local_image_pull = true
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "localhost/test/pause:latest"
CONF
    if [ -n "${REGISTRY_HOSTS_DIR:-}" ]; then
        cat <<CONF
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$REGISTRY_HOSTS_DIR"
CONF
    fi
    cat <<CONF
[plugins."io.containerd.cri.v1.runtime"]
  # This VM lacks CAP_SYS_RESOURCE; runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        Root = "$dir/runc"
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmtime]
      runtime_type = "io.containerd.wasmtime.v1"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni"
CONF
}

containerd_up() {
    local dir=$1 shim_dir=$2 bin_dir release path
    bin_dir=$(_containerd_bin_dir) || return 1
    bin_dir=$(cd "$bin_dir" && pwd) || return 1
    release=$(containerd_release "$bin_dir") || { echo "cannot run $bin_dir/containerd --version" >&2; return 1; }
    mkdir -p "$dir/cni"
    _containerd_cni_conflist "$dir" >"$dir/cni/10-wasmtime-e2e.conflist"
    case $release in
        1.*)
            _containerd_config_v2 "$dir" >"$dir/config.toml"
            # A chosen bin dir's runc shim goes first, as for 2.x below.
            path="$shim_dir:${CONTAINERD_BIN_DIR:+$bin_dir:}$PATH"
            ;;
        2.*)
            _containerd_config_v3 "$dir" >"$dir/config.toml"
            # runc pods must get this release's own runc shim, not Debian's
            # 1.6 one from /usr/bin: its bin dir comes right after the shim's.
            [ -x "$bin_dir/containerd-shim-runc-v2" ] || {
                echo "$bin_dir has no containerd-shim-runc-v2 (containerd $release needs its own)" >&2
                return 1
            }
            path="$shim_dir:$bin_dir:$PATH"
            ;;
        *)
            echo "containerd $release in $bin_dir: unsupported version" >&2
            return 1
            ;;
    esac
    # Read back by ctr_private and containerd_down.
    echo "$bin_dir" >"$dir/containerd.bin"
    echo "$CNI_BRIDGE" >"$dir/cni-bridge"
    # A marker in containerd's environment (and so the shim's): tests check
    # that it never reaches a guest. The working directory is DIR: 2.x looks
    # for a runtime's shim binary relative to it before PATH.
    (cd "$dir" && PATH="$path" HOST_ONLY_SECRET=do-not-leak \
        exec setsid "$bin_dir/containerd" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null) &
    echo $! >"$dir/containerd.pid"
    local i
    for i in $(seq 1 100); do
        if [ -S "$dir/containerd.sock" ] && "$bin_dir/ctr" --address "$dir/containerd.sock" version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "containerd $release did not come up; log:" >&2
    tail -n 50 "$dir/containerd.log" >&2
    return 1
}

# The ctr matching the containerd that containerd_up started in DIR.
_containerd_ctr() {
    local dir=$1
    if [ -f "$dir/containerd.bin" ]; then
        echo "$(cat "$dir/containerd.bin")/ctr"
    else
        echo ctr
    fi
}

ctr_private() {
    local dir=$1
    shift
    # 2.x warns on every command that cgroup v1 is deprecated (this host).
    CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=true "$(_containerd_ctr "$dir")" --address "$dir/containerd.sock" --namespace "${CTR_NAMESPACE:-wasm}" "$@"
}

containerd_down() {
    local dir=$1 bridge=$CNI_BRIDGE
    [ -d "$dir" ] || return 0
    [ -f "$dir/cni-bridge" ] && bridge=$(cat "$dir/cni-bridge")
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
    stop_pid_file "$dir/containerd.pid" 5
    ip link delete "$bridge" 2>/dev/null || true
    # Unmount anything left under the directory, deepest first.
    local m
    for m in $(awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
