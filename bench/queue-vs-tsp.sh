#!/usr/bin/env bash
# clawflow's queue beside task-spooler and nq: `bash bench/queue-vs-tsp.sh`. See bench/README.md.
#
# In one run:
#   1. throughput, on two filesystems in turn (a fresh ext4 made for the run, scratchfs.sh says
#      why, then the machine's own /tmp), each: task-spooler (`tsp -S 4`, then `tsp true` N
#      times on a fresh socket, then `tsp -w`), nq for reference (no slots: one job after
#      another; `nq true` N times, `nq -w`), the C floor (queuefloor.c: the least durable work
#      of a queue with 4 slots, no clawflow code) and clawflow (`queue set q --slots 4`, then
#      `clawflow run --queue q -- true` N times, then `clawflow wait` on every flow): wall time
#      from the first submission until every job has run. Every loop starts one program per
#      job with its output going to a file, and nothing else (no command substitution, whose
#      fork would be charged to the program);
#   2. on each of those filesystems, the delay from a slot freeing to the next job
#      `running`, with a backlog: 4 gated jobs hold queue h's slots while N/5 jobs queue behind
#      them, then the gate opens; from the records (milliseconds), the k-th start after the
#      first four against the (k-4)-th end, both sorted: median and p99; and the same for the
#      C floor, whose supervisors note when each job started and ended;
#   3. there too, `clawflow wait` waking after the job it waits for ends: W jobs of `sleep 0.3`,
#      each waited for by a `wait` started while it runs; the delay from the task's endedAt to
#      the moment `wait` has exited, median and p99 (milliseconds). endedAt is stamped when the
#      supervisor's write begins, so this includes that write's flushes, which `wait` cannot
#      see through. W other jobs, alternating with those, are waited for by the C floor
#      (waitfloor.c: inotify on the flow's directory, a read of the manifest per change).
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
BIN="${BENCH_BIN:-$REPO/.build-release/release/clawflow}"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    make -s -C "$REPO" release >/dev/null 2>&1 || fail "release build"
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"

WORK=$(mktemp -d /tmp/clawflow-queuebench.XXXXXX)
# shellcheck source=scratchfs.sh
. "$HERE/scratchfs.sh"
cleanup() { TS_SOCKET="$WORK/tsp.socket" tsp -K >/dev/null 2>&1 || true; scratch_fs_unmount "$WORK/ext4"; rm -rf "$WORK"; }
trap cleanup EXIT
now_us() { echo "${EPOCHREALTIME/./}"; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }
# stats: median and p99 of numbers on stdin, one per line
stats() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a n/a"; exit } m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.99 + 0.999)]; if (p == "") p = v[NR]; printf "%.1f %.1f\n", m, p }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
meets() { awk -v v="$1" -v t="$2" 'BEGIN { print (v + 0 <= t + 0 ? "meets" : "MISSES") }'; }
QUEUEFLOOR="$WORK/queuefloor"
cc -O2 -pthread -o "$QUEUEFLOOR" "$HERE/queuefloor.c" || fail "cc queuefloor.c"

# ---- 1. throughput VENUE LABEL: N jobs through 4 slots, each tool in turn; adds a line to LINES.
LINES=()
throughput() {
    local venue=$1 label=$2 i t0 t1 tsp_s nq_s floor_s cf_s ran done_floor r
    mkdir -p "$venue"
    # task-spooler, 4 slots, on a fresh socket
    export TS_SOCKET="$venue/tsp.socket" TS_SAVELIST="" TS_MAXFINISHED=$((N + 10)) TMPDIR="$venue"
    tsp -S 4 >/dev/null
    t0=$(now_us)
    for ((i = 0; i < N; i++)); do tsp true >>"$venue/tsp.out"; done
    tsp -w >/dev/null 2>&1 || true
    while tsp | grep -qE ' (running|queued) '; do sleep 0.01; done
    t1=$(now_us)
    tsp_s=$(seconds "$t0" "$t1")
    tsp -K >/dev/null 2>&1 || true
    unset TS_SOCKET TMPDIR
    # nq (no slots: one after another)
    export NQDIR="$venue/nq"
    mkdir -p "$NQDIR"
    t0=$(now_us)
    for ((i = 0; i < N; i++)); do nq -q true >>"$venue/nq.out"; done
    nq -w >/dev/null 2>&1 || true
    t1=$(now_us)
    nq_s=$(seconds "$t0" "$t1")
    unset NQDIR
    # the C floor, 4 slots: done when every flow's events.jsonl has its three records
    mkdir -p "$venue/floor/tmp" "$venue/floor/flows" "$venue/floor/owners" "$venue/floor/waiting" "$venue/floor/running"
    t0=$(now_us)
    for ((i = 0; i < N; i++)); do "$QUEUEFLOOR" "$venue/floor" 4 "q-$i" true >>"$venue/floor.out"; done
    while [[ -n $(find "$venue/floor/flows" -name events.jsonl -size -750c -print -quit) ]]; do sleep 0.01; done
    t1=$(now_us)
    floor_s=$(seconds "$t0" "$t1")
    done_floor=$(find "$venue/floor/flows" -mindepth 1 -maxdepth 1 | wc -l)
    [[ $done_floor == "$N" ]] || fail "queuefloor: $done_floor flows, expected $N"
    # clawflow, 4 slots (piped, run prints "<flowId> <taskId>", a line a job)
    local spool="$venue/spool"
    "$BIN" --spool "$spool" queue set q --slots 4 >/dev/null
    t0=$(now_us)
    for ((i = 0; i < N; i++)); do "$BIN" --spool "$spool" run --queue q --owner "q-$i" -- true >>"$venue/flows"; done
    cut -d' ' -f1 "$venue/flows" | xargs "$BIN" --spool "$spool" wait >/dev/null || fail "a queued job did not succeed"
    t1=$(now_us)
    cf_s=$(seconds "$t0" "$t1")
    ran=$("$BIN" --spool "$spool" flows list --status succeeded --json | jq '.count')
    [[ $ran == "$N" ]] || fail "$ran of $N jobs succeeded"
    r=$(ratio "$cf_s" "$tsp_s")
    LINES+=("$N trivial jobs through 4 slots, $label: clawflow $cf_s s, tsp -S 4 $tsp_s s, the C floor (queuefloor.c) $floor_s s, nq (one at a time) $nq_s s; clawflow = ${r}x tsp (target <= 1.5x: $(meets "$r" 1.5)), $(ratio "$cf_s" "$floor_s")x the floor; the floor = $(ratio "$floor_s" "$tsp_s")x tsp; clawflow = $(ratio "$cf_s" "$nq_s")x nq")
    # A Swift program's start, beyond a C program's, N times: added to the floor, the least a
    # Swift implementation could take (the submitting loop starts one program per job).
    if [[ -x "$WORK/hello" ]]; then
        local h0 h1 h2 hello_s true_s swift_floor
        h0=$(now_us)
        for ((i = 0; i < N; i++)); do "$WORK/hello" >>"$venue/hello.out"; done
        h1=$(now_us)
        for ((i = 0; i < N; i++)); do /bin/true >>"$venue/true.out"; done
        h2=$(now_us)
        hello_s=$(seconds "$h0" "$h1")
        true_s=$(seconds "$h1" "$h2")
        swift_floor=$(awk -v f="$floor_s" -v h="$hello_s" -v t="$true_s" 'BEGIN { printf "%.3f", f + h - t }')
        LINES+=("  the same venue: $N starts of a static Swift hello world $hello_s s, of /bin/true $true_s s; the floor plus that difference $swift_floor s; clawflow = $(ratio "$cf_s" "$swift_floor")x it")
    fi
}
swiftc -O -static-stdlib "$HERE/hello.swift" -o "$WORK/hello" >/dev/null 2>&1 || true

if scratch_fs_mount "$WORK/ext4"; then
    VENUE="$WORK/ext4"
    WHERE="fresh ext4"
    throughput "$WORK/ext4/t" "fresh ext4 (mkfs defaults, journal), loop-mounted"
else
    VENUE="$WORK/tmp-more"
    WHERE="/tmp"
fi
throughput "$WORK/tmp" "/tmp, the machine's own disk ($(fs_desc "$WORK"))"
SPOOL="$VENUE/spool"

# ---- 2. slot freed -> next job running, with a backlog, on each filesystem: 4 jobs hold the
# slots of queue h until a gate file appears, B jobs queue up behind them, the gate opens,
# and the records say when each job started and ended; then the same with the C floor.
B=$((N / 5))
to_ms() { date -u -d "$1" +%s%3N; }
# handoffs TIMES: from lines "<started> <ended>" (ISO-8601 or milliseconds), the delays.
handoffs() {
    python3 - "$1" <<'PY'
import sys, datetime
def ms(t):
    if t.isdigit():
        return float(t)
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
starts, ends = [], []
for line in open(sys.argv[1]):
    s, e = line.split()
    starts.append(ms(s)); ends.append(ms(e))
starts.sort(); ends.sort()
# The k-th start after the four gated ones took the slot of the (k-4)-th end.
for k in range(4, len(starts)):
    print(max(0.0, starts[k] - ends[k - 4]))
PY
}
# handoff_delays VENUE LABEL: adds a line to HANDOFF_LINES.
HANDOFF_LINES=()
handoff_delays() {
    local venue=$1 label=$2 spool="$1/spool" floorq="$1/floorq" i med p99 fmed fp99
    mkdir -p "$venue"
    rm -f "$WORK/gate"
    "$BIN" --spool "$spool" queue set h --slots 4 >/dev/null
    : >"$WORK/hflows"
    for ((i = 0; i < 4; i++)); do
        "$BIN" --spool "$spool" run --queue h --owner "g-$i" -- sh -c "while [ ! -e '$WORK/gate' ]; do sleep 0.01; done" >>"$WORK/hflows"
    done
    for ((i = 0; i < B; i++)); do "$BIN" --spool "$spool" run --queue h --owner "h-$i" -- true >>"$WORK/hflows"; done
    touch "$WORK/gate"
    cut -d' ' -f1 "$WORK/hflows" | xargs "$BIN" --spool "$spool" wait >/dev/null || fail "a job of queue h did not succeed"
    "$BIN" --spool "$spool" tasks list --queue h --json | jq -r '.tasks[] | [.startedAt, .endedAt] | @tsv' >"$WORK/times"
    handoffs "$WORK/times" >"$WORK/handoff"
    read -r med p99 <<<"$(stats <"$WORK/handoff")"
    # The C floor (queuefloor.c): its supervisors append "<started> <ended>" to its times file.
    mkdir -p "$floorq/tmp" "$floorq/flows" "$floorq/owners" "$floorq/waiting" "$floorq/running"
    rm -f "$WORK/gate"
    for ((i = 0; i < 4; i++)); do "$QUEUEFLOOR" "$floorq" 4 "g-$i" sh -c "while [ ! -e '$WORK/gate' ]; do sleep 0.01; done" >>"$WORK/floorq.out"; done
    for ((i = 0; i < B; i++)); do "$QUEUEFLOOR" "$floorq" 4 "h-$i" true >>"$WORK/floorq.out"; done
    touch "$WORK/gate"
    while (($(wc -l <"$floorq/times" 2>/dev/null || echo 0) < B + 4)); do sleep 0.02; done
    handoffs "$floorq/times" >"$WORK/floorhandoff"
    read -r fmed fp99 <<<"$(stats <"$WORK/floorhandoff")"
    HANDOFF_LINES+=("slot freed -> next job running, $label (records, ms resolution): median $med ms, p99 $p99 ms (target median <= 5 ms: $(meets "$med" 5)); the C floor (queuefloor.c): median $fmed ms, p99 $fp99 ms; clawflow = $(ratio "$med" "$fmed")x the floor")
}
[[ $VENUE == "$WORK/ext4" ]] && handoff_delays "$WORK/ext4/h" "fresh ext4"
handoff_delays "$WORK/tmp/h" "/tmp"

# ---- 3. wait waking after its job ends, and the C floor's (waitfloor.c) in the same way on
# other jobs of the same spool, alternating
WAITFLOOR="$WORK/waitfloor"
cc -O2 -o "$WAITFLOOR" "$HERE/waitfloor.c" || fail "cc waitfloor.c"
: >"$WORK/wakes"
: >"$WORK/floorwakes"
for ((i = 0; i < 2 * W; i++)); do
    flow=$("$BIN" --spool "$SPOOL" run --owner "w-$i" -- sleep 0.3 | cut -d' ' -f1)
    if ((i % 2 == 0)); then
        "$BIN" --spool "$SPOOL" wait "$flow" >/dev/null || fail "wait $flow"
        into="$WORK/wakes"
    else
        "$WAITFLOOR" "$SPOOL/flows/$flow" || fail "waitfloor $flow"
        into="$WORK/floorwakes"
    fi
    woke=$(now_us)
    ended=$("$BIN" --spool "$SPOOL" flows show "$flow" --json | jq -r '.tasks[0].endedAt')
    awk -v w="$woke" -v e="$(to_ms "$ended")" 'BEGIN { printf "%.1f\n", w / 1000 - e }' >>"$into"
done
read -r WAKE_MED WAKE_P99 <<<"$(stats <"$WORK/wakes")"
read -r FWAKE_MED FWAKE_P99 <<<"$(stats <"$WORK/floorwakes")"

printf '\n== clawflow queue beside task-spooler, nq and the C floor ==\n'
for line in "${LINES[@]}"; do printf '%s\n' "$line"; done
for line in "${HANDOFF_LINES[@]}"; do printf '%s\n' "$line"; done
printf 'wait waking after its job ended (%s; %s jobs): median %s ms, p99 %s ms (target median <= 2 ms: %s); the C floor (waitfloor.c, %s other jobs): median %s ms, p99 %s ms; clawflow = %sx the floor\n' \
    "$WHERE" "$W" "$WAKE_MED" "$WAKE_P99" "$(meets "$WAKE_MED" 2)" "$W" "$FWAKE_MED" "$FWAKE_P99" "$(ratio "$WAKE_MED" "$FWAKE_MED")"
