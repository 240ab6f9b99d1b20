#!/usr/bin/env bash
# The CPU cost of a supervisor, in instructions (valgrind --tool=callgrind: the same count
# whatever else the machine does): `bash bench/supervisor-count.sh [BINARY...]`.
#
# For each binary (default: the release build), on a fresh spool in /tmp with a queue of one
# slot: `run` of job A (`sleep 1`) under callgrind, which follows the supervisor it forks;
# job B (`true`) enqueued behind it, outside callgrind; then both waited for. A's supervisor
# records A's end, hands the slot on, takes B over (no fork) and runs it to its end, so its
# count covers one job's end, one hand-off and one whole job. Only the supervisor's own life
# is counted (`--toggle-collect` on `Supervisor.runDetached`: a forked child's count would
# otherwise start at its parent's start). A few thousand instructions move between runs with
# how often the supervisor's poll wakes up. See bench/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
command -v jq >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; }
(($# > 0)) || set -- "$REPO/.build-release/release/clawflow"
WORK=$(mktemp -d /tmp/clawflow-supcount.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
total() { sed -n 's/^summary: //p' "$1"; }
for bin in "$@"; do
    [[ -x "$bin" ]] || { echo "bench/supervisor-count: no binary at $bin" >&2; exit 1; }
    dir="$WORK/$(basename "$bin").$RANDOM"
    mkdir -p "$dir"
    strip --strip-debug -o "$dir/clawflow" "$bin" # valgrind 3.19 cannot read the toolchain's DWARF 5
    spool="$dir/spool"
    "$dir/clawflow" --spool "$spool" queue set one --slots 1 >/dev/null
    (cd "$dir" && env -i PATH=/usr/bin:/bin HOME=/nonexistent valgrind --tool=callgrind --toggle-collect='*Supervisor*runDetached*' --callgrind-out-file="$dir/cg.%p" \
        ./clawflow --spool "$spool" run --queue one --owner a -- sleep 1 >/dev/null 2>"$dir/valgrind.log")
    "$dir/clawflow" --spool "$spool" run --queue one --owner b -- true >/dev/null
    mapfile -t flows < <("$dir/clawflow" --spool "$spool" flows list --json | jq -r '.flows[].flowId')
    "$dir/clawflow" --spool "$spool" wait --timeout 120s "${flows[@]}" >/dev/null || { echo "bench/supervisor-count: a job failed ($bin)" >&2; exit 1; }
    for _ in $(seq 50); do (($(ls "$dir"/cg.* | wc -l) >= 2)) && break; sleep 0.2; done
    count=0
    for f in "$dir"/cg.*; do c=$(total "$f"); ((c > count)) && count=$c; done
    ((count > 0)) || { echo "bench/supervisor-count: callgrind counted nothing in the supervisor ($bin)" >&2; exit 1; }
    printf '%s: the supervisor, from its fork to its exit (A'"'"'s end, the hand-off, all of B): %s instructions\n' "$bin" "$count"
done
