#!/usr/bin/env bash
# Installs containerd-shim-wasmtime-v1 on a node and registers the CRI runtime
# handler `wasmtime` (runtime_type io.containerd.wasmtime.v1) with containerd.
# Safe to run again: nothing is duplicated, and nothing changes (no restart)
# when the node is already set up.
#
#   install.sh [options]
#
#   --host-root DIR       where the host's / is mounted (default $HOST_ROOT or /)
#   --shim FILE           the shim binary to install (default: next to this
#                         script, or $SHIM_BINARY)
#   --bin-dir DIR         host directory on containerd's PATH (default /usr/local/bin)
#   --config FILE         host path of containerd's config (default /etc/containerd/config.toml)
#   --config-version N    2 (containerd 1.6/1.7), 3 (2.0-2.2) or 4 (2.3 and later);
#                         only needed when the config file is missing/empty and
#                         containerd cannot be run (else the version its
#                         `containerd config default` writes is used)
#   --handler NAME        CRI handler name, the RuntimeClass `handler` (default wasmtime)
#   --mode auto|inplace|dropin
#                         auto (default): a version 3 or 4 config (containerd
#                         2.x) that imports a directory gets a drop-in file
#                         there; anything else is edited in place (containerd
#                         1.x would let a drop-in replace the whole CRI
#                         section). dropin insists on a drop-in (version 3 or 4
#                         with imports only).
#   --no-restart          do not restart containerd (it must be restarted before
#                         the handler works)
#   --restart-cmd CMD     restart with CMD instead of systemctl (via nsenter into
#                         PID 1's namespaces when --host-root is not /)
#   --label-node          label the node wasmtime.containerd.io/enabled=true when
#                         done (in a pod: NODE_NAME, service account with patch
#                         on nodes)
#   --skip-runc-check     do not insist on runc being installed on the host
#
# When the CRI section lists no runtimes (Debian's packaged config), the
# handler's block also writes out containerd's built-in runc runtime:
# containerd 1.x would otherwise drop it, leaving default_runtime_name = "runc"
# without a runtime and the CRI plugin unloaded. After the restart, `ctr
# plugins ls` on the host must show the CRI plugin ok (CRI_WAIT seconds,
# default 30, for containerd to answer); if this edit broke it, the config is
# put back and containerd restarted again. A re-run that changes nothing
# checks the CRI plugin too.
#
# On containerd 2.x (config versions 3 and 4) it also sets the CRI images
# plugin's use_local_image_pull = true: containerd 2.x's default pull path
# fetches a wasi/wasm image the kubelet pulls but does not unpack it.
#
# Config versions 1, 2, 3 and 4 are known (4: containerd 2.3 and later, the
# CRI keys as in 3); a later one is refused before anything is changed.
#
# Exit status: 0 done (or nothing to do), 1 error, 2 usage error, 3 the handler
# name is already taken by another runtime.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SHIM_BINARY=${SHIM_BINARY:-$HERE/$SHIM_NAME}
CONFIG_VERSION=${CONFIG_VERSION:-}
MODE=auto
RESTART=1
LABEL=0
RUNC_CHECK=1

while [ "$#" -gt 0 ]; do
    case $1 in
        --host-root) HOST_ROOT=${2:?}; shift ;;
        --shim) SHIM_BINARY=${2:?}; shift ;;
        --bin-dir) BIN_DIR=${2:?}; shift ;;
        --config) CONTAINERD_CONFIG=${2:?}; shift ;;
        --config-version) CONFIG_VERSION=${2:?}; shift ;;
        --handler) HANDLER=${2:?}; shift ;;
        --mode) MODE=${2:?}; shift ;;
        --no-restart) RESTART=0 ;;
        --restart-cmd) RESTART_CMD=${2:?}; shift ;;
        --label-node) LABEL=1 ;;
        --skip-runc-check) RUNC_CHECK=0 ;;
        -h | --help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
    shift
done
check_common_args
case $MODE in auto | inplace | dropin) ;; *) die "--mode must be auto, inplace or dropin" 2 ;; esac
case $CONFIG_VERSION in "" | 1 | 2 | 3 | 4) ;; *) die "--config-version must be 2, 3 or 4 (1 for a version 1 config)" 2 ;; esac
[ -f "$SHIM_BINARY" ] || die "shim binary not found: $SHIM_BINARY (--shim)"

if command -v flock >/dev/null 2>&1; then
    lockdir=$(hostpath /run)
    [ -d "$lockdir" ] || lockdir=${TMPDIR:-/tmp}
    exec 9>"$lockdir/wasmtime-node-installer.lock"
    flock 9
fi

# --- runc: pod sandboxes and Linux sidecars run under it -------------------
if [ "$RUNC_CHECK" = 1 ]; then
    found=""
    for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        if [ -x "$(hostpath "$d/runc")" ]; then found="$d/runc"; break; fi
    done
    [ -n "$found" ] || die "runc is not installed on the host (looked in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin); the shim runs pod sandboxes and Linux containers with it (--skip-runc-check to install anyway)"
    log "runc: $found"
fi

# --- containerd's config version: read first, so that one this script does
# not know stops it before anything is changed --------------------------------
main=$(hostpath "$CONTAINERD_CONFIG")
# A file of comments and blank lines only counts as empty.
needs_version=0
if [ -s "$main" ] && ! grep -qvE '^[[:space:]]*(#.*)?$' "$main"; then
    needs_version=1
fi
if [ -s "$main" ] && [ "$needs_version" = 0 ]; then
    version=$(config_version "$main")
    if [ -n "$CONFIG_VERSION" ] && [ "$CONFIG_VERSION" != "$version" ]; then
        die "$CONTAINERD_CONFIG is version $version, not $CONFIG_VERSION (--config-version)"
    fi
    [ "$version" != 1 ] || warn "$CONTAINERD_CONFIG has no 'version' (a version 1 config, containerd 1.x only): using [plugins.cri...]; consider 'containerd config migrate'"
else
    version=$CONFIG_VERSION
    if [ -z "$version" ]; then
        # The version the host's containerd writes itself; else by its major.
        version=$(host_default_config_version)
        case $version in
            2 | 3 | 4) ;;
            *)
                major=$(host_containerd_major)
                case $major in
                    1) version=2 ;;
                    2) version=3 ;;
                    *) die "$CONTAINERD_CONFIG is missing or empty and the host's containerd version is unknown: pass --config-version 2 (containerd 1.6/1.7), 3 (2.0-2.2) or 4 (2.3 and later)" ;;
                esac
                ;;
        esac
    fi
    log "config: $CONTAINERD_CONFIG has no settings; writing a version $version config (containerd's defaults plus the handler)"
    needs_version=1
fi
# Plain assignments: set -e ends the installer on a version it does not know
# (cri_plugin_key says which, once).
cri_key=$(cri_plugin_key "$version")
key=$(handler_key "$version")
header=$(handler_header "$version")
disabled=""
[ ! -f "$main" ] || disabled=$(toml top "$main" -v name=disabled_plugins)
case $disabled in
    *\"cri\"* | *\'cri\'* | *io.containerd.grpc.v1.cri*)
        warn "$CONTAINERD_CONFIG disables the CRI plugin (disabled_plugins): Kubernetes cannot use this containerd, nor the handler, until it is enabled" ;;
esac
log "config: version $version, handler table $header"

# --- the binary ---------------------------------------------------------------
dest_dir=$(hostpath "$BIN_DIR")
dest="$dest_dir/$SHIM_NAME"
mkdir -p "$dest_dir"
# Does it run on this host (libc, architecture)? HOST_PATH is as the host sees it.
runs_on_host() { # HOST_PATH
    local out rc=0
    out=$(host_run "$1" --version 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        log "binary: runs on the host: $(printf '%s' "$out" | tr -s '\n ' ' ')"
    elif [ "$rc" = 127 ] && [ ! -e "$(hostpath /bin/sh)" ]; then
        log "binary: cannot run programs in $HOST_ROOT; not checked"
    else
        warn "$SHIM_NAME --version failed on the host (exit $rc): $out"
        return 1
    fi
}
if [ -f "$dest" ] && cmp -s "$SHIM_BINARY" "$dest"; then
    log "binary: $BIN_DIR/$SHIM_NAME is up to date"
    runs_on_host "$BIN_DIR/$SHIM_NAME" || die "the installed $BIN_DIR/$SHIM_NAME --version failed on the host"
else
    # Checked under a temporary name, then renamed into place: a new inode,
    # so running shims keep their old file.
    tmp=$(mktemp "$dest_dir/.$SHIM_NAME.XXXXXX")
    cp "$SHIM_BINARY" "$tmp"
    chmod 0755 "$tmp"
    if ! runs_on_host "$BIN_DIR/$(basename "$tmp")"; then
        rm -f "$tmp"
        die "the new $SHIM_NAME --version failed on the host (built for another libc or architecture?); nothing was changed"
    fi
    mv -f "$tmp" "$dest"
    log "binary: installed $BIN_DIR/$SHIM_NAME"
fi

# --- containerd's config --------------------------------------------------------
mkdir -p "$(dirname "$main")"
files=()
[ -f "$main" ] && files+=("$CONTAINERD_CONFIG")
if [ -s "$main" ]; then
    while IFS= read -r f; do files+=("$f"); done < <(imported_files "$main" "$version")
fi

# Where is the handler now, if anywhere?
ours=""        # file holding our marker block
ours_dropin="" # our drop-in file
others=()      # file:line of handler tables not written by us
for f in "${files[@]}"; do
    hf=$(hostpath "$f")
    if [ "$f" != "$CONTAINERD_CONFIG" ] && [ "$(head -n 1 "$hf")" = "$MARK_BEGIN" ]; then
        ours_dropin=$f # a whole file of ours
        continue
    fi
    has_our_block "$hf" && ours=$f
    body=$(strip_our_blocks "$hf")
    while IFS= read -r line; do
        [ -n "$line" ] && others+=("$f:$line")
    done < <(tables_under <(printf '%s\n' "$body") "$key")
    while IFS= read -r line; do
        [ -n "$line" ] && others+=("$f:${line%%:*} (dotted key or inline table)")
    done < <(other_handler_forms <(printf '%s\n' "$body"))
done

changed=0
if [ "${#others[@]}" -gt 0 ]; then
    # Configured by someone else. Fine if it is our runtime; never edit it.
    first=${others[0]%%:*}
    current=$(toml value "$(hostpath "$first")" -v table="$key" -v key=runtime_type)
    if [ "$current" = "$RUNTIME_TYPE" ] && [ -z "$ours" ] && [ -z "$ours_dropin" ]; then
        log "config: handler '$HANDLER' is already configured with runtime_type $RUNTIME_TYPE in $first (not by this installer); leaving it"
    elif [ -n "$ours" ] || [ -n "$ours_dropin" ]; then
        die "handler '$HANDLER' is defined twice: by this installer in ${ours:-$ours_dropin} and at ${others[*]}; remove one (uninstall.sh removes ours)"
    else
        die "handler '$HANDLER' is already taken at ${others[*]} (runtime_type '${current:-?}'); remove it, or pick another name with --handler (and the same RuntimeClass handler)" 3
    fi
else
    # Decide where our block belongs.
    target="" dropin=""
    if [ "$version" -ge 3 ] && [ "$MODE" != inplace ]; then
        # The first imported directory glob: DIR/*SUFFIX.
        cfgdir=$(dirname "$CONTAINERD_CONFIG")
        if [ -s "$main" ]; then
            while IFS= read -r pattern; do
                case $pattern in /*) ;; *) pattern="$cfgdir/$pattern" ;; esac
                base=${pattern##*/} dir=${pattern%/*}
                if [[ $base == "*"* && ${base#\*} != *[*?[]* && $dir != *[*?[]* ]]; then
                    dropin="$dir/wasmtime${base#\*}"
                    [ "$dropin" != "$dir/wasmtime" ] || dropin="$dir/wasmtime.toml"
                    break
                fi
            done < <(toml imports "$main")
        fi
        if [ -z "$dropin" ] && [ "$MODE" = dropin ]; then
            die "--mode dropin: $CONTAINERD_CONFIG imports no directory (add imports = [\"$cfgdir/conf.d/*.toml\"] before its first table, or use --mode inplace)"
        fi
    elif [ "$MODE" = dropin ]; then
        die "--mode dropin needs a version 3 or 4 config (containerd 2.x): containerd 1.x replaces a plugin's whole section with an imported file's"
    fi

    if [ -n "$dropin" ]; then
        target=$dropin
    else
        # In place, in the last loaded file that configures the CRI plugin
        # (containerd 1.x keeps only the last file's section), else the main file.
        target=$CONTAINERD_CONFIG
        for f in "${files[@]}"; do
            [ "$f" != "$ours_dropin" ] || continue
            [ -z "$(tables_under "$(hostpath "$f")" "$cri_key")" ] || target=$f
        done
    fi

    if [ -n "$ours_dropin" ] && [ "$ours_dropin" != "$target" ]; then
        die "this installer's drop-in $ours_dropin is not where it would go now ($target); run uninstall.sh first"
    fi
    if [ -n "$ours" ] && [ "$ours" != "$target" ]; then
        die "this installer's block in $ours is not where it would go now ($target); run uninstall.sh first"
    fi

    new=$(mktemp)
    body=$(mktemp)
    trap 'rm -f "$new" "$body"' EXIT
    htarget=$(hostpath "$target")

    # containerd 1.x (config version 1/2) replaces its built-in runtimes
    # (runc) with the ones the CRI section lists: when it lists none, our
    # handler table alone would leave default_runtime_name without a runtime.
    # containerd 2.x merges the handler into its built-in ones (checked with
    # 2.4.2), so a version 3 or 4 config needs nothing more.
    with_builtin=0
    if [ -z "$dropin" ] && [ "$version" -le 2 ]; then
        if [ -f "$htarget" ]; then strip_our_blocks "$htarget" >"$body"; else : >"$body"; fi
        default_rt=$(default_runtime_name "$body" "$version")
        if ! lists_runtimes "$body" "$version"; then
            if [ "$default_rt" = "$BUILTIN_RUNTIME" ]; then
                with_builtin=1
                log "config: $target lists no CRI runtimes: writing containerd's built-in '$BUILTIN_RUNTIME' (runtime_type $BUILTIN_RUNTIME_TYPE) next to the handler, as containerd 1.x would drop it"
            else
                warn "$target sets default_runtime_name = \"$default_rt\" but lists no runtimes: containerd's CRI plugin cannot load"
            fi
        fi
    fi
    # containerd 2.x: the CRI local pull, unless a file of the user's sets it
    # true already. containerd's own default config writes it false, so a
    # false is overridden (drop-in) or replaced (in place, kept for uninstall).
    local_pull=0
    if [ "$version" -ge 3 ]; then
        set_true=""
        for f in "${files[@]}"; do
            [ "$f" != "$ours_dropin" ] || continue
            v=$(toml value <(strip_our_blocks "$(hostpath "$f")") -v table="$IMAGES_KEY" -v key=use_local_image_pull)
            [ "$v" != true ] || set_true=$f
        done
        if [ -n "$set_true" ]; then
            log "config: $set_true already sets use_local_image_pull = true"
        else
            local_pull=1
            log "config: turning on the CRI local pull (use_local_image_pull = true), so that CRI pulls of wasi/wasm images are unpacked"
        fi
    fi
    if [ -n "$dropin" ]; then
        # The main config's version: containerd migrates an older import to
        # it (and logs that it did, at every start), never a newer one down.
        {
            echo "$MARK_BEGIN"
            echo "# containerd 2.x merges this file into $CONTAINERD_CONFIG (imports)."
            echo "version = $version"
            echo ""
            echo "$header"
            printf '  runtime_type = "%s"\n' "$RUNTIME_TYPE"
            if [ "$local_pull" = 1 ]; then
                echo ""
                local_pull_table
            fi
            echo "$MARK_END"
        } >"$new"
    else
        if [ "$needs_version" = 1 ] && [ "$target" = "$CONTAINERD_CONFIG" ]; then
            printf 'version = %s\n' "$version" >"$new"
            [ ! -f "$htarget" ] || strip_our_blocks "$htarget" >>"$new"
        elif [ -f "$htarget" ]; then
            strip_our_blocks "$htarget" >"$new"
        else
            : >"$new"
        fi
        [ ! -s "$new" ] || [ -z "$(tail -c 1 "$new")" ] || echo >>"$new"
        block=$(handler_block "$version" "$with_builtin")
        printf '\n%s\n' "$block" >>"$new"
        if [ "$local_pull" = 1 ]; then
            with_local_pull "$new" >"$body"
            cp "$body" "$new"
        fi
    fi

    before=$(mktemp)
    trap 'rm -f "$new" "$body" "$before"' EXIT
    if [ -f "$htarget" ] && cmp -s "$new" "$htarget"; then
        log "config: handler '$HANDLER' already registered in $target"
    else
        toml_valid "$new" || die "the new $target would not be valid TOML; nothing was changed"
        mkdir -p "$(dirname "$htarget")"
        existed=0
        if [ -f "$htarget" ]; then
            existed=1
            cp -p "$htarget" "$before"
            [ -e "$htarget$BACKUP_SUFFIX" ] || cp -p "$htarget" "$htarget$BACKUP_SUFFIX"
            replace_file "$htarget" "$new"
            log "config: registered handler '$HANDLER' in $target (original kept as $target$BACKUP_SUFFIX)"
        else
            cp "$new" "$htarget"
            chmod 0644 "$htarget"
            log "config: registered handler '$HANDLER' in $target (new file)"
        fi
        changed=1
    fi

    # Undoes the edit: the target as it was before, or gone if it was new.
    put_back() {
        if [ "$existed" = 1 ]; then replace_file "$htarget" "$before"; else rm -f "$htarget"; fi
    }
    # containerd's own reading of the result, when it can run here: a config
    # it rejects, or one that leaves the CRI default runtime undefined, is put
    # back as it was.
    if [ "$changed" = 1 ]; then
        rc=0
        dump=$(host_run containerd --config "$CONTAINERD_CONFIG" config dump 2>&1) || rc=$?
        if [ "$rc" = 0 ]; then
            # Here-strings, not pipes: under pipefail a `grep -q` or `head`
            # that stops reading early fails the writer with SIGPIPE (seen in CI).
            dflt=$(sed -n "s/^[[:space:]]*default_runtime_name[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" <<<"$dump" | sed -n 1p)
            if [ -n "$dflt" ] && ! grep -qF -e "runtimes.$dflt]" -e "runtimes.\"$dflt\"]" -e "runtimes.'$dflt']" <<<"$dump"; then
                put_back
                die "with the new config containerd would have no runtime '$dflt' for default_runtime_name, and its CRI plugin would not load; $target was put back as it was (does $CONTAINERD_CONFIG define [..containerd.runtimes.$dflt]?)"
            fi
            if [ "$local_pull" = 1 ] && ! grep -Eq "^[[:space:]]*use_local_image_pull[[:space:]]*=[[:space:]]*true" <<<"$dump"; then
                warn "containerd config dump does not show use_local_image_pull = true (another file sets it false?): the kubelet's pulls of wasi/wasm images will not be unpacked"
            fi
            if grep -Eq "runtimes\.[\"']?${HANDLER}[\"']?\]" <<<"$dump"; then
                log "config: containerd reads the handler from the new config (default runtime '${dflt:-?}' defined)"
            else
                warn "containerd config dump does not show the handler '$HANDLER'; check $CONTAINERD_CONFIG"
            fi
        elif [ "$rc" = 127 ]; then
            log "config: containerd cannot be run here; not checked with 'containerd config dump'"
        else
            put_back
            die "containerd rejects the new config, so $target was put back as it was: $(printf '%s' "$dump" | tail -n 3)"
        fi
    fi
fi

# --- restart, check the CRI plugin, label -------------------------------------------
address=$(containerd_address "${files[@]}")
if [ "$changed" = 0 ]; then
    log "restart: not needed (containerd's config is unchanged)"
    status=$(cri_plugin_status "$address" 0)
    cri_check "$status" "" ||
        die "containerd's CRI plugin is not ok (the config is as this installer left it):"$'\n'"$status"$'\n'"$(containerd_log_hint)"
elif [ "$RESTART" = 1 ]; then
    status_before=$(cri_plugin_status "$address" 0)
    restart_containerd
    status=$(cri_plugin_status "$address" "$CRI_WAIT")
    if ! cri_check "$status" "after the restart"; then
        hint=$(containerd_log_hint)
        if [ "$status_before" = ok ] && [ -n "${htarget:-}" ]; then
            # This edit broke it: put the old config back so the node keeps working.
            put_back
            warn "containerd's CRI plugin failed to load with the new config; putting $target back as it was and restarting again"
            restart_containerd
            again=$(cri_plugin_status "$address" "$CRI_WAIT")
            die "containerd's CRI plugin did not load with the handler added to $target (it was ok before); $target was put back and containerd restarted (CRI plugin now: ${again%%$'\n'*}):"$'\n'"$status"$'\n'"$hint"
        fi
        die "containerd's CRI plugin is not ok after the restart (before it: ${status_before%%$'\n'*}):"$'\n'"$status"$'\n'"$hint"
    fi
else
    log "restart: skipped (--no-restart); restart containerd before using the handler"
fi
if [ "$LABEL" = 1 ]; then
    if [ "$changed" = 1 ] && [ "$RESTART" = 0 ]; then
        warn "not labelling node ${NODE_NAME:-?}: containerd was not restarted"
    else
        patch_node_label true
        log "node: labelled ${NODE_NAME} $NODE_LABEL=true"
    fi
fi
log "done"
