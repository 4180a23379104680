# shellcheck shell=bash
# What the scripts that build Go programs from the module proxy share.
# Source this file after setting GO_TOOLS_DIR.
#
#   go_build_env NAME   checks go is on PATH and points GOPATH, GOMODCACHE
#                       and GOCACHE under $GO_TOOLS_DIR (outside the clone,
#                       reused by every build); NAME prefixes messages
#   module_copy MODULE VERSION DEST
#                       a writable copy of MODULE@VERSION's source in DEST
#                       (module cache files are read-only), for modules
#                       go install refuses or cannot build as published

go_build_env() {
    GO_BUILD_NAME=$1
    command -v go >/dev/null || { echo "$GO_BUILD_NAME: go is not on PATH" >&2; exit 1; }
    export GOPATH=$GO_TOOLS_DIR/gopath
    export GOMODCACHE=$GO_TOOLS_DIR/modcache
    export GOCACHE=$GO_TOOLS_DIR/cache
    export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false -trimpath"
    mkdir -p "$GOPATH" "$GOMODCACHE" "$GOCACHE"
}

module_copy() {
    local src
    src=$(go mod download -json "$1@$2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -d "$src" ] || { echo "$GO_BUILD_NAME: no module dir for $1@$2" >&2; return 1; }
    rm -rf "$3"
    mkdir -p "$(dirname "$3")"
    cp -r "$src" "$3"
    chmod -R u+w "$3"
}
