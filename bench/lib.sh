# shellcheck shell=bash
# Measurement helpers shared by the bench/ scripts. Source this file.
#
#   stats                   µs values on stdin, one a line -> "median p90 min max" in ms
#   ratio A B               A/B with two decimals ("nan" when B is 0)
#   status_kib PID FIELD    a /proc/PID/status field in KiB (VmRSS, VmHWM, ...)
#   rollup_kib PID FIELD    a /proc/PID/smaps_rollup field in KiB (Pss, Rss, ...)
#   sum_kib FIELD PID...    FIELD summed over PIDs (VmRSS from status, else smaps_rollup)
#   cpu_ticks PID...        utime+stime summed, in clock ticks
#   unmount_under DIR       lazily unmounts everything mounted below DIR, deepest first

stats() {
    sort -n | awk '{a[NR] = $1}
        END {
            n = NR
            if (n == 0) { print "nan nan nan nan"; exit }
            med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            i = int(0.9 * n); if (i < 0.9 * n) i++; if (i < 1) i = 1
            printf "%.1f %.1f %.1f %.1f\n", med / 1000, a[i] / 1000, a[1] / 1000, a[n] / 1000
        }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
rollup_kib() { awk -v k="$2:" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "/proc/$1/smaps_rollup" 2>/dev/null; }

sum_kib() {
    local field=$1 p total=0 v
    shift
    for p in "$@"; do
        if [ "$field" = VmRSS ]; then v=$(status_kib "$p" VmRSS); else v=$(rollup_kib "$p" "$field"); fi
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

cpu_ticks() {
    local p s total=0
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        # shellcheck disable=SC2086
        set -- $s
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

unmount_under() {
    local m
    for m in $(awk -v d="$1" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null
    done
}
