#!/usr/bin/env bash
# Builds the chat stack's eight images exactly as deploy/local/up.sh does
# (into $CHAT_DIR/images) and pushes them to a registry, so that
#
#   CHAT_REGISTRY=REGISTRY deploy/local/up.sh
#
# can pull them instead of building:
#
#   deploy/local/push-images.sh REGISTRY        e.g. 127.0.0.1:5000
#
# pushes REGISTRY/chat/<name>:latest for session, chat, message, user,
# truncator, gateway (wasi/wasm) and mariadb, redis (linux/amd64) with
# `wasm-oci push` (the digests stay those of the tars). Plain HTTP for
# 127.0.0.1/localhost/[::1] registries, HTTPS otherwise;
# CHAT_REGISTRY_PLAIN_HTTP=true|false overrides. Credentials, if the
# registry wants them: WASM_OCI_USERNAME / WASM_OCI_PASSWORD.
# CHAT_WASM_OCI=prebuilt wasm-oci skips building it; the other settings are
# up.sh's (deploy/local/lib.sh). Needs root (debootstrap, as up.sh).
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 REGISTRY    (e.g. 127.0.0.1:5000)" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "error: $0 needs root (debootstrap, like up.sh)" >&2
    exit 1
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Set before lib.sh: its plain-HTTP default then follows this registry.
export CHAT_REGISTRY=$1
. "$here/lib.sh"

t_start=$SECONDS
chat_step() { chat_log "$* [$((SECONDS - t_start)) s]"; }

chat_step "installing missing packages"
chat_build_prereqs ui
chat_step "building the image tool"
chat_build_binaries wasm-oci
mkdir -p "$CHAT_DIR/images"
chat_build_images

push_args=()
[ "$CHAT_REGISTRY_PLAIN_HTTP" != true ] || push_args+=(--plain-http)
chat_step "pushing to $CHAT_REGISTRY (plain HTTP: $CHAT_REGISTRY_PLAIN_HTTP)"
for s in "${CHAT_LINUX_SERVICES[@]}" "${CHAT_WASM_SERVICES[@]}"; do
    ref=$(chat_image "$s")
    t0=$SECONDS
    if ! "$CHAT_WASM_OCI_PATH" push "$CHAT_DIR/images/$s.tar" "$ref" "${push_args[@]}" >"$CHAT_DIR/images/push-$s.log" 2>&1; then
        cat "$CHAT_DIR/images/push-$s.log" >&2
        echo "error: pushing $CHAT_DIR/images/$s.tar to $ref failed" >&2
        exit 1
    fi
    printf '  %-48s %s (%d s)\n' "$ref" "$(chat_platform "$s")" $((SECONDS - t0))
done
chat_step "pushed 8 images"
echo "start the stack from them with: CHAT_REGISTRY=$CHAT_REGISTRY $here/up.sh"
