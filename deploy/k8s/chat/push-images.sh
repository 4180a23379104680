#!/usr/bin/env bash
# Builds the six chat service images (build-images.sh) and pushes them to a
# registry your nodes can pull from, as REGISTRY/chat/<service>:TAG:
#
#   deploy/k8s/chat/push-images.sh REGISTRY [TAG]      TAG: latest
#   deploy/k8s/chat/registry-overlay.sh REGISTRY OUTDIR [TAG]
#   kubectl apply -k OUTDIR
#
# Pushes with `wasm-oci push` (wasi/wasm OCI images; the digests are those of
# the tars). Plain HTTP for 127.0.0.1/localhost/[::1] registries, HTTPS
# otherwise; CHAT_REGISTRY_PLAIN_HTTP=true|false overrides. Credentials:
# WASM_OCI_USERNAME / WASM_OCI_PASSWORD. The tars are written to
# CHAT_IMAGES_DIR (default /var/tmp/containerd-shim-wasmtime/k8s-chat);
# CHAT_WASM_OCI=prebuilt wasm-oci skips building it.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ -z "$1" ]; then
    echo "usage: $0 REGISTRY [TAG]    (e.g. 127.0.0.1:5000)" >&2
    exit 2
fi
registry=${1%/}
tag=${2:-latest}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${CHAT_IMAGES_DIR:-/var/tmp/containerd-shim-wasmtime/k8s-chat}
# Reject what the overlay would reject before spending minutes building.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
"$here/registry-overlay.sh" "$registry" "$check" "$tag" >/dev/null

plain=${CHAT_REGISTRY_PLAIN_HTTP:-}
if [ -z "$plain" ]; then
    plain=false
    host=${registry%%/*}
    case $host in \[::1\] | \[::1\]:*) plain=true ;; esac
    case ${host%:*} in localhost | 127.*) plain=true ;; esac
fi
args=()
[ "$plain" != true ] || args+=(--plain-http)

bash "$here/build-images.sh" "$out"
W=${CHAT_WASM_OCI:-${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/target}/release/wasm-oci}
echo "==> pushing to $registry (plain HTTP: $plain)"
for s in session chat message user truncator gateway; do
    ref="$registry/chat/$s:$tag"
    if ! "$W" push "$out/images/$s.tar" "$ref" "${args[@]}" >"$out/images/push-$s.log" 2>&1; then
        cat "$out/images/push-$s.log" >&2
        echo "error: pushing $out/images/$s.tar to $ref failed" >&2
        exit 1
    fi
    echo "  $ref"
done
echo "now: $here/registry-overlay.sh $registry OUTDIR $tag && kubectl apply -k OUTDIR"
