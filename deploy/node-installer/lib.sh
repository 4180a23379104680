# shellcheck shell=bash
# Shared by install.sh and uninstall.sh. Source it; needs bash, awk, cmp,
# and for --label-node, curl.
#
# All host paths are given as the host sees them (/etc/containerd/config.toml)
# and reached under $HOST_ROOT (/host in the DaemonSet, / on the node itself).

SHIM_NAME=containerd-shim-wasmtime-v1
RUNTIME_TYPE=io.containerd.wasmtime.v1
NODE_LABEL=wasmtime.containerd.io/enabled
MARK_BEGIN="# >>> containerd-shim-wasmtime: added by deploy/node-installer; uninstall.sh removes it >>>"
MARK_END="# <<< containerd-shim-wasmtime <<<"
BACKUP_SUFFIX=.pre-wasmtime

HOST_ROOT=${HOST_ROOT:-/}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
HANDLER=${HANDLER:-wasmtime}
SA_DIR=${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}

# Prints the header comment of the script that was run (its usage) and exits 2.
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[${#BASH_SOURCE[@]}-1]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

log() { printf 'wasmtime-node-installer: %s\n' "$*"; }
warn() { printf 'wasmtime-node-installer: warning: %s\n' "$*" >&2; }
# die MESSAGE [STATUS]. Inside $(...) it ends only that subshell: every
# function here that can die is called as a plain assignment, `v=$(f ...)`,
# whose failure set -e turns into the installer's exit, or with `|| exit` in
# a function (set -e is off in a $(...) and where the caller tests the
# status). Never inside an argument, `echo "$(f ...)"`, where the failure is
# lost and the caller goes on: the message would come again, or not at all.
die() {
    printf 'wasmtime-node-installer: error: %s\n' "$*" >&2
    exit "${2:-1}"
}

# hostpath PATH: where the host's PATH is reachable from here.
hostpath() {
    case $HOST_ROOT in
        / | "") printf '%s\n' "$1" ;;
        *) printf '%s%s\n' "${HOST_ROOT%/}" "$1" ;;
    esac
}

check_common_args() {
    [ -d "$HOST_ROOT" ] || die "host root $HOST_ROOT is not a directory"
    case $BIN_DIR in /*) ;; *) die "--bin-dir must be an absolute host path: $BIN_DIR" ;; esac
    case $CONTAINERD_CONFIG in /*) ;; *) die "--config must be an absolute host path: $CONTAINERD_CONFIG" ;; esac
    # A RuntimeClass handler is a DNS label.
    [[ $HANDLER =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "--handler must be a DNS label (lower case letters, digits, '-'): $HANDLER"
}

# Runs a program as the host would: directly when HOST_ROOT is /, else with
# chroot, if the host root can run programs at all. Returns 127 when not.
host_run() {
    case $HOST_ROOT in
        / | "") "$@" ;;
        *)
            command -v chroot >/dev/null 2>&1 && [ -e "$HOST_ROOT/bin/sh" ] || return 127
            chroot "$HOST_ROOT" "$@"
            ;;
    esac
}

# The TOML reader: table headers, top-level keys and the imports list of a
# containerd config, without a TOML library (the installer image has none).
# Keys are normalised: quotes and spaces dropped, segments joined with '/':
#   [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]
#   → plugins/io.containerd.cri.v1.runtime/containerd/runtimes/wasmtime
# Modes (-v mode=...):
#   headers   LINE<TAB>KEY for every [table] header
#   top KEY   the raw value of a top-level key (before the first table)
#   imports   each string of the top-level imports array, one a line
#   value     (-v table=KEY -v key=NAME) the string value of NAME in that table
#   keyline   (-v table=KEY -v key=NAME) the line number of NAME in that table
TOML_AWK='
function parse_key(s,    out, seg, q, c, i, n) {
    out = ""; seg = ""; q = ""; n = 0
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") {
            if (c == q) { q = ""; continue }
            if (c == "\\" && q == "\"") { i++; seg = seg substr(s, i, 1); continue }
            seg = seg c; continue
        }
        if (c == "\"" || c == sq) { q = c; continue }
        if (c == "]") break
        if (c == " " || c == "\t") continue
        if (c == ".") { out = out (n++ ? "/" : "") seg; seg = ""; continue }
        seg = seg c
    }
    return out (n ? "/" : "") seg
}
function unquote(v) {
    sub(/^[ \t]*/, "", v)
    if (v ~ /^"/) { v = substr(v, 2); sub(/".*$/, "", v); return v }
    if (substr(v, 1, 1) == sq) { v = substr(v, 2); v = substr(v, 1, index(v, sq) - 1); return v }
    sub(/[ \t]*(#.*)?$/, "", v)
    return v
}
BEGIN { intable = 0; current = ""; collecting = 0; strre = "\"[^\"]*\"|" sq "[^" sq "]*" sq }
/^[ \t]*\[\[/ { intable = 1; current = ""; next }
/^[ \t]*\[/ {
    intable = 1
    line = $0; sub(/^[ \t]*\[/, "", line)
    current = parse_key(line)
    if (mode == "headers") printf "%d\t%s\n", NR, current
    next
}
mode == "imports" && !intable {
    if (!collecting && $0 ~ /^[ \t]*imports[ \t]*=/) { collecting = 1; sub(/^[^=]*=/, "") }
    if (collecting) {
        rest = $0
        while (match(rest, strre)) {
            print substr(rest, RSTART + 1, RLENGTH - 2)
            rest = substr(rest, RSTART + RLENGTH)
        }
        if ($0 ~ /\]/) collecting = 0
    }
    next
}
mode == "top" && !intable && $0 ~ "^[ \t]*" name "[ \t]*=" {
    v = $0; sub(/^[^=]*=/, "", v); print unquote(v); exit
}
mode == "value" && intable && current == table && $0 ~ "^[ \t]*\"?" key "\"?[ \t]*=" {
    v = $0; sub(/^[^=]*=/, "", v); print unquote(v); exit
}
mode == "keyline" && intable && current == table && $0 ~ "^[ \t]*\"?" key "\"?[ \t]*=" {
    print NR; exit
}
'

toml() { # MODE FILE [awk -v assignments...]
    local mode=$1 file=$2
    shift 2
    ${AWK:-awk} -v mode="$mode" -v sq="'" "$@" "$TOML_AWK" "$file"
}

# Config version of a file: its top-level `version`, 1 when absent (as
# containerd 1.x reads a file without one).
config_version() {
    local v
    v=$(toml top "$1" -v name=version)
    [ -n "$v" ] || v=1
    [[ $v =~ ^[0-9]+$ ]] || die "$1: cannot read its version ($v)"
    printf '%s\n' "$v"
}

# Major version of the host's containerd, when it can be run; empty if not.
host_containerd_major() {
    local out v
    out=$(host_run containerd --version 2>/dev/null) || return 0
    # containerd github.com/containerd/containerd[/v2] [v]X.Y.Z ...
    v=$(printf '%s\n' "$out" | ${AWK:-awk} '{print $3}' | sed 's/^v//')
    printf '%s\n' "${v%%.*}"
}

# The config version the host's containerd writes (`containerd config
# default`: 2 for 1.6/1.7, 3 for 2.0-2.2, 4 for 2.3 and later), when it can
# be run; empty if not.
host_default_config_version() {
    local out
    out=$(host_run containerd config default 2>/dev/null) || return 0
    printf '%s\n' "$out" | ${AWK:-awk} '
        /^[ \t]*\[/ { exit }
        /^[ \t]*version[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]*(#.*)?$/, "", v); print v; exit }'
}

# The config versions this script knows. Version 4 (containerd 2.3 and
# later; `containerd config default` of 2.4 writes it) only moved the server
# settings ([grpc], [ttrpc], [debug], [metrics]) into plugins
# (io.containerd.server.v1.*): the CRI plugin's keys, imports and their
# merging are as in version 3. A later version is refused, as its layout is
# unknown.
SUPPORTED_VERSIONS="1, 2, 3 and 4"

# The CRI plugin and the runtimes table for a config version; dies on a
# version this script does not know.
cri_plugin_key() {
    case $1 in
        1) echo "plugins/cri" ;;
        2) echo "plugins/io.containerd.grpc.v1.cri" ;;
        3 | 4) echo "plugins/io.containerd.cri.v1.runtime" ;;
        *) die "containerd config version $1 is not supported ($SUPPORTED_VERSIONS are)" ;;
    esac
}
handler_key() {
    local k
    k=$(cri_plugin_key "$1") || exit
    echo "$k/containerd/runtimes/$HANDLER"
}
runtime_header() { # VERSION NAME
    case $1 in
        1) echo "[plugins.cri.containerd.runtimes.$2]" ;;
        2) echo "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.$2]" ;;
        3 | 4) echo "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.$2]" ;;
        *) die "containerd config version $1 is not supported ($SUPPORTED_VERSIONS are)" ;;
    esac
}
handler_header() { runtime_header "$1" "$HANDLER"; }

# containerd's built-in CRI runtime, as containerd 1.6/1.7 define it when a
# config has no runtimes table (its options are all zero values, so none are
# written).
BUILTIN_RUNTIME=runc
BUILTIN_RUNTIME_TYPE=io.containerd.runc.v2

# The TOML that registers the handler, between our markers. With a second
# argument 1 it also writes out containerd's built-in runc runtime: containerd
# 1.x replaces its built-in runtimes map with the config's, so a runtimes
# table holding only the handler leaves default_runtime_name = "runc" without
# a runtime, and the CRI plugin fails to load.
handler_block() { # VERSION [WITH_BUILTIN]
    local header runc
    header=$(handler_header "$1") || exit
    printf '%s\n%s\n  runtime_type = "%s"\n' "$MARK_BEGIN" "$header" "$RUNTIME_TYPE"
    if [ "${2:-0}" = 1 ]; then
        runc=$(runtime_header "$1" "$BUILTIN_RUNTIME") || exit
        printf '%s\n' "# containerd 1.x's built-in runc, written out as built in: 1.x forgets it" \
            "# once a config lists any runtime, and default_runtime_name needs it."
        printf '%s\n  runtime_type = "%s"\n' "$runc" "$BUILTIN_RUNTIME_TYPE"
    fi
    printf '%s\n' "$MARK_END"
}

# containerd 2.x's CRI pulls through its transfer service unpack only the
# node's own platform, so a kubelet's pull of a wasi/wasm image is fetched but
# never unpacked, and CreateContainer fails with "parent snapshot ... does not
# exist". Its local pull (client.Pull) unpacks whatever it fetched, so the
# installer turns that on for config versions 3 and 4.
IMAGES_KEY=plugins/io.containerd.cri.v1.images
LOCAL_PULL_COMMENT="# CRI pulls unpack wasi/wasm images only with the local pull (containerd 2.x)."
LOCAL_PULL_LINE="  use_local_image_pull = true"
local_pull_table() {
    printf '%s\n%s\n%s\n' "$LOCAL_PULL_COMMENT" '[plugins."io.containerd.cri.v1.images"]' "$LOCAL_PULL_LINE"
}

# FILE's content with the local pull set in its CRI images table (TOML allows
# a table once, and a key once in it): a line setting it otherwise is replaced
# by our block, which keeps that line for uninstall.sh (RESTORE_PREFIX); else
# our block goes right after the table's header; else the table is added at
# the end.
with_local_pull() { # FILE
    local header key
    key=$(toml keyline "$1" -v table="$IMAGES_KEY" -v key=use_local_image_pull)
    # Reads to the end: under pipefail an early exit would SIGPIPE the reader.
    header=$(toml headers "$1" | ${AWK:-awk} -F '\t' -v k="$IMAGES_KEY" '$2 == k && !seen { print $1; seen = 1 }')
    if [ -n "$key" ] || [ -n "$header" ]; then
        ${AWK:-awk} -v key="$key" -v n="$header" -v b="$MARK_BEGIN" -v e="$MARK_END" -v c="$LOCAL_PULL_COMMENT" \
            -v l="$LOCAL_PULL_LINE" -v r="$RESTORE_PREFIX" '
            function block(orig) { print b; print c; if (orig != "") print r orig; print l; print e }
            key != "" && NR == key + 0 { block($0); next }
            { print }
            key == "" && NR == n + 0 { block("") }
        ' "$1"
    else
        cat "$1"
        printf '\n%s\n%s\n%s\n' "$MARK_BEGIN" "$(local_pull_table)" "$MARK_END"
    fi
}

# The CRI default runtime's name in FILE (default_runtime_name), else runc.
default_runtime_name() { # FILE VERSION
    local k v
    k=$(cri_plugin_key "$2") || exit
    v=$(toml value "$1" -v table="$k/containerd" -v key=default_runtime_name)
    printf '%s\n' "${v:-$BUILTIN_RUNTIME}"
}

# Does FILE list any CRI runtime (a runtimes table or sub-table, dotted keys,
# an inline table)? containerd 1.x then uses only the runtimes listed there.
lists_runtimes() { # FILE VERSION
    local k
    k=$(cri_plugin_key "$2") || exit
    [ -n "$(tables_under "$1" "$k/containerd/runtimes")" ] ||
        grep -qE '^[[:space:]]*(containerd[[:space:]]*\.[[:space:]]*)?runtimes[[:space:]]*[.=]' "$1"
}

# Does FILE define runtime NAME (its own table, dotted keys or inline)?
defines_runtime() { # FILE VERSION NAME
    local k
    k=$(cri_plugin_key "$2") || exit
    [ -n "$(toml headers "$1" | ${AWK:-awk} -F '\t' -v k="$k/containerd/runtimes/$3" '$2 == k')" ] ||
        [ -n "$(HANDLER=$3 other_handler_forms "$1")" ]
}

# Host paths of the files `imports` of the main config pulls in, in the
# order containerd loads them (each glob's matches sorted). A relative path is
# relative to the config's directory, except a relative glob for containerd
# 1.x (config version 1/2), which resolves against containerd's working
# directory: / under systemd.
imported_files() { # MAIN VERSION
    local main=$1 version=$2 pattern dir f glob
    dir=$(dirname "$CONTAINERD_CONFIG")
    while IFS= read -r pattern; do
        [ -n "$pattern" ] || continue
        glob=0
        [[ $pattern == *"*"* || $pattern == *"?"* || $pattern == *"["* ]] && glob=1
        case $pattern in
            /*) ;;
            *)
                if [ "$glob" = 1 ] && [ "$version" -le 2 ]; then
                    warn "imports: relative glob '$pattern' is resolved by containerd 1.x against its working directory; assuming /"
                    pattern="/$pattern"
                else
                    pattern="$dir/$pattern"
                fi
                ;;
        esac
        if [ "$glob" = 1 ]; then
            local prefix
            prefix=$(hostpath /)
            prefix=${prefix%/}
            while IFS= read -r f; do
                [ -n "$f" ] && printf '%s\n' "${f#"$prefix"}"
            done < <(compgen -G "$(hostpath "$pattern")" | LC_ALL=C sort)
        else
            [ -e "$(hostpath "$pattern")" ] && printf '%s\n' "$pattern"
        fi
    done < <(toml imports "$main")
}

# Lines of FILE whose table is KEY or a sub-table of it.
tables_under() { # FILE KEY
    toml headers "$1" | ${AWK:-awk} -F '\t' -v k="$2" '$2 == k || index($2, k "/") == 1 {print $1}'
}

# The handler written as dotted keys or an inline table, which this script
# does not edit: `runtimes.wasmtime.runtime_type = ...`, `wasmtime = {...}`.
other_handler_forms() { # FILE
    grep -nE "(^|[^A-Za-z0-9_-])(\"|')?$HANDLER(\"|')?[[:space:]]*=[[:space:]]*\{|runtimes[[:space:]]*\.[[:space:]]*(\"|')?$HANDLER(\"|')?[[:space:]]*\." "$1" || true
}

# FILE has a block between our markers.
has_our_block() { grep -qxF "$MARK_BEGIN" "$1" 2>/dev/null; }

# A line of FILE that our block replaced, kept inside the block after this.
RESTORE_PREFIX="# replaced, uninstall.sh puts it back: "

# Removes our marker blocks (and the blank line we put before each) from
# FILE's content, printing the rest, with the lines a block replaced.
strip_our_blocks() { # FILE
    ${AWK:-awk} -v b="$MARK_BEGIN" -v e="$MARK_END" -v r="$RESTORE_PREFIX" '
        skip && index($0, r) == 1 { print substr($0, length(r) + 1); next }
        skip { if ($0 == e) skip = 0; next }
        $0 == b { held = 0; skip = 1; next }
        held { print ""; held = 0 }
        $0 == "" { held = 1; next }
        { print }
        END { if (held) print "" }
    ' "$1"
}

# Replaces FILE with CONTENT_FILE atomically, keeping FILE's mode.
replace_file() { # FILE CONTENT_FILE
    local file=$1 content=$2 tmp
    tmp=$(mktemp "$(dirname "$file")/.$(basename "$file").XXXXXX")
    cat "$content" >"$tmp"
    chmod --reference="$file" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
    mv -f "$tmp" "$file"
}

# The first python3 that has tomllib (3.11+), for an optional parse check.
toml_python() {
    local p
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import tomllib' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Checks that FILE is valid TOML, when a python3 with tomllib is at hand.
# Returns 0 (valid or cannot tell), 1 (invalid, reason on stderr).
toml_valid() { # FILE
    local py
    py=$(toml_python) || return 0
    "$py" -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$1"
}

# Restart containerd. The default enters the host's namespaces through PID 1
# (the DaemonSet runs with hostPID) unless the host root is /.
restart_containerd() {
    RESTARTED_AT=$(date +%s)
    if [ -n "${RESTART_CMD:-}" ]; then
        log "restarting containerd: $RESTART_CMD"
        # Without install.sh's lock (fd 9): a containerd that CMD starts
        # itself would hold it, and the next install.sh wait for ever.
        bash -c "$RESTART_CMD" 9>&- || die "restart command failed: $RESTART_CMD"
        return 0
    fi
    local -a on_host=()
    case $HOST_ROOT in / | "") ;; *) on_host=(nsenter -t 1 -m -u -i -n -p --) ;; esac
    log "restarting containerd: ${on_host[*]}${on_host:+ }systemctl restart containerd"
    "${on_host[@]}" systemctl restart containerd || die "systemctl restart containerd failed"

    for _ in $(seq 1 60); do
        if "${on_host[@]}" systemctl is-active --quiet containerd; then
            log "containerd is active"
            return 0
        fi
        sleep 1
    done
    die "containerd did not become active within 60 s after the restart"
}

# containerd's gRPC socket: the address of the last of FILES (host paths)
# that sets one, else containerd's default. Config version 4 sets it in
# [plugins."io.containerd.server.v1.grpc"]; before 4 in [grpc], which
# containerd 2.3+ moves there unless the file sets it there too (and ignores
# in a version 4 file).
containerd_address() { # FILE...
    local f hf a v addr=/run/containerd/containerd.sock
    for f in "$@"; do
        hf=$(hostpath "$f")
        [ -f "$hf" ] || continue
        a=$(toml value "$hf" -v table=plugins/io.containerd.server.v1.grpc -v key=address)
        if [ -z "$a" ]; then
            v=$(toml top "$hf" -v name=version)
            [[ ${v:-1} =~ ^[0-9]+$ ]] && [ "${v:-1}" -ge 4 ] || a=$(toml value "$hf" -v table=grpc -v key=address)
        fi
        [ -z "$a" ] || addr=$a
    done
    printf '%s\n' "$addr"
}

# The state of containerd's CRI plugins (1.x: io.containerd.grpc.v1 cri; 2.x
# also io.containerd.cri.v1 runtime and images) from `ctr plugins ls` on the
# host, waiting up to WAIT seconds for containerd to answer. `containerd
# config dump` cannot tell: it prints a config the CRI plugin then rejects.
# Prints "ok", "missing" (none listed: disabled, or not built in),
# "unknown: REASON" (ctr cannot run, containerd does not answer), or else
# the `ctr plugins ls` lines of the CRI plugins that are not ok.
CRI_WAIT=${CRI_WAIT:-30} # seconds containerd may take to answer after a restart
cri_plugin_status() { # ADDRESS WAIT
    local addr=${1#unix://} out="" rc deadline
    deadline=$(($(date +%s) + $2))
    while :; do
        rc=0
        if [ -S "$(hostpath "$addr")" ]; then
            # Bounded: ctr would otherwise retry a dead socket without end.
            out=$(host_run ctr --address "$addr" --connect-timeout 5s --timeout 20s plugins ls 2>&1) || rc=$?
        else
            rc=1 out="no socket at $addr (is containerd running?)"
        fi
        [ "$rc" != 0 ] && [ "$rc" != 127 ] && [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
    done
    case $rc in
        0) ;;
        127) echo "unknown: ctr cannot be run on the host"; return 0 ;;
        *) echo "unknown: 'ctr --address $addr plugins ls' failed: $(printf '%s' "$out" | tail -n 1)"; return 0 ;;
    esac
    printf '%s\n' "$out" | ${AWK:-awk} '
        ($1 == "io.containerd.grpc.v1" && $2 == "cri") || $1 == "io.containerd.cri.v1" {
            n++; if ($NF != "ok") bad = bad $0 "\n"
        }
        END { if (!n) print "missing"; else if (bad != "") printf "%s", bad; else print "ok" }'
}

# Logs a CRI plugin STATUS (from cri_plugin_status) that is ok, missing or
# could not be checked; returns 1 for one that is not ok.
cri_check() { # STATUS WHEN
    case $1 in
        ok) log "containerd: CRI plugin ok${2:+ $2} (ctr plugins ls)" ;;
        missing) warn "containerd lists no CRI plugin${2:+ $2} (disabled_plugins?): Kubernetes cannot use the handler" ;;
        "unknown: ctr cannot"*) log "containerd: CRI plugin not checked${2:+ $2} (${1#unknown: })" ;;
        unknown:*) warn "containerd's CRI plugin not checked${2:+ $2} (${1#unknown: }); check with: ctr plugins ls | grep cri" ;;
        *) return 1 ;;
    esac
}

# containerd's own complaints since the last restart, from the host's journal
# when it has one, and where to look for more.
containerd_log_hint() {
    local since=() lines=""
    [ -z "${RESTARTED_AT:-}" ] || since=(--since "@$RESTARTED_AT")
    lines=$(host_run journalctl -u containerd --no-pager -o cat "${since[@]}" 2>/dev/null) || true
    # The CRI plugin says why it failed; other errors only when it does not.
    lines=$(printf '%s\n' "$lines" | grep -E 'failed to load plugin io\.containerd\.(grpc\.v1\.cri|cri\.v1)' | tail -n 5 ||
        printf '%s\n' "$lines" | grep -E 'level=(error|fatal)' | tail -n 5) || true
    if [ -n "$lines" ]; then
        printf 'containerd says (journalctl -u containerd):\n%s\n' "$lines"
    else
        printf "see containerd's log (journalctl -u containerd, or where --restart-cmd's containerd logs) for 'failed to load plugin'\n"
    fi
}

# Sets (VALUE "true") or removes (VALUE "null") the node label, through the
# API server with the pod's service account (RBAC: patch on nodes).
patch_node_label() { # true|null
    local value=$1 body api token
    [ -n "${NODE_NAME:-}" ] || die "--label-node needs NODE_NAME (the DaemonSet sets it from spec.nodeName)"
    [ -n "${KUBERNETES_SERVICE_HOST:-}" ] || die "--label-node needs KUBERNETES_SERVICE_HOST (run it in a pod)"
    [ -r "$SA_DIR/token" ] || die "--label-node: no service account token in $SA_DIR"
    command -v curl >/dev/null 2>&1 || die "--label-node needs curl"
    case $value in
        true) body="{\"metadata\":{\"labels\":{\"$NODE_LABEL\":\"true\"}}}" ;;
        *) body="{\"metadata\":{\"labels\":{\"$NODE_LABEL\":null}}}" ;;
    esac
    local host=$KUBERNETES_SERVICE_HOST
    [[ $host == *:* ]] && host="[$host]"
    api="https://$host:${KUBERNETES_SERVICE_PORT:-443}"
    token=$(cat "$SA_DIR/token")
    curl -fsS --max-time 30 --cacert "$SA_DIR/ca.crt" \
        -H "Authorization: Bearer $token" \
        -H "Content-Type: application/merge-patch+json" \
        -X PATCH --data "$body" \
        "$api/api/v1/nodes/$NODE_NAME" >/dev/null ||
        die "could not patch node $NODE_NAME (does the service account have patch on nodes?)"
}
