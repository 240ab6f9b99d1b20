#!/usr/bin/env bash
# clawflow run beside nq: `bash bench/run-vs-nq.sh` (run.sh calls it). See bench/README.md.
#
# In one run, on the machine's own disk (/tmp):
#   1. nq: `nq true` 500 times (NQDIR a fresh directory), then `nq -w` until all are done;
#   2. clawflow: `clawflow run --owner b-<i> -- true` 500 times, then poll until every task
#      is final; and the latency from each `run` returning to its task's startedAt.
# Prints both wall times, their ratio (target: clawflow within 1.5x of nq) and the median
# run -> running latency. Nothing asserts a timing.
#
# Environment knobs: BENCH_RUN_N (500), BENCH_SKIP_BUILD=1 (use .build-release as built).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
N=${BENCH_RUN_N:-500}
fail() { printf 'bench/run-vs-nq: FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v nq >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nq >/dev/null || fail "nq is not installed (apt-get install nq)"
fi
BIN="$REPO/.build-release/release/clawflow"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    make -s -C "$REPO" release >/dev/null 2>&1 || fail "release build"
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"

WORK=$(mktemp -d /tmp/clawflow-runbench.XXXXXX)
# Deleted before returning (a few thousand files): run.sh measures the watcher next, and a
# deletion running in the background would load the disk under it.
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

now() { echo "${EPOCHREALTIME/./}"; }   # microseconds (outside the timed loops only)

# ---- 1. nq ------------------------------------------------------------------------------
export NQDIR="$WORK/nq"
mkdir -p "$NQDIR"
t0=$(now)
for ((i = 0; i < N; i++)); do nq -q true >/dev/null; done
nq -w >/dev/null 2>&1 || true
t1=$(now)
NQ_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
done_nq=$(ls "$NQDIR" | grep -c '^,' || true)
[[ $done_nq == "$N" ]] || fail "nq: $done_nq job files, expected $N"

# ---- 2. clawflow run ---------------------------------------------------------------------
SPOOL="$WORK/spool"
"$BIN" --spool "$SPOOL" init >/dev/null
: >"$WORK/started"
: >"$WORK/returned-at"
# The loop does what nq's does — one program start with its output going to a file — and
# only builtins besides: no command substitution (each would fork the shell, about 0.7 ms
# here, and charge it to clawflow). `run` prints "<flowId> <taskId>"; the moment it returned
# goes, unforked, to a second file, line for line.
t0=$(now)
for ((i = 0; i < N; i++)); do
    "$BIN" --spool "$SPOOL" run --owner "b-$i" -- true >>"$WORK/started"
    printf '%s\n' "$EPOCHREALTIME" >>"$WORK/returned-at"
done
t_launched=$(now)
paste -d' ' <(cut -d' ' -f2 "$WORK/started") <(tr -d . <"$WORK/returned-at") >"$WORK/returned"
while :; do
    left=$("$BIN" --spool "$SPOOL" tasks list --json | jq '[.tasks[] | select(.status == "queued" or .status == "running")] | length')
    [[ $left == 0 ]] && break
    sleep 0.05
done
t1=$(now)
CF_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
LAUNCH_S=$(awk -v a="$t0" -v b="$t_launched" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
"$BIN" --spool "$SPOOL" tasks list --json >"$WORK/tasks.json"
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

# ---- 3. context: a Swift program's start alone ------------------------------------------
# hello.swift, built as clawflow's release binary is (-O, static Swift runtime), started N
# times by the same kind of loop: what any Swift command costs here before it does anything.
SWIFT_LINE="Swift start-up floor: not measured (swiftc missing or failed)"
if swiftc -O -static-stdlib "$HERE/hello.swift" -o "$WORK/hello" >/dev/null 2>&1; then
    t0=$(now)
    for ((i = 0; i < N; i++)); do "$WORK/hello" >>"$WORK/hello.out"; done
    t1=$(now)
    HELLO_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    SWIFT_LINE="Swift start-up floor: $N starts of a static-runtime Swift hello world took $HELLO_S s = $(awk -v a="$HELLO_S" -v b="$NQ_S" 'BEGIN { printf "%.2f", a / b }')x nq's whole run"
fi

RATIO=$(awk -v a="$CF_S" -v b="$NQ_S" 'BEGIN { printf "%.2f", a / b }')
VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r + 0 <= 1.5 ? "meets" : "MISSES") }')
cat <<EOT

== clawflow run beside nq ==
$N trivial commands (true), launched one after another and waited for ($(df --output=fstype "$WORK" | tail -1)): nq $NQ_S s, clawflow run $CF_S s (all $N launched after $LAUNCH_S s); ratio ${RATIO}x (target <= 1.5x: $VERDICT); median run returned -> task running: $MED_MS ms (negative: running was recorded before run returned)
$SWIFT_LINE
EOT
