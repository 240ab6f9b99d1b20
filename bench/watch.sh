#!/usr/bin/env bash
# clawflow watcher benchmark: `bash bench/watch.sh` (run.sh calls it at its end). See bench/README.md.
#
# Measures, in one run, with `clawflow watch` running on the spool:
#   1. drop -> applied latency: 1,000 sequential task drops (droplat.c, inotify on owners/);
#   2. the raw floor in the same run: an inotify wait plus one durable write, alternating with
#      1 in blocks of 50 together with a C watcher writing clawflow's layout (droplat.c compare), and
#      the layout's own cost, spec-minimal and clawflow's, in C (layoutfloor.c);
#   1b. task-update drop -> applied: 500 updates of one task, one after another (no target);
#   3. burst ingest: 10,000 drops renamed into incoming/new at once, time until all applied
#      (2,000 when a 300-drop probe says 10,000 would take over 5 minutes), beside 3b, the
#      burst baseline: a C watcher making each drop durable with one write of its own;
#   1-3 run twice: on a fresh ext4 made for the run (scratchfs.sh says why; skipped when it
#   cannot be mounted), then on the machine's own disk (spools under /tmp);
#   4. the watcher's RSS and inotify watch count with 10,000 unfinished flows watched
#      (a generated spool on /dev/shm).
# Nothing asserts a timing: figures are printed with "meets" / "MISSES" beside each target.
#
# Environment knobs (all optional):
#   BENCH_LAT_DROPS (1000)  BENCH_BURST_DROPS (10000)  BENCH_RSS_FLOWS (10000)
#   BENCH_SKIP_BUILD=1      use the existing .build-release binary
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"

LAT_N=${BENCH_LAT_DROPS:-1000}
UPD_N=$(( LAT_N / 2 ))
BURST_N=${BENCH_BURST_DROPS:-10000}
RSS_N=${BENCH_RSS_FLOWS:-10000}
BURST_MAX_S=300 # if the burst would take longer than this at the measured speed, use 2,000 drops

T_START=$(date +%s)
say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'bench/watch: FAILED: %s\n' "$*" >&2; exit 1; }
fstype() { df --output=fstype "$1" | tail -1; }
# shellcheck source=scratchfs.sh
. "$HERE/scratchfs.sh"

# ---- scratch: latency/burst spools on the real disk (/tmp, and the image of the fresh ext4
# there), the big spool on /dev/shm ----
DISK=$(mktemp -d /tmp/clawflow-watch.XXXXXX)
SHM=$(mktemp -d /dev/shm/clawflow-watch.XXXXXX)
WATCHER_PID=
stop_watcher() {
    if [[ -n "$WATCHER_PID" ]]; then
        kill -TERM "$WATCHER_PID" 2>/dev/null || true
        wait "$WATCHER_PID" 2>/dev/null || true
        WATCHER_PID=
    fi
}
cleanup() {
    local rc=$?
    set +e
    stop_watcher
    scratch_fs_unmount "$DISK/ext4"
    rm -rf "$SHM"
    # /tmp is on a disk mounted with online discard: deleting thousands of files is slow, so
    # the spools there are removed in the background.
    (rm -rf "$DISK" &) >/dev/null 2>&1
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build and tools --------------------------------------------------------------------
BIN="$REPO/.build-release/release/clawflow"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    step "release build (make release: static Swift runtime, .build-release)"
    make -s -C "$REPO" release >"$DISK/build.log" 2>&1 \
        || { tail -n 30 "$DISK/build.log" >&2; fail "release build failed"; }
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"
mkdir -p "$SHM/bin"
for prog in droplat mkspool layoutfloor; do
    cc -O2 -pthread -o "$SHM/bin/$prog" "$HERE/$prog.c" || fail "cc $prog.c"
done
DROPLAT="$SHM/bin/droplat" MKSPOOL="$SHM/bin/mkspool" LAYOUTFLOOR="$SHM/bin/layoutfloor"

# start_watcher SPOOL LOG: starts `clawflow watch --log-level debug` and waits for its
# first full scan to be logged ("full scan: N flows, M watched").
start_watcher() {
    local spool=$1 log=$2 i
    : >"$log" # exists before the first look (the background job opens it in its own time)
    "$BIN" --spool "$spool" watch --log-level debug 2>"$log" &
    WATCHER_PID=$!
    for ((i = 0; i < 1200; i++)); do
        if grep -q 'full scan:.*watched' "$log"; then return 0; fi
        kill -0 "$WATCHER_PID" 2>/dev/null || { cat "$log" >&2; fail "clawflow watch exited"; }
        sleep 0.1
    done
    fail "clawflow watch did not log its first full scan within 120 s"
}
result() { sed -n "s/^RESULT .*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# ---- 1-3 on each filesystem --------------------------------------------------------------
# drop_suite VENUE: items 1, 2, 2b and 3 with spools under VENUE; appends the venue's summary
# lines to SUMMARY.
SUMMARY=()
drop_suite() {
    local venue=$1 fs out applied rejected est C_MED C_P99 C_MAX R_MED R_P99 M_MED M_P99 U_MED U_P99 F_RAW F_LAYOUT F_INDEXED F_LAYOUT99 F_INDEXED99
    local burst_n=$BURST_N burst_note="" B_S B_RATE RB_RATE flows ratio
    fs=$(fs_desc "$venue")
    # 1 and 2 alternate in blocks of 50 (droplat compare) with a C watcher writing clawflow's
    # layout: all three see the same state of the disk, which on /tmp changes within minutes
    # (see bench/README.md).
    step "1-2. drop -> applied latency, $LAT_N sequential drops, watcher running, alternating in blocks of 50 with the raw baseline (inotify wait + 1 durable write: open O_EXCL, write 300 B, fsync, rename, fsync dir) and with a C watcher writing clawflow's layout ($fs, $venue)"
    "$BIN" --spool "$venue/lat" init >/dev/null || fail "clawflow init"
    start_watcher "$venue/lat" "$venue/lat.log"
    mkdir "$venue/cmp"
    out=$("$DROPLAT" compare "$venue/lat" "$venue/cmp" "$LAT_N" 50) || fail "droplat compare: $out"
    grep -v '^RESULT' <<<"$out"
    C_MED=$(result clawflow_median_ms "$out") C_P99=$(result clawflow_p99_ms "$out") C_MAX=$(result clawflow_max_ms "$out")
    R_MED=$(result raw_median_ms "$out") R_P99=$(result raw_p99_ms "$out")
    M_MED=$(result model_median_ms "$out") M_P99=$(result model_p99_ms "$out")
    step "1b. task-update drop -> applied, $UPD_N sequential updates of one task, same watcher (no target) ($fs)"
    out=$("$DROPLAT" update "$venue/lat" "$UPD_N") || fail "droplat update: $out"
    grep -v '^RESULT' <<<"$out"
    U_MED=$(result median_ms "$out") U_P99=$(result p99_ms "$out")
    stop_watcher
    applied=$(find "$venue/lat/owners" -maxdepth 1 -name 'lat-*' | wc -l)
    [[ $applied == "$LAT_N" ]] || fail "expected $LAT_N owner links lat-*, found $applied"

    step "2b. context: the spool layout's own cost, without clawflow (layoutfloor.c, 300 interleaved rounds, $fs)"
    out=$("$LAYOUTFLOOR" "$venue/floor" 300) || fail "layoutfloor: $out"
    grep -v '^RESULT' <<<"$out"
    # Whole writes (until durable): droplat sends each drop as soon as the previous one is
    # visible, so the previous write's second barrier delays it, in both droplat modes.
    F_RAW=$(result raw_ms "$out") F_LAYOUT=$(result layout_ms "$out") F_INDEXED=$(result indexed_ms "$out")
    F_LAYOUT99=$(result layout_p99_ms "$out") F_INDEXED99=$(result indexed_p99_ms "$out")

    # A short probe burst on its own fresh spool gives the current speed; if the full burst
    # would take more than BURST_MAX_S at that speed, it uses 2,000 drops and says so.
    "$BIN" --spool "$venue/probe" init >/dev/null || fail "clawflow init"
    start_watcher "$venue/probe" "$venue/probe.log"
    out=$("$DROPLAT" burst "$venue/probe" 300) || fail "droplat burst (probe): $out"
    stop_watcher
    est=$(awk -v n="$burst_n" -v r="$(result rate "$out")" 'BEGIN { printf "%d", n / r }')
    if ((est > BURST_MAX_S && burst_n > 2000)); then
        burst_note=" (reduced from $burst_n: a 300-drop probe ran at $(printf '%.0f' "$(result rate "$out")") drops/s, so $burst_n would take ~${est} s)"
        burst_n=2000
    fi
    step "3. burst ingest: $burst_n drops renamed into incoming/new at once$burst_note ($fs)"
    "$BIN" --spool "$venue/burst" init >/dev/null || fail "clawflow init"
    start_watcher "$venue/burst" "$venue/burst.log"
    out=$("$DROPLAT" burst "$venue/burst" "$burst_n") || fail "droplat burst: $out"
    grep -v '^RESULT' <<<"$out"
    B_S=$(result seconds "$out") B_RATE=$(result rate "$out")
    stop_watcher
    rejected=$(find "$venue/burst/rejected" -mindepth 1 -maxdepth 1 | wc -l)
    [[ $rejected == 0 ]] || fail "$rejected files in rejected/ after the burst"
    # Exactly once: one flow per drop, no more (a drop applied twice makes a second flow).
    flows=$(find "$venue/burst/flows" -mindepth 1 -maxdepth 1 | wc -l)
    [[ $flows == "$burst_n" ]] || fail "$flows flows after a burst of $burst_n drops"
    step "3b. burst baseline: the raw baseline's C watcher (one durable write per drop) given $burst_n renames at once ($fs)"
    out=$("$DROPLAT" rawburst "$venue/rawburst" "$burst_n") || fail "droplat rawburst: $out"
    grep -v '^RESULT' <<<"$out"
    RB_RATE=$(result rate "$out")

    ratio=$(awk -v a="$C_MED" -v b="$R_MED" 'BEGIN { printf "%.1f", a / b }')
    SUMMARY+=("$2 ($fs):")
    SUMMARY+=("  drop -> applied: median $(f1 "$C_MED") ms, p99 $(f1 "$C_P99") ms, max $(f1 "$C_MAX") ms ($LAT_N drops); raw baseline (inotify wait + 1 durable write): median $(f1 "$R_MED") ms, p99 $(f1 "$R_P99") ms; ratio ${ratio}x (target <= 3x: $(meets "$ratio" le 3)), p99 target <= 10 ms: $(meets "$C_P99" le 10)")
    SUMMARY+=("  in the same blocks, a C watcher writing clawflow's layout for each drop (floor.h, 13 fsyncs in 2 rounds), timed as the baseline is: median $(f1 "$M_MED") ms = $(awk -v a="$M_MED" -v b="$R_MED" 'BEGIN { printf "%.1f", a / b }')x the raw baseline, p99 $(f1 "$M_P99") ms; clawflow = $(awk -v a="$C_MED" -v b="$M_MED" 'BEGIN { printf "%.2f", a / b }')x its layout in C")
    SUMMARY+=("  task-update drop -> applied (one task, $UPD_N updates one after another; no target): median $(f1 "$U_MED") ms, p99 $(f1 "$U_P99") ms")
    SUMMARY+=("  context (layoutfloor.c, no clawflow, same filesystem), whole writes until durable, as droplat's back-to-back drops see them: one durable write $(f1 "$F_RAW") ms; the least a new flow needs by the layout (7 fsyncs in 2 rounds) median $(f1 "$F_LAYOUT") ms = $(awk -v a="$F_LAYOUT" -v b="$F_RAW" 'BEGIN { printf "%.1f", a / b }')x, p99 $(f1 "$F_LAYOUT99") ms; clawflow's layout for a drop, with its indexes and applied record (13 fsyncs in 2 rounds) median $(f1 "$F_INDEXED") ms = $(awk -v a="$F_INDEXED" -v b="$F_RAW" 'BEGIN { printf "%.1f", a / b }')x, p99 $(f1 "$F_INDEXED99") ms")
    ratio=$(awk -v a="$B_RATE" -v b="$RB_RATE" 'BEGIN { printf "%.2f", a / b }')
    SUMMARY+=("  burst ingest: $burst_n drops in $(f1 "$B_S") s = $(printf '%.0f' "$B_RATE") drops/s$burst_note, 0 lost, 0 applied twice; baseline (one durable write per drop, C) $(printf '%.0f' "$RB_RATE") drops/s; clawflow = ${ratio}x the baseline (target > 1x: $(meets "$ratio" ge 1.0001))")
}
meets() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "le") ? (v + 0 <= t + 0) : (v + 0 >= t + 0); print (ok ? "meets" : "MISSES") }'; }
f1() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }

# First a fresh ext4 made for this run (scratchfs.sh says why), then the machine's own /tmp.
if scratch_fs_mount "$DISK/ext4"; then
    drop_suite "$DISK/ext4" "fresh ext4 (mkfs defaults), loop-mounted"
    scratch_fs_unmount "$DISK/ext4"
fi
drop_suite "$DISK" "/tmp, the machine's own disk"

# ---- 4. watcher RSS with many unfinished flows --------------------------------------------
RSS_FS=$(fstype "$SHM")
step "4. watcher RSS, $RSS_N running managed flows x 2 tasks ($RSS_FS, $SHM)"
"$MKSPOOL" "$SHM/rss" "$RSS_N" managed 2 running >/dev/null || fail "mkspool"
t0=$(date +%s.%N)
start_watcher "$SHM/rss" "$SHM/rss.log"
SCAN_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
scanline=$(grep -m1 'full scan:' "$SHM/rss.log" | sed 's/.*full scan:/full scan:/')
RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$WATCHER_PID/status")
HWM_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$WATCHER_PID/status")
WATCHES=0
for fd in /proc/"$WATCHER_PID"/fd/*; do
    if [[ $(readlink "$fd" 2>/dev/null) == anon_inode:inotify ]]; then
        c=$(grep -c '^inotify wd:' "/proc/$WATCHER_PID/fdinfo/${fd##*/}" || true)
        WATCHES=$((WATCHES + c))
    fi
done
stop_watcher
RSS_MIB=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')
HWM_MIB=$(awk -v k="$HWM_KB" 'BEGIN { printf "%.1f", k / 1024 }')
say "watcher logged \"$scanline\" ${SCAN_S} s after start; VmRSS $RSS_MIB MiB (peak VmHWM $HWM_MIB MiB), $WATCHES inotify watches"

# ---- summary ------------------------------------------------------------------------------
cat <<EOF

== watcher benchmark ==
$(printf '%s\n' "${SUMMARY[@]}")
watcher RSS with $RSS_N unfinished flows watched: $RSS_MIB MiB, $WATCHES inotify watches, first full scan logged after $SCAN_S s ($RSS_FS) (target <= 64 MiB: $(meets "$RSS_MIB" le 64))
watcher benchmark took $(($(date +%s) - T_START)) s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)
EOF
