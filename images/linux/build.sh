#!/usr/bin/env bash
# Builds the Linux images of the chat stack from Debian packages, locally (no
# registry needed, only the Debian mirror apt already uses):
#
#   images/linux/build.sh OUTDIR
#
# writes OUTDIR/mariadb.tar (localhost/chat/mariadb:latest) and
# OUTDIR/redis.tar (localhost/chat/redis:latest), OCI image layouts for
# linux/amd64 that `ctr images import` accepts (so does `docker load` since Docker 25).
#
# Each image has two layers: a Debian bookworm rootfs (debootstrap
# --variant=minbase, then apt-get install of the image's packages, docs and
# apt lists removed) and a small layer with the entrypoint and config from
# images/linux/<image>/. Rootfs layers are cached under
# $LINUX_IMAGES_CACHE (default /var/tmp/containerd-shim-wasmtime/linux-images)
# keyed by suite, mirror, package list and RECIPE, so a re-run takes seconds;
# the entrypoint layer is rebuilt every time (it is tiny).
#
# Needs root (debootstrap, chroot). Installs debootstrap and python3 with apt
# if missing. LINUX_IMAGES_MIRROR overrides the mirror found in
# /etc/apt/sources.list*.
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
CACHE=${LINUX_IMAGES_CACHE:-/var/tmp/containerd-shim-wasmtime/linux-images}
SUITE=bookworm
ARCH=amd64
# Bump when the way a rootfs is made changes (cache keys include it).
RECIPE=1

# image name -> packages (apt-get install --no-install-recommends).
# mariadb-server-core + mariadb-client-core instead of mariadb-server: the
# server package pulls in perl, galera, rsync and socat for features a
# container does not use (init scripts, SST), ~3x the size.
declare -A PACKAGES=(
    [mariadb]="mariadb-server-core mariadb-client-core"
    [redis]="redis-server"
)
# Run in the rootfs after the install (part of the cache key). The mysql
# user is made by mariadb-server's scripts, which are not installed.
declare -A SETUP=(
    [mariadb]="groupadd --system mysql && useradd --system --gid mysql --home-dir /var/lib/mysql --shell /usr/sbin/nologin mysql && install -d -o mysql -g mysql /var/lib/mysql /run/mysqld"
    [redis]="true"
)
IMAGES=(mariadb redis)

log() { echo "==> $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

if [ "$(id -u)" != 0 ]; then
    echo "error: $0 needs root (debootstrap, chroot)" >&2
    exit 1
fi
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=/usr/bin/python3
OCI="$PY $here/oci-image.py"

# The URI of the first enabled "deb" source for SUITE in apt's configuration
# (one-line .list and deb822 .sources formats).
apt_source() {
    local suite=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '$1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == s) { print $i; exit }
        }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
        {
            uri = ""; deb = 0; ok = 0; on = 1
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { split($i, a, " "); uri = a[2] }
                if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
                if ($i ~ /^Enabled:[ \t]*no/) on = 0
                if ($i ~ /^Suites:/) { n = split($i, b, " "); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
            }
            if (uri != "" && deb && ok && on) { print uri; exit }
        }' "$f"
    done
}
MIRROR=${LINUX_IMAGES_MIRROR:-$(apt_source "$SUITE" | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(apt_source "$SUITE-security" | head -n1)
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
BASE_KEY=$(key "recipe=$RECIPE" "suite=$SUITE" "arch=$ARCH" "variant=minbase" "mirror=$MIRROR" "security=$SECURITY")

mkdir -p "$CACHE"
# One build at a time per cache (a CI run next to a developer's).
exec 9>"$CACHE/.lock"
flock 9

# /proc is mounted in a rootfs while apt runs in it. rootfs_layer runs in a
# command substitution (no EXIT trap there), so a build interrupted or failed
# before the umount leaves it mounted: everything under a directory is
# unmounted before the directory is deleted.
unmount_under() { # DIR
    local m
    for m in $(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

chroot_apt() { # ROOTFS ARGS...
    local root=$1
    shift
    chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get -q -y \
        -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false "$@"
}

# Debian base rootfs: debootstrap minbase, sources with updates and
# security, docs excluded from later installs, services never started.
base_rootfs() {
    local dir="$CACHE/base-$BASE_KEY"
    if [ -f "$dir/ok" ]; then
        echo "$dir/rootfs"
        return
    fi
    local t0
    t0=$(now)
    log "debootstrap --variant=minbase $SUITE from $MIRROR (log: $dir.log)"
    unmount_under "$dir.tmp"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    if ! debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$dir.tmp/rootfs" "$MIRROR" >"$dir.log" 2>&1; then
        tail -n 30 "$dir.log" >&2
        echo "error: debootstrap failed; log: $dir.log" >&2
        exit 1
    fi
    local r="$dir.tmp/rootfs"
    cat >"$r/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
    cat >"$r/etc/dpkg/dpkg.cfg.d/01-container-excludes" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
    printf '#!/bin/sh\n# Never start services while building an image.\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/01-no-languages"
    mv "$dir.tmp" "$dir"
    touch "$dir/ok"
    log "base rootfs ready in $(since "$t0")"
    echo "$dir/rootfs"
}

# Rootfs layer of one image, cached: CACHE/<image>-<key>/layer.tar.gz(.json).
rootfs_layer() {
    local image=$1 packages=${PACKAGES[$1]} setup=${SETUP[$1]} dir
    dir="$CACHE/$image-$(key "base=$BASE_KEY" "recipe=$RECIPE" "packages=$packages" "setup=$setup")"
    if [ -f "$dir/layer.tar.gz.json" ]; then
        log "$image: cached rootfs layer ($dir)"
        echo "$dir/layer.tar.gz"
        return
    fi
    local base t0
    base=$(base_rootfs)
    t0=$(now)
    log "$image: installing $packages"
    unmount_under "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    local r="$dir/rootfs"
    cp -a "$base" "$r"
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    mount -t proc proc "$r/proc"
    # shellcheck disable=SC2086 # $packages is a list of package names
    {
        chroot_apt "$r" update &&
            chroot_apt "$r" install $packages &&
            chroot "$r" /bin/sh -euc "$setup"
    } >"$dir/apt.log" 2>&1 || {
        umount -l "$r/proc" 2>/dev/null || true
        rm -rf "$r"
        tail -n 30 "$dir/apt.log" >&2
        echo "error: apt-get failed for $image; log: $dir/apt.log" >&2
        exit 1
    }
    chroot_apt "$r" clean >/dev/null
    umount "$r/proc"
    # What a container does not need: package lists and caches, logs, docs
    # installed by debootstrap before the excludes, the build's resolv.conf,
    # data directories the packages' scripts created (volumes go there).
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
        "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
        "$r"/usr/share/lintian/* "$r"/usr/share/locale/* "$r/usr/sbin/policy-rc.d" \
        "$r"/var/lib/mysql/* "$r"/var/lib/redis/*
    find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    : >"$r/etc/resolv.conf"
    : >"$r/etc/machine-id" 2>/dev/null || true
    log "$image: packing the rootfs layer"
    tar --create --file=- --directory="$r" --sort=name --numeric-owner \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' --exclude='./run/*' . |
        $OCI layer "$dir/layer.tar.gz"
    du -sb "$r" | cut -f1 >"$dir/rootfs.bytes"
    rm -rf "$r"
    log "$image: rootfs layer built in $(since "$t0")"
    echo "$dir/layer.tar.gz"
}

# Layer with the files of images/linux/<image>/ (entrypoint, config).
files_layer() {
    local image=$1 stage="$outdir/.$1-files"
    rm -rf "$stage"
    mkdir -p "$stage/usr/local/bin"
    install -m 755 "$here/$image/entrypoint.sh" "$stage/usr/local/bin/chat-$image-entrypoint"
    if [ "$image" = mariadb ]; then
        mkdir -p "$stage/etc/mysql/mariadb.conf.d"
        install -m 644 "$here/mariadb/chat.cnf" "$stage/etc/mysql/mariadb.conf.d/60-chat.cnf"
    fi
    find "$stage" -type d -exec chmod 755 {} +
    tar --create --file=- --directory="$stage" --sort=name --owner=0 --group=0 --numeric-owner \
        --mtime=@0 . | $OCI layer "$outdir/.$image-files.tar.gz"
    rm -rf "$stage"
    echo "$outdir/.$image-files.tar.gz"
}

PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for image in "${IMAGES[@]}"; do
    t0=$(now)
    base_layer=$(rootfs_layer "$image")
    top_layer=$(files_layer "$image")
    case $image in
        mariadb) extra=(--volume /var/lib/mysql --expose 3306/tcp) ;;
        redis) extra=(--volume /data --expose 6379/tcp) ;;
    esac
    $OCI image --name "localhost/chat/$image:latest" --platform "linux/$ARCH" \
        --layer "$base_layer" --layer "$top_layer" \
        --entrypoint "[\"/usr/local/bin/chat-$image-entrypoint\"]" \
        --env "$PATH_ENV" --env LANG=C.UTF-8 --stop-signal SIGTERM "${extra[@]}" \
        -o "$outdir/$image.tar" >/dev/null
    rm -f "$top_layer" "$top_layer.json"
    log "$image: $outdir/$image.tar in $(since "$t0")"
done

# Sizes, also kept in OUTDIR/linux-images.sizes ("image tar_bytes unpacked_bytes").
echo "Linux images built in $outdir:"
: >"$outdir/linux-images.sizes"
for image in "${IMAGES[@]}"; do
    dir=$(dirname "$(rootfs_layer "$image" 2>/dev/null)")
    bytes=$(wc -c <"$outdir/$image.tar")
    unpacked=$(cat "$dir/rootfs.bytes" 2>/dev/null || echo 0)
    echo "$image $bytes $unpacked" >>"$outdir/linux-images.sizes"
    printf '  %-12s %-32s %6.1f MiB compressed, %6.1f MiB unpacked\n' "$image.tar" "localhost/chat/$image:latest" \
        "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$unpacked" 'BEGIN { print b / 1048576 }')"
done
