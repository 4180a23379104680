#!/usr/bin/env bash
# Builds the Linux images critest (cri-tools) pulls, from Debian's busybox,
# and pushes them to a loopback registry (no registry on the
# network is reachable):
#
#   tests/critest/images.sh OUT_DIR [REGISTRY_ADDR]
#
# writes OUT_DIR/tars/*.tar (OCI layouts), and with REGISTRY_ADDR
# (127.0.0.1:PORT) pushes them there and writes
#   OUT_DIR/test-images.yaml  for critest --test-images-file
#   OUT_DIR/hosts/            a containerd hosts dir (CRI registry config_path)
#                             that sends every registry critest names to
#                             REGISTRY_ADDR over plain HTTP, and nowhere else.
#
# Most of critest's image names are constants in its source
# (pkg/validate/consts.go: gcr.io/k8s-staging-cri-tools/…, registry.k8s.io/…,
# k8s.gcr.io/pause:3.9); only the default container image and the web server
# image can be set by the images file. The hosts dir keeps those names as they
# are (the tests compare repo tags with them) and serves them from the local
# registry under the same repository paths.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: $0 OUT_DIR [REGISTRY_ADDR]" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$1/tars"
out=$(cd "$1" && pwd)
registry=${2:-}
OCI="python3 $repo/images/linux/oci-image.py"
WASM_OCI=${WASM_OCI:-${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/dev-target}/release/wasm-oci}
# Debian's busybox package (the dynamically linked build) rather than
# busybox-static: the static build's shell runs applets in-process
# (FEATURE_SH_STANDALONE), so `sh -c ls` ignores a masked /bin/ls, unlike the
# busybox image critest expects ("/bin/sh: ls: Permission denied"). The .deb
# is fetched with apt and unpacked here, never installed (busybox-static
# stays the system's /bin/busybox).
BUSYBOX_CACHE=${CRITEST_CACHE:-/var/tmp/containerd-shim-wasmtime/critest-cache}/busybox
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CRI_TOOLS=k8s-staging-cri-tools   # repository prefix of gcr.io/k8s-staging-cri-tools/…
E2E=e2e-test-images               # of registry.k8s.io/e2e-test-images/…

log() { echo "==> critest images: $*" >&2; }

command -v gcc >/dev/null || { echo "images.sh: gcc is needed (apt-get install gcc libc6-dev)" >&2; exit 1; }
[ -x "$WASM_OCI" ] || { echo "images.sh: no wasm-oci at $WASM_OCI (set WASM_OCI)" >&2; exit 1; }
if [ ! -x "$BUSYBOX_CACHE/root/bin/busybox" ]; then
    log "fetching Debian's busybox package into $BUSYBOX_CACHE"
    rm -rf "$BUSYBOX_CACHE"
    mkdir -p "$BUSYBOX_CACHE"
    (cd "$BUSYBOX_CACHE" && { apt-get download -q busybox >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get download -q busybox >/dev/null 2>&1; }; }) ||
        { echo "images.sh: apt-get download busybox failed" >&2; exit 1; }
    dpkg-deb -x "$BUSYBOX_CACHE"/busybox_*.deb "$BUSYBOX_CACHE/root"
fi
BUSYBOX=$BUSYBOX_CACHE/root/bin/busybox

work=$out/work
rm -rf "$work"
mkdir -p "$work"

# Packs directory $1 into a reproducible gzip layer $2 (all files root-owned
# unless chowned in the directory; mtimes 0).
pack() {
    tar --create --file=- --directory="$1" --sort=name --numeric-owner --mtime=@0 . |
        $OCI layer "$2"
}

# Copies dynamically linked Debian binary $2 to $3 (default: the same path)
# in root $1, with the libraries ldd names at their paths.
add_dynamic() {
    local root=$1 bin=$2 dest=${3:-$2} lib
    install -D -m 755 "$bin" "$root$dest"
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        [ -e "$root$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
    done
}

# The base layer: busybox with every applet hard-linked into /bin, as the
# busybox image has them (with symlinks, a MaskedPaths entry such as /bin/ls
# would mask /bin/busybox itself, and so every applet), the busybox image's
# users and groups, and the directories it has.
base=$work/base
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,etc,home,root,tmp,var/run,var/www,var/spool/mail,proc,sys,dev}
chmod 1777 "$base/tmp"
chmod 700 "$base/root"
add_dynamic "$base" "$BUSYBOX" /bin/busybox
while read -r applet; do
    [ -e "$base/bin/$applet" ] || ln "$base/bin/busybox" "$base/bin/$applet"
done < <("$BUSYBOX" --list | grep -vx busybox)
# Applets critest runs that Debian's busybox lacks: util-linux's ipcs and
# procps' pgrep.
add_dynamic "$base" "$(command -v ipcs)"
add_dynamic "$base" "$(command -v pgrep)"
cat >"$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$base/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
EOF
pack "$base" "$work/base.tar.gz"

# A one-layer-on-top image: NAME (the tar's file name), then oci-image.py
# image options after the layer list.
image() { # NAME LAYER... -- OPTS...
    local name=$1 layers=()
    shift
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
        layers+=(--layer "$1")
        shift
    done
    [ "$#" -gt 0 ] && shift
    $OCI image --name "localhost/critest/$name:latest" --output "$out/tars/$name.tar" \
        "${layers[@]}" --env "$PATH_ENV" "$@" >/dev/null
}

# A layer holding one empty file /NAME, as cri-tools' images/image-test does.
marker_layer() {
    local d=$work/marker-$1
    mkdir -p "$d"
    : >"$d/$1"
    pack "$d" "$work/marker-$1.tar.gz"
    echo "$work/marker-$1.tar.gz"
}

log "building"
image busybox "$work/base.tar.gz" -- --cmd '["sh"]'

# nginx stand-in (see nginx.c) serving a page on $NGINX_PORT.
ng=$work/nginx
mkdir -p "$ng/usr/sbin" "$ng/usr/share/nginx/html"
gcc -static -Os -s -o "$ng/usr/sbin/nginx" "$here/nginx.c"
printf '<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1></body></html>\n' >"$ng/usr/share/nginx/html/index.html"
pack "$ng" "$work/nginx.tar.gz"
image nginx "$work/base.tar.gz" "$work/nginx.tar.gz" -- \
    --cmd '["nginx", "-g", "daemon off;"]' --expose 80/tcp --stop-signal SIGTERM --env NGINX_PORT=80
# images/hostnet-nginx: nginx listening on 12003 (critest's hostnet port).
image hostnet-nginx "$work/base.tar.gz" "$work/nginx.tar.gz" -- \
    --cmd '["nginx", "-g", "daemon off;"]' --expose 12003/tcp --stop-signal SIGTERM --env NGINX_PORT=12003

# registry.k8s.io/e2e-test-images/httpd: a web server on port 80 whose log
# names httpd (the multi-container specs look for it), as Apache's does.
hd=$work/httpd
mkdir -p "$hd/usr/local/bin" "$hd/usr/local/apache2/htdocs"
printf '<html><body><h1>It works!</h1></body></html>\n' >"$hd/usr/local/apache2/htdocs/index.html"
cat >"$hd/usr/local/bin/httpd-foreground" <<'EOF'
#!/bin/sh
# Apache's image runs this; here busybox httpd serves in the foreground.
echo "httpd: serving /usr/local/apache2/htdocs on port 80" >&2
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
EOF
chmod 755 "$hd/usr/local/bin/httpd-foreground"
pack "$hd" "$work/httpd.tar.gz"
image httpd "$work/base.tar.gz" "$work/httpd.tar.gz" -- \
    --cmd '["httpd-foreground"]' --expose 80/tcp --stop-signal SIGWINCH

# registry.k8s.io/e2e-test-images/nonewprivs: a setuid-root program that
# prints its effective uid (0 unless no_new_privs stops the setuid).
nn=$work/nonewprivs
mkdir -p "$nn/usr/local/bin"
gcc -static -Os -s -o "$nn/usr/local/bin/nnp" "$here/nnp.c"
chmod 4755 "$nn/usr/local/bin/nnp"
pack "$nn" "$work/nonewprivs.tar.gz"
image nonewprivs "$work/base.tar.gz" "$work/nonewprivs.tar.gz" -- --entrypoint '["/usr/local/bin/nnp"]'

# images/image-user: busybox with USER set.
image test-image-user-uid "$work/base.tar.gz" -- --cmd '["sh"]' --user 1002
image test-image-user-username "$work/base.tar.gz" -- --cmd '["sh"]' --user www-data
image test-image-user-uid-group "$work/base.tar.gz" -- --cmd '["sh"]' --user 1003:1004
image test-image-user-username-group "$work/base.tar.gz" -- --cmd '["sh"]' --user www-data:1004

# images/image-predefined-group: default-user (uid 1000, own group 1000) is
# also in group-defined-in-image (50000); USER 1000. As busybox's
# adduser/addgroup would write it.
pg=$work/predefined-group
mkdir -p "$pg/etc" "$pg/home/default-user"
{ cat "$base/etc/passwd"; echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh'; } >"$pg/etc/passwd"
{ cat "$base/etc/group"; echo 'default-user:x:1000:'; echo 'group-defined-in-image:x:50000:default-user'; } >"$pg/etc/group"
chown 1000:1000 "$pg/home/default-user"
pack "$pg" "$work/predefined-group.tar.gz"
image test-image-predefined-group "$work/base.tar.gz" "$work/predefined-group.tar.gz" -- --cmd '["sh"]' --user 1000

# images/image-test: busybox plus a file naming the image, so each is a
# different image; test-image-tags:1..3 are one image (file /same-image).
for n in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest; do
    image "$n" "$work/base.tar.gz" "$(marker_layer "$n")" -- --cmd '["sh"]'
done
image test-image-tags "$work/base.tar.gz" "$(marker_layer same-image)" -- --cmd '["sh"]'
image test-image-tag-test "$work/base.tar.gz" "$(marker_layer test)" -- --cmd '["sh"]'
image test-image-tag-all "$work/base.tar.gz" "$(marker_layer all)" -- --cmd '["sh"]'

# The pod sandbox image: images/pause, as tests/lib/images.sh builds it; and
# critest's registry.k8s.io/pause:3.9, the same program but not the same
# image (a spec expects that image to carry its two tags and no other).
bash "$repo/images/pause/build.sh" "$work/pause"
"$WASM_OCI" build --module "$work/pause" --platform linux/amd64 --file-name pause \
    --name localhost/critest/pause:latest -o "$out/tars/pause.tar" >/dev/null
"$WASM_OCI" build --module "$work/pause" --platform linux/amd64 --file-name pause \
    --env PAUSE_VERSION=3.9 --name localhost/critest/pause-3.9:latest -o "$out/tars/pause-3.9.tar" >/dev/null

if [ -z "$registry" ]; then
    tars=("$out"/tars/*.tar)
    log "built ${#tars[@]} image tars in $out/tars (no registry given: not pushed)"
    exit 0
fi

# tar -> repository:tag in the registry (critest's names without their host).
pushes=(
    "busybox $E2E/busybox:1.29-2"
    "nginx $E2E/nginx:1.14-2"
    "httpd $E2E/httpd:2.4.39-4"
    "nonewprivs $E2E/nonewprivs:1.3"
    "hostnet-nginx $CRI_TOOLS/hostnet-nginx-amd64:latest"
    "test-image-user-uid $CRI_TOOLS/test-image-user-uid:latest"
    "test-image-user-username $CRI_TOOLS/test-image-user-username:latest"
    "test-image-user-uid-group $CRI_TOOLS/test-image-user-uid-group:latest"
    "test-image-user-username-group $CRI_TOOLS/test-image-user-username-group:latest"
    "test-image-predefined-group $CRI_TOOLS/test-image-predefined-group:latest"
    "test-image-1 $CRI_TOOLS/test-image-1:latest"
    "test-image-2 $CRI_TOOLS/test-image-2:latest"
    "test-image-3 $CRI_TOOLS/test-image-3:latest"
    "test-image-latest $CRI_TOOLS/test-image-latest:latest"
    # critest pulls test-image-digest by upstream's manifest digest, which no
    # locally built image can have; pushed by tag all the same.
    "test-image-digest $CRI_TOOLS/test-image-digest:latest"
    "test-image-tags $CRI_TOOLS/test-image-tags:1"
    "test-image-tags $CRI_TOOLS/test-image-tags:2"
    "test-image-tags $CRI_TOOLS/test-image-tags:3"
    "test-image-tag-test $CRI_TOOLS/test-image-tag:test"
    "test-image-tag-all $CRI_TOOLS/test-image-tag:all"
    # registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 (one image from
    # "two registries"), and containerd's sandbox image localhost/test/pause.
    "pause-3.9 pause:3.9"
    "pause test/pause:latest"
)
log "pushing ${#pushes[@]} tags to $registry"
for p in "${pushes[@]}"; do
    read -r tar ref <<<"$p"
    "$WASM_OCI" push "$out/tars/$tar.tar" "$registry/$ref" --plain-http >/dev/null ||
        { echo "images.sh: push of $tar.tar to $registry/$ref failed" >&2; exit 1; }
done

# Every host critest names, and the registry's own address, resolve to the
# loopback registry only: `server` is the last fallback, so no request
# leaves the machine.
rm -rf "$out/hosts"
for h in "$registry" registry.k8s.io k8s.gcr.io gcr.io localhost; do
    mkdir -p "$out/hosts/$h"
    cat >"$out/hosts/$h/hosts.toml" <<EOF
server = "http://$registry"

[host."http://$registry"]
  capabilities = ["pull", "resolve"]
EOF
done

cat >"$out/test-images.yaml" <<EOF
# critest --test-images-file: the two images it lets us choose (busybox and
# the web server, port 80), served by the loopback registry.
defaultTestContainerImage: $registry/$E2E/busybox:1.29-2
webServerTestImage: $registry/$E2E/nginx:1.14-2
EOF
log "pushed; images file $out/test-images.yaml, hosts dir $out/hosts"
