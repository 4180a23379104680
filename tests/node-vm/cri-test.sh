#!/usr/bin/env bash
# CRI end-to-end check of a systemd + cgroup v2 node: in a fresh node VM,
# containerd gets a kubeadm-style config (runc with SystemdCgroup = true, CNI
# bridge), the shim is installed with deploy/node-installer/install.sh, and a
# pod is run through crictl with the `wasmtime` handler: the sandbox and a
# busybox sidecar go to runc, two Wasm probes run in the shim. Checked three
# times:
#   systemd      containerd 1.6, cgroup_parent kubepods-besteffort-pod<uid>.slice
#                (systemd driver)
#   cgroupfs     containerd 1.6, cgroup_parent /kubepods/besteffort/pod<uid>
#                (SystemdCgroup = false)
#   containerd2  containerd 2.x (copied in, its own `containerd config default`
#                (version 4 from 2.3 on) with SystemdCgroup = true, the pause
#                image and Debian's CNI dir set in it, install.sh run again),
#                systemd driver as in the first phase
# Each phase checks that the containers run, where runc and the shim put
# their processes, `crictl stats` of the Wasm container, `crictl exec` in
# both; then a second Wasm container is started and the first removed: the
# second keeps running and the shim's process moves into its cgroup. Removing
# the pod must leave no scope, cgroup or shim behind, and containerd's journal
# must hold no level=error line from the shim.
#
#   tests/node-vm/cri-test.sh
#
# Environment:
#   NODE_VM_SHIM    shim binary (default /tmp/node-shim/containerd-shim-wasmtime-v1)
#   NODE_VM_IMAGES  directory with pause.tar, busybox.tar (linux/amd64) and
#                   probe.tar (wasi/wasm), from tests/lib/images.sh
#                   build_test_images (default /tmp/lead-e2e/images)
#   CRICTL          crictl binary (default: cri-tools from deploy/dev/build-go-tools.sh)
#   CONTAINERD2_BIN_DIR  containerd 2.x `containerd`, `ctr` and `containerd-shim-runc-v2`
#                   (default: the ones deploy/dev/build-go-tools.sh builds)
#   NODE_VM_KEEP=1  leave the VM running (prints its DIR) instead of powering off
# Prints one line per check and timings, then "N passed, M failed"; exits 1 on
# any failure.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VM=$HERE/vm.sh
SHIM=${NODE_VM_SHIM:-/tmp/node-shim/containerd-shim-wasmtime-v1}
IMAGES=${NODE_VM_IMAGES:-/tmp/lead-e2e/images}
go_env=
if [ -z "${CRICTL:-}" ] || [ -z "${CONTAINERD2_BIN_DIR:-}" ]; then
    go_env=$(bash "$ROOT/deploy/dev/build-go-tools.sh" --print-env)
fi
CRICTL=${CRICTL:-$(sed -n 's/^CRI_TOOLS_BIN_DIR=//p' <<<"$go_env")/crictl}
C2_BIN=${CONTAINERD2_BIN_DIR:-$(sed -n 's/^CONTAINERD2_BIN_DIR=//p' <<<"$go_env")}
[ -x "$SHIM" ] || { echo "no shim binary at $SHIM (NODE_VM_SHIM)" >&2; exit 1; }
[ -x "$CRICTL" ] || { echo "no crictl at $CRICTL (CRICTL)" >&2; exit 1; }
for b in containerd ctr containerd-shim-runc-v2; do
    [ -x "$C2_BIN/$b" ] || { echo "no $b in '$C2_BIN' (CONTAINERD2_BIN_DIR; deploy/dev/build-go-tools.sh builds it)" >&2; exit 1; }
done
# "containerd github.com/containerd/containerd/v2 2.4.2 <revision>"
C2_VERSION=$("$C2_BIN/containerd" --version | awk '{print $3}')
C2_VERSION=${C2_VERSION#v}
for tar in pause busybox probe; do
    [ -f "$IMAGES/$tar.tar" ] || { echo "no $tar.tar in $IMAGES (NODE_VM_IMAGES)" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "jq is needed on the host" >&2; exit 1; }

# The image name inside an OCI layout tar (or a docker save tar).
image_name() {
    tar -xOf "$1" index.json 2>/dev/null | jq -r '.manifests[0].annotations["io.containerd.image.name"] // empty' ||
        tar -xOf "$1" manifest.json 2>/dev/null | jq -r '.[0].RepoTags[0] // empty'
}
PAUSE=$(image_name "$IMAGES/pause.tar")
BUSYBOX=$(image_name "$IMAGES/busybox.tar")
PROBE=$(image_name "$IMAGES/probe.tar")
[ -n "$PAUSE" ] && [ -n "$BUSYBOX" ] && [ -n "$PROBE" ] || { echo "cannot read the image names in $IMAGES" >&2; exit 1; }

START=$SECONDS
. "$HERE/lib.sh"
vm_dir node-vm-cri
# guest_ok NAME SCRIPT: SCRIPT (a guest shell line) exits 0; its output is shown on failure.
guest_ok() {
    local out
    if out=$("$VM" sh "$DIR" "$2" 2>&1); then pass "$1"; else fail "$1" "$out"; fi
}
g() { "$VM" run "$DIR" -- "$@"; }
summary() {
    if [ "$failed" != 0 ]; then
        echo "containerd's journal (last 40 lines):"
        "$VM" sh "$DIR" 'journalctl -u containerd --no-pager | tail -n 40' 2>&1 | sed 's/^/     > /'
    fi
    echo "time: total $((SECONDS - START)) s"
    echo
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit
}
# Guest: waits (bounded) until the CRI plugin of containerd reports ok.
CRI_OK="sh /root/cri/cri-ok.sh"

t=$(now)
"$HERE/build-image.sh" >/dev/null || { echo "image build failed" >&2; exit 1; }
echo "time: image (build or cache) $(secs "$t" "$(now)") s"
t=$(now)
if ! "$VM" up "$DIR"; then
    fail "vm up" "$(tail -n 30 "$DIR/console.log" 2>/dev/null)"
    summary
fi
echo "time: boot to ssh + systemd started $(secs "$t" "$(now)") s"

# --- files for the guest -----------------------------------------------------
files=$DIR/files
mkdir -p "$files"
CRI='plugins."io.containerd.grpc.v1.cri"'
cat >"$files/config.toml" <<EOF
version = 2

[$CRI]
  sandbox_image = "$PAUSE"
  [$CRI.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  [$CRI.containerd]
    default_runtime_name = "runc"
    [$CRI.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [$CRI.containerd.runtimes.runc.options]
        SystemdCgroup = true
EOF
# containerd 2.x's CRI runtime plugin (config versions 3 and 4).
RT2X='plugins."io.containerd.cri.v1.runtime"'
# containerd 2.x: its own default config, edited as the Kubernetes docs say
# (runc's SystemdCgroup = false → true), plus what this node differs in: the
# pause image that is there (no registry), Debian's CNI plugin dir.
cat >"$files/containerd2-config.sh" <<EOF
set -e
f=/etc/containerd/config.toml
/usr/local/bin/containerd config default >\$f
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' \$f
sed -i "s|^\\( *sandbox = \\).*|\\1'$PAUSE'|" \$f
sed -i "s|^\\( *bin_dirs = \\).*|\\1['/usr/lib/cni']|" \$f
EOF
# containerd's reading of it: version 4, runc with SystemdCgroup = true, the
# pause image, the CNI dirs, the conf.d import.
cat >"$files/containerd2-dump-ok.sh" <<'EOF'
/usr/local/bin/containerd config dump >/tmp/dump.toml 2>/tmp/dump.err || { cat /tmp/dump.err; exit 1; }
awk -v pause="$1" '
    /^version = 4$/ { v = 1 }
    /^imports = \[.\/etc\/containerd\/conf\.d\/\*\.toml.\]$/ { imp = 1 }
    /^ *\[/ { o = ($0 ~ /runtimes[.]runc[.]options\]$/); c = ($0 ~ /cri[.]v1[.]runtime.[.]cni\]$/) }
    o && /SystemdCgroup = true/ { sd = 1 }
    o && /SystemdCgroup = false/ { sdf = 1 }
    /^ *sandbox = / && index($0, "\047" pause "\047") { p = 1 }
    c && /bin_dirs = \[.\/usr\/lib\/cni.\]/ { cb = 1 }
    c && /conf_dir = .\/etc\/cni\/net\.d./ { cc = 1 }
    END {
        if (!(v && imp && sd && !sdf && p && cb && cc)) {
            printf "version 4: %d, conf.d import: %d, runc SystemdCgroup = true: %d (false: %d), sandbox %s: %d, CNI bin_dirs: %d, conf_dir: %d\n", v, imp, sd, sdf, pause, p, cb, cc
            exit 1
        }
    }' /tmp/dump.toml || { grep -nE 'version|imports|SystemdCgroup|sandbox =|bin_dirs|conf_dir' /tmp/dump.toml; exit 1; }
EOF
# The packaged unit, switched to the copied-in binary.
printf '[Service]\nExecStart=\nExecStart=/usr/local/bin/containerd\n' >"$files/containerd2.conf"
cat >"$files/10-cri-test.conflist" <<'EOF'
{
  "cniVersion": "0.4.0",
  "name": "cri-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}
    },
    {"type": "loopback"}
  ]
}
EOF
cat >"$files/cri-ok.sh" <<'EOF'
for i in $(seq 30); do
    [ "$(ctr plugins ls 2>/dev/null | awk '$2 == "cri" {print $4}')" = ok ] && exit 0
    sleep 1
done
ctr plugins ls 2>&1 | grep -w cri
exit 1
EOF
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 60\n' >"$files/crictl.yaml"
# pod_files PHASE UID CGROUP_PARENT: the pod and its two containers.
pod_files() {
    cat >"$files/pod-$1.json" <<EOF
{
  "metadata": {"name": "cri-$1", "namespace": "default", "uid": "$2", "attempt": 0},
  "hostname": "cri-$1",
  "log_directory": "/var/log/pods/default_cri-$1_$2",
  "linux": {"cgroup_parent": "$3"}
}
EOF
    cat >"$files/sidecar-$1.json" <<EOF
{"metadata": {"name": "sidecar"}, "image": {"image": "$BUSYBOX"},
 "command": ["/bin/busybox", "sleep", "3600"], "log_path": "sidecar.log", "linux": {}}
EOF
    local w
    for w in wasm wasm2; do
        cat >"$files/$w-$1.json" <<EOF
{"metadata": {"name": "$w"}, "image": {"image": "$PROBE"},
 "command": ["/probe.wasm", "sleep", "3600"], "log_path": "$w.log", "linux": {}}
EOF
    done
}
# Pod UIDs as kubelet writes them into cgroup names (no dashes).
UID_SD=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
UID_FS=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
UID_C2=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
pod_files systemd "$UID_SD" "kubepods-besteffort-pod$UID_SD.slice"
pod_files cgroupfs "$UID_FS" "/kubepods/besteffort/pod$UID_FS"
pod_files containerd2 "$UID_C2" "kubepods-besteffort-pod$UID_C2.slice"

# --- copy in, configure containerd, install as users do ----------------------
t=$(now)
if "$VM" copy-in "$DIR" "$SHIM" /root/wasmtime/containerd-shim-wasmtime-v1 &&
    "$VM" copy-in "$DIR" "$ROOT/deploy/node-installer" /root/wasmtime/node-installer &&
    "$VM" copy-in "$DIR" "$CRICTL" /usr/local/bin/crictl &&
    "$VM" copy-in "$DIR" "$IMAGES/pause.tar" /root/cri/pause.tar &&
    "$VM" copy-in "$DIR" "$IMAGES/busybox.tar" /root/cri/busybox.tar &&
    "$VM" copy-in "$DIR" "$IMAGES/probe.tar" /root/cri/probe.tar &&
    "$VM" copy-in "$DIR" "$files" /root/cri; then
    pass "copy the shim, deploy/node-installer, crictl and the images into the guest"
else
    fail "copy the shim, deploy/node-installer, crictl and the images into the guest"
    summary
fi
echo "time: copy-in $(secs "$t" "$(now)") s"

t=$(now)
guest_ok "kubeadm-style containerd config (runc SystemdCgroup = true) + CNI bridge conflist; CRI plugin ok" \
    "install -m 644 /root/cri/config.toml /etc/containerd/config.toml &&
     mkdir -p /etc/cni/net.d && install -m 644 /root/cri/10-cri-test.conflist /etc/cni/net.d/ &&
     install -m 644 /root/cri/crictl.yaml /etc/crictl.yaml &&
     systemctl restart containerd && $CRI_OK"
if out=$(g /root/wasmtime/node-installer/install.sh --shim /root/wasmtime/containerd-shim-wasmtime-v1 2>&1); then
    pass "install.sh on the node"
else
    fail "install.sh on the node" "$out"
fi
printf '%s\n' "$out" | sed 's/^/     > /'
# set_systemd true|false [PLUGIN]: SystemdCgroup of runc and of the handler in
# containerd's config.toml, containerd restarted. PLUGIN: the CRI plugin
# holding the runtimes (default the version 2 one).
set_systemd() {
    local key=${2:-$CRI}
    "$VM" sh "$DIR" "f=/etc/containerd/config.toml
        grep -qF '[$key.containerd.runtimes.wasmtime.options]' \$f ||
            printf '\n[$key.containerd.runtimes.wasmtime.options]\n  SystemdCgroup = $1\n' >>\$f
        sed -i 's/SystemdCgroup = [a-z]*/SystemdCgroup = $1/' \$f
        [ \"\$(grep -c 'SystemdCgroup = $1' \$f)\" = 2 ] || { echo \"expected 2 SystemdCgroup = $1 in \$f:\"; cat \$f; exit 1; }
        systemctl restart containerd && $CRI_OK"
}
if out=$(set_systemd true 2>&1); then
    pass "handler options SystemdCgroup = true; containerd restarted, CRI plugin ok"
else
    fail "handler options SystemdCgroup = true; containerd restarted, CRI plugin ok" "$out"
fi
guest_ok "images imported (pause, busybox for linux/amd64; probe for wasi/wasm)" \
    "cd /root/cri && ctr -n k8s.io images import --platform linux/amd64 pause.tar >/dev/null &&
     ctr -n k8s.io images import --platform linux/amd64 busybox.tar >/dev/null &&
     ctr -n k8s.io images import --platform wasi/wasm probe.tar >/dev/null &&
     crictl images -q | wc -l | grep -qx 3 || { crictl images; exit 1; }"
echo "time: configure, install, import $(secs "$t" "$(now)") s"
[ "$failed" = 0 ] || summary

# in_cgroup NAME PID CGROUP-DIR: PID is listed in CGROUP-DIR/cgroup.procs.
in_cgroup() {
    [[ $2 =~ ^[0-9]+$ ]] || { fail "$1" "no pid: $2"; return; }
    guest_ok "$1" "grep -qx '$2' '$3/cgroup.procs' || { echo 'pid $2 not in $3/cgroup.procs; /proc/$2/cgroup:'; cat /proc/$2/cgroup; exit 1; }"
}
# running NAME ID: the container's state is CONTAINER_RUNNING.
running() {
    guest_is "$1" CONTAINER_RUNNING crictl inspect -o go-template --template '{{.status.state}}' "$2"
}

# cgroup_of DRIVER BASE ID: the cgroup (below /sys/fs/cgroup) runc or the
# shim uses for container ID of the pod whose cgroup is BASE.
cgroup_of() {
    if [ "$1" = systemd ]; then echo "${2#/sys/fs/cgroup}/cri-containerd-$3.scope"; else echo "${2#/sys/fs/cgroup}/$3"; fi
}
# shim_in NAME PID CGROUP: /proc/PID/cgroup is exactly "0::CGROUP".
shim_in() {
    guest_is "$1" "0::$3" cat "/proc/$2/cgroup"
}
# wasm_stats NAME ID [cpu]: `crictl stats` of a Wasm container: memory
# working set > 0 (unless only cpu is asked) and CPU usage > 0.
wasm_stats() {
    local stats out mem cpu
    stats=$(g crictl stats -o json "$2" 2>&1)
    out=$(jq -r '.stats[0] | "\(.memory.workingSetBytes.value // 0) \(.cpu.usageCoreNanoSeconds.value // 0)"' <<<"$stats" 2>/dev/null)
    read -r mem cpu <<<"${out:-0 0}"
    if [ "${3:-}" != cpu ]; then
        if [ "${mem:-0}" -gt 0 ] 2>/dev/null; then pass "$1: memory working set $mem bytes > 0"; else fail "$1: memory working set > 0" "$stats"; fi
    fi
    if [ "${cpu:-0}" -gt 0 ] 2>/dev/null; then pass "$1: CPU usage $cpu ns > 0"; else fail "$1: CPU usage > 0" "$stats"; fi
}
ARGS_X=$(printf 'argv[0]=/probe.wasm\nargv[1]=args\nargv[2]=x')

# phase NAME UID DRIVER: runs the pod and checks it; DRIVER is systemd or
# cgroupfs (the containerd config must already use that driver). Whether a
# removed container or pod is gone is asked by listing (crictl ps -a / pods):
# the status of a removed one (crictl inspect[p]) makes containerd log a
# NotFound at error level, which the journal check would count.
phase() {
    local name=$1 uid=$2 driver=$3 t since pod sidecar wasm wasm2 spid cpid shim base rel out
    t=$(now)
    echo "--- phase $name"
    # The guest's clock, for the journal check at the end.
    since=$(g date +%s)
    if [ "$driver" = systemd ]; then
        base=/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod$uid.slice
    else
        base=/sys/fs/cgroup/kubepods/besteffort/pod$uid
    fi
    rel=${base#/sys/fs/cgroup}
    pod=$(g crictl runp --runtime wasmtime "/root/cri/pod-$name.json" 2>"$DIR/err") ||
        { fail "$name: crictl runp --runtime wasmtime" "$(cat "$DIR/err")"; return; }
    sidecar=$(g crictl create "$pod" "/root/cri/sidecar-$name.json" "/root/cri/pod-$name.json" 2>"$DIR/err") &&
        g crictl start "$sidecar" >/dev/null 2>"$DIR/err" || { fail "$name: sidecar created and started" "$(cat "$DIR/err")"; sidecar=; }
    wasm=$(g crictl create "$pod" "/root/cri/wasm-$name.json" "/root/cri/pod-$name.json" 2>"$DIR/err") &&
        g crictl start "$wasm" >/dev/null 2>"$DIR/err" || { fail "$name: Wasm container created and started" "$(cat "$DIR/err")"; wasm=; }
    echo "time: $name: runp + create/start of 2 containers $(secs "$t" "$(now)") s"

    guest_is "$name: pod sandbox ready" SANDBOX_READY crictl inspectp -o go-template --template '{{.status.state}}' "$pod"
    spid=$(g crictl inspectp -o go-template --template '{{.info.pid}}' "$pod" 2>&1)
    [ -z "$sidecar" ] || running "$name: sidecar running" "$sidecar"
    [ -z "$sidecar" ] || cpid=$(g crictl inspect -o go-template --template '{{.info.pid}}' "$sidecar" 2>&1)
    if [ "$driver" = systemd ]; then
        guest_is "$name: sandbox scope cri-containerd-$pod.scope active" active systemctl is-active "cri-containerd-$pod.scope"
        in_cgroup "$name: sandbox pid $spid in the scope under the pod slice" "$spid" "$base/cri-containerd-$pod.scope"
        if [ -n "$sidecar" ]; then
            guest_is "$name: sidecar scope cri-containerd-$sidecar.scope active" active systemctl is-active "cri-containerd-$sidecar.scope"
            in_cgroup "$name: sidecar pid $cpid in the scope under the pod slice" "$cpid" "$base/cri-containerd-$sidecar.scope"
        fi
    else
        in_cgroup "$name: sandbox pid $spid in $rel/$pod" "$spid" "$base/$pod"
        [ -z "$sidecar" ] || in_cgroup "$name: sidecar pid $cpid in $rel/$sidecar" "$cpid" "$base/$sidecar"
    fi
    [ -z "$wasm" ] || running "$name: Wasm container running" "$wasm"

    shim=$(g pgrep -f "containerd-shim-wasmtime-v1 .*-id $pod( |\$)" 2>&1)
    if [[ $shim =~ ^[0-9]+$ ]]; then
        pass "$name: one shim process for the pod (pid $shim)"
        guest_ok "$name: shim accounted under $rel" \
            "grep -qE '^0::$rel(/|\$)' /proc/$shim/cgroup || { echo /proc/$shim/cgroup:; cat /proc/$shim/cgroup; exit 1; }"
    else
        fail "$name: one shim process for the pod" "pgrep: $shim"
        shim=
    fi

    if [ -n "$sidecar" ]; then
        guest_is "$name: crictl exec sidecar /bin/busybox echo hi" hi crictl exec "$sidecar" /bin/busybox echo hi
    fi
    if [ -n "$wasm" ]; then
        guest_is "$name: crictl exec Wasm container /probe.wasm args x" "$ARGS_X" crictl exec "$wasm" /probe.wasm args x
        # Work for the stats: a second guest grows its memory by 16 MiB.
        guest_is "$name: crictl exec Wasm container /probe.wasm grow 16" "grew 16 MiB" crictl exec "$wasm" /probe.wasm grow 16
        wasm_stats "$name: crictl stats: Wasm" "$wasm"
    fi

    # A second Wasm container W2 beside the first (W1), then W1 removed: the
    # shim's process, held in W1's cgroup so far, must move on to W2's.
    if [ -n "$wasm" ]; then
        t=$(now)
        wasm2=$(g crictl create "$pod" "/root/cri/wasm2-$name.json" "/root/cri/pod-$name.json" 2>"$DIR/err") &&
            g crictl start "$wasm2" >/dev/null 2>"$DIR/err" || { fail "$name: second Wasm container (W2) created and started" "$(cat "$DIR/err")"; wasm2=; }
        echo "time: $name: create/start of W2 $(secs "$t" "$(now)") s"
    fi
    if [ -n "$wasm2" ]; then
        running "$name: W2 running" "$wasm2"
        running "$name: W1 still running" "$wasm"
        if [ -n "$shim" ]; then
            # No second daemon for the pod (start reuses the running one).
            guest_is "$name: still one shim process in the guest (pid $shim)" "$shim" pgrep -f '^[^ ]*containerd-shim-wasmtime-v1 '
            shim_in "$name: shim in W1's cgroup (the holder) while both run" "$shim" "$(cgroup_of "$driver" "$base" "$wasm")"
        fi
        t=$(now)
        guest_ok "$name: crictl stop W1 && crictl rm W1" \
            "crictl stop $wasm >/dev/null && crictl rm $wasm >/dev/null && ! crictl ps -a -q | grep -qx $wasm"
        echo "time: $name: stop + rm of W1 $(secs "$t" "$(now)") s"
        running "$name: W2 still running after W1's removal" "$wasm2"
        guest_is "$name: crictl exec W2 /probe.wasm args x" "$ARGS_X" crictl exec "$wasm2" /probe.wasm args x
        if [ -n "$shim" ]; then
            shim_in "$name: shim moved on to W2's cgroup" "$shim" "$(cgroup_of "$driver" "$base" "$wasm2")"
        fi
        if [ "$driver" = systemd ]; then
            guest_is "$name: W2's scope cri-containerd-$wasm2.scope active" active systemctl is-active "cri-containerd-$wasm2.scope"
            # Left empty, W1's scope ends by itself: bounded wait.
            guest_ok "$name: W1's scope cri-containerd-$wasm.scope no longer active, its cgroup gone" \
                "for i in \$(seq 20); do ! systemctl is-active -q cri-containerd-$wasm.scope && [ ! -d $base/cri-containerd-$wasm.scope ] && exit 0; sleep 0.5; done
                 systemctl status --no-pager cri-containerd-$wasm.scope; cat $base/cri-containerd-$wasm.scope/cgroup.procs; exit 1"
        else
            guest_ok "$name: W1's cgroup $rel/$wasm gone" \
                "for i in \$(seq 20); do [ -d $base/$wasm ] || exit 0; sleep 0.5; done; echo cgroup.procs:; cat $base/$wasm/cgroup.procs; exit 1"
        fi
        wasm_stats "$name: crictl stats W2 after W1's removal" "$wasm2" cpu
    fi

    t=$(now)
    guest_ok "$name: crictl stopp + rmp" "crictl stopp $pod >/dev/null && crictl rmp $pod >/dev/null && ! crictl pods -q | grep -qx $pod"
    echo "time: $name: stopp + rmp $(secs "$t" "$(now)") s"
    local ids="$pod${sidecar:+ $sidecar}${wasm:+ $wasm}${wasm2:+ $wasm2}"
    [ "$driver" != systemd ] || guest_is "$name: no cri-containerd-*.scope unit of the pod left" "" sh -c \
        "systemctl list-units --all --plain --no-legend 'cri-containerd-*' | grep -E '$(tr ' ' '|' <<<"$ids")'"
    # What kubelet would remove next is the pod's cgroup itself: nothing may be left in it.
    guest_ok "$name: no cgroup left under $rel" \
        "for i in \$(seq 10); do [ -n \"\$(find $base -mindepth 1 -type d)\" ] || exit 0; sleep 0.5; done; find $base -mindepth 1 -type d; exit 1"
    [ -z "$shim" ] || guest_ok "$name: the pod's shim (pid $shim) has exited" \
        "for i in \$(seq 20); do [ -e /proc/$shim ] || exit 0; sleep 0.5; done; ps -o pid,args -p $shim; exit 1"
    journal_check "$name" "$since"
}

# journal_check NAME SINCE: no level=error line in containerd's journal since
# SINCE (guest epoch seconds). The shim's log lines are among them: containerd
# copies its log FIFO into its own stderr as they are (time="…" level=… msg="…",
# no fields of containerd's), so they cannot be told from containerd's by
# fields, and none may be there ('listen on …: Address already in use' was,
# for every Wasm container of a pod after the first). One line of containerd
# 2.x's own is let through: its once-a-second metrics collection can land
# between a task's deletion and its removal from the task list ('collecting
# metrics for <id>' … 'ttrpc: closed'; seen with runc's shim as well).
journal_check() {
    local out
    out=$("$VM" sh "$DIR" "journalctl -u containerd --no-pager -o cat --since @$2 | grep 'level=error' | grep -v 'msg=\"collecting metrics for [0-9a-f]*\" error=\"ttrpc: closed\"'" 2>&1)
    if [ -z "$out" ]; then
        pass "$1: no level=error line in containerd's journal during the phase"
    else
        fail "$1: no level=error line in containerd's journal during the phase" "$out"
    fi
}

t=$(now)
phase systemd "$UID_SD" systemd
echo "time: phase systemd $(secs "$t" "$(now)") s"

t=$(now)
if out=$(set_systemd false 2>&1); then
    pass "runc and handler options SystemdCgroup = false; containerd restarted, CRI plugin ok"
else
    fail "runc and handler options SystemdCgroup = false; containerd restarted, CRI plugin ok" "$out"
fi
phase cgroupfs "$UID_FS" cgroupfs
echo "time: phase cgroupfs $(secs "$t" "$(now)") s"

# --- containerd 2.x -------------------------------------------------------------
# As a node that upgrades: the release's binaries in /usr/local/bin (its
# containerd-shim-runc-v2 too: containerd 2.x wants its own, and
# /usr/local/bin comes before Debian's /usr/bin on systemd's PATH), the
# packaged unit pointed at them by a drop-in, the config made as users make
# it (`containerd config default`: version 4 from 2.3 on, importing
# /etc/containerd/conf.d/*.toml), and the installer run again.
t=$(now)
if "$VM" copy-in "$DIR" "$C2_BIN/containerd" /usr/local/bin/containerd &&
    "$VM" copy-in "$DIR" "$C2_BIN/ctr" /usr/local/bin/ctr &&
    "$VM" copy-in "$DIR" "$C2_BIN/containerd-shim-runc-v2" /usr/local/bin/containerd-shim-runc-v2; then
    pass "copy containerd $C2_VERSION (containerd, ctr, containerd-shim-runc-v2) into /usr/local/bin"
else
    fail "copy containerd $C2_VERSION (containerd, ctr, containerd-shim-runc-v2) into /usr/local/bin"
    summary
fi
echo "time: copy-in of containerd $C2_VERSION ($(du -cm "$C2_BIN/containerd" "$C2_BIN/ctr" "$C2_BIN/containerd-shim-runc-v2" | awk 'END {print $1}') MB) $(secs "$t" "$(now)") s"

t=$(now)
guest_ok "containerd $C2_VERSION: containerd config default > /etc/containerd/config.toml; SystemdCgroup = false → true, the pause image, CNI bin_dirs /usr/lib/cni" \
    "sh /root/cri/containerd2-config.sh"
guest_ok "containerd $C2_VERSION: config dump: version 4, conf.d import, runc SystemdCgroup = true, sandbox $PAUSE, CNI /usr/lib/cni + /etc/cni/net.d" \
    "sh /root/cri/containerd2-dump-ok.sh '$PAUSE'"
guest_ok "containerd $C2_VERSION: systemd drop-in ExecStart=/usr/local/bin/containerd; CRI plugin ok" \
    "mkdir -p /etc/systemd/system/containerd.service.d &&
     install -m 644 /root/cri/containerd2.conf /etc/systemd/system/containerd.service.d/ &&
     systemctl daemon-reload && systemctl restart containerd && $CRI_OK"
guest_is "ctr version: client and server $C2_VERSION" "$C2_VERSION $C2_VERSION" sh -c \
    "ctr version | awk '\$1 == \"Version:\" { sub(/^v/, \"\", \$2); v = v (v ? \" \" : \"\") \$2 } END { print v }'"
if out=$(g /root/wasmtime/node-installer/install.sh --shim /root/wasmtime/containerd-shim-wasmtime-v1 2>&1); then
    pass "install.sh on the node with containerd $C2_VERSION"
else
    fail "install.sh on the node with containerd $C2_VERSION" "$out"
fi
printf '%s\n' "$out" | sed 's/^/     > /'
if grep -q 'config: version 4,' <<<"$out" && grep -q "registered handler 'wasmtime' in /etc/containerd/conf.d/wasmtime.toml" <<<"$out"; then
    pass "install.sh read the config as version 4 and wrote its drop-in /etc/containerd/conf.d/wasmtime.toml"
else
    fail "install.sh read the config as version 4 and wrote its drop-in /etc/containerd/conf.d/wasmtime.toml"
fi
if out=$(set_systemd true "$RT2X" 2>&1); then
    pass "handler options SystemdCgroup = true in config.toml; containerd restarted, CRI plugin ok"
else
    fail "handler options SystemdCgroup = true in config.toml; containerd restarted, CRI plugin ok" "$out"
fi
# containerd's own reading: the handler from the drop-in, its options from
# config.toml, the content store where 1.6 had it.
dump=$(g containerd config dump 2>&1)
if grep -qE "^root = [\"']/var/lib/containerd[\"']" <<<"$dump" &&
    awk '/^ *\[/ { s = o = 0 }
         /^ *\[.*runtimes[.]["\x27]?wasmtime["\x27]?\]/ { s = 1 }
         /^ *\[.*runtimes[.]["\x27]?wasmtime["\x27]?[.]options\]/ { o = 1 }
         s && /runtime_type = .io[.]containerd[.]wasmtime[.]v1./ { rt = 1 }
         o && /SystemdCgroup = true/ { sd = 1 }
         END { exit !(rt && sd) }' <<<"$dump"; then
    pass "containerd config dump: handler wasmtime (runtime_type io.containerd.wasmtime.v1, options SystemdCgroup = true), root /var/lib/containerd"
else
    fail "containerd config dump: handler wasmtime (runtime_type io.containerd.wasmtime.v1, options SystemdCgroup = true), root /var/lib/containerd" \
        "$(grep -E '^root|runtimes.*wasmtime' -A3 <<<"$dump")"
fi
# Same root, same metadata: the images imported under 1.6 should be there.
out=$(g crictl images -o json 2>&1 | jq -r '.images[].repoTags[]' 2>&1 | sort | tr '\n' ' ')
want=$(printf '%s\n' "$PAUSE" "$BUSYBOX" "$PROBE" | sort | tr '\n' ' ')
if [ "$out" = "$want" ]; then
    pass "the images imported under containerd 1.6 are listed by $C2_VERSION's CRI (no re-import)"
else
    echo "     images under $C2_VERSION before a re-import: $out"
    guest_ok "images re-imported under containerd $C2_VERSION" \
        "cd /root/cri && ctr -n k8s.io images import --local --platform linux/amd64 pause.tar >/dev/null &&
         ctr -n k8s.io images import --local --platform linux/amd64 busybox.tar >/dev/null &&
         ctr -n k8s.io images import --local --platform wasi/wasm probe.tar >/dev/null &&
         crictl images -q | wc -l | grep -qx 3 || { crictl images; exit 1; }"
fi
echo "time: containerd $C2_VERSION: switch, install, config $(secs "$t" "$(now)") s"

t=$(now)
phase containerd2 "$UID_C2" systemd
echo "time: phase containerd2 $(secs "$t" "$(now)") s"

summary
