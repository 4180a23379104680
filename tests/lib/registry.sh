# A private OCI registry on loopback for tests (Debian's docker-registry,
# CNCF distribution 2.8). Source this file. Everything lives under one
# directory: config, storage, log, pid and the chosen address.
#
#   registry_up DIR [PORT]   start it on 127.0.0.1:PORT (PORT, else
#                            $REGISTRY_PORT, else the first free port from
#                            5000); writes DIR/address (127.0.0.1:PORT) and
#                            DIR/registry.pid; waits until /v2/ answers
#   registry_down DIR        stop it by that pid (storage is kept)
#   registry_hosts_dir DIR   write a containerd hosts dir that pulls from it
#                            over plain HTTP; prints the hosts dir path (for
#                            CRI's registry config_path, or ctr --hosts-dir)
#   registry_address DIR     print 127.0.0.1:PORT
#
# With REGISTRY_HTPASSWD=FILE (bcrypt entries) the registry asks for basic auth.

. "$(dirname "${BASH_SOURCE[0]}")/pidfile.sh"

registry_ensure_installed() {
    command -v docker-registry >/dev/null 2>&1 && return 0
    echo "==> apt-get install docker-registry" >&2
    # The package's own service is not used (and must not take port 5000):
    # without a policy-rc.d, keep invoke-rc.d from starting it.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; } ||
        rc=$?
    [ -n "$made_policy" ] && rm -f "$policy"
    return "$rc"
}

# Whether something listens on 127.0.0.1:PORT (or on every address).
registry_port_busy() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

registry_up() {
    local dir=$1 port=${2:-${REGISTRY_PORT:-}}
    registry_ensure_installed || { echo "registry_up: cannot install docker-registry" >&2; return 1; }
    mkdir -p "$dir/storage"
    dir=$(cd "$dir" && pwd)
    if [ -z "$port" ]; then
        local p
        for p in $(seq 5000 5099); do
            registry_port_busy "$p" || { port=$p; break; }
        done
        [ -n "$port" ] || { echo "registry_up: no free port in 5000-5099" >&2; return 1; }
    elif registry_port_busy "$port"; then
        echo "registry_up: port $port is in use" >&2
        return 1
    fi
    local auth=""
    if [ -n "${REGISTRY_HTPASSWD:-}" ]; then
        auth="auth:
  htpasswd:
    realm: wasm-oci-test
    path: $REGISTRY_HTPASSWD"
    fi
    cat >"$dir/config.yml" <<CONF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
CONF
    echo "127.0.0.1:$port" >"$dir/address"
    setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
    local i code
    for i in $(seq 1 100); do
        # 200 (open) or 401 (htpasswd) both mean it is serving.
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/v2/" 2>/dev/null) || true
        case "$code" in 200 | 401) return 0 ;; esac
        if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "registry did not come up on 127.0.0.1:$port; log:" >&2
    tail -n 30 "$dir/registry.log" >&2
    registry_down "$dir"
    return 1
}

registry_address() {
    cat "$1/address"
}

registry_down() { stop_pid_file "$1/registry.pid" 5; }

registry_hosts_dir() {
    local dir=$1 addr
    addr=$(registry_address "$dir") || return 1
    mkdir -p "$dir/hosts/$addr"
    cat >"$dir/hosts/$addr/hosts.toml" <<CONF
server = "http://$addr"

[host."http://$addr"]
  capabilities = ["pull", "resolve"]
CONF
    echo "$dir/hosts"
}
