#!/usr/bin/env bash
# clawflow's queue beside task-spooler and nq: `bash bench/queue-vs-tsp.sh`. See bench/README.md.
#
# In one run, on /tmp (the machine's own disk):
#   1. task-spooler: `tsp -S 4`, then `tsp true` N times (a fresh socket), then `tsp -w` on the
#      last job: wall time from the first submission until every job has run;
#   2. nq, for reference (it has no slots: one job after another): `nq true` N times, `nq -w`;
#   3. clawflow: `queue set q --slots 4`, then `clawflow run --queue q -- true` N times, then
#      `clawflow wait` on every flow: the same wall time;
#   4. the delay from a slot freeing to the next job `running`, with a backlog: 4 gated jobs
#      hold queue h's slots while N/5 jobs queue behind them, then the gate opens; from the
#      records (milliseconds), the k-th start after the first four against the (k-4)-th end,
#      both sorted: median and p99;
#   5. `clawflow wait` waking after the job it waits for ends: W jobs of `sleep 0.3`, each
#      waited for by a `wait` started while it runs; the delay from the task's endedAt to the
#      moment `wait` has exited, median and p99 (milliseconds). endedAt is stamped when the
#      supervisor's write begins, so this includes that write's flushes, which `wait` cannot
#      see through.
# Nothing asserts a timing: the figures and ratios are printed with the issue's targets.
#
# Environment knobs: BENCH_QUEUE_N (1000), BENCH_WAIT_N (20), BENCH_SKIP_BUILD=1 (use
# .build-release as built).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
N=${BENCH_QUEUE_N:-1000}
W=${BENCH_WAIT_N:-20}
fail() { printf 'bench/queue-vs-tsp: FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v nq >/dev/null || ! command -v tsp >/dev/null || ! command -v jq >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nq task-spooler jq >/dev/null || fail "nq, task-spooler or jq is not installed"
fi
BIN="$REPO/.build-release/release/clawflow"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    make -s -C "$REPO" release >/dev/null 2>&1 || fail "release build"
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"

WORK=$(mktemp -d /tmp/clawflow-queuebench.XXXXXX)
cleanup() { TS_SOCKET="$WORK/tsp.socket" tsp -K >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
now_us() { echo "${EPOCHREALTIME/./}"; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }
# stats: median and p99 of numbers on stdin, one per line
stats() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a n/a"; exit } m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.99 + 0.999)]; if (p == "") p = v[NR]; printf "%.1f %.1f\n", m, p }'; }

# ---- 1. task-spooler, 4 slots
export TS_SOCKET="$WORK/tsp.socket" TS_SAVELIST="" TS_MAXFINISHED=$((N + 10)) TMPDIR="$WORK"
tsp -S 4 >/dev/null
t0=$(now_us)
for ((i = 0; i < N; i++)); do last=$(tsp true); done
tsp -w "$last" >/dev/null 2>&1 || true
while tsp | grep -qE ' (running|queued) '; do sleep 0.01; done
t1=$(now_us)
TSP_S=$(seconds "$t0" "$t1")
tsp -K >/dev/null 2>&1 || true
unset TS_SOCKET

# ---- 2. nq (no slots: one after another)
export NQDIR="$WORK/nq"
mkdir -p "$NQDIR"
t0=$(now_us)
for ((i = 0; i < N; i++)); do nq -q true >/dev/null; done
nq -w >/dev/null 2>&1 || true
t1=$(now_us)
NQ_S=$(seconds "$t0" "$t1")
unset NQDIR

# ---- 3. clawflow, 4 slots
SPOOL="$WORK/spool"
"$BIN" --spool "$SPOOL" queue set q --slots 4 >/dev/null
: >"$WORK/flows"
t0=$(now_us)
for ((i = 0; i < N; i++)); do "$BIN" --spool "$SPOOL" run --queue q --owner "q-$i" -- true | cut -d' ' -f1 >>"$WORK/flows"; done
xargs "$BIN" --spool "$SPOOL" wait <"$WORK/flows" >/dev/null || fail "a queued job did not succeed"
t1=$(now_us)
CF_S=$(seconds "$t0" "$t1")
ran=$("$BIN" --spool "$SPOOL" flows list --status succeeded --json | jq '.count')
[[ $ran == "$N" ]] || fail "$ran of $N jobs succeeded"

# ---- 4. slot freed -> next job running, with a backlog: 4 jobs hold the slots of queue h
# until a gate file appears, B jobs queue up behind them, the gate opens, and the records
# say when each job started and ended.
B=$(( N / 5 ))
"$BIN" --spool "$SPOOL" queue set h --slots 4 >/dev/null
: >"$WORK/hflows"
for ((i = 0; i < 4; i++)); do
    "$BIN" --spool "$SPOOL" run --queue h --owner "g-$i" -- sh -c "while [ ! -e '$WORK/gate' ]; do sleep 0.01; done" | cut -d' ' -f1 >>"$WORK/hflows"
done
for ((i = 0; i < B; i++)); do "$BIN" --spool "$SPOOL" run --queue h --owner "h-$i" -- true | cut -d' ' -f1 >>"$WORK/hflows"; done
touch "$WORK/gate"
xargs "$BIN" --spool "$SPOOL" wait <"$WORK/hflows" >/dev/null || fail "a job of queue h did not succeed"
"$BIN" --spool "$SPOOL" tasks list --queue h --json | jq -r '.tasks[] | [.startedAt, .endedAt] | @tsv' >"$WORK/times"
to_ms() { date -u -d "$1" +%s%3N; }
python3 - "$WORK/times" >"$WORK/handoff" <<'PY'
import sys, datetime
def ms(t):
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
starts, ends = [], []
for line in open(sys.argv[1]):
    s, e = line.rstrip("\n").split("\t")
    starts.append(ms(s)); ends.append(ms(e))
starts.sort(); ends.sort()
# The k-th start after the four gated ones took the slot of the (k-4)-th end.
for k in range(4, len(starts)):
    print(max(0.0, starts[k] - ends[k - 4]))
PY
read -r HAND_MED HAND_P99 <<<"$(stats <"$WORK/handoff")"

# ---- 5. wait waking after its job ends
: >"$WORK/wakes"
for ((i = 0; i < W; i++)); do
    flow=$("$BIN" --spool "$SPOOL" run --owner "w-$i" -- sleep 0.3 | cut -d' ' -f1)
    "$BIN" --spool "$SPOOL" wait "$flow" >/dev/null || fail "wait $flow"
    woke=$(now_us)
    ended=$("$BIN" --spool "$SPOOL" flows show "$flow" --json | jq -r '.tasks[0].endedAt')
    awk -v w="$woke" -v e="$(to_ms "$ended")" 'BEGIN { printf "%.1f\n", w / 1000 - e }' >>"$WORK/wakes"
done
read -r WAKE_MED WAKE_P99 <<<"$(stats <"$WORK/wakes")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
meets() { awk -v v="$1" -v t="$2" 'BEGIN { print (v + 0 <= t + 0 ? "meets" : "MISSES") }'; }
R=$(ratio "$CF_S" "$TSP_S")
printf '\n== clawflow queue beside task-spooler and nq ==\n'
printf '%s trivial jobs through 4 slots (/tmp): clawflow %s s, tsp -S 4 %s s, nq (one at a time) %s s; clawflow = %sx tsp (target <= 1.5x: %s), %sx nq\n' \
    "$N" "$CF_S" "$TSP_S" "$NQ_S" "$R" "$(meets "$R" 1.5)" "$(ratio "$CF_S" "$NQ_S")"
printf 'slot freed -> next job running (records, ms resolution): median %s ms, p99 %s ms (target median <= 5 ms: %s)\n' \
    "$HAND_MED" "$HAND_P99" "$(meets "$HAND_MED" 5)"
printf 'wait waking after its job ended (%s jobs): median %s ms, p99 %s ms (target median <= 2 ms: %s)\n' \
    "$W" "$WAKE_MED" "$WAKE_P99" "$(meets "$WAKE_MED" 2)"
