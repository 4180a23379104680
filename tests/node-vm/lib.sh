# Shared by the node-VM test scripts (source it after setting VM=vm.sh's path):
# a VM directory that is powered off and removed on exit (NODE_VM_KEEP=1 keeps
# it up), PASS/FAIL counting, guest checks and timing helpers.

# vm_dir PREFIX: sets DIR to a new /tmp/PREFIX.XXXXXX and arms the exit trap.
vm_dir() {
    DIR=$(mktemp -d "/tmp/$1.XXXXXX")
    trap _vm_finish EXIT
}
_vm_finish() {
    if [ "${NODE_VM_KEEP:-0}" = 1 ]; then
        echo "VM left running: $VM run $DIR -- CMD; $VM down $DIR"
    else
        "$VM" down "$DIR" || true
        rm -rf "$DIR"
    fi
}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/     | /'; }
# guest_is NAME EXPECTED CMD...: CMD's stdout in the guest equals EXPECTED.
guest_is() {
    local name=$1 want=$2 got
    shift 2
    got=$("$VM" run "$DIR" -- "$@" 2>&1)
    if [ "$got" = "$want" ]; then pass "$name"; else fail "$name" "got: $got"; fi
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
