#!/usr/bin/env bash
# clawflow run beside nq: `bash bench/run-vs-nq.sh` (run.sh calls it). See bench/README.md.
#
# In one run, on two filesystems in turn — a fresh ext4 made for the run (scratchfs.sh says
# why; skipped when it cannot be mounted) and the machine's own disk (/tmp):
#   1. nq: `nq true` 500 times (NQDIR a fresh directory), then `nq -w` until all are done;
#      then task-spooler: `tsp true` 500 times (a fresh socket), then `tsp -w`;
#   2. the floor: runfloor.c, the least durable work a `run` has to do (spec §4 and §6, in C,
#      no clawflow code), 500 times, waited for until every supervisor recorded its end; then
#      `runfloor -l`, the same durable work as clawflow's own layout (its queue entry, indexes
#      and locks besides the flow: spool-layout.md), the same way;
#   3. clawflow: `clawflow run --owner b-<i> -- true` 500 times, then poll until every task
#      is final; and the latency from each `run` returning to its task's startedAt.
# Prints per filesystem the three wall times, the floor's and clawflow's ratio to nq (target:
# clawflow within 1.5x of nq) and the median run -> running latency; then the start-up cost of
# a Swift hello world, of clawflow's own start and argument parsing, and of the parse floor's
# (the floor of a run that keeps swift-argument-parser), for scale. Nothing asserts a timing.
#
# Environment knobs: BENCH_RUN_N (500), BENCH_SKIP_BUILD=1 (use .build-release and .build-floor
# as built).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
N=${BENCH_RUN_N:-500}
fail() { printf 'bench/run-vs-nq: FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v nq >/dev/null || ! command -v tsp >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nq task-spooler >/dev/null || fail "nq or task-spooler is not installed (apt-get install nq task-spooler)"
fi
BIN="${BENCH_BIN:-$REPO/.build-release/release/clawflow}"
PARSEFLOOR="$REPO/.build-floor/release/parsefloor"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    make -s -C "$REPO" release >/dev/null 2>&1 || fail "release build"
    make -s -C "$REPO" parsefloor >/dev/null 2>&1 || fail "make parsefloor"
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"

WORK=$(mktemp -d /tmp/clawflow-runbench.XXXXXX)
# shellcheck source=scratchfs.sh
. "$HERE/scratchfs.sh"
RUNFLOOR="$WORK/runfloor"
cc -O2 -pthread -o "$RUNFLOOR" "$HERE/runfloor.c" || fail "cc runfloor.c"
# Deleted before returning (a few thousand files): run.sh measures the watcher next, and a
# deletion running in the background would load the disk under it.
cleanup() { scratch_fs_unmount "$WORK/ext4"; rm -rf "$WORK"; }
trap cleanup EXIT

now() { echo "${EPOCHREALTIME/./}"; }   # microseconds (outside the timed loops only)

# time_runfloor DIR [-l]: runfloor.c (with -l, clawflow's layout) N times in DIR, waited for
# until every flow's events.jsonl has its three records (350 + 2 x 200 bytes) and, with -l,
# every supervisor has removed its queue entry; prints the seconds.
time_runfloor() {
    local dir=$1 flag=${2:-} t0 t1 i made
    mkdir -p "$dir/tmp" "$dir/flows" "$dir/owners"
    [[ -z $flag ]] || mkdir -p "$dir/index/tasks" "$dir/index/owners" "$dir/queues/default/running" "$dir/queues/default/waiting"
    t0=$(now)
    for ((i = 0; i < N; i++)); do "$RUNFLOOR" ${flag:+"$flag"} "$dir" "b-$i" true >>"$WORK/floor.out"; done
    while [[ -n $(find "$dir/flows" -name events.jsonl -size -750c -print -quit) || (-n $flag && -n $(ls -A "$dir/queues/default/running")) ]]; do sleep 0.02; done
    t1=$(now)
    made=$(find "$dir/flows" -mindepth 1 -maxdepth 1 | wc -l)
    [[ $made == "$N" ]] || fail "runfloor $flag: $made flows, expected $N"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'
}

# measure VENUE: the five loops on one filesystem, one after another; sets NQ_S, TSP_S,
# FLOOR_S, LFLOOR_S, CF_S, LAUNCH_S and MED_MS.
measure() {
    local venue=$1 i t0 t1 left

    # ---- nq
    export NQDIR="$venue/nq"
    mkdir -p "$NQDIR"
    t0=$(now)
    for ((i = 0; i < N; i++)); do nq -q true >/dev/null; done
    nq -w >/dev/null 2>&1 || true
    t1=$(now)
    NQ_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    done_nq=$(ls "$NQDIR" | grep -c '^,' || true)
    [[ $done_nq == "$N" ]] || fail "nq: $done_nq job files, expected $N"

    # ---- task-spooler: a server (started by the first tsp) queues the jobs and runs them one
    # at a time, each with its output in a file under TMPDIR; `tsp -w` waits for the last one.
    # Nothing is made durable, so it is context, not a target.
    export TS_SOCKET="$venue/tsp.socket" TMPDIR="$venue/tsp"
    mkdir -p "$TMPDIR"
    t0=$(now)
    for ((i = 0; i < N; i++)); do tsp true >/dev/null; done
    tsp -w >/dev/null 2>&1 || true
    t1=$(now)
    TSP_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    done_tsp=$(tsp -l | grep -c ' finished ' || true)
    tsp -K >/dev/null 2>&1 || true
    unset TS_SOCKET TMPDIR
    [[ $done_tsp == "$N" ]] || fail "tsp: $done_tsp jobs finished, expected $N"

    # ---- the C floor (runfloor.c): the least durable work of a run, no clawflow code; then
    # the same with clawflow's layout (runfloor -l).
    FLOOR_S=$(time_runfloor "$venue/floor")
    LFLOOR_S=$(time_runfloor "$venue/lfloor" -l)

    # ---- clawflow run
    local spool="$venue/spool"
    "$BIN" --spool "$spool" init >/dev/null
    : >"$WORK/started"
    : >"$WORK/returned-at"
    # The loop does what nq's does — one program start with its output going to a file — and
    # only builtins besides: no command substitution (each would fork the shell, about 0.7 ms
    # here, and charge it to clawflow). `run` prints "<flowId> <taskId>"; the moment it
    # returned goes, unforked, to a second file, line for line.
    t0=$(now)
    for ((i = 0; i < N; i++)); do
        "$BIN" --spool "$spool" run --owner "b-$i" -- true >>"$WORK/started"
        printf '%s\n' "$EPOCHREALTIME" >>"$WORK/returned-at"
    done
    local t_launched
    t_launched=$(now)
    paste -d' ' <(cut -d' ' -f2 "$WORK/started") <(tr -d . <"$WORK/returned-at") >"$WORK/returned"
    while :; do
        left=$("$BIN" --spool "$spool" tasks list --json | jq '[.tasks[] | select(.status == "queued" or .status == "running")] | length')
        [[ $left == 0 ]] && break
        sleep 0.05
    done
    t1=$(now)
    CF_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    LAUNCH_S=$(awk -v a="$t0" -v b="$t_launched" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    "$BIN" --spool "$spool" tasks list --json >"$WORK/tasks.json"
    succeeded=$(jq '[.tasks[] | select(.status == "succeeded")] | length' "$WORK/tasks.json")
    [[ $succeeded == "$N" ]] || fail "clawflow: $succeeded of $N tasks succeeded"
    # run returned (microseconds, local clock) -> startedAt (milliseconds, UTC ISO-8601).
    MED_MS=$(jq -r '.tasks[] | "\(.taskId) \(.startedAt)"' "$WORK/tasks.json" | python3 -c '
import sys, datetime
returned = dict(line.split() for line in open(sys.argv[1]))
lat = []
for line in sys.stdin:
    task, started = line.split()
    t = datetime.datetime.strptime(started, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    lat.append(t * 1000 - int(returned[task]) / 1000)
lat.sort()
print("%.1f" % lat[len(lat) // 2])
' "$WORK/returned")
}

# venue_line LABEL: the summary line of the last `measure`.
venue_line() {
    local ratio floor lfloor verdict verdict2 tsp
    ratio=$(awk -v a="$CF_S" -v b="$NQ_S" 'BEGIN { printf "%.2f", a / b }')
    floor=$(awk -v a="$FLOOR_S" -v b="$NQ_S" 'BEGIN { printf "%.2f", a / b }')
    lfloor=$(awk -v a="$LFLOOR_S" -v b="$NQ_S" 'BEGIN { printf "%.2f", a / b }')
    tsp=$(awk -v a="$TSP_S" -v b="$NQ_S" 'BEGIN { printf "%.2f", a / b }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r + 0 <= 1.5 ? "meets" : "MISSES") }')
    verdict2=$(awk -v r="$ratio" 'BEGIN { print (r + 0 <= 2 ? "meets" : "MISSES") }')
    echo "$1: nq $NQ_S s; task-spooler $TSP_S s = ${tsp}x nq; the least durable work in C (runfloor.c) $FLOOR_S s = ${floor}x nq; the same work as clawflow's layout in C (runfloor -l) $LFLOOR_S s = ${lfloor}x nq; clawflow run $CF_S s (all $N launched after $LAUNCH_S s) = ${ratio}x nq (target <= 1.5x: $verdict; issue 20's <= 2x: $verdict2); median run returned -> task running: $MED_MS ms"
}

LINES=()
declare -A VENUE_FLOOR VENUE_LFLOOR VENUE_NQ VENUE_CF
# keep LABEL: the last `measure`'s floors, nq and clawflow seconds under LABEL.
keep() { VENUE_FLOOR[$1]=$FLOOR_S; VENUE_LFLOOR[$1]=$LFLOOR_S; VENUE_NQ[$1]=$NQ_S; VENUE_CF[$1]=$CF_S; }
# 1. a fresh ext4 made for this run (scratchfs.sh says why), 2. the machine's own /tmp.
if scratch_fs_mount "$WORK/ext4"; then
    measure "$WORK/ext4"
    LINES+=("$(venue_line "fresh ext4 (mkfs defaults, journal), loop-mounted")")
    keep "fresh-ext4"
    scratch_fs_unmount "$WORK/ext4"
fi
mkdir -p "$WORK/tmp"
measure "$WORK/tmp"
LINES+=("$(venue_line "/tmp, the machine's own disk ($(fs_desc "$WORK"))")")
keep "/tmp"

# ---- context: a program's start alone ---------------------------------------------------
# hello.swift, built as clawflow's release binary is (-O, static Swift runtime), and /bin/true
# (C), each started N times by the same kind of loop: what a Swift command costs here before
# it does anything, beyond what runfloor's own start costs. The floor plus that difference
# bounds from below what a Swift implementation of `run` can reach on /tmp.
SWIFT_LINE="Swift start-up floor: not measured (swiftc missing or failed)"
if swiftc -O -static-stdlib "$HERE/hello.swift" -o "$WORK/hello" >/dev/null 2>&1; then
    t0=$(now)
    for ((i = 0; i < N; i++)); do "$WORK/hello" >>"$WORK/hello.out"; done
    t1=$(now)
    for ((i = 0; i < N; i++)); do /bin/true >>"$WORK/true.out"; done
    t2=$(now)
    HELLO_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    TRUE_S=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    SWIFT_FLOOR=$(awk -v f="$FLOOR_S" -v h="$HELLO_S" -v t="$TRUE_S" -v q="$NQ_S" 'BEGIN { printf "%.3f s = %.2fx nq", f + h - t, (f + h - t) / q }')
    SWIFT_LINE="start-up alone, $N starts on /tmp: a static-runtime Swift hello world $HELLO_S s, /bin/true $TRUE_S s; the C floor plus that difference (the least a Swift run could take there): $SWIFT_FLOOR"
fi
# clawflow's own start and parse: `run` with every option a real one has but no command is
# parsed in full (swift-argument-parser) and refused with a usage error (exit 64) before it
# opens the spool. Its time less /bin/true's, added to the floor: what a run by this binary
# would take if all its work after parsing were as cheap as runfloor.c's.
PARSE_LINE="clawflow start and parse: not measured"
t0=$(now)
for ((i = 0; i < N; i++)); do "$BIN" --spool "$WORK/tmp/spool" run --owner "b-$i" 2>>"$WORK/parse.err" && fail "run without a command succeeded"; done
t1=$(now)
[[ $(grep -c 'Give the command after --' "$WORK/parse.err") == "$N" ]] || fail "run without a command: unexpected errors: $(sort -u "$WORK/parse.err" | head -3)"
if [[ -n "${TRUE_S:-}" ]]; then
    PARSE_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    PARSE_FLOOR=$(awk -v f="$FLOOR_S" -v p="$PARSE_S" -v t="$TRUE_S" -v q="$NQ_S" 'BEGIN { printf "%.3f s = %.2fx nq", f + p - t, (f + p - t) / q }')
    PARSE_LINE="clawflow start and parse alone, $N starts of \`run --owner K\` with no command (usage error, exit 64, no spool access): $PARSE_S s; the C floor plus its difference from /bin/true (run's work as cheap as C, after clawflow's own start): $PARSE_FLOOR"
fi

# The floor with clawflow's command line: the parse floor (`make parsefloor`: swift-argument-
# parser's description of clawflow's commands in a program that does nothing else, built as
# the release binary is) parsing the same `run --owner K -- true` and exiting, N times; its
# time less /bin/true's, added to the C floor, is the least a run can take while
# swift-argument-parser reads its command line (issue 20, items 3 and 4); added to
# `runfloor -l`, the least a run can take that also writes clawflow's layout. Per filesystem.
PARSEFLOOR_LINE="the C floor with the parse floor's start: not measured (no parse floor; make parsefloor)"
if [[ -x "$PARSEFLOOR" && -n "${TRUE_S:-}" ]]; then
    t0=$(now)
    for ((i = 0; i < N; i++)); do "$PARSEFLOOR" --spool "$WORK/tmp/spool" run --owner "b-$i" -- true >>"$WORK/parsefloor.out"; done
    t1=$(now)
    PF_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    PARSEFLOOR_LINE="the parse floor's start and parse of \`run --owner K -- true\`, $N starts: $PF_S s; the C floor plus its difference from /bin/true (the least a run reading its command line with swift-argument-parser can take):"
    for v in fresh-ext4 /tmp; do
        [[ -n "${VENUE_FLOOR[$v]:-}" ]] || continue
        PARSEFLOOR_LINE+=$(awk -v f="${VENUE_FLOOR[$v]}" -v g="${VENUE_LFLOOR[$v]}" -v p="$PF_S" -v t="$TRUE_S" -v q="${VENUE_NQ[$v]}" -v c="${VENUE_CF[$v]}" -v l="$v" \
            'BEGIN { x = f + p - t; y = g + p - t; printf " %s %.3f s = %.2fx nq (clawflow = %.2fx it), with clawflow'"'"'s layout (runfloor -l) %.3f s = %.2fx nq (clawflow = %.2fx it);", l, x, x / q, c / x, y, y / q, c / y }')
    done
fi

printf '\n== clawflow run beside nq ==\n'
printf '%s\n' "${LINES[@]}"
printf '%s\n' "$SWIFT_LINE"
printf '%s\n' "$PARSE_LINE"
printf '%s\n' "$PARSEFLOOR_LINE"
