#!/usr/bin/env bash
# Installs the shim into a fresh node VM the way users do (copy the binary and
# deploy/node-installer/ in, run install.sh on the node) and checks the node:
# systemd is PID 1, cgroup v2, containerd active, the CRI plugin loads, and a
# Wasm container exits with its own status through `ctr run`; then uninstalls
# and checks that Debian's packaged config is back and the CRI plugin loads.
#
#   tests/node-vm/smoke-test.sh
#
# Environment:
#   NODE_VM_SHIM       shim binary (default $CARGO_TARGET_DIR/release/containerd-shim-wasmtime-v1,
#                      CARGO_TARGET_DIR defaulting to /var/tmp/containerd-shim-wasmtime/target)
#   NODE_VM_WASM_OCI   the wasm-oci tool (default beside the shim)
#   NODE_VM_KEEP=1     leave the VM running (prints its DIR) instead of powering off
#   NODE_VM_SHIM_CACHE_DIR  if set, containerd gets
#                      Environment=CONTAINERD_SHIM_WASMTIME_CACHE_DIR=<it> (a
#                      systemd drop-in) before the run
# Prints one line per check and timings, then "N passed, M failed"; exits 1 on
# any failure.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VM=$HERE/vm.sh
TARGET=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
SHIM=${NODE_VM_SHIM:-$TARGET/release/containerd-shim-wasmtime-v1}
WASM_OCI=${NODE_VM_WASM_OCI:-$(dirname "$SHIM")/wasm-oci}
[ -x "$SHIM" ] || { echo "no shim binary at $SHIM (NODE_VM_SHIM)" >&2; exit 1; }
[ -x "$WASM_OCI" ] || { echo "no wasm-oci at $WASM_OCI (NODE_VM_WASM_OCI)" >&2; exit 1; }

. "$HERE/lib.sh"
vm_dir node-vm-smoke

t=$(now)
"$HERE/build-image.sh" >/dev/null || { echo "image build failed" >&2; exit 1; }
echo "time: image (build or cache) $(secs "$t" "$(now)") s"

t=$(now)
if ! "$VM" up "$DIR"; then
    fail "vm up" "$(tail -n 30 "$DIR/console.log" 2>/dev/null)"
    echo "$passed passed, $failed failed"
    exit 1
fi
echo "time: boot to ssh + systemd started $(secs "$t" "$(now)") s"
echo "guest: $("$VM" run "$DIR" -- systemd-analyze 2>&1 | head -n 1)"

guest_is "PID 1 is systemd" systemd ps -o comm= -p 1
guest_is "cgroup v2 unified (/sys/fs/cgroup is cgroup2fs)" cgroup2fs stat -fc %T /sys/fs/cgroup
guest_is "containerd active before install" active systemctl is-active containerd
guest_is "CRI plugin loads before install" ok sh -c "ctr plugins ls | awk '\$2 == \"cri\" {print \$4}'"
# The installer's tests use this file as a fixture; it must be what the node has.
guest_is "containerd's config is Debian's packaged one (tests/deploy/fixtures/debian-stock.toml)" \
    "$(md5sum <"$ROOT/tests/deploy/fixtures/debian-stock.toml" | cut -d' ' -f1)" sh -c 'md5sum </etc/containerd/config.toml | cut -d" " -f1'

# --- install as users do ----------------------------------------------------
t=$(now)
"$VM" copy-in "$DIR" "$SHIM" /root/wasmtime/containerd-shim-wasmtime-v1 &&
    "$VM" copy-in "$DIR" "$ROOT/deploy/node-installer" /root/wasmtime/node-installer ||
    fail "copy the shim and deploy/node-installer into the guest"
echo "time: copy-in $(du -h "$SHIM" | cut -f1) shim + installer $(secs "$t" "$(now)") s"
t=$(now)
if out=$("$VM" run "$DIR" -- /root/wasmtime/node-installer/install.sh --shim /root/wasmtime/containerd-shim-wasmtime-v1 2>&1); then
    pass "install.sh on the node"
else
    fail "install.sh on the node" "$out"
fi
echo "time: install.sh (with containerd restart) $(secs "$t" "$(now)") s"
printf '%s\n' "$out" | sed 's/^/     > /'
guest_is "containerd active after install" active systemctl is-active containerd
guest_is "shim installed on containerd's PATH" /usr/local/bin/containerd-shim-wasmtime-v1 sh -c 'command -v containerd-shim-wasmtime-v1'
guest_is "handler registered in /etc/containerd/config.toml" 1 grep -c 'runtimes.wasmtime]' /etc/containerd/config.toml
guest_is "CRI plugin loads after install" ok sh -c "ctr plugins ls | awk '\$2 == \"cri\" {print \$4}'"
if grep -q 'CRI plugin ok after the restart' <<<"$out"; then
    pass "install.sh checked the CRI plugin after the restart"
else
    fail "install.sh checked the CRI plugin after the restart" "$(printf '%s\n' "$out" | tail -n 5)"
fi
guest_is "containerd's config dump has runc (default_runtime_name) and the handler" "1 1" sh -c \
    "containerd config dump 2>/dev/null | grep -cF 'runtimes.runc]' | tr '\n' ' '; containerd config dump 2>/dev/null | grep -cF 'runtimes.wasmtime]'"
guest_is "re-run of install.sh changes nothing" "restart: not needed (containerd's config is unchanged)" sh -c \
    "/root/wasmtime/node-installer/install.sh --shim /root/wasmtime/containerd-shim-wasmtime-v1 | grep -o 'restart: .*'"

if [ -n "${NODE_VM_SHIM_CACHE_DIR:-}" ]; then
    "$VM" sh "$DIR" "mkdir -p /etc/systemd/system/containerd.service.d && printf '[Service]\nEnvironment=CONTAINERD_SHIM_WASMTIME_CACHE_DIR=%s\n' '$NODE_VM_SHIM_CACHE_DIR' >/etc/systemd/system/containerd.service.d/wasmtime-cache.conf && systemctl daemon-reload && systemctl restart containerd" ||
        fail "containerd drop-in for NODE_VM_SHIM_CACHE_DIR"
    echo "note: containerd runs with CONTAINERD_SHIM_WASMTIME_CACHE_DIR=$NODE_VM_SHIM_CACHE_DIR"
fi

# --- a Wasm container: a module that exits 7 --------------------------------
img=$DIR/img
mkdir -p "$img"
cat >"$img/exit7.wat" <<'EOF'
(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32))) (memory (export "memory") 1) (func (export "_start") (call $e (i32.const 7))))
EOF
if "$WASM_OCI" build --module "$img/exit7.wat" --name localhost/test/hello:latest -o "$img/hello.tar" >"$img/build.log" 2>&1 &&
    "$VM" copy-in "$DIR" "$img/hello.tar" /root/hello.tar &&
    "$VM" run "$DIR" -- ctr images import --platform wasi/wasm /root/hello.tar >"$img/import.log" 2>&1; then
    pass "image built on the host and imported in the guest"
else
    fail "image built on the host and imported in the guest" "$(cat "$img"/*.log 2>/dev/null | tail -n 10)"
fi
for n in 1 2; do
    t=$(now)
    rc=0
    out=$("$VM" run "$DIR" -- ctr run --rm --runtime io.containerd.wasmtime.v1 localhost/test/hello:latest "exit7-$n" 2>&1) || rc=$?
    echo "time: ctr run #$n (exit $rc) $(secs "$t" "$(now)") s"
    if [ "$rc" = 7 ]; then pass "ctr run #$n exits with the module's status 7"; else fail "ctr run #$n exits with the module's status 7" "exit $rc: $out"; fi
done
if [ -z "${NODE_VM_SHIM_CACHE_DIR:-}" ]; then
    # /run is noexec here: the shim must have moved its compile cache.
    guest_is "compile cache under /var/lib/containerd (/run is noexec)" yes sh -c \
        '[ -n "$(find /var/lib/containerd/io.containerd.wasmtime.v1/compile-cache -type f 2>/dev/null | head -n 1)" ] && echo yes || { findmnt -no OPTIONS /run; ls -R /run/containerd/io.containerd.wasmtime.v1 2>&1 | head; }'
fi

# --- uninstall: Debian's config back as packaged, CRI plugin still ok -----
if out=$("$VM" run "$DIR" -- /root/wasmtime/node-installer/uninstall.sh 2>&1); then
    pass "uninstall.sh on the node"
else
    fail "uninstall.sh on the node" "$out"
fi
printf '%s\n' "$out" | sed 's/^/     > /'
guest_is "uninstall.sh gives back Debian's packaged config" \
    "$(md5sum <"$ROOT/tests/deploy/fixtures/debian-stock.toml" | cut -d' ' -f1)" sh -c 'md5sum </etc/containerd/config.toml | cut -d" " -f1'
guest_is "CRI plugin loads after uninstall" ok sh -c "ctr plugins ls | awk '\$2 == \"cri\" {print \$4}'"

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
