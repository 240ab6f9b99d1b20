#!/usr/bin/env bash
# bench/latcompare.sh OLD NEW [ROUNDS] [DROPS]: drop -> applied latency of two clawflow binaries'
# watchers, in alternating blocks (ROUNDS, default 3, of DROPS sequential new-flow drops each,
# default 200), each block on a fresh spool under /tmp, so that both see the same disk.
# Prints droplat's median and p99 per block. Example: the release binary of an older commit
# against the current one, to check that a change made single drops no slower.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OLD=$1 NEW=$2 ROUNDS=${3:-3} DROPS=${4:-200}
WORK=$(mktemp -d /tmp/clawflow-latcompare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cc -O2 -pthread -o "$WORK/droplat" "$HERE/droplat.c"
for ((round = 1; round <= ROUNDS; round++)); do
    for which in old new; do
        bin=$OLD
        [[ $which == new ]] && bin=$NEW
        spool="$WORK/$which-$round"
        "$bin" --spool "$spool" init >/dev/null
        "$bin" --spool "$spool" watch 2>/dev/null &
        watcher=$!
        sleep 0.5
        "$WORK/droplat" clawflow "$spool" "$DROPS" | grep -v '^RESULT' | sed "s/^/$which, round $round: /"
        kill "$watcher"
        wait "$watcher" 2>/dev/null || true
    done
done
