#!/usr/bin/env bash
# clawflow benchmark: `bash bench/run.sh` (or `make bench`). See bench/README.md.
#
# Measures, in one run, with every figure and ratio printed at the end:
#   1. `flows list --json` on 10,000 managed flows x 3 tasks beside a raw C baseline that
#      only readdir()s the spool and opens and reads every manifest and task file;
#   2. `flows show <owner key>` on a spool of 100 flows and on one of 100,000 flows;
#   2b. `tasks show <run id>` on the same two spools (the run index, index/runs);
#   3. the durable writes of one task transition on a mirrored flow (strace);
#   4. the watcher (bench/watch.sh): drop -> applied latency beside a raw inotify + durable
#      write baseline, burst ingest, and its RSS with 10,000 unfinished flows watched;
#   5. `clawflow run` beside nq and task-spooler (bench/run-vs-nq.sh);
#   6. start-up instruction counts beside a Swift hello world and the parse floor
#      (bench/startup.sh).
#
# Environment knobs (all optional):
#   BENCH_LIST_RUNS (11)  BENCH_SHOW_RUNS (30)  BENCH_WARMUP (2)
#   BENCH_FIXTURE_FS=loop|plain (loop): where the generated spools live, see README.md
#   BENCH_SKIP_BUILD=1   use the existing .build-release binary
#   BENCH_FSCK_LARGE=1   also fsck the 100,000-flow spool (adds ~1 min)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"

LIST_RUNS=${BENCH_LIST_RUNS:-11}
SHOW_RUNS=${BENCH_SHOW_RUNS:-30}
AUDIT_RUNS=${BENCH_AUDIT_RUNS:-5}
WARMUP=${BENCH_WARMUP:-2}
FIXTURE_FS=${BENCH_FIXTURE_FS:-loop}
SMALL_N=100
MID_N=10000
MID_TASKS=3
LARGE_N=100000

T_START=$(date +%s)
say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
secs_since() { echo $(( $(date +%s) - $1 )); }

for tool in cc strace jq python3; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install $tool)"
done

# ---- scratch space, cleaned up on any exit ----------------------------------------------
WORK=$(mktemp -d /tmp/clawflow-bench.XXXXXX)
FX="$WORK/fixtures"
MOUNTED=0
cleanup() {
    local rc=$? t
    set +e
    t=$(date +%s)
    if [[ $MOUNTED == 1 ]]; then umount "$FX" 2>/dev/null || umount -l "$FX"; fi
    rm -rf "$WORK"
    printf 'cleanup: removed %s in %s s; whole run %s s\n' "$WORK" "$(secs_since "$t")" "$(secs_since "$T_START")"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build ------------------------------------------------------------------------------
BIN="$REPO/.build-release/release/clawflow"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    step "release build (make release: static Swift runtime, .build-release)"
    t=$(date +%s)
    if ! make -s -C "$REPO" release >"$WORK/build.log" 2>&1; then
        tail -n 30 "$WORK/build.log" >&2
        fail "release build failed"
    fi
    grep -Ev '^warning: .main.: Source files for target' "$WORK/build.log" | tail -n 2 || true
    say "built in $(secs_since "$t") s"
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"

step "tools"
mkdir -p "$WORK/bin"
for prog in mkspool rawread listfloor timeit; do
    cc -O2 -o "$WORK/bin/$prog" "$HERE/$prog.c" || fail "cc $prog.c"
done
MKSPOOL="$WORK/bin/mkspool" RAWREAD="$WORK/bin/rawread" LISTFLOOR="$WORK/bin/listfloor" TIMEIT="$WORK/bin/timeit"
say "compiled mkspool, rawread, listfloor, timeit (cc -O2) into $WORK/bin"

# The fixtures live on a private ext4 filesystem (a sparse image file in $WORK, loop-mounted)
# when we can mount one: deleting ~1 million small files from the shared /tmp filesystem takes
# minutes here (it is mounted with online discard), unmounting the image takes seconds. The
# image has no journal, which only changes how fast the generator writes; every measurement
# below reads through the page cache (warm runs), as it would on any ext4.
mkdir -p "$FX"
FX_DESC="plain directory on $(df --output=fstype "$WORK" | tail -1) ($(df --output=target "$WORK" | tail -1))"
if [[ "$FIXTURE_FS" == loop ]]; then
    if [[ $(id -u) == 0 ]] && command -v mkfs.ext4 >/dev/null \
        && truncate -s 16G "$WORK/fixtures.img" \
        && mkfs.ext4 -q -F -O ^has_journal -N 1500000 -E lazy_itable_init=1 "$WORK/fixtures.img" \
        && mount -o loop,noatime "$WORK/fixtures.img" "$FX"; then
        MOUNTED=1
        FX_DESC="ext4 (no journal) on a loop-mounted sparse image in $WORK"
    else
        say "note: could not loop-mount an ext4 image; the fixtures go to a plain directory (slow to delete)"
        rm -f "$WORK/fixtures.img"
    fi
fi
say "fixtures: $FX_DESC"

# ---- fixtures ---------------------------------------------------------------------------
step "fixtures (generated straight on disk, no fsync)"
SMALL="$FX/spool-100" MID="$FX/spool-10k" LARGE="$FX/spool-100k"
gen() { # gen DIR N MODE [TASKS]
    local t0 t1
    t0=$(date +%s.%N)
    "$MKSPOOL" "$@" || fail "mkspool $*"
    t1=$(date +%s.%N)
    say "  ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s)"
}
gen "$SMALL" $SMALL_N mirrored
gen "$MID" $MID_N managed $MID_TASKS
LARGE_T0=$(date +%s.%N)
gen "$LARGE" $LARGE_N mirrored
LARGE_GEN_S=$(awk -v a="$LARGE_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

step "fixture check: clawflow fsck"
check_fsck() {
    local out rc=0
    out=$("$BIN" --spool "$1" fsck 2>&1) || rc=$?
    say "  $(basename "$1"): exit $rc: $(head -n 1 <<<"$out")"
    if [[ $rc != 0 ]]; then
        head -n 20 <<<"$out" >&2
        fail "fsck reports findings on the generated spool $(basename "$1")"
    fi
}
check_fsck "$SMALL"
check_fsck "$MID"
if [[ "${BENCH_FSCK_LARGE:-0}" == 1 ]]; then check_fsck "$LARGE"; fi

step "sanity: what clawflow and the raw reader see"
listing=$("$BIN" --spool "$MID" flows list --json | jq -c '{count, tasks: ([.flows[].taskSummary.total] | add), problems: ((.problems // []) | length)}')
say "  clawflow flows list --json: $listing"
[[ "$listing" == "{\"count\":$MID_N,\"tasks\":$((MID_N * MID_TASKS)),\"problems\":0}" ]] \
    || fail "flows list --json on the 10k spool: expected $MID_N flows and $((MID_N * MID_TASKS)) tasks, got $listing"
raw=$("$RAWREAD" "$MID") || fail "rawread: $raw"
say "  $raw"
[[ "$raw" == "rawread: $MID_N flows, $((MID_N * (MID_TASKS + 1))) files,"* ]] || fail "rawread saw the wrong number of files"
# The C floor of item 1 must print what clawflow prints, byte for byte.
"$BIN" --spool "$MID" flows list --json >"$WORK/list-clawflow.json" || fail "flows list --json"
"$LISTFLOOR" "$MID" >"$WORK/list-floor.json" || fail "listfloor"
cmp -s "$WORK/list-clawflow.json" "$WORK/list-floor.json" || fail "listfloor's output differs from clawflow flows list --json (cmp $WORK/list-*.json)"
say "  listfloor: the same $(wc -c <"$WORK/list-floor.json") bytes as clawflow flows list --json"
rm -f "$WORK/list-clawflow.json" "$WORK/list-floor.json"

SMALL_KEY=owner-0
LARGE_KEY=owner-$((LARGE_N / 2))
small_show=$("$BIN" --spool "$SMALL" flows show "$SMALL_KEY" --json | jq -c '{ownerKey, status, tasks: (.tasks | length)}')
large_show=$("$BIN" --spool "$LARGE" flows show "$LARGE_KEY" --json | jq -c '{ownerKey, status, tasks: (.tasks | length)}')
say "  flows show $SMALL_KEY (100 flows):     $small_show"
say "  flows show $LARGE_KEY (100,000 flows): $large_show"
[[ "${small_show/$SMALL_KEY/K}" == "${large_show/$LARGE_KEY/K}" ]] || fail "the two owner lookups resolve to flows of different shapes"

# ---- 1. flows list --json vs raw read ------------------------------------------------------
step "1. flows list --json, $MID_N flows x $MID_TASKS tasks, vs raw read and the C floor ($WARMUP warm-up + $LIST_RUNS timed runs each, interleaved)"
times=$("$TIMEIT" "$WARMUP" "$LIST_RUNS" -- "$BIN" --spool "$MID" flows list --json ::: "$RAWREAD" "$MID" ::: "$LISTFLOOR" "$MID") || fail "timing flows list"
read -r L_MED L_MIN L_MAX _ L_N L_USR L_SYS R_MED R_MIN R_MAX _ R_N R_USR R_SYS F_MED F_MIN F_MAX _ F_N F_USR F_SYS <<<"$(tr '\n' ' ' <<<"$times")"
say "  clawflow: median $L_MED s (min $L_MIN, max $L_MAX; cpu user $L_USR s, sys $L_SYS s)"
say "  raw read: median $R_MED s (min $R_MIN, max $R_MAX; cpu user $R_USR s, sys $R_SYS s)"
say "  C floor:  median $F_MED s (min $F_MIN, max $F_MAX; cpu user $F_USR s, sys $F_SYS s)"
L_CPU=$(awk -v u="$L_USR" -v s="$L_SYS" 'BEGIN { printf "%.2f", u + s }')
R_CPU=$(awk -v u="$R_USR" -v s="$R_SYS" 'BEGIN { printf "%.2f", u + s }')
F_CPU=$(awk -v u="$F_USR" -v s="$F_SYS" 'BEGIN { printf "%.2f", u + s }')

# ---- 2. flows show <owner> on 100 vs 100,000 flows ----------------------------------------
step "2. flows show <owner key>, 100 vs 100,000 flows ($WARMUP warm-up + $SHOW_RUNS timed runs each, interleaved)"
# `clawflow --help` rides along: the cost of starting the binary at all, for scale.
times=$("$TIMEIT" "$WARMUP" "$SHOW_RUNS" -- "$BIN" --spool "$SMALL" flows show "$SMALL_KEY" ::: "$BIN" --spool "$LARGE" flows show "$LARGE_KEY" ::: "$BIN" --help) || fail "timing flows show"
read -r S_MED S_MIN S_MAX _ S_N _ _ B_MED B_MIN B_MAX _ B_N _ _ H_MED _ <<<"$(tr '\n' ' ' <<<"$times")"
say "  100 flows:     median $(awk -v s="$S_MED" 'BEGIN { printf "%.2f", s * 1000 }') ms (min $(awk -v s="$S_MIN" 'BEGIN { printf "%.2f", s * 1000 }'), max $(awk -v s="$S_MAX" 'BEGIN { printf "%.2f", s * 1000 }'))"
say "  100,000 flows: median $(awk -v s="$B_MED" 'BEGIN { printf "%.2f", s * 1000 }') ms (min $(awk -v s="$B_MIN" 'BEGIN { printf "%.2f", s * 1000 }'), max $(awk -v s="$B_MAX" 'BEGIN { printf "%.2f", s * 1000 }'))"
say "  for scale, clawflow --help: median $(awk -v s="$H_MED" 'BEGIN { printf "%.2f", s * 1000 }') ms"

# ---- 2b. a run-id lookup on 100 vs 100,000 flows (index/runs) ------------------------------
step "2b. tasks show <run id>, 100 vs 100,000 flows ($WARMUP warm-up + $SHOW_RUNS timed runs each, interleaved)"
# One task with a run id joins each spool (a flow of its own): the lookup reads
# index/runs/bench-run-1/ and that task's flow, whatever the spool's size.
for spool in "$SMALL" "$LARGE"; do
    "$BIN" --spool "$spool" tasks add --owner bench-run --runtime subagent --status running --run-id bench-run-1 >/dev/null || fail "tasks add --run-id"
done
LARGE_TASKS=$((LARGE_N + 1)) # mkspool's one task per mirrored flow, and this one (3c counts them)
times=$("$TIMEIT" "$WARMUP" "$SHOW_RUNS" -- "$BIN" --spool "$SMALL" tasks show bench-run-1 ::: "$BIN" --spool "$LARGE" tasks show bench-run-1) || fail "timing tasks show <run id>"
read -r RS_MED _ _ _ RS_N _ _ RB_MED _ <<<"$(tr '\n' ' ' <<<"$times")"
say "  100 flows: median $(awk -v s="$RS_MED" 'BEGIN { printf "%.2f", s * 1000 }') ms; 100,000 flows: median $(awk -v s="$RB_MED" 'BEGIN { printf "%.2f", s * 1000 }') ms"

# ---- 3. durable writes of one task transition -------------------------------------------
step "3. durable writes of one task transition (mirrored flow, running -> succeeded)"
TXN="$WORK/txn-spool" # on the machine's own filesystem, as a user's spool would be
TRACE_CALLS=fsync,fdatasync,syncfs,sync,sync_file_range,msync,rename,renameat,renameat2,write,writev,pwrite64,pwritev,pwritev2,openat,symlinkat
trace_transition() { # trace_transition NAME TASK_ID -> prints stracecount's report
    local name=$1 id=$2 flow before after
    flow=$("$BIN" --spool "$TXN" tasks show "$id" --json | jq -r .parentFlowId)
    before=$(wc -l <"$TXN/flows/$flow/events.jsonl")
    strace -f -ff -y -o "$WORK/strace-$name" -e trace="$TRACE_CALLS" \
        "$BIN" --spool "$TXN" tasks set "$id" --status succeeded >/dev/null || fail "tasks set under strace ($name)"
    after=$(wc -l <"$TXN/flows/$flow/events.jsonl")
    python3 "$HERE/stracecount.py" "$TXN" "$WORK/strace-$name".* | sed "s/^RESULT /RESULT events=$((after - before)) /"
}
id=$("$BIN" --spool "$TXN" tasks add --owner o --runtime cron --status running) || fail "tasks add"
report=$(trace_transition simple "$id")
grep -v '^RESULT' <<<"$report" || true
result=$(grep '^RESULT' <<<"$report")
val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$result"; }
X_REN=$(val renames) X_FSYNC=$(val fsync) X_FDATA=$(val fdatasync) X_OSYNC=$(val othersync)
X_APP=$(val appends) X_EVENTS=$(val events) X_BYTES=$(val append_bytes)
[[ -n "$X_REN" && -n "$X_APP" ]] || fail "could not parse the strace output"
X_SYNC_TEXT="$X_FSYNC fsync + $X_FDATA fdatasync"
[[ "$X_OSYNC" == 0 ]] || X_SYNC_TEXT+=" + $X_OSYNC other sync"
say "transition: $X_REN renames, $X_SYNC_TEXT, $X_APP events.jsonl append ($X_EVENTS events, $X_BYTES bytes)"

# For comparison (no target): the same transition when it also moves the owner link, i.e. the
# owner has an older flow still running and the newest one ends.
"$BIN" --spool "$TXN" tasks add --owner o2 --runtime cron --status running >/dev/null || fail "tasks add"
id2=$("$BIN" --spool "$TXN" tasks add --owner o2 --runtime cron --status running) || fail "tasks add"
report2=$(trace_transition ownerlink "$id2")
result2=$(grep '^RESULT' <<<"$report2")
val2() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$result2"; }
Y_TEXT="$(val2 renames) renames, $(val2 fsync) fsync + $(val2 fdatasync) fdatasync, $(val2 symlinks) symlink, $(val2 appends) events.jsonl append"
say "with an owner link move (informational): $Y_TEXT"
fsck_txn=$("$BIN" --spool "$TXN" fsck 2>&1) || fail "fsck after the transitions: $fsck_txn"

# ---- 3b. audit and maintenance preview over 100,000 flows vs raw read ---------------------------
step "3b. audit and maintenance (preview) over $LARGE_N flows vs raw read ($WARMUP warm-up + $AUDIT_RUNS timed runs each, interleaved)"
audit_count=$({ "$BIN" --spool "$LARGE" audit --json 2>/dev/null || true; } | jq '.findings | length')  # exit 1: it has findings
maint_count=$("$BIN" --spool "$LARGE" maintenance --json | jq '.actions | length')
say "  on this spool audit reports $audit_count finding(s), maintenance would take $maint_count action(s)"
times=$(TIMEIT_FINDINGS_OK=1 "$TIMEIT" "$WARMUP" "$AUDIT_RUNS" -- "$BIN" --spool "$LARGE" audit --json ::: "$BIN" --spool "$LARGE" maintenance --json ::: "$RAWREAD" "$LARGE") || fail "timing audit and maintenance"
read -r A_MED _ _ _ A_N _ _ M_MED _ _ _ M_N _ _ RL_MED _ _ _ RL_N _ _ <<<"$(tr '\n' ' ' <<<"$times")"
say "  audit: median $A_MED s; maintenance preview: median $M_MED s; raw read: median $RL_MED s"

# ---- 3c. fsck --repair rebuilding every index of the 100,000-flow spool, beside audit -------
# The last use of the large spool: its derived state (index/ and owners/) is deleted, and
# fsck --repair rebuilds all of it from the records; then it must check clean. Timed once
# (the rebuild is not repeatable on the same spool), beside a median audit of the same
# spool in the same run.
step "3c. fsck --repair rebuilding index/ and owners/ of $LARGE_N flows, beside audit"
times=$(TIMEIT_FINDINGS_OK=1 "$TIMEIT" 1 3 -- "$BIN" --spool "$LARGE" audit --json) || fail "timing audit"
read -r FA_MED _ <<<"$(tr '\n' ' ' <<<"$times")"
rm -rf "$LARGE/index" "$LARGE/owners"
t0=$(date +%s.%N)
"$BIN" --spool "$LARGE" fsck --repair >/dev/null 2>&1 || true  # exit 1: it reports what it repaired
FR_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
out=$("$BIN" --spool "$LARGE" fsck 2>&1) || fail "fsck after the rebuild: $(head -n 5 <<<"$out")"
indexed=$(find "$LARGE/index/tasks" -mindepth 1 -maxdepth 1 | wc -l)
[[ $indexed == "$LARGE_TASKS" ]] || fail "the rebuilt task index holds $indexed tasks, not the spool's $LARGE_TASKS"
say "  audit: median $FA_MED s; fsck --repair rebuilding index/tasks, index/owners, index/runs and owners/: $FR_S s; fsck afterwards: clean"

# ---- quiet disk for 5 and 4 --------------------------------------------------------------
# 5 and 4 time fsyncs on the same virtual disk. The fixtures were written without fsync, so
# their dirty pages (hundreds of thousands of files) would still be written back during
# those runs: the fixtures are unmounted (umount writes them back and waits) first.
if [[ $MOUNTED == 1 ]]; then
    t=$(date +%s)
    umount "$FX" 2>/dev/null || umount -l "$FX"
    MOUNTED=0
    rm -f "$WORK/fixtures.img"
    sync
    say "fixtures unmounted, removed and written back before the write benchmarks ($(secs_since "$t") s)"
fi

# ---- 5. clawflow run beside nq (bench/run-vs-nq.sh) -----------------------------------------
# Before 4: watch.sh deletes its spools (tens of thousands of files in /tmp) in the background
# when it ends, and that load on the disk would land on the 500 launches measured here.
step "5. clawflow run beside nq: bash bench/run-vs-nq.sh"
BENCH_SKIP_BUILD=1 bash "$HERE/run-vs-nq.sh" | tee "$WORK/nq.out" || fail "bench/run-vs-nq.sh"
NQ_SUMMARY=$(sed -n '/^== clawflow run beside nq ==$/,$p' "$WORK/nq.out" | tail -n +2)

# ---- 4. the watcher (bench/watch.sh) --------------------------------------------------------
step "4. the watcher: bash bench/watch.sh"
BENCH_SKIP_BUILD=1 bash "$HERE/watch.sh" | tee "$WORK/watch.out" || fail "bench/watch.sh"
WATCH_SUMMARY=$(sed -n '/^== watcher benchmark ==$/,$p' "$WORK/watch.out" | tail -n +2 | grep -v '^watcher benchmark took')
[[ -n "$WATCH_SUMMARY" ]] || fail "no summary from bench/watch.sh"

# ---- 6. start-up instruction counts (bench/startup.sh) -------------------------------------
# Counted by callgrind, so the load the watcher's cleanup leaves behind does not matter here.
step "6. start-up instruction counts: bash bench/startup.sh"
STARTUP_SUMMARY="start-up instruction counts: not measured (bench/startup.sh failed)"
if BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0} bash "$HERE/startup.sh" | tee "$WORK/startup.out"; then
    STARTUP_SUMMARY=$(sed -n '/^== start-up instruction counts/,$p' "$WORK/startup.out" | tail -n +2)
fi

# ---- summary ----------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r != "n/a" && r + 0 <= t + 0 ? "meets target" : "MISSES target") }'; }
LIST_RATIO=$(ratio "$L_MED" "$R_MED")
SHOW_RATIO=$(ratio "$B_MED" "$S_MED")
if [[ $X_REN -le 2 && $X_APP -le 1 ]]; then X_VERDICT="meets target"; else X_VERDICT="MISSES target"; fi
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
SWIFTV=$(swift --version 2>/dev/null | head -n 1 | sed 's/ (.*//')

SUMMARY=$(cat <<EOF
== clawflow benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n): $(nproc) cores ${CPU:-?}, $(uname -sr), ${SWIFTV:-swift ?}) ==
flows list --json, 10,000 flows x 3 tasks: median $(printf '%.3f' "$L_MED") s ($L_N runs); raw read baseline: median $(printf '%.3f' "$R_MED") s ($R_N runs); ratio ${LIST_RATIO}x (target <= 2x: $(verdict "$LIST_RATIO" 2); issue 20, <= 1.5x: $(verdict "$LIST_RATIO" 1.5)); CPU time $L_CPU s vs $R_CPU s, $(ratio "$L_CPU" "$R_CPU")x
flows list --json beside its C floor (listfloor.c: the same reads, lock and JSON parse, the same output, one thread): floor median $(printf '%.3f' "$F_MED") s, CPU $F_CPU s; clawflow $(ratio "$L_MED" "$F_MED")x the floor's wall time, $(ratio "$L_CPU" "$F_CPU")x its CPU time; floor / raw read $(ratio "$F_MED" "$R_MED")x
flows show <owner>: 100 flows $(awk -v s="$S_MED" 'BEGIN { printf "%.1f", s * 1000 }') ms, 100,000 flows $(awk -v s="$B_MED" 'BEGIN { printf "%.1f", s * 1000 }') ms ($S_N runs each); ratio ${SHOW_RATIO}x (target <= 1.3x: $(verdict "$SHOW_RATIO" 1.3)); process start-up alone (--help) $(awk -v s="$H_MED" 'BEGIN { printf "%.1f", s * 1000 }') ms
tasks show <run id>: 100 flows $(awk -v s="$RS_MED" 'BEGIN { printf "%.1f", s * 1000 }') ms, 100,000 flows $(awk -v s="$RB_MED" 'BEGIN { printf "%.1f", s * 1000 }') ms ($RS_N runs each); ratio $(ratio "$RB_MED" "$RS_MED")x (no target; the same lookup decides where a task-update drop by runId goes)
task transition: $X_REN file replaces (renames), $((X_FSYNC + X_FDATA + X_OSYNC)) fsync-family calls ($X_SYNC_TEXT), $X_APP events.jsonl append (target <= 2 replaces + 1 append: $X_VERDICT)
audit over $LARGE_N flows: median $(printf '%.3f' "$A_MED") s, maintenance preview $(printf '%.3f' "$M_MED") s; raw read baseline $(printf '%.3f' "$RL_MED") s ($A_N runs each); ratios $(ratio "$A_MED" "$RL_MED")x and $(ratio "$M_MED" "$RL_MED")x (target <= 2x: $(verdict "$(ratio "$A_MED" "$RL_MED")" 2), $(verdict "$(ratio "$M_MED" "$RL_MED")" 2); issue 20, <= 1.5x: $(verdict "$(ratio "$A_MED" "$RL_MED")" 1.5), $(verdict "$(ratio "$M_MED" "$RL_MED")" 1.5))
fsck --repair rebuilding every index and owner link of $LARGE_N flows: $(printf '%.3f' "$FR_S") s; audit of the same spool $(printf '%.3f' "$FA_MED") s; ratio $(ratio "$FR_S" "$FA_MED")x (target <= 10x: $(verdict "$(ratio "$FR_S" "$FA_MED")" 10))
$WATCH_SUMMARY
$NQ_SUMMARY
$STARTUP_SUMMARY
fixtures: $FX_DESC; 100,000-flow spool generated in $LARGE_GEN_S s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg); total $(secs_since "$T_START") s before cleanup
EOF
)
printf '\n%s\n' "$SUMMARY"
mkdir -p "$HERE/out"
printf '%s\n' "$SUMMARY" >"$HERE/out/last-summary.txt"
