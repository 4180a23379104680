# shellcheck shell=bash
# Sourced by installer_test.sh (uses its helpers, counters and $T): the CRI
# default runtime and the installer's check of the CRI plugin.
#
# containerd 1.x replaces its built-in runtimes map (runc) with the runtimes
# a config lists, so a config with no runtimes table (Debian's packaged one)
# plus the handler alone leaves default_runtime_name = "runc" without a
# runtime, and the CRI plugin fails to load. containerd 2.x merges instead.
# Cases: fake roots read through the TOML model (effective_config.py
# --builtin), `containerd config dump`, a fake ctr for the CRI check's
# branches, and real containerd instances (1.6 from PATH; 2.x from
# $CONTAINERD2_BIN_DIR when built) that install.sh restarts with
# --restart-cmd. Every instance lives under $T and is stopped by its PID.

RUNC_V2KEY=plugins/io.containerd.grpc.v1.cri/containerd/runtimes/runc/runtime_type
RUNC_V3KEY=plugins/io.containerd.cri.v1.runtime/containerd/runtimes/runc/runtime_type
RUNC=io.containerd.runc.v2
CONTAINERD2_BIN_DIR=${CONTAINERD2_BIN_DIR:-/var/tmp/containerd-shim-wasmtime/go/containerd-v2.4.2/bin}

# Counts table headers for runtime NAME (any quoting, any CRI plugin).
runtime_headers() { handler_headers "$@"; }
headers_are() { # N NAME FILE...
    local want=$1 n
    shift
    n=$(runtime_headers "$@")
    [ "$n" = "$want" ] || { echo "found $n tables for runtime $1, expected $want"; return 1; }
}
# The lines between install.sh's markers.
our_block() { awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0 == b {on = 1; next} $0 == e {on = 0} on' "$1"; }
block_has_runc() { our_block "$1" | grep -qE '^\[plugins\..*runtimes\.runc\]$'; }

MARK_BEGIN=$(. "$ROOT/deploy/node-installer/lib.sh" && echo "$MARK_BEGIN")
MARK_END=$(. "$ROOT/deploy/node-installer/lib.sh" && echo "$MARK_END")

echo "== Debian's packaged config (containerd 1.6.20): no runtimes table"
r=$(newroot debian debian-stock.toml)
cfg=$r/etc/containerd/config.toml
check "debian: the built-in runc applies before install (model)" effective_is "$RUNC" --builtin 2 "$RUNC_V2KEY" "$FIX/debian-stock.toml"
if [ -n "$PY" ]; then
    check "debian: the handler alone (the old installer's result) loses runc (model)" not effective --builtin 2 "$RUNC_V2KEY" "$FIX/debian-stock-old-install.toml"
fi
if [ "$HAVE_CONTAINERD" = 1 ]; then
    check "debian: and containerd's dump of it lacks runc" not dump_has "$FIX/debian-stock-old-install.toml" 'runtimes.runc]'
fi
run_install "$r"
check "debian: install succeeds" rc_is 0
check "debian: says it writes out the built-in runc" out_has "writing containerd's built-in 'runc'"
check "debian: one handler table" one_handler wasmtime "$cfg"
check "debian: one runc table" headers_are 1 runc "$cfg"
check "debian: it is inside install.sh's block" block_has_runc "$cfg"
check "debian: original content untouched, block appended" bash -c "head -c $(wc -c <"$FIX/debian-stock.toml") '$cfg' | cmp - '$FIX/debian-stock.toml'"
check "debian: handler runtime_type (TOML)" effective_is "$WT" 2 "$V2KEY" "$cfg"
check "debian: runc runtime_type (TOML)" effective_is "$RUNC" 2 "$RUNC_V2KEY" "$cfg"
check "debian: default runtime still resolves as containerd 1.x reads it (model)" effective_is "$RUNC" --builtin 2 "$RUNC_V2KEY" "$cfg"
check "debian: containerd config dump shows both runtimes and the CNI dir" dump_has "$cfg" \
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]' \
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmtime]' 'bin_dir = "/usr/lib/cni"'
before=$(sha "$cfg")
run_install "$r"
check "debian: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg")' ] && grep -q 'already registered' '$T/out'"
run_uninstall "$r"
check "debian: uninstall restores the packaged config byte for byte (runc table too)" same_file "$FIX/debian-stock.toml" "$cfg"

r=$(newroot debian-old debian-stock-old-install.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "debian, old install: re-run adds runc to the block" bash -c "[ $RC = 0 ] && grep -q 'registered handler' '$T/out'"
check "debian, old install: still one handler, now one runc" bash -c "[ \$(grep -c 'runtimes.wasmtime\]' '$cfg') = 1 ] && [ \$(grep -c 'runtimes.runc\]' '$cfg') = 1 ]"
check "debian, old install: default runtime resolves (model)" effective_is "$RUNC" --builtin 2 "$RUNC_V2KEY" "$cfg"
run_uninstall "$r"
check "debian, old install: uninstall gives the packaged config" same_file "$FIX/debian-stock.toml" "$cfg"

r=$(newroot debian-later debian-stock.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
printf '\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]\n  runtime_type = "io.containerd.runc.v2"\n' >>"$cfg"
run_uninstall "$r"
check "debian, runtime added after install: uninstall succeeds" rc_is 0
check "debian, runtime added after install: uninstall keeps runc and says why" out_has "kept the 'runc' runtime"
check "debian, runtime added after install: handler and markers gone, crun kept" bash -c "! grep -q 'runtimes.wasmtime\]' '$cfg' && ! grep -qF '$MARK_BEGIN' '$cfg' && grep -q 'runtimes.crun\]' '$cfg'"
check "debian, runtime added after install: runc still resolves (model)" effective_is "$RUNC" --builtin 2 "$RUNC_V2KEY" "$cfg"
check "debian, runtime added after install: containerd config dump shows runc" dump_has "$cfg" 'runtimes.runc]' 'runtimes.crun]'

echo "== a runc table that is there already is left alone"
r=$(newroot kubeadm-runc v2-kubeadm.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "existing runc: install succeeds, no runc written" bash -c "[ $RC = 0 ] && ! grep -q \"built-in 'runc'\" '$T/out'"
check "existing runc: one runc table (the original)" headers_are 1 runc "$cfg"
check "existing runc: the block holds only the handler" not block_has_runc "$cfg"
check "existing runc: its options untouched (TOML)" effective_is true 2 plugins/io.containerd.grpc.v1.cri/containerd/runtimes/runc/options/SystemdCgroup "$cfg"
r=$(newroot crun v2-crun-default.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "default crun: install succeeds without a runc table" bash -c "[ $RC = 0 ] && ! grep -q 'runtimes.runc\]' '$cfg'"
check "default crun: crun is still the default's runtime (model)" effective_is "$RUNC" --builtin 2 plugins/io.containerd.grpc.v1.cri/containerd/runtimes/crun/runtime_type "$cfg"

echo "== other configs without runtimes: version 1, none, version 3"
r=$(newroot v1-runc v1-legacy.toml)
run_install "$r"
check "v1: runc written as [plugins.cri.containerd.runtimes.runc]" bash -c "[ $RC = 0 ] && grep -qxF '[plugins.cri.containerd.runtimes.runc]' '$r/etc/containerd/config.toml'"
check "v1: default runtime resolves (model)" effective_is "$RUNC" --builtin 1 plugins/cri/containerd/runtimes/runc/runtime_type "$r/etc/containerd/config.toml"
r=$(newroot missing2 -)
run_install "$r" --config-version 2
check "no config, version 2: written with runc" bash -c "[ $RC = 0 ] && [ \$(grep -c 'runtimes.runc\]' '$r/etc/containerd/config.toml') = 1 ]"
check "no config, version 2: default runtime resolves (model)" effective_is "$RUNC" --builtin 2 "$RUNC_V2KEY" "$r/etc/containerd/config.toml"
for fixture in v3-no-runtimes.toml -; do
    name=${fixture%.toml}
    [ "$fixture" != - ] || name="no config, version 3"
    r=$(newroot "v3nr-${fixture%.toml}" "$fixture")
    cfg=$r/etc/containerd/config.toml
    run_install "$r" --config-version 3
    check "$name: install succeeds, handler only (2.x keeps its runc)" bash -c "[ $RC = 0 ] && [ \$(grep -c 'runtimes.runc\]' '$cfg') = 0 ] && [ \$(grep -c 'runtimes.wasmtime\]' '$cfg') = 1 ]"
    check "$name: default runtime resolves as containerd 2.x merges (model)" effective_is "$RUNC" --builtin 3 "$RUNC_V3KEY" "$cfg"
    if [ -x "$CONTAINERD2_BIN_DIR/containerd" ]; then
        check "$name: containerd 2.x config dump shows runc and the handler" bash -c "
            '$CONTAINERD2_BIN_DIR/containerd' --config '$cfg' config dump 2>/dev/null >'$T/dump2' &&
            grep -qF \"runtimes.runc]\" '$T/dump2' && grep -qF \"runtimes.wasmtime]\" '$T/dump2' && grep -qF \"runtime_type = 'io.containerd.runc.v2'\" '$T/dump2'"
    fi
done

echo "== the CRI plugin check after the restart (fake ctr)"
# A socket for the address check and a ctr that answers with the next status
# from $T/ctr.seq (the last one repeats); host root / so both are used.
c=$T/fakectr
mkdir -p "$c/bin"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$c/sock"
cat >"$c/bin/ctr" <<EOF
#!/bin/sh
printf '%s\n' "\$*" >>"$c/ctr.args"
s=\$(head -n 1 "$c/ctr.seq")
[ "\$(wc -l <"$c/ctr.seq")" -le 1 ] || sed -i 1d "$c/ctr.seq"
echo "TYPE                            ID                       PLATFORMS      STATUS"
echo "io.containerd.grpc.v1           introspection            -              ok"
[ "\$s" = none ] || echo "io.containerd.grpc.v1           cri                      linux/amd64    \$s"
EOF
chmod +x "$c/bin/ctr"
# fake_case NAME STATUSES...: a fresh Debian config using the fake socket.
fake_case() {
    rm -rf "${c:?}/$1" "$c/ctr.args"
    mkdir -p "$c/$1/bin"
    { cat "$FIX/debian-stock.toml"; printf '\n[grpc]\n  address = "%s"\n' "$c/sock"; } >"$c/$1/config.toml"
    cp "$c/$1/config.toml" "$c/$1/orig.toml"
    shift
    printf '%s\n' "$@" >"$c/ctr.seq"
    : >"$c/restarts"
}
fake_install() { # NAME [ARGS...]
    local n=$1
    shift
    PATH="$c/bin:$PATH" CRI_WAIT=2 "$INSTALL" --host-root / --shim "$T/shim" --bin-dir "$c/$n/bin" \
        --config "$c/$n/config.toml" --restart-cmd "echo >>'$c/restarts'" --skip-runc-check "$@" >"$T/out" 2>&1
    RC=$?
}
restarts_are() { [ "$(wc -l <"$c/restarts")" = "$1" ] || { echo "restarts: $(wc -l <"$c/restarts")"; return 1; }; }
fake_case ok ok ok
fake_install ok
check "fake ctr: install succeeds when the CRI plugin is ok" bash -c "[ $RC = 0 ] && grep -q 'CRI plugin ok after the restart' '$T/out'"
check "fake ctr: ctr asked containerd at the config's [grpc] address" grep -qF -- "--address $c/sock" "$c/ctr.args"
echo error >"$c/ctr.seq"
fake_install ok
check "fake ctr: a re-run with nothing to change still fails on a broken CRI plugin" bash -c "[ $RC = 1 ] && grep -q 'CRI plugin is not ok' '$T/out'"
fake_case rollback ok error ok
fake_install rollback
check "fake ctr: CRI broken by the edit: install fails" rc_is 1
check "fake ctr: says it put the config back, with where to look" bash -c "grep -q 'was put back' '$T/out' && grep -q 'journalctl -u containerd' '$T/out'"
check "fake ctr: the config is as before" same_file "$c/rollback/orig.toml" "$c/rollback/config.toml"
check "fake ctr: containerd restarted again with it" restarts_are 2
fake_case broken error error
fake_install broken
check "fake ctr: CRI broken before the install too: fails, no rollback" bash -c "[ $RC = 1 ] && grep -q 'before it: io.containerd.grpc.v1 *cri .*error' '$T/out' && ! cmp -s '$c/broken/orig.toml' '$c/broken/config.toml'"
check "fake ctr: and restarts once only" restarts_are 1
fake_case none none none
fake_install none
check "fake ctr: no CRI plugin listed: warns, succeeds" bash -c "[ $RC = 0 ] && grep -q 'lists no CRI plugin' '$T/out'"
fake_case down ok ok
rm -f "$c/sock.gone"
fake_install down
sed -i "s|$c/sock|$c/sock.gone|" "$c/down/config.toml"
echo error >"$c/ctr.seq"
PATH="$c/bin:$PATH" CRI_WAIT=1 "$UNINSTALL" --host-root / --bin-dir "$c/down/bin" --config "$c/down/config.toml" \
    --restart-cmd true >"$T/out" 2>&1
RC=$?
check "fake ctr: uninstall, containerd not answering: warns, succeeds" bash -c "[ $RC = 0 ] && grep -q 'no socket at' '$T/out'"

echo "== real containerd: install.sh restarts it and checks its CRI plugin"
# private_config FIXTURE DIR: the fixture with every path containerd writes
# or watches moved under DIR (root, state, sockets, opt, CNI conf dir), NRI
# off (2.x would share /var/run/nri/nri.sock).
private_config() {
    local d=$2
    mkdir -p "$d/bin" "$d/cni"
    {
        printf 'root = "%s/root"\nstate = "%s/state"\n' "$d" "$d"
        sed -e "s|/var/lib/containerd/opt|$d/opt|" -e "s|/etc/cni/net.d|$d/cni|" "$FIX/$1"
        printf '\n[grpc]\n  address = "%s/c.sock"\n\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n' "$d" "$d"
        grep -q 'io.containerd.internal.v1.opt' "$FIX/$1" || printf '\n[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' "$d"
        printf '\n[plugins."io.containerd.nri.v1.nri"]\n  disable = true\n'
    } >"$d/config.toml"
    cp "$d/config.toml" "$d/orig.toml"
}
# (Re)starts the private containerd of DIR; install.sh runs it as --restart-cmd.
cat >"$T/restart-private.sh" <<'EOF'
#!/usr/bin/env bash
bin=$1 d=$2
if [ -f "$d/pid" ]; then
    pid=$(cat "$d/pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
"$bin/containerd" --config "$d/config.toml" >>"$d/containerd.log" 2>&1 </dev/null &
echo $! >"$d/pid"
EOF
chmod +x "$T/restart-private.sh"
PRIVATE_DIRS=()
stop_private() { # DIR
    local pid
    [ -f "$1/pid" ] || return 0
    pid=$(cat "$1/pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$1/pid"
}
cleanup_private() { local d; for d in "${PRIVATE_DIRS[@]}"; do stop_private "$d"; done; }
CLEANUP_HOOKS+=(cleanup_private)
wait_up() { # BIN_DIR DIR: containerd answers (20 s at most)
    for _ in $(seq 1 40); do "$1/ctr" --address "$2/c.sock" --connect-timeout 1s version >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "containerd in $2 does not answer"; tail -n 5 "$2/containerd.log"; return 1
}
cri_ok() { # BIN_DIR DIR: the real ctr sees every CRI plugin ok
    "$1/ctr" --address "$2/c.sock" plugins ls >"$T/plugins" 2>&1 || { cat "$T/plugins"; return 1; }
    awk '($1 == "io.containerd.grpc.v1" && $2 == "cri") || $1 == "io.containerd.cri.v1" {n++; if ($NF != "ok") bad = 1}
        END {exit !(n && !bad)}' "$T/plugins" || { grep -i cri "$T/plugins"; return 1; }
}
# real_case LABEL BIN_DIR FIXTURE: containerd runs with FIXTURE, install.sh
# adds the handler and restarts it, uninstall.sh takes it out again.
real_case() {
    local label=$1 bin=$2 fixture=$3 d
    d=$T/real-$RANDOM
    PRIVATE_DIRS+=("$d")
    private_config "$fixture" "$d"
    "$T/restart-private.sh" "$bin" "$d"
    check "$label: containerd starts with the original config" wait_up "$bin" "$d"
    local -a run=(env PATH="$bin:$PATH" CRI_WAIT=30 "$INSTALL" --host-root / --shim "$T/shim" --bin-dir "$d/bin"
        --config "$d/config.toml" --restart-cmd "'$T/restart-private.sh' '$bin' '$d'" --skip-runc-check)
    "${run[@]}" >"$T/out" 2>&1
    RC=$?
    check "$label: install succeeds, CRI plugin ok after the restart" bash -c "[ $RC = 0 ] && grep -q 'CRI plugin ok after the restart' '$T/out' || { cat '$T/out'; tail -n 5 '$d/containerd.log'; exit 1; }"
    check "$label: ctr plugins ls shows the CRI plugin ok" cri_ok "$bin" "$d"
    check "$label: config dump shows the handler and runc" bash -c "'$bin/containerd' --config '$d/config.toml' config dump 2>/dev/null | grep -F 'runtimes.runc]' >/dev/null && '$bin/containerd' --config '$d/config.toml' config dump 2>/dev/null | grep -qF 'runtimes.wasmtime]'"
    env PATH="$bin:$PATH" CRI_WAIT=30 "$UNINSTALL" --host-root / --bin-dir "$d/bin" --config "$d/config.toml" \
        --restart-cmd "'$T/restart-private.sh' '$bin' '$d'" >"$T/out" 2>&1
    RC=$?
    check "$label: uninstall restores the config, CRI plugin ok" bash -c "[ $RC = 0 ] && cmp -s '$d/orig.toml' '$d/config.toml' && grep -q 'CRI plugin ok after the restart' '$T/out' || { cat '$T/out'; exit 1; }"
    check "$label: ctr plugins ls after uninstall" cri_ok "$bin" "$d"
    stop_private "$d"
}
if [ "$HAVE_CONTAINERD" = 1 ] && command -v ctr >/dev/null 2>&1; then
    c16=$(dirname "$(command -v containerd)")
    real_case "containerd $(containerd --version | awk '{print $3}'), Debian's config" "$c16" debian-stock.toml
    # The old installer's result on this containerd: the CRI plugin really fails.
    d=$T/real-old
    PRIVATE_DIRS+=("$d")
    private_config debian-stock-old-install.toml "$d"
    "$T/restart-private.sh" "$c16" "$d"
    wait_up "$c16" "$d" >/dev/null
    check "containerd 1.x, the old installer's config: CRI plugin in error (as found in the VM)" bash -c "
        . '$ROOT/deploy/node-installer/lib.sh'; s=\$(cri_plugin_status '$d/c.sock' 20); echo \"\$s\"; [ \"\${s#*cri}\" != \"\$s\" ] && [ \"\${s%error*}\" != \"\$s\" ]"
    env PATH="$c16:$PATH" CRI_WAIT=30 "$INSTALL" --host-root / --shim "$T/shim" --bin-dir "$d/bin" --config "$d/config.toml" \
        --restart-cmd "'$T/restart-private.sh' '$c16' '$d'" --skip-runc-check >"$T/out" 2>&1
    RC=$?
    check "containerd 1.x, the old installer's config: re-running install.sh repairs it" bash -c "[ $RC = 0 ] && grep -q 'CRI plugin ok after the restart' '$T/out' || { cat '$T/out'; exit 1; }"
    stop_private "$d"
else
    echo "note: containerd/ctr not installed: real containerd cases skipped"
fi
if [ -x "$CONTAINERD2_BIN_DIR/containerd" ] && [ -x "$CONTAINERD2_BIN_DIR/ctr" ]; then
    real_case "containerd 2.x, version 3 without runtimes" "$CONTAINERD2_BIN_DIR" v3-no-runtimes.toml
    real_case "containerd 2.x, Debian's version 2 config" "$CONTAINERD2_BIN_DIR" debian-stock.toml
else
    echo "note: no containerd 2.x in $CONTAINERD2_BIN_DIR (CONTAINERD2_BIN_DIR): its real cases skipped"
fi
