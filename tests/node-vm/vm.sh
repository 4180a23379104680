#!/usr/bin/env bash
# Boots and drives a throwaway Debian 12 node VM (systemd, cgroup v2,
# containerd 1.6) under QEMU, from the image tests/node-vm/build-image.sh
# caches. Every `up` starts from a clean copy-on-write overlay in DIR.
#
#   vm.sh up DIR                          boot; returns once sshd answers and
#                                         systemd finished starting up
#   vm.sh run DIR -- CMD [ARG...]         run CMD as root in the guest (argv kept
#                                         as given); stdin/stdout/stderr are
#                                         passed through; exits with CMD's status
#   vm.sh sh DIR 'SCRIPT'                 run a shell script line in the guest
#   vm.sh copy-in DIR HOSTPATH GUESTPATH  file → that file; directory → its
#                                         contents into that directory
#   vm.sh copy-out DIR GUESTPATH HOSTPATH file from the guest
#   vm.sh down DIR                        power off (kill after a bound); keeps
#                                         DIR's logs and overlay
#   vm.sh status DIR                      exit 0 when the VM runs
#
# DIR gets qemu.pid, disk.qcow2 (the overlay), console.log (serial), and
# console.sock (attach for a root shell: socat -,raw,echo=0 UNIX:DIR/console.sock).
#
# Environment:
#   NODE_VM_KVM=1            use /dev/kvm (-cpu host); default TCG, since KVM
#                            guests hang on the machines this was written on
#   NODE_VM_CPU              QEMU -cpu for TCG (default max: SSE4/AVX2 like a real node)
#   NODE_VM_MEM              MiB of RAM (default 3072); NODE_VM_SMP vCPUs (default 2)
#   NODE_VM_BOOT_TIMEOUT     seconds `up` waits (default 300)
#   NODE_VM_NET_EXTRA        appended to -netdev user,... (e.g.
#                            ",hostfwd=tcp:127.0.0.1:8080-:80")
#   NODE_VM_CACHE            as for build-image.sh
#
# Network: QEMU user networking with restrict=on. The guest can send nothing
# to the host or beyond; only the forwarded loopback port(s) reach it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf 'node-vm: %s\n' "$*" >&2; }
die() { printf 'node-vm: error: %s\n' "$*" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# qemu_alive DIR: the PID in DIR/qemu.pid is a QEMU started for DIR.
qemu_alive() {
    local pid
    pid=$(cat "$1/qemu.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1/disk.qcow2"
}

load_env() { # DIR
    [ -f "$1/vm.env" ] || die "$1 has no VM (vm.sh up $1 first)"
    # shellcheck source=/dev/null
    . "$1/vm.env"
}

# ssh to the guest with the image's key, checking the image's host key.
guest_ssh() { # DIR SSH-ARGS...
    local dir=$1
    shift
    ssh -F none -i "$IMAGE/id_ed25519" -p "$PORT" \
        -o UserKnownHostsFile="$IMAGE/known_hosts" -o HostKeyAlias="node-vm-$RECIPE" \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes \
        -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=6 \
        -o LogLevel=ERROR -o KexAlgorithms=curve25519-sha256 \
        -o ControlMaster=auto -o ControlPath="/tmp/node-vm-ssh-%C" -o ControlPersist=30 \
        root@127.0.0.1 "$@"
}

# Quotes each argument for the guest's shell (bash).
quote_args() {
    local out=() a
    for a in "$@"; do out+=("$(printf '%q' "$a")"); done
    printf '%s' "${out[*]}"
}

free_port() {
    local p _
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || { echo "$p"; return 0; }
    done
    die "no free TCP port found on 127.0.0.1"
}

cmd_up() { # DIR
    local dir=$1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    ! qemu_alive "$dir" || die "a VM is already running for $dir (vm.sh down $dir)"
    local image recipe
    image=$("$HERE/build-image.sh") || die "building the image failed"
    recipe=$(basename "$image")
    rm -f "$dir/disk.qcow2" "$dir/qemu.pid" "$dir/console.log" "$dir/console.sock" "$dir/vm.env"
    qemu-img create -q -f qcow2 -F raw -b "$image/disk.raw" "$dir/disk.qcow2" ||
        die "qemu-img create of the overlay failed"

    local accel=(-accel tcg -cpu "${NODE_VM_CPU:-max}")
    if [ "${NODE_VM_KVM:-0}" = 1 ]; then
        [ -w /dev/kvm ] || die "NODE_VM_KVM=1 but /dev/kvm is not usable"
        accel=(-accel kvm -cpu host)
    fi
    local append="root=/dev/vda rw console=ttyS0,115200 systemd.unified_cgroup_hierarchy=1 quiet panic=-1"
    local port attempt start=$SECONDS
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if qemu-system-x86_64 -name "node-vm,process=node-vm" \
            -nodefaults -no-user-config -display none -vga none -no-reboot \
            -machine q35 "${accel[@]}" -smp "${NODE_VM_SMP:-2}" -m "${NODE_VM_MEM:-3072}" \
            -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$append" \
            -drive "file=$dir/disk.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
            -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22${NODE_VM_NET_EXTRA:-}" \
            -device virtio-net-pci,netdev=net0 \
            -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0 \
            -chardev "socket,id=ser0,path=$dir/console.sock,server=on,wait=off,logfile=$dir/console.log" \
            -serial chardev:ser0 \
            -daemonize -pidfile "$dir/qemu.pid" 2>"$dir/qemu.err"; then
            break
        fi
        # A port taken between the check and the bind: try another.
        grep -q 'hostfwd\|host forwarding' "$dir/qemu.err" && [ "$attempt" -lt 5 ] && continue
        die "qemu failed to start: $(cat "$dir/qemu.err")"
    done
    cat >"$dir/vm.env" <<EOF
IMAGE=$image
RECIPE=$recipe
PORT=$port
EOF
    load_env "$dir"
    log "booting (qemu pid $(cat "$dir/qemu.pid"), ssh on 127.0.0.1:$port, console $dir/console.log)"

    local timeout=${NODE_VM_BOOT_TIMEOUT:-300} ready=0
    while [ $((SECONDS - start)) -lt "$timeout" ]; do
        qemu_alive "$dir" || die "qemu exited during boot; console: $(tail -n 20 "$dir/console.log" 2>/dev/null)"
        if guest_ssh "$dir" -o ConnectTimeout=5 true </dev/null 2>/dev/null; then ready=1; break; fi
        sleep 1
    done
    [ "$ready" = 1 ] || { cmd_down "$dir" || true; die "sshd did not answer within $timeout s; console: $(tail -n 20 "$dir/console.log")"; }
    local ssh_at=$((SECONDS - start))
    # Startup finished (containerd up) — "degraded" is reported, not fatal.
    local state
    state=$(guest_ssh "$dir" "timeout $((timeout > ssh_at ? timeout - ssh_at : 1)) systemctl is-system-running --wait" </dev/null 2>/dev/null) || true
    [ "$state" = running ] || log "systemd state: ${state:-unknown}; failed units: $(guest_ssh "$dir" 'systemctl --failed --no-legend --plain' </dev/null 2>/dev/null | tr '\n' ' ')"
    log "up: ssh after ${ssh_at} s, system ${state:-?} after $((SECONDS - start)) s"
}

cmd_run() { # DIR -- CMD...
    local dir=$1
    shift
    [ "${1:-}" = -- ] && shift
    [ "$#" -gt 0 ] || die "run: no command" 2
    load_env "$dir"
    local rc=0
    guest_ssh "$dir" "$(quote_args "$@")" || rc=$?
    [ "$rc" != 255 ] || qemu_alive "$dir" || log "the VM is not running"
    return "$rc"
}

cmd_sh() { # DIR SCRIPT
    local dir=$1
    [ "$#" = 2 ] || die "sh: DIR 'SCRIPT'" 2
    load_env "$dir"
    guest_ssh "$dir" "$2"
}

cmd_copy_in() { # DIR HOSTPATH GUESTPATH
    local dir=$1 src=$2 dst=$3 g
    load_env "$dir"
    g=$(quote_args "$dst")
    if [ -d "$src" ]; then
        tar -C "$src" -cf - . | guest_ssh "$dir" "mkdir -p $g && tar -C $g -xf - --no-same-owner"
    elif [ -f "$src" ]; then
        local mode
        mode=$(stat -c %a "$src")
        # Written under a temporary name, then renamed: no half file on failure.
        guest_ssh "$dir" "mkdir -p \"\$(dirname $g)\" && cat >$g.part && chmod $mode $g.part && mv -f $g.part $g" <"$src"
    else
        die "copy-in: no such file or directory: $src"
    fi
}

cmd_copy_out() { # DIR GUESTPATH HOSTPATH
    local dir=$1 src=$2 dst=$3
    load_env "$dir"
    guest_ssh "$dir" "cat $(quote_args "$src")" </dev/null >"$dst.part" && mv -f "$dst.part" "$dst" ||
        { rm -f "$dst.part"; die "copy-out of $src failed"; }
}

cmd_down() { # DIR
    local dir=$1 pid _
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    if qemu_alive "$dir"; then
        pid=$(cat "$dir/qemu.pid")
        # A guest that took the poweroff gets 60 s; one that cannot be reached none.
        local bound=0
        if [ -f "$dir/vm.env" ]; then
            load_env "$dir"
            guest_ssh "$dir" -o ConnectTimeout=5 'systemctl poweroff --no-block' </dev/null >/dev/null 2>&1 && bound=60
        fi
        for _ in $(seq 1 "$bound"); do qemu_alive "$dir" || break; sleep 1; done
        if qemu_alive "$dir"; then
            if [ "$bound" = 0 ]; then log "guest unreachable; killing qemu $pid"; else log "no poweroff within $bound s; killing qemu $pid"; fi
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 10); do qemu_alive "$dir" || break; sleep 1; done
            ! qemu_alive "$dir" || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "down"
    fi
    # The shared ssh connection ends with the guest; make sure it is gone.
    [ ! -f "$dir/vm.env" ] || { load_env "$dir"; guest_ssh "$dir" -O exit >/dev/null 2>&1 || true; }
    rm -f "$dir/qemu.pid"
}

[ "$#" -ge 2 ] || usage
cmd=$1
shift
case $cmd in
    up) [ "$#" = 1 ] || usage; cmd_up "$1" ;;
    run) cmd_run "$@" ;;
    sh) cmd_sh "$@" ;;
    copy-in) [ "$#" = 3 ] || usage; cmd_copy_in "$@" ;;
    copy-out) [ "$#" = 3 ] || usage; cmd_copy_out "$@" ;;
    down) [ "$#" = 1 ] || usage; cmd_down "$1" ;;
    status) qemu_alive "$(cd "$1" 2>/dev/null && pwd || echo "$1")" ;;
    *) usage ;;
esac
