#!/usr/bin/env bash
# Tests deploy/node-installer/install.sh and uninstall.sh against fake host
# roots in a temporary directory: containerd configs of version 1, 2, 3 and 4
# (fixtures/v4-default.toml is containerd 2.4.2's `containerd config default`
# as it prints it, below one comment line), a version 5 that must be refused,
# drop-in imports, a handler that is already there, one whose name is taken,
# configs without a runtimes table (Debian's), and the check of containerd's
# CRI plugin after the restart (tests/deploy/installer_cri_cases.sh). The
# system containerd is never restarted: --no-restart, a restart command that
# counts its calls, or one that restarts a private containerd (1.6 from PATH,
# 2.x from $CONTAINERD2_BIN_DIR) whose root, state, sockets, opt and CNI conf
# dirs are under the temporary directory; nothing outside it is touched.
#
#   tests/deploy/installer_test.sh
#
# Where a python3 with tomllib (3.11+) is at hand every resulting file is
# parsed and read as containerd merges it (tests/deploy/effective_config.py);
# where containerd is installed, `containerd config dump` reads the version 2
# results too, and containerd 2.x (from $CONTAINERD2_BIN_DIR, when built) the
# version 3 and 4 ones. The TOML-reading awk runs under every awk found (gawk, mawk,
# busybox awk). Prints one line per check, then "N passed, M failed"; exits 1
# on any failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
INSTALL="$ROOT/deploy/node-installer/install.sh"
UNINSTALL="$ROOT/deploy/node-installer/uninstall.sh"
FIX="$ROOT/tests/deploy/fixtures"
EFFECTIVE="$ROOT/tests/deploy/effective_config.py"
T=$(mktemp -d /tmp/wasmtime-installer-test.XXXXXX)
CLEANUP_HOOKS=() # run before $T goes (installer_cri_cases.sh stops its containerds)
cleanup() { local h; for h in "${CLEANUP_HOOKS[@]}"; do "$h"; done; rm -rf "$T"; }
trap cleanup EXIT
# The CRI plugin check after a (pretend) restart: no waiting for a
# containerd that is not there; the real-containerd cases set their own.
export CRI_WAIT=${CRI_WAIT:-0}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/     | /'; }
check() { # NAME COMMAND...: passes when COMMAND succeeds
    local name=$1
    shift
    if "$@" >"$T/check.out" 2>&1; then pass "$name"; else fail "$name" "$(tail -n 20 "$T/check.out")"; fi
}
not() { ! "$@"; }

PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import tomllib' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || echo "note: no python3 with tomllib: TOML parse checks are skipped"
HAVE_CONTAINERD=0
command -v containerd >/dev/null 2>&1 && HAVE_CONTAINERD=1
[ "$HAVE_CONTAINERD" = 1 ] || echo "note: containerd not installed: 'containerd config dump' checks are skipped"
# containerd 2.x, as deploy/dev/build-go-tools.sh builds it (also used by
# installer_cri_cases.sh).
CONTAINERD2_BIN_DIR=${CONTAINERD2_BIN_DIR:-/var/tmp/containerd-shim-wasmtime/go/containerd-v2.4.2/bin}
HAVE_CONTAINERD2=0
[ -x "$CONTAINERD2_BIN_DIR/containerd" ] && HAVE_CONTAINERD2=1
[ "$HAVE_CONTAINERD2" = 1 ] || echo "note: no containerd 2.x in $CONTAINERD2_BIN_DIR (CONTAINERD2_BIN_DIR): its 'containerd config dump' checks are skipped"

# A fake shim: install.sh only copies it.
printf '#!/bin/sh\necho containerd-shim-wasmtime-v1 fake %s\n' "$$" >"$T/shim"
chmod 0755 "$T/shim"

# newroot NAME CONFIG_FIXTURE [IMPORT_FIXTURE:NAME]...: a fake host root with
# runc and /etc/containerd/config.toml (and conf.d/ files).
newroot() {
    local r="$T/$1" fixture=$2
    shift 2
    mkdir -p "$r/usr/bin" "$r/etc/containerd" "$r/run"
    printf '#!/bin/sh\n' >"$r/usr/bin/runc"
    chmod 0755 "$r/usr/bin/runc"
    [ "$fixture" = - ] || cp "$FIX/$fixture" "$r/etc/containerd/config.toml"
    local spec
    for spec in "$@"; do
        mkdir -p "$r/etc/containerd/conf.d"
        cp "$FIX/${spec%%:*}" "$r/etc/containerd/conf.d/${spec#*:}"
    done
    echo "$r"
}

# run_install ROOT [ARGS...]: install.sh with restart off; output in $T/out,
# exit status in $RC.
run_install() {
    local r=$1
    shift
    "$INSTALL" --host-root "$r" --shim "$T/shim" --no-restart "$@" >"$T/out" 2>&1
    RC=$?
}
run_uninstall() {
    local r=$1
    shift
    "$UNINSTALL" --host-root "$r" --no-restart "$@" >"$T/out" 2>&1
    RC=$?
}
rc_is() { [ "$RC" = "$1" ] || { cat "$T/out"; echo "exit status $RC, expected $1"; return 1; }; }
out_has() { grep -qF -- "$1" "$T/out" || { cat "$T/out"; return 1; }; }

# Counts table headers for HANDLER (any quoting) in the files.
handler_headers() { # HANDLER FILE...
    local h=$1
    shift
    cat "$@" | grep -cE "^[[:space:]]*\[plugins\.[^]]*runtimes\.[\"']?${h}[\"']?\][[:space:]]*$" || true
}
one_handler() { local n; n=$(handler_headers "$@"); [ "$n" = 1 ] || { echo "found $n handler tables"; return 1; }; }
# effective VERSION KEY FILE...: the merged value, or fails.
effective() { [ -z "$PY" ] || "$PY" "$EFFECTIVE" "$@"; }
effective_is() { # EXPECTED VERSION KEY FILE...
    local want=$1 got
    shift
    [ -n "$PY" ] || return 0
    got=$("$PY" "$EFFECTIVE" "$@") || { echo "key $2 not found"; return 1; }
    [ "$got" = "$want" ] || { echo "got '$got', expected '$want'"; return 1; }
}
same_file() { cmp "$1" "$2"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
# containerd's own merged view of a version 2 config.
dump_has() { # CONFIG PATTERN...
    [ "$HAVE_CONTAINERD" = 1 ] || return 0
    local cfg=$1 pat
    shift
    timeout 30 containerd --config "$cfg" config dump >"$T/dump" 2>"$T/dump.err" || { cat "$T/dump.err"; return 1; }
    for pat in "$@"; do
        grep -qF -- "$pat" "$T/dump" || { echo "config dump lacks: $pat"; return 1; }
    done
}

# containerd 2.x's merged view (its stderr in $T/dump2.err): every PATTERN
# is in it. A pattern starting with ! must not be in the dump or its stderr.
dump2_has() { # CONFIG PATTERN...
    [ "$HAVE_CONTAINERD2" = 1 ] || return 0
    local cfg=$1 pat
    shift
    timeout 30 "$CONTAINERD2_BIN_DIR/containerd" --config "$cfg" config dump >"$T/dump2" 2>"$T/dump2.err" || { cat "$T/dump2.err"; return 1; }
    for pat in "$@"; do
        case $pat in
            !*) ! grep -qF -- "${pat#!}" "$T/dump2" "$T/dump2.err" || { echo "config dump has: ${pat#!}"; cat "$T/dump2.err"; return 1; } ;;
            *) grep -qF -- "$pat" "$T/dump2" || { echo "config dump lacks: $pat"; return 1; } ;;
        esac
    done
}
# with_imports_in ROOT CONFIG: a copy of CONFIG whose absolute imports point
# into the fake root (for containerd's own reading), printed as its path.
with_imports_in() {
    sed "s|'/etc/containerd/conf.d/|'$1/etc/containerd/conf.d/|" "$2" >"$T/with-imports.toml"
    echo "$T/with-imports.toml"
}
# only_error LINE: the installer's output has exactly one error line, LINE.
only_error() {
    local n
    n=$(grep -c 'error:' "$T/out")
    [ "$n" = 1 ] && grep -qxF -- "wasmtime-node-installer: error: $1" "$T/out" || { cat "$T/out"; echo "($n error lines)"; return 1; }
}

V2KEY=plugins/io.containerd.grpc.v1.cri/containerd/runtimes/wasmtime/runtime_type
V3KEY=plugins/io.containerd.cri.v1.runtime/containerd/runtimes/wasmtime/runtime_type
WT=io.containerd.wasmtime.v1

echo "== version 2 (containerd 1.6/1.7), handler added in place"
r=$(newroot v2 v2-kubeadm.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "v2: install succeeds" rc_is 0
check "v2: binary copied to /usr/local/bin" same_file "$T/shim" "$r/usr/local/bin/containerd-shim-wasmtime-v1"
check "v2: binary is mode 0755" test "$(stat -c %a "$r/usr/local/bin/containerd-shim-wasmtime-v1")" = 755
check "v2: exactly one handler table" one_handler wasmtime "$cfg"
check "v2: original kept as config.toml.pre-wasmtime" same_file "$FIX/v2-kubeadm.toml" "$cfg.pre-wasmtime"
check "v2: original content untouched, block appended" bash -c "head -c $(wc -c <"$FIX/v2-kubeadm.toml") '$cfg' | cmp - '$FIX/v2-kubeadm.toml'"
check "v2: handler runtime_type (TOML)" effective_is "$WT" 2 "$V2KEY" "$cfg"
check "v2: SystemdCgroup of runc kept (TOML)" effective_is true 2 plugins/io.containerd.grpc.v1.cri/containerd/runtimes/runc/options/SystemdCgroup "$cfg"
check "v2: says restart was skipped" out_has "restart: skipped (--no-restart)"
check "v2: containerd config dump shows handler and old settings" dump_has "$cfg" \
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmtime]' \
    'runtime_type = "io.containerd.wasmtime.v1"' 'sandbox_image = "registry.k8s.io/pause:3.9"' 'SystemdCgroup = true'
before=$(sha "$cfg" "$cfg.pre-wasmtime")
run_install "$r"
check "v2: re-run succeeds" rc_is 0
check "v2: re-run changes nothing" test "$before" = "$(sha "$cfg" "$cfg.pre-wasmtime")"
check "v2: re-run reports handler already registered" out_has "already registered"
check "v2: re-run reports binary up to date" out_has "is up to date"
check "v2: re-run needs no restart" out_has "restart: not needed"
check "v2: re-run leaves one handler table" one_handler wasmtime "$cfg"
check "v2: one backup only" test "$(find "$r/etc/containerd" -name "*pre-wasmtime*" | wc -l)" = 1
run_uninstall "$r"
check "v2: uninstall succeeds" rc_is 0
check "v2: uninstall restores the config byte for byte" same_file "$FIX/v2-kubeadm.toml" "$cfg"
check "v2: uninstall removes the binary" test ! -e "$r/usr/local/bin/containerd-shim-wasmtime-v1"
run_uninstall "$r"
check "v2: uninstall again is a no-op" bash -c "[ $RC = 0 ] && cmp '$FIX/v2-kubeadm.toml' '$cfg'"
run_install "$r"
check "v2: install after uninstall adds the handler again" bash -c "[ $RC = 0 ] && [ \$(grep -c 'runtimes.wasmtime\]' '$cfg') = 1 ]"

echo "== restart: run only when the config changed"
r=$(newroot restart v2-kubeadm.toml)
restart="echo restarted >>'$T/restarts'"
"$INSTALL" --host-root "$r" --shim "$T/shim" --restart-cmd "$restart" >"$T/out" 2>&1
RC=$?
check "restart: install succeeds" rc_is 0
check "restart: restart command ran once" test "$(wc -l <"$T/restarts" 2>/dev/null)" = 1
"$INSTALL" --host-root "$r" --shim "$T/shim" --restart-cmd "$restart" >"$T/out" 2>&1
check "restart: not run again when nothing changed" test "$(wc -l <"$T/restarts")" = 1
printf '#!/bin/sh\necho newer build\n' >"$T/shim2"
"$INSTALL" --host-root "$r" --shim "$T/shim2" --restart-cmd "$restart" >"$T/out" 2>&1
check "restart: a new binary is installed" same_file "$T/shim2" "$r/usr/local/bin/containerd-shim-wasmtime-v1"
check "restart: a new binary alone needs no restart" test "$(wc -l <"$T/restarts")" = 1
"$UNINSTALL" --host-root "$r" --restart-cmd "$restart" >"$T/out" 2>&1
check "restart: uninstall restarts once" test "$(wc -l <"$T/restarts")" = 2
"$INSTALL" --host-root "$r" --shim "$T/shim" --restart-cmd "false" >"$T/out" 2>&1
RC=$?
check "restart: a failing restart fails the install" rc_is 1

echo "== version 3 (containerd 2.x), no imports: in place"
r=$(newroot v3 v3-default.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "v3: install succeeds" rc_is 0
check "v3: exactly one handler table" one_handler wasmtime "$cfg"
check "v3: uses the io.containerd.cri.v1.runtime plugin" grep -qF '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmtime]' "$cfg"
check "v3: handler runtime_type (TOML)" effective_is "$WT" 3 "$V3KEY" "$cfg"
check "v3: runc's sandboxer kept (TOML)" effective_is podsandbox 3 plugins/io.containerd.cri.v1.runtime/containerd/runtimes/runc/sandboxer "$cfg"
check "v3: backup of the original" same_file "$FIX/v3-default.toml" "$cfg.pre-wasmtime"
check "v3: CRI local pull on, in the images table (TOML)" effective_is true 3 plugins/io.containerd.cri.v1.images/use_local_image_pull "$cfg"
check "v3: images table keeps its snapshotter (TOML)" effective_is overlayfs 3 plugins/io.containerd.cri.v1.images/snapshotter "$cfg"
before=$(sha "$cfg")
run_install "$r"
check "v3: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg")' ]"
run_install "$r" --mode dropin
check "v3: --mode dropin without imports is refused" bash -c "[ $RC = 1 ] && grep -q 'imports no directory' '$T/out'"
run_uninstall "$r"
check "v3: uninstall restores the config" same_file "$FIX/v3-default.toml" "$cfg"

echo "== version 3 with imports: a drop-in file"
r=$(newroot v3i v3-imports.toml v3-imports-10-registry.toml:10-registry.toml)
cfg=$r/etc/containerd/config.toml
dropin=$r/etc/containerd/conf.d/wasmtime.toml
run_install "$r"
check "v3 imports: install succeeds" rc_is 0
check "v3 imports: drop-in written to conf.d/wasmtime.toml" test -f "$dropin"
check "v3 imports: main config untouched" same_file "$FIX/v3-imports.toml" "$cfg"
check "v3 imports: no backup needed" test ! -e "$cfg.pre-wasmtime"
check "v3 imports: drop-in declares version 3" grep -qx 'version = 3' "$dropin"
check "v3 imports: merged config has the handler (TOML)" effective_is "$WT" 3 "$V3KEY" "$cfg" "$r/etc/containerd/conf.d/10-registry.toml" "$dropin"
check "v3 imports: CRI local pull on, in the drop-in" grep -qx '  use_local_image_pull = true' "$dropin"
check "v3 imports: CRI local pull on in the merged config (TOML)" effective_is true 3 plugins/io.containerd.cri.v1.images/use_local_image_pull "$cfg" "$r/etc/containerd/conf.d/10-registry.toml" "$dropin"
check "v3 imports: merged config keeps SystemdCgroup (TOML)" effective_is true 3 plugins/io.containerd.cri.v1.runtime/containerd/runtimes/runc/options/SystemdCgroup "$cfg" "$r/etc/containerd/conf.d/10-registry.toml" "$dropin"
before=$(sha "$cfg" "$dropin")
run_install "$r"
check "v3 imports: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg" "$dropin")' ] && grep -q 'already registered' '$T/out'"
check "v3 imports: one handler over all files" one_handler wasmtime "$cfg" "$r"/etc/containerd/conf.d/*.toml
run_install "$r" --mode inplace
check "v3 imports: --mode inplace refuses to add a second copy" bash -c "[ $RC = 1 ] && grep -q 'run uninstall.sh first' '$T/out'"
run_uninstall "$r"
check "v3 imports: uninstall removes the drop-in only" bash -c "[ ! -e '$dropin' ] && cmp -s '$FIX/v3-imports.toml' '$cfg' && [ -f '$r/etc/containerd/conf.d/10-registry.toml' ]"

echo "== version 4 (containerd 2.3+): containerd 2.4.2's own default config"
# Version 4 moved only the server settings into plugins; the CRI keys are as in
# version 3. The default config imports /etc/containerd/conf.d/*.toml, so the
# handler goes into a drop-in there (auto mode) and config.toml stays as it is.
V4HDR='[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmtime]'
r=$(newroot v4 v4-default.toml)
cfg=$r/etc/containerd/config.toml
dropin=$r/etc/containerd/conf.d/wasmtime.toml
run_install "$r"
check "v4: install succeeds" rc_is 0
check "v4: reads version 4, handler under io.containerd.cri.v1.runtime" out_has "config: version 4, handler table $V4HDR"
check "v4: drop-in written to conf.d/wasmtime.toml (the default config imports conf.d)" test -f "$dropin"
check "v4: config.toml byte for byte as containerd wrote it, no backup" bash -c "cmp -s '$FIX/v4-default.toml' '$cfg' && [ ! -e '$cfg.pre-wasmtime' ]"
check "v4: drop-in declares version 4 (the main config's)" grep -qx 'version = 4' "$dropin"
check "v4: drop-in has the handler table under io.containerd.cri.v1.runtime" grep -qxF "$V4HDR" "$dropin"
check "v4: one handler over all files" one_handler wasmtime "$cfg" "$dropin"
check "v4: merged config has the handler (TOML)" effective_is "$WT" 4 "$V3KEY" "$cfg" "$dropin"
check "v4: the drop-in overrides containerd's use_local_image_pull = false (TOML)" effective_is true 4 plugins/io.containerd.cri.v1.images/use_local_image_pull "$cfg" "$dropin"
check "v4: containerd 2.x config dump: use_local_image_pull = true" dump2_has "$(with_imports_in "$r" "$cfg")" 'use_local_image_pull = true'
check "v4: merged config keeps runc's SystemdCgroup = false (TOML)" effective_is false 4 plugins/io.containerd.cri.v1.runtime/containerd/runtimes/runc/options/SystemdCgroup "$cfg" "$dropin"
check "v4: containerd 2.x config dump: version 4, handler and runc, no migration of the drop-in" dump2_has "$(with_imports_in "$r" "$cfg")" \
    'version = 4' "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]" "runtime_type = 'io.containerd.wasmtime.v1'" \
    "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]" "address = '/run/containerd/containerd.sock'" '!Configuration migrated'
before=$(sha "$cfg" "$dropin")
run_install "$r"
check "v4: re-run changes nothing, needs no restart" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg" "$dropin")' ] && grep -q 'already registered' '$T/out' && grep -q 'restart: not needed' '$T/out'"
run_install "$r" --mode inplace
check "v4: --mode inplace then refuses a second copy" bash -c "[ $RC = 1 ] && grep -q 'run uninstall.sh first' '$T/out' && cmp -s '$FIX/v4-default.toml' '$cfg'"
run_uninstall "$r"
check "v4: uninstall succeeds" rc_is 0
check "v4: uninstall removes the drop-in, config.toml byte for byte as before" bash -c "[ ! -e '$dropin' ] && cmp '$FIX/v4-default.toml' '$cfg'"
run_install "$r" --mode dropin
check "v4: --mode dropin writes the same drop-in" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg" "$dropin")' ]"
run_install "$r" --mode dropin
check "v4: --mode dropin re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg" "$dropin")' ] && grep -q 'already registered' '$T/out'"
run_uninstall "$r"
check "v4: uninstall after --mode dropin restores the files" bash -c "[ $RC = 0 ] && [ ! -e '$dropin' ] && cmp -s '$FIX/v4-default.toml' '$cfg'"

r=$(newroot v4in v4-default.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r" --mode inplace
check "v4 --mode inplace: install succeeds" rc_is 0
check "v4 --mode inplace: the handler table in config.toml, under io.containerd.cri.v1.runtime" bash -c "grep -qxF '$V4HDR' '$cfg' && [ ! -e '$r/etc/containerd/conf.d/wasmtime.toml' ]"
check "v4 --mode inplace: exactly one handler table" one_handler wasmtime "$cfg"
check "v4 --mode inplace: without our blocks, the original byte for byte" bash -c ". '$ROOT/deploy/node-installer/lib.sh' && strip_our_blocks '$cfg' | cmp - '$FIX/v4-default.toml'"
check "v4 --mode inplace: containerd's use_local_image_pull = false replaced, kept in our block" bash -c "grep -qxF '# replaced, uninstall.sh puts it back:     use_local_image_pull = false' '$cfg' && [ \$(grep -c '^ *use_local_image_pull' '$cfg') = 1 ]"
check "v4 --mode inplace: CRI local pull on (TOML)" effective_is true 4 plugins/io.containerd.cri.v1.images/use_local_image_pull "$cfg"
check "v4 --mode inplace: no runc written (containerd 2.x keeps its own)" test "$(grep -c 'runtimes.runc\]' "$cfg")" = 1
check "v4 --mode inplace: backup of the original" same_file "$FIX/v4-default.toml" "$cfg.pre-wasmtime"
check "v4 --mode inplace: handler runtime_type (TOML)" effective_is "$WT" 4 "$V3KEY" "$cfg"
check "v4 --mode inplace: containerd 2.x config dump shows handler and runc" dump2_has "$(with_imports_in "$r" "$cfg")" \
    'version = 4' "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]" "runtime_type = 'io.containerd.wasmtime.v1'" \
    "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]"
before=$(sha "$cfg" "$cfg.pre-wasmtime")
run_install "$r" --mode inplace
check "v4 --mode inplace: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg" "$cfg.pre-wasmtime")' ] && grep -q 'already registered' '$T/out'"
run_uninstall "$r"
check "v4 --mode inplace: uninstall restores the config byte for byte" bash -c "[ $RC = 0 ] && cmp '$FIX/v4-default.toml' '$cfg'"

r=$(newroot v4new -)
cfg=$r/etc/containerd/config.toml
run_install "$r" --config-version 4
check "no config: --config-version 4 creates one" bash -c "[ $RC = 0 ] && [ \"\$(head -n 1 '$cfg')\" = 'version = 4' ] && grep -qxF '$V4HDR' '$cfg'"
check "no config, version 4: handler runtime_type (TOML)" effective_is "$WT" 4 "$V3KEY" "$cfg"
check "no config, version 4: containerd 2.x config dump shows handler and runc" dump2_has "$cfg" \
    'version = 4' "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]" "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]"
before=$(sha "$cfg")
run_install "$r"
check "no config, version 4: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg")' ]"
if [ "$HAVE_CONTAINERD2" = 1 ]; then
    # Host root /, containerd 2.4.2 on PATH, no config: the version its
    # `containerd config default` writes.
    mkdir -p "$T/slash4/bin"
    env PATH="$CONTAINERD2_BIN_DIR:$PATH" "$INSTALL" --host-root / --shim "$T/shim" --bin-dir "$T/slash4/bin" \
        --config "$T/slash4/config.toml" --no-restart --skip-runc-check >"$T/out" 2>&1
    RC=$?
    check "no config, containerd 2.4.2 on the host: writes version 4, containerd reads the handler" bash -c "[ $RC = 0 ] &&
        [ \"\$(head -n 1 '$T/slash4/config.toml')\" = 'version = 4' ] && grep -q 'containerd reads the handler from the new config' '$T/out' || { cat '$T/out'; exit 1; }"
fi

echo "== a config version this installer does not know (5)"
r=$(newroot v5 -)
cfg=$r/etc/containerd/config.toml
sed 's/^version = 4$/version = 5/' "$FIX/v4-default.toml" >"$cfg"
cp "$cfg" "$T/v5.orig"
run_install "$r"
check "v5: refused (status 1)" rc_is 1
check "v5: exactly one error line, naming the versions known" only_error "containerd config version 5 is not supported (1, 2, 3 and 4 are)"
check "v5: nothing changed (config, no drop-in, no binary, no backup)" bash -c "cmp -s '$T/v5.orig' '$cfg' && [ ! -e '$r/etc/containerd/conf.d' ] &&
    [ ! -e '$r/usr/local/bin/containerd-shim-wasmtime-v1' ] && [ ! -e '$cfg.pre-wasmtime' ]"
run_install "$r" --mode inplace
check "v5, --mode inplace: refused, nothing changed" bash -c "[ $RC = 1 ] && cmp -s '$T/v5.orig' '$cfg'"
check "v5, --mode inplace: one error line" only_error "containerd config version 5 is not supported (1, 2, 3 and 4 are)"
run_uninstall "$r"
check "v5: uninstall (nothing of ours there) succeeds and leaves it alone" bash -c "[ $RC = 0 ] && cmp -s '$T/v5.orig' '$cfg'"
r=$(newroot v5new -)
run_install "$r" --config-version 5
check "v5: --config-version 5 is a usage error (status 2), one error line" bash -c "[ $RC = 2 ] && [ \$(grep -c 'error:' '$T/out') = 1 ] && grep -q -- '--config-version must be 2, 3 or 4' '$T/out' && [ ! -e '$r/etc/containerd/config.toml' ]"

echo "== version 2 with the CRI section in an imported file"
r=$(newroot v2i v2-imports.toml v2-imports-50-cri.toml:50-cri.toml)
cfg=$r/etc/containerd/config.toml
cri=$r/etc/containerd/conf.d/50-cri.toml
run_install "$r"
check "v2 imports: install succeeds" rc_is 0
check "v2 imports: main config untouched" same_file "$FIX/v2-imports.toml" "$cfg"
check "v2 imports: handler added to the file holding the CRI section" one_handler wasmtime "$cri"
check "v2 imports: backup of that file" same_file "$FIX/v2-imports-50-cri.toml" "$cri.pre-wasmtime"
check "v2 imports: merged config has handler and the import's sandbox_image (TOML)" bash -c "
    [ -z '$PY' ] && exit 0
    [ \"\$('$PY' '$EFFECTIVE' 2 '$V2KEY' '$cfg' '$cri')\" = '$WT' ] &&
    [ \"\$('$PY' '$EFFECTIVE' 2 plugins/io.containerd.grpc.v1.cri/sandbox_image '$cfg' '$cri')\" = example.test/pause:from-import ]"
check "v2 imports: containerd config dump shows handler and the import's settings" dump_has "$cfg" \
    'runtimes.wasmtime]' 'sandbox_image = "example.test/pause:from-import"' 'SystemdCgroup = true'
before=$(sha "$cfg" "$cri")
run_install "$r"
check "v2 imports: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg" "$cri")' ]"
run_install "$r" --mode dropin
check "v2 imports: --mode dropin is refused for version 2" bash -c "[ $RC = 1 ] && grep -q 'needs a version 3 or 4 config' '$T/out'"
run_uninstall "$r" --keep-binary
check "v2 imports: uninstall restores the imported file" same_file "$FIX/v2-imports-50-cri.toml" "$cri"
check "v2 imports: --keep-binary keeps the binary" test -x "$r/usr/local/bin/containerd-shim-wasmtime-v1"

echo "== the handler is already there"
r=$(newroot existing v2-existing.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "existing: install succeeds" rc_is 0
check "existing: config untouched, no backup" bash -c "cmp -s '$FIX/v2-existing.toml' '$cfg' && [ ! -e '$cfg.pre-wasmtime' ]"
check "existing: reports it is configured already" out_has "already configured with runtime_type io.containerd.wasmtime.v1"
check "existing: still one handler table" one_handler wasmtime "$cfg"
run_uninstall "$r"
check "existing: uninstall leaves a handler it did not add" same_file "$FIX/v2-existing.toml" "$cfg"

r=$(newroot existing3 v3-imports.toml v3-imports-10-registry.toml:10-registry.toml)
printf "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'wasmtime']\n  runtime_type = 'io.containerd.wasmtime.v1'\n" >"$r/etc/containerd/conf.d/90-mine.toml"
run_install "$r"
check "existing in a v3 drop-in: nothing added" bash -c "[ $RC = 0 ] && [ ! -e '$r/etc/containerd/conf.d/wasmtime.toml' ] && grep -q 'already configured' '$T/out'"

echo "== the name is taken by another runtime"
r=$(newroot conflict v2-conflict.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "conflict: install fails with status 3" rc_is 3
check "conflict: explains and names the other runtime" out_has "io.containerd.other-wasm.v2"
check "conflict: config untouched" same_file "$FIX/v2-conflict.toml" "$cfg"
run_install "$r" --handler wasmtime-v1
check "conflict: another --handler works" bash -c "[ $RC = 0 ] && grep -qF 'runtimes.wasmtime-v1]' '$cfg'"
check "conflict: the other runtime is kept (TOML)" effective_is io.containerd.other-wasm.v2 2 "$V2KEY" "$cfg"
check "conflict: custom handler's runtime_type (TOML)" effective_is "$WT" 2 plugins/io.containerd.grpc.v1.cri/containerd/runtimes/wasmtime-v1/runtime_type "$cfg"
run_install "$r" --handler Not_A_Label
check "conflict: a handler that is no DNS label is refused" rc_is 1

r=$(newroot dotted v2-dotted.toml)
run_install "$r"
check "dotted keys: a handler written as dotted keys is found (status 3)" bash -c "[ $RC = 3 ] && cmp -s '$FIX/v2-dotted.toml' '$r/etc/containerd/config.toml'"

echo "== version 1, comments only, no config, CRI disabled"
r=$(newroot v1 v1-legacy.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "v1: install succeeds with a warning" bash -c "[ $RC = 0 ] && grep -q 'version 1 config' '$T/out'"
check "v1: [plugins.cri...] table" grep -qxF '[plugins.cri.containerd.runtimes.wasmtime]' "$cfg"
check "v1: handler runtime_type (TOML)" effective_is "$WT" 1 plugins/cri/containerd/runtimes/wasmtime/runtime_type "$cfg"
run_install "$r" --config-version 2
check "v1: --config-version that does not match is refused" rc_is 1

r=$(newroot comments comments-only.toml)
cfg=$r/etc/containerd/config.toml
run_install "$r"
check "comments only, containerd unknown: asks for --config-version" bash -c "[ $RC = 1 ] && grep -q -- '--config-version' '$T/out'"
check "comments only: left untouched on failure" same_file "$FIX/comments-only.toml" "$cfg"
run_install "$r" --config-version 2
check "comments only: --config-version 2 writes version = 2 first" bash -c "[ $RC = 0 ] && [ \"\$(head -n 1 '$cfg')\" = 'version = 2' ]"
check "comments only: comments kept" grep -qF '#state = "/run/containerd"' "$cfg"
check "comments only: handler runtime_type (TOML)" effective_is "$WT" 2 "$V2KEY" "$cfg"
before=$(sha "$cfg")
run_install "$r" --config-version 2
check "comments only: re-run changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg")' ]"

r=$(newroot missing -)
cfg=$r/etc/containerd/config.toml
run_install "$r" --config-version 3
check "no config: --config-version 3 creates one" bash -c "[ $RC = 0 ] && [ \"\$(head -n 1 '$cfg')\" = 'version = 3' ]"
check "no config: handler runtime_type (TOML)" effective_is "$WT" 3 "$V3KEY" "$cfg"
check "no config: no backup of nothing" test ! -e "$cfg.pre-wasmtime"
before=$(sha "$cfg")
run_install "$r"
check "no config: re-run (version now read from the file) changes nothing" bash -c "[ $RC = 0 ] && [ '$before' = '$(sha "$cfg")' ]"

r=$(newroot nocri docker-disabled-cri.toml)
run_install "$r"
check "CRI disabled: installs but warns" bash -c "[ $RC = 0 ] && grep -q 'disables the CRI plugin' '$T/out'"

echo "== preconditions"
r=$(newroot norunc v2-kubeadm.toml)
rm "$r/usr/bin/runc"
run_install "$r"
check "no runc: refused" bash -c "[ $RC = 1 ] && grep -q 'runc is not installed' '$T/out' && cmp -s '$FIX/v2-kubeadm.toml' '$r/etc/containerd/config.toml'"
run_install "$r" --skip-runc-check
check "no runc: --skip-runc-check installs" rc_is 0
run_install "$r" --shim "$T/no-such-shim"
check "missing shim binary: refused" bash -c "[ $RC = 1 ] && grep -q 'shim binary not found' '$T/out'"
run_install "$r" --bin-dir relative/bin
check "relative --bin-dir: refused" rc_is 1
r=$(newroot bindir v2-kubeadm.toml)
run_install "$r" --bin-dir /opt/bin
check "--bin-dir: binary goes where asked" test -x "$r/opt/bin/containerd-shim-wasmtime-v1"
"$INSTALL" --bogus >"$T/out" 2>&1
RC=$?
check "unknown option: usage, status 2" bash -c "[ $RC = 2 ] && grep -q 'Usage\|install.sh \[options\]' '$T/out'"

echo "== host root / (as on the node itself): programs run, containerd reads the result"
# Paths under $T, but given as host paths with --host-root /: install.sh then
# runs the shim's --version and `containerd config dump` for real.
real_shim=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}/release/containerd-shim-wasmtime-v1
[ -x "$real_shim" ] || real_shim=$T/shim
mkdir -p "$T/slash/etc" "$T/slash/bin"
# The fixture's socket moved to one that does not exist: the CRI check after
# the restart must not ask the machine's own containerd.
sed "s|/run/containerd/containerd.sock|$T/slash/none.sock|" "$FIX/v2-kubeadm.toml" >"$T/slash/etc/config.toml"
"$INSTALL" --host-root / --shim "$real_shim" --bin-dir "$T/slash/bin" --config "$T/slash/etc/config.toml" \
    --restart-cmd true --skip-runc-check >"$T/out" 2>&1
RC=$?
check "host root /: install succeeds" rc_is 0
check "host root /: the installed binary ran (--version)" out_has "binary: runs on the host: containerd-shim-wasmtime-v1"
if [ "$HAVE_CONTAINERD" = 1 ]; then
    check "host root /: containerd config dump read the handler" out_has "containerd reads the handler from the new config"
fi
if [ "$HAVE_CONTAINERD" = 1 ]; then
    # Valid TOML that containerd cannot load: the edit must be undone.
    printf 'version = 2\noom_score = "not a number"\n' >"$T/slash/etc/rejected.toml"
    cp "$T/slash/etc/rejected.toml" "$T/slash/etc/rejected.orig"
    "$INSTALL" --host-root / --shim "$real_shim" --bin-dir "$T/slash/bin" --config "$T/slash/etc/rejected.toml" \
        --no-restart --skip-runc-check >"$T/out" 2>&1
    RC=$?
    check "host root /: a config containerd rejects is put back, install fails" bash -c "[ $RC = 1 ] && grep -q 'containerd rejects the new config' '$T/out' && cmp -s '$T/slash/etc/rejected.orig' '$T/slash/etc/rejected.toml'"
fi
printf '#!/bin/sh\nexit 1\n' >"$T/broken-shim"
chmod +x "$T/broken-shim"
"$INSTALL" --host-root / --shim "$T/broken-shim" --bin-dir "$T/slash/bin" --config "$T/slash/etc/config.toml" \
    --no-restart --skip-runc-check >"$T/out" 2>&1
RC=$?
check "host root /: a binary that cannot run on the host fails the install" bash -c "[ $RC = 1 ] && grep -q -- '--version failed on the host' '$T/out'"
check "host root /: and leaves the working binary in place" same_file "$real_shim" "$T/slash/bin/containerd-shim-wasmtime-v1"
check "host root /: no temporary file left" test "$(ls -A "$T/slash/bin")" = containerd-shim-wasmtime-v1

echo "== node label (curl replaced by a recorder)"
mkdir -p "$T/fakebin" "$T/sa"
cat >"$T/fakebin/curl" <<EOF
#!/bin/sh
printf '%s\n' "\$@" >"$T/curl.args"
EOF
chmod +x "$T/fakebin/curl"
echo token-123 >"$T/sa/token"
: >"$T/sa/ca.crt"
r=$(newroot label v2-kubeadm.toml)
label_env=(env PATH="$T/fakebin:$PATH" SA_DIR="$T/sa" NODE_NAME=node-a KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443)
"${label_env[@]}" "$INSTALL" --host-root "$r" --shim "$T/shim" --restart-cmd true --label-node >"$T/out" 2>&1
RC=$?
check "label: install succeeds" rc_is 0
check "label: PATCHes the node" grep -qx 'https://10.96.0.1:443/api/v1/nodes/node-a' "$T/curl.args"
check "label: merge patch sets the label" grep -qxF '{"metadata":{"labels":{"wasmtime.containerd.io/enabled":"true"}}}' "$T/curl.args"
check "label: with the service account token" grep -qxF 'Authorization: Bearer token-123' "$T/curl.args"
r=$(newroot label2 v2-kubeadm.toml)
rm -f "$T/curl.args"
"${label_env[@]}" "$INSTALL" --host-root "$r" --shim "$T/shim" --no-restart --label-node >"$T/out" 2>&1
check "label: not labelled when containerd was not restarted" bash -c "[ ! -e '$T/curl.args' ] && grep -q 'not labelling' '$T/out'"
"${label_env[@]}" "$UNINSTALL" --host-root "$r" --no-restart --label-node >"$T/out" 2>&1
check "label: uninstall removes the label" grep -qxF '{"metadata":{"labels":{"wasmtime.containerd.io/enabled":null}}}' "$T/curl.args"
env PATH="$T/fakebin:$PATH" SA_DIR="$T/sa" KUBERNETES_SERVICE_HOST=10.96.0.1 "$INSTALL" --host-root "$r" --shim "$T/shim" --restart-cmd true --label-node >"$T/out" 2>&1
RC=$?
check "label: without NODE_NAME fails clearly" bash -c "[ $RC = 1 ] && grep -q NODE_NAME '$T/out'"

# The CRI default runtime and the CRI plugin check (fake ctr, real containerd).
. "$ROOT/tests/deploy/installer_cri_cases.sh"

echo "== containerd's socket: [grpc] before version 4, the server plugin from 4 on"
printf 'version = 3\n[grpc]\n  address = "/x/v3.sock"\n' >"$T/addr-v3.toml"
printf "version = 4\n[grpc]\n  address = '/x/ignored.sock'\n" >"$T/addr-v4-legacy.toml"
sed "s|'/run/containerd/containerd.sock'|'/x/v4.sock'|" "$FIX/v4-default.toml" >"$T/addr-v4.toml"
addr_is() { # WANT FILE...: containerd_address of the files (host root /)
    local got
    got=$(. "$ROOT/deploy/node-installer/lib.sh" && HOST_ROOT=/ containerd_address "${@:2}")
    [ "$got" = "$1" ] || { echo "got $got, expected $1"; return 1; }
}
check "address: version 3 [grpc]" addr_is /x/v3.sock "$T/addr-v3.toml"
check "address: version 4 [plugins.'io.containerd.server.v1.grpc']" addr_is /x/v4.sock "$T/addr-v4.toml"
check "address: version 4 ignores [grpc] (containerd's default)" addr_is /run/containerd/containerd.sock "$T/addr-v4-legacy.toml"
check "address: the last file that sets one" addr_is /x/v3.sock "$T/addr-v4.toml" "$T/addr-v3.toml"

echo "== real containerd 2.4.2 with its own default config (version 4)"
if [ -x "$CONTAINERD2_BIN_DIR/containerd" ] && [ -x "$CONTAINERD2_BIN_DIR/ctr" ]; then
    # fixtures/v4-default.toml with every path containerd writes or watches
    # (root, state, sockets, opt, CNI conf dir, the conf.d import) under $d,
    # NRI off; the sockets only in its server plugin tables, as version 4 has them.
    bin=$CONTAINERD2_BIN_DIR
    d=$T/real-v4
    PRIVATE_DIRS+=("$d")
    mkdir -p "$d/bin" "$d/cni"
    sed -e "s|^root = '/var/lib/containerd'|root = '$d/root'|" \
        -e "s|'/run/containerd/containerd.sock|'$d/c.sock|" \
        -e "s|^state = '/run/containerd'|state = '$d/state'|" \
        -e "s|'/etc/containerd/conf.d/|'$d/conf.d/|" \
        -e "s|path = '/opt/containerd'|path = '$d/opt'|" \
        -e "s|conf_dir = '/etc/cni/net.d'|conf_dir = '$d/cni'|" \
        -e 's|^    disable = false$|    disable = true|' "$FIX/v4-default.toml" >"$d/config.toml"
    cp "$d/config.toml" "$d/orig.toml"
    # Bounded: a containerd started by --restart-cmd that kept install.sh's
    # lock open made the next install.sh wait for ever.
    run_v4() { # install.sh|uninstall.sh [ARGS...]
        local script=$1
        shift
        timeout 120 env PATH="$bin:$PATH" CRI_WAIT=30 "$ROOT/deploy/node-installer/$script" --host-root / --bin-dir "$d/bin" --config "$d/config.toml" \
            --restart-cmd "'$T/restart-private.sh' '$bin' '$d'" "$@" >"$T/out" 2>&1
        RC=$?
    }
    "$T/restart-private.sh" "$bin" "$d"
    check "v4, containerd 2.4.2: starts with its default config" wait_up "$bin" "$d"
    run_v4 install.sh --shim "$T/shim" --skip-runc-check
    check "v4, containerd 2.4.2: install succeeds; its config dump read the handler; CRI plugin ok after the restart (at the server plugin's socket)" bash -c "[ $RC = 0 ] &&
        grep -q 'containerd reads the handler from the new config' '$T/out' && grep -q 'CRI plugin ok after the restart' '$T/out' || { cat '$T/out'; tail -n 5 '$d/containerd.log'; exit 1; }"
    check "v4, containerd 2.4.2: the drop-in in its conf.d, config.toml unchanged" bash -c "grep -qxF '$V4HDR' '$d/conf.d/wasmtime.toml' && cmp -s '$d/orig.toml' '$d/config.toml'"
    check "v4, containerd 2.4.2: ctr plugins ls shows the CRI plugin ok" cri_ok "$bin" "$d"
    check "v4, containerd 2.4.2: config dump shows the handler and runc" dump2_has "$d/config.toml" \
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]" "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]"
    check "v4, containerd 2.4.2: no 'Configuration migrated' in its log" not grep -q 'Configuration migrated' "$d/containerd.log"
    run_v4 install.sh --shim "$T/shim" --skip-runc-check
    check "v4, containerd 2.4.2: re-run (the lock free again) changes nothing, no restart, CRI plugin ok" bash -c "[ $RC = 0 ] &&
        grep -q 'restart: not needed' '$T/out' && grep -q 'CRI plugin ok (ctr plugins ls)' '$T/out' || { cat '$T/out'; exit 1; }"
    run_v4 uninstall.sh
    check "v4, containerd 2.4.2: uninstall removes the drop-in, config.toml as before, CRI plugin ok" bash -c "[ $RC = 0 ] &&
        [ ! -e '$d/conf.d/wasmtime.toml' ] && cmp -s '$d/orig.toml' '$d/config.toml' && grep -q 'CRI plugin ok after the restart' '$T/out' || { cat '$T/out'; exit 1; }"
    check "v4, containerd 2.4.2: ctr plugins ls after uninstall" cri_ok "$bin" "$d"
    stop_private "$d"
else
    echo "note: no containerd 2.x in $CONTAINERD2_BIN_DIR (CONTAINERD2_BIN_DIR): its version 4 case skipped"
fi

echo "== the TOML reader under each awk"
. "$ROOT/deploy/node-installer/lib.sh"
for awk_impl in gawk mawk "busybox awk"; do
    command -v "${awk_impl%% *}" >/dev/null 2>&1 || { echo "note: $awk_impl not installed"; continue; }
    [ "$awk_impl" != "busybox awk" ] || busybox awk 'BEGIN{}' 2>/dev/null || continue
    export AWK=$awk_impl
    check "$awk_impl: version of a v3 config" test "$(config_version "$FIX/v3-default.toml")" = 3
    check "$awk_impl: version of a v4 config (after a comment line)" test "$(config_version "$FIX/v4-default.toml")" = 4
    check "$awk_impl: single-quoted header normalised" bash -c "cd / && AWK='$awk_impl' && . '$ROOT/deploy/node-installer/lib.sh' && toml headers '$FIX/v3-default.toml' | grep -qxP '\d+\tplugins/io.containerd.cri.v1.runtime/containerd/runtimes/runc'"
    check "$awk_impl: quoted handler name found" test -n "$(HANDLER=wasmtime tables_under "$FIX/v2-existing.toml" plugins/io.containerd.grpc.v1.cri/containerd/runtimes/wasmtime)"
    check "$awk_impl: runtime_type read" test "$(toml value "$FIX/v2-conflict.toml" -v table=plugins/io.containerd.grpc.v1.cri/containerd/runtimes/wasmtime -v key=runtime_type)" = io.containerd.other-wasm.v2
    check "$awk_impl: imports read" test "$(toml imports "$FIX/v3-imports.toml")" = "conf.d/*.toml"
    r=$(newroot "awk-${awk_impl// /-}" v3-default.toml)
    AWK=$awk_impl run_install "$r"
    check "$awk_impl: install + re-run is idempotent" bash -c "[ $RC = 0 ] && s1=\$(sha256sum <'$r/etc/containerd/config.toml') && AWK='$awk_impl' '$INSTALL' --host-root '$r' --shim '$T/shim' --no-restart >/dev/null 2>&1 && [ \"\$s1\" = \"\$(sha256sum <'$r/etc/containerd/config.toml')\" ] && [ \$(grep -c 'runtimes.wasmtime\]' '$r/etc/containerd/config.toml') = 1 ]"
    AWK=$awk_impl run_uninstall "$r"
    check "$awk_impl: uninstall restores" same_file "$FIX/v3-default.toml" "$r/etc/containerd/config.toml"
    unset AWK
done

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
