#!/usr/bin/env bash
# Renders every kustomization under deploy/ offline and checks all deploy
# manifests structurally (tests/deploy/validate.py): every document has
# apiVersion, kind and metadata.name; the chat services run with
# runtimeClassName wasmtime, local images, probes, requests and limits; Wasm
# pods use tcpSocket/httpGet probes only, never exec; Services select pods and
# their ports; every env reference resolves; the RuntimeClass, the node
# installer's DaemonSet and RBAC, the kind config and the containerd snippets
# agree on handler `wasmtime` and the node label; the overlay of
# deploy/k8s/chat/registry-overlay.sh points every Wasm image at its registry
# and changes nothing else. Last, validate.py breaks copies of deploy/ in
# known ways and checks that each mistake is caught.
#
#   tests/deploy/render.sh
#
# Rendering uses `kubectl kustomize` (kustomize v3+, i.e. kubectl ≥ 1.21, or a
# standalone `kustomize build`) when installed; otherwise, or with
# RENDER_WITH=builtin, validate.py renders the subset of kustomize these
# files use (resources, namespace, generators from literals; no name hashes).
# Needs python3 with PyYAML. Prints "N passed, M failed"; exits 1 on failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
T=$(mktemp -d /tmp/wasmtime-render.XXXXXX)
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/     | /'; }

PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
    fail "python3 with PyYAML is available (apt-get install python3-yaml)"
    echo "$passed passed, $failed failed"
    exit 1
fi

# Which renderer? kubectl's embedded kustomize is v3+ from kubectl 1.21 on
# (older ones cannot take directories as resources).
renderer=builtin
if [ "${RENDER_WITH:-}" != builtin ]; then
    if command -v kubectl >/dev/null 2>&1 && kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[3-9]'; then
        renderer=kubectl
    elif command -v kustomize >/dev/null 2>&1; then
        renderer=kustomize
    fi
fi
case $renderer in
    kubectl) echo "rendering with kubectl kustomize ($(kubectl version --client 2>/dev/null | grep Kustomize))" ;;
    kustomize) echo "rendering with kustomize build ($(kustomize version 2>/dev/null))" ;;
    builtin) echo "rendering with validate.py's built-in subset of kustomize (no kubectl ≥ 1.21 or kustomize found)" ;;
esac

args=()
while IFS= read -r k; do
    dir=$(dirname "$k")
    out="$T/$(echo "$dir" | tr / _).yaml"
    rc=0
    case $renderer in
        kubectl) kubectl kustomize "$dir" >"$out" 2>"$T/err" || rc=$? ;;
        kustomize) kustomize build "$dir" >"$out" 2>"$T/err" || rc=$? ;;
        builtin) args+=(--render "$dir"); continue ;;
    esac
    if [ "$rc" = 0 ] && [ -s "$out" ]; then
        pass "$dir: renders ($renderer)"
        args+=(--rendered "$dir=$out")
    else
        fail "$dir: renders ($renderer)" "$(cat "$T/err")"
    fi
done < <(find deploy -name kustomization.yaml -not -path '*/node_modules/*' | LC_ALL=C sort)

# The chat app with its images from a registry: the overlay
# deploy/k8s/chat/registry-overlay.sh writes (a registry with a port and a
# path prefix, the harder case for image names), rendered and checked like
# the base plus: every Wasm container pulls from that registry.
render_overlay() { # DIR: sets rendered_args (empty on failure)
    rendered_args=()
    local out="$1.yaml" rc=0
    case $renderer in
        kubectl) kubectl kustomize "$1" >"$out" 2>"$T/err" || rc=$? ;;
        kustomize) kustomize build "$1" >"$out" 2>"$T/err" || rc=$? ;;
        builtin) rendered_args=(--render "$1"); return 0 ;;
    esac
    [ "$rc" = 0 ] && [ -s "$out" ] || return 1
    rendered_args=(--rendered "$1=$out")
}
REG=registry.example.com:5000/team
overlay="$T/registry-overlay"
if bash deploy/k8s/chat/registry-overlay.sh "$REG" "$overlay" >"$T/err" 2>&1 && render_overlay "$overlay"; then
    [ "$renderer" = builtin ] || pass "registry-overlay.sh $REG: the overlay renders ($renderer)"
    args+=("${rendered_args[@]}" --chat-overlay "$overlay=$REG")
else
    fail "registry-overlay.sh $REG: the overlay renders ($renderer)" "$(cat "$T/err")"
fi
# ... and an overlay that misses one image is caught.
broken="$T/registry-overlay-broken"
if bash deploy/k8s/chat/registry-overlay.sh "$REG" "$broken" >/dev/null 2>&1 &&
    sed -i 's|name: localhost/chat/message$|name: localhost/chat/mesage|' "$broken/kustomization.yaml" &&
    render_overlay "$broken" &&
    out=$("$PY" tests/deploy/validate.py "${rendered_args[@]}" --chat-overlay "$broken=$REG" 2>&1); then
    fail "an overlay that leaves localhost/chat/message in place is caught" "validate.py passed it"
elif grep -q "^FAIL .*message image $REG/chat/message:latest" <<<"$out"; then
    pass "an overlay that leaves localhost/chat/message in place is caught"
else
    fail "an overlay that leaves localhost/chat/message in place is caught" "$out"
fi
for bad in "not a registry" "Registry.example.com/Team" "host:port"; do
    if bash deploy/k8s/chat/registry-overlay.sh "$bad" "$T/bad" >/dev/null 2>&1; then
        fail "registry-overlay.sh rejects '$bad'"
    else
        pass "registry-overlay.sh rejects '$bad'"
    fi
done

# Manifests applied with kubectl apply -f (not part of a kustomization).
for f in deploy/k8s/runtimeclass.yaml deploy/kind/pods/*.yaml; do
    args+=(--manifest "$f")
done
for f in deploy/containerd/*.toml deploy/containerd/conf.d/*.toml; do
    args+=(--containerd-snippet "$f")
done
args+=(--kind-config deploy/kind/kind-config.yaml --dockerfile deploy/node-installer/Dockerfile)
# And the checks themselves: broken copies of deploy/ must fail them.
args+=(--selftest "$ROOT")

"$PY" tests/deploy/validate.py --passed "$passed" --failed "$failed" "${args[@]}"
