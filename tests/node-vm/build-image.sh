#!/usr/bin/env bash
# Builds the node VM's disk image once and caches it outside the clone:
# Debian 12 (debootstrap minbase) with Debian's kernel, systemd as PID 1
# (cgroup v2 unified), containerd 1.6 + runc + CNI plugins, and sshd as the
# command channel (tests/node-vm/vm.sh drives it).
#
#   tests/node-vm/build-image.sh [--print-dir] [--rebuild]
#
# Prints the image directory on stdout when done (progress goes to stderr):
#   $NODE_VM_CACHE/<recipe>/{disk.raw,vmlinuz,initrd.img,id_ed25519,known_hosts,...}
# <recipe> is a hash of this script, so editing it gives a new image and a
# finished image is reused as is. --print-dir only prints where it would be.
#
# Environment:
#   NODE_VM_CACHE      cache root (default /var/tmp/containerd-shim-wasmtime/node-vm)
#   NODE_VM_MIRROR     Debian mirror (default: the one apt uses on this machine)
#   NODE_VM_DISK_SIZE  size of the ext4 root (sparse; default 6G)
set -euo pipefail

CACHE=${NODE_VM_CACHE:-/var/tmp/containerd-shim-wasmtime/node-vm}
DISK_SIZE=${NODE_VM_DISK_SIZE:-6G}
SUITE=bookworm

# What goes into the guest besides minbase. openssh-server is the command
# channel; dbus lets runc/containerd use the systemd cgroup driver; iptables
# is what CNI bridge/portmap plugins call.
PACKAGES=(
    systemd systemd-sysv udev dbus kmod
    linux-image-cloud-amd64 initramfs-tools
    iproute2 iptables ca-certificates
    containerd runc containernetworking-plugins
    openssh-server
)

log() { printf 'node-vm build: %s\n' "$*" >&2; }
die() { printf 'node-vm build: error: %s\n' "$*" >&2; exit 1; }

PRINT_ONLY=0
REBUILD=0
for a in "$@"; do
    case $a in
        --print-dir) PRINT_ONLY=1 ;;
        --rebuild) REBUILD=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
        *) die "unknown argument: $a" ;;
    esac
done

# The recipe version: this file and the package list it names. The mirror
# and disk size change the result too.
RECIPE=$( { cat "${BASH_SOURCE[0]}"; echo "$DISK_SIZE"; } | sha256sum | cut -c1-16)
OUT=$CACHE/$RECIPE
if [ "$PRINT_ONLY" = 1 ]; then echo "$OUT"; exit 0; fi
if [ -f "$OUT/ready" ] && [ "$REBUILD" = 0 ]; then
    log "cached: $OUT"
    echo "$OUT"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"

# --- host tools (a fresh machine has none of them) --------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v unshare >/dev/null || need+=(util-linux)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing host packages: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
        die "apt-get install ${need[*]} failed"
fi

# The mirrors apt is configured with here (one-line or deb822 sources).
apt_uri() { # PATH-SUFFIX: the first configured URI ending in it
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE 'https?://[^ ]+' | sed 's,/*$,,' | grep -E "$1\$" | head -n 1 || true
}
MIRROR=${NODE_VM_MIRROR:-$(apt_uri '/debian')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(apt_uri '/debian-security')
SECURITY=${SECURITY:-${MIRROR%/debian}/debian-security}

mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"
flock -w 1800 8 || die "another build holds $CACHE/.lock for 30 min"
if [ -f "$OUT/ready" ] && [ "$REBUILD" = 0 ]; then
    log "built meanwhile: $OUT"
    echo "$OUT"
    exit 0
fi

WORK=$CACHE/.build-$RECIPE.$$
R=$WORK/root
cleanup() {
    # Mounts live in a private mount namespace (unshare -m) and go with it;
    # still, never rm -rf through a mounted /proc.
    if ! grep -qF " $R/" /proc/self/mountinfo 2>/dev/null; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK"
START=$(date +%s)
log "recipe $RECIPE, mirror $MIRROR, security $SECURITY"

# --- debootstrap --------------------------------------------------------------
t0=$(date +%s)
debootstrap --variant=minbase --components=main "$SUITE" "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    die "debootstrap failed: $(tail -n 5 "$WORK/debootstrap.log")"
log "debootstrap: $(($(date +%s) - t0)) s"

cat >"$R/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
# No docs/manpages/locales: smaller image, less for TCG to read.
cat >"$R/etc/dpkg/dpkg.cfg.d/01-node-vm-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/info/*
EOF
# Packages must not start daemons on the build host (sshd, containerd).
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$R/etc/resolv.conf"

# in_root CMD...: runs CMD in the chroot with /proc mounted in a private
# mount namespace, so nothing stays mounted when it ends.
in_root() {
    unshare --mount --propagation private -- bash -c '
        set -e
        mount -t proc proc "$1/proc"
        r=$1; shift
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
    ' in_root "$R" "$@"
}

t0=$(date +%s)
in_root apt-get update >"$WORK/apt.log" 2>&1 || die "apt-get update in the chroot failed: $(tail -n 5 "$WORK/apt.log")"
in_root apt-get install -y --no-install-recommends "${PACKAGES[@]}" >>"$WORK/apt.log" 2>&1 ||
    die "apt-get install in the chroot failed: $(tail -n 5 "$WORK/apt.log")"
log "packages: $(($(date +%s) - t0)) s"

# --- configuration --------------------------------------------------------------
echo node-vm >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tnode-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
printf '/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n' >"$R/etc/fstab"
# Generated per boot (each VM is a fresh overlay, so nodes get distinct ids).
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
# No resolver: the guest reaches nothing but the host's forwarded ports.
printf '# node-vm: no DNS on purpose (QEMU user net with restrict=on)\n' >"$R/etc/resolv.conf"

# QEMU user net hands out 10.0.2.15; a static address without a gateway keeps
# the guest from routing anywhere (QEMU's restrict=on drops it anyway).
mkdir -p "$R/etc/systemd/network"
cat >"$R/etc/systemd/network/10-slirp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
in_root systemctl enable systemd-networkd.service >>"$WORK/apt.log" 2>&1 || die "systemctl enable systemd-networkd failed"
# Timers that would wake up during tests, and units that only slow a TCG boot.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service \
    getty@tty1.service >>"$WORK/apt.log" 2>&1 || die "systemctl mask failed"

# Serial console: a root shell without a password for whoever attaches to
# DIR/console.sock (vm.sh); the guest has no other login than the ssh key.
in_root passwd -d root >/dev/null
mkdir -p "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$R/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
EOF

# journald in memory: the overlay is thrown away anyway.
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n' >"$R/etc/systemd/journald.conf.d/node-vm.conf"

# The command channel: sshd with one key, generated here, for root only.
mkdir -p "$WORK/out"
ssh-keygen -q -t ed25519 -N '' -C "node-vm-$RECIPE" -f "$WORK/out/id_ed25519"
install -d -m 0700 "$R/root/.ssh"
install -m 0600 "$WORK/out/id_ed25519.pub" "$R/root/.ssh/authorized_keys"
cat >"$R/etc/ssh/sshd_config.d/node-vm.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
AcceptEnv LANG LC_*
EOF
[ -f "$R/etc/ssh/ssh_host_ed25519_key.pub" ] || in_root ssh-keygen -A >/dev/null
# Host keys are baked into the image; the client checks them by alias.
printf 'node-vm-%s %s\n' "$RECIPE" "$(cut -d' ' -f1,2 "$R/etc/ssh/ssh_host_ed25519_key.pub")" >"$WORK/out/known_hosts"

# initramfs: only what mounting a virtio ext4 root needs (small and quick to
# unpack under TCG). Debian builds virtio_blk/virtio_pci as modules.
cat >"$R/etc/initramfs-tools/conf.d/node-vm.conf" <<'EOF'
MODULES=list
RESUME=none
COMPRESS=gzip
EOF
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$R/etc/initramfs-tools/modules"
in_root update-initramfs -u -k all >>"$WORK/apt.log" 2>&1 || die "update-initramfs failed: $(tail -n 5 "$WORK/apt.log")"

# --- image ------------------------------------------------------------------------
kernel=$(find "$R/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$R/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
[ -n "$kernel" ] && [ -n "$initrd" ] || die "no kernel/initrd in the chroot's /boot"
cp "$kernel" "$WORK/out/vmlinuz"
cp "$initrd" "$WORK/out/initrd.img"
kver=${kernel##*/vmlinuz-}

rm -f "$R/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/log/*.log "$R"/tmp/* "$R"/var/tmp/*
grep -qF " $R/" /proc/self/mountinfo && die "something is still mounted under $R"

t0=$(date +%s)
mkfs.ext4 -q -F -L node-vm -d "$R" "$WORK/out/disk.raw" "$DISK_SIZE" >&2 || die "mkfs.ext4 -d failed"
log "mkfs.ext4 -d: $(($(date +%s) - t0)) s"

{
    echo "recipe=$RECIPE"
    echo "suite=$SUITE"
    echo "kernel=$kver"
    echo "mirror=$MIRROR"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(($(date +%s) - START))"
    echo "packages=$(in_root dpkg-query -W -f '${Package}=${Version} ' "${PACKAGES[@]}")"
} >"$WORK/out/recipe.txt"
cp "$WORK"/*.log "$WORK/out/"
touch "$WORK/out/ready"

rm -rf "$OUT"
mv "$WORK/out" "$OUT"
rm -rf "$R"
log "done in $(($(date +%s) - START)) s: $OUT ($(du -sh --apparent-size "$OUT/disk.raw" | cut -f1) apparent, $(du -sh "$OUT/disk.raw" | cut -f1) used)"
echo "$OUT"
