#!/usr/bin/env bash
# Image sizes: each Wasm chat service image next to the same message service
# as Node.js (bench/chat/node) and as a native x86_64 build, all as OCI
# images measured the same way (bench/size/sizes.py: what a registry sends,
# every layer gzip-compressed, base layers included):
#
#   bench/size/run.sh [OUTDIR]       (default /tmp/bench-size-<UTC time>)
#
# Images:
#   <service> (Wasm)   the wasm-oci image of each service: one layer, the
#                      component (the gateway's also holds the web UI)
#   node20             Debian 12 minbase rootfs (debootstrap, the base of
#                      images/linux) + the node binary that bench/chat runs
#                      (/usr/bin/node of this machine's nodejs 20 package;
#                      its libraries are in minbase) + the app: server.js
#                      and node_modules from `npm ci --omit=dev`
#   node18-debian      the same with Debian 12's own nodejs package (18.x,
#                      apt-get install nodejs in the rootfs) instead
#   message-native     the same minbase rootfs + the message service built
#                      for x86_64-unknown-linux-gnu (release, stripped)
# The Wasm images come from CHAT_IMAGES (default: the bench/chat stack's
# image dir) when all six are there, else they are built (deploy/local's
# build). The minbase rootfs is images/linux/build.sh's cached one.
# Needs root (chroot), what deploy/local/up.sh needs to build, node + npm.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/size"
OUTDIR=${1:-/tmp/bench-size-$(date -u +%Y%m%dT%H%M%SZ)}
CHAT_IMAGES=${CHAT_IMAGES:-/var/tmp/containerd-shim-wasmtime/chat-bench/images}
LINUX_CACHE=${LINUX_IMAGES_CACHE:-/var/tmp/containerd-shim-wasmtime/linux-images}
SERVICES_TARGET=${CHAT_SERVICES_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/services-target}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}
OCI="/usr/bin/python3 $ROOT/images/linux/oci-image.py"
WASM_SERVICES=(session chat message user truncator gateway)
WORK=

log() { echo "==> $*" >&2; }

cleanup() {
    if [ -n "$WORK" ]; then
        umount -l "$WORK/node18/proc" 2>/dev/null || true
        rm -rf "$WORK"
    fi
}

# The Wasm service images: reused, or built as deploy/local/up.sh does.
wasm_images() {
    local s missing=0
    for s in "${WASM_SERVICES[@]}"; do [ -f "$CHAT_IMAGES/$s.tar" ] || missing=1; done
    if [ "$missing" = 1 ]; then
        log "building the Wasm service images (deploy/local/lib.sh)"
        (
            export CHAT_DIR="$WORK/chat"
            . "$ROOT/deploy/local/lib.sh"
            mkdir -p "$CHAT_DIR/images"
            chat_build_binaries wasm-oci
            chat_build_images
        )
        CHAT_IMAGES="$WORK/chat/images"
    fi
}

# The newest cached Debian minbase rootfs of images/linux/build.sh (built
# there if there is none: that script builds the MariaDB and Redis images).
base_rootfs() {
    local ok
    ok=$(ls -td "$LINUX_CACHE"/base-*/ok 2>/dev/null | head -n 1 || true)
    if [ -z "$ok" ]; then
        log "no cached minbase rootfs: images/linux/build.sh"
        bash "$ROOT/images/linux/build.sh" "$WORK/linux" >&2
        ok=$(ls -td "$LINUX_CACHE"/base-*/ok | head -n 1)
    fi
    echo "$(dirname "$ok")/rootfs"
}

# What a container image does not need, as images/linux/build.sh removes it.
slim_rootfs() { # DIR
    local r=$1
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old "$r"/var/log/* \
        "$r"/tmp/* "$r"/var/tmp/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian/* \
        "$r"/usr/share/locale/* "$r/usr/sbin/policy-rc.d"
    find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    : >"$r/etc/resolv.conf"
}

layer() { # DIR OUT.tar.gz: a reproducible gzip layer of DIR's contents
    tar --create --file=- --directory="$1" --sort=name --numeric-owner --mtime=@0 \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' --exclude='./run/*' . | $OCI layer "$2"
}

image() { # NAME OUT.tar ENTRYPOINT_JSON LAYER...
    local name=$1 out=$2 entry=$3 args=() l
    shift 3
    for l in "$@"; do args+=(--layer "$l"); done
    $OCI image --name "localhost/bench/$name:latest" --platform linux/amd64 "${args[@]}" \
        --entrypoint "$entry" --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        -o "$out" >/dev/null
}

# The app layer: /app with the service and its production dependencies.
node_app_layer() {
    local app="$WORK/app/app"
    mkdir -p "$app"
    cp "$ROOT/bench/chat/node/server.js" "$ROOT/bench/chat/node/package.json" \
        "$ROOT/bench/chat/node/package-lock.json" "$app/"
    npm ci --prefix "$app" --omit=dev --no-audit --no-fund --loglevel=error >&2
    layer "$WORK/app" "$WORK/app.tar.gz"
}

node20_image() {
    mkdir -p "$WORK/node20/usr/local/bin"
    install -m 755 /usr/bin/node "$WORK/node20/usr/local/bin/node"
    layer "$WORK/node20" "$WORK/node20.tar.gz"
    image node20 "$OUTDIR/node20.tar" '["node","/app/server.js"]' \
        "$WORK/base.tar.gz" "$WORK/node20.tar.gz" "$WORK/app.tar.gz"
}

# Debian's nodejs installed into a copy of the rootfs; its layer holds what
# the install added and changed (the whole rootfs minus the base layer
# would double-count: the base is measured once, as its own layer).
node18_image() {
    local r="$WORK/node18"
    cp -a "$BASE" "$r"
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    mount -t proc proc "$r/proc"
    chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -ec \
        'apt-get -q update && apt-get -q -y -o APT::Install-Recommends=false install nodejs' >"$OUTDIR/node18-apt.log" 2>&1 ||
        { tail -n 20 "$OUTDIR/node18-apt.log" >&2; umount -l "$r/proc"; return 1; }
    umount "$r/proc"
    slim_rootfs "$r"
    chroot "$r" dpkg-query -W -f='${Version}' nodejs >"$OUTDIR/node18.version"
    # The whole rootfs as one layer: the honest size of a single-stage image.
    layer "$r" "$WORK/node18-rootfs.tar.gz"
    image node18-debian "$OUTDIR/node18-debian.tar" '["node","/app/server.js"]' \
        "$WORK/node18-rootfs.tar.gz" "$WORK/app.tar.gz"
}

native_image() {
    log "building the message service for x86_64 (release)"
    (cd "$ROOT/images/services" && CARGO_TARGET_DIR=$SERVICES_TARGET \
        cargo build --quiet --release --locked -p message --target x86_64-unknown-linux-gnu) >&2
    mkdir -p "$WORK/native/usr/local/bin"
    install -m 755 "$SERVICES_TARGET/x86_64-unknown-linux-gnu/release/message" "$WORK/native/usr/local/bin/message"
    strip "$WORK/native/usr/local/bin/message"
    layer "$WORK/native" "$WORK/native.tar.gz"
    image message-native "$OUTDIR/message-native.tar" '["/usr/local/bin/message"]' \
        "$WORK/base.tar.gz" "$WORK/native.tar.gz"
}

main() {
    [ "$(id -u)" = 0 ] || { echo "error: $0 needs root (chroot)" >&2; exit 1; }
    mkdir -p "$OUTDIR"
    WORK=$(mktemp -d /tmp/bench-size.XXXXXX)
    trap cleanup EXIT
    wasm_images
    BASE=$(base_rootfs)
    log "minbase layer from $BASE"
    cp -a "$BASE" "$WORK/base"
    slim_rootfs "$WORK/base"
    layer "$WORK/base" "$WORK/base.tar.gz"
    node_app_layer
    node20_image
    log "node18-debian: apt-get install nodejs in a copy of the rootfs (log: $OUTDIR/node18-apt.log)"
    node18_image
    native_image
    local args=() s
    for s in "${WASM_SERVICES[@]}"; do args+=("$s (Wasm)=$CHAT_IMAGES/$s.tar"); done
    args+=("message, Node 20 ($(node --version)) on Debian minbase=$OUTDIR/node20.tar")
    args+=("message, Node $(cat "$OUTDIR/node18.version") (Debian nodejs) on minbase=$OUTDIR/node18-debian.tar")
    args+=("message, native x86_64 on Debian minbase=$OUTDIR/message-native.tar")
    {
        echo "# bench/size results"
        echo
        echo "Date $(date -u +%FT%TZ), commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`. Compressed: what a registry"
        echo "sends (config + manifest + layers, each layer gzip level 6)."
        echo
        python3 "$HERE/sizes.py" "${args[@]}"
        echo
        echo "Files alone: the native message binary (stripped) $(stat -c %s "$WORK/native/usr/local/bin/message") bytes," \
            "the node binary $(stat -c %s /usr/bin/node) bytes, /app with node_modules $(du -sb "$WORK/app/app" | cut -f1) bytes."
    } | tee "$OUTDIR/sizes.md"
}

main "$@"
