#!/usr/bin/env bash
# bench/hooklat.sh: from a terminal write to its notification hook starting (issue 19, item 5).
# See bench/README.md, "Notification hooks". Not part of run.sh.
#
# In one run, on spools under /tmp (the machine's disk), each write waited for before the next:
#   A. floor: `tasks set T --status succeeded` on an external task of a spool without hooks,
#      with bench/hookfloor.c (inotify on the flow's tasks/, fork + exec of the stamp program:
#      the least a reaction can cost, with no durability) as the "deliverer", and the watcher;
#   B. the same write with a spool-wide hook (bench/hookstamp.c in hooks/), watcher running;
#   C. the same without a watcher (the command's own detached deliverer);
#   D. a `run --on-finish` job's end (`-- true`), watcher running.
# Latency = the hook's first clock_gettime minus the moment an inotify observer (hookfloor.c)
# saw the write rename the task file's new version into place (the file's ctime would do, but
# file times come from the kernel's coarse clock, up to a tick, 4 ms, early; D, whose tasks are
# in many flows, is measured from the ctime and carries that error). Also: the wall time of `tasks set` with a hook
# to tell and without. Nothing asserts a timing; the target (median <= 5 ms, B) is printed
# with "meets" / "MISSES".
#
# Knobs: BENCH_HOOK_WRITES (200), BENCH_HOOK_RUNS (50), BENCH_SKIP_BUILD=1 (use the existing
# .build-release binary), CLAWFLOW_BIN (another binary).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
N=${BENCH_HOOK_WRITES:-200}
RUNS=${BENCH_HOOK_RUNS:-50}
BIN=${CLAWFLOW_BIN:-$REPO/.build-release/release/clawflow}
if [[ -z "${CLAWFLOW_BIN:-}" && -z "${BENCH_SKIP_BUILD:-}" ]]; then make -C "$REPO" release >/dev/null; fi
[[ -x "$BIN" ]] || { echo "bench/hooklat: no binary at $BIN (make release)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/clawflow-hooklat.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cc -O2 -o "$WORK/hookstamp" "$HERE/hookstamp.c"
cc -O2 -o "$WORK/hookfloor" "$HERE/hookfloor.c"
export STAMP_OUT="$WORK/stamps"
: > "$STAMP_OUT"

start_watcher() { "$BIN" --spool "$1" watch 2>/dev/null & PIDS+=($!); sleep 0.5; }
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
}
# wait_stamp ID [COUNT [@obs]]: until COUNT (1) stamps of ID (or observer lines) are there (10 s at most).
wait_stamp() {
    local i
    for ((i = 0; i < 5000; i++)); do
        (($(grep -c "^$1${3:-} " "$STAMP_OUT") >= ${2:-1})) && return 0
        sleep 0.002
    done
    echo "bench/hooklat: fewer than ${2:-1} ${3:-hook} lines for $1" >&2
    return 1
}
now_ns() { date +%s%N; }

# observe SPOOL FLOW STAMP|-: hookfloor on the flow's tasks/ (see above), ready when this returns.
observe() {
    rm -f "$WORK/observer.ready"
    "$WORK/hookfloor" "$1/flows/$2/tasks" "$3" > "$WORK/observer.ready" & PIDS+=($!)
    while ! grep -q ready "$WORK/observer.ready" 2>/dev/null; do sleep 0.01; done
}

# writes PHASE SPOOL: N external tasks of one managed flow, each set succeeded and waited for;
# appends "PHASE taskfile wall_ns" lines to $WORK/writes.
writes() {
    local phase=$1 spool=$2 flow t t0 t1
    flow=$("$BIN" --spool "$spool" flows create --owner "bench-$phase" --goal bench --controller bench --running)
    observe "$spool" "$flow" -
    for ((i = 0; i < N; i++)); do
        t=$("$BIN" --spool "$spool" tasks add "$flow" --runtime bench --status running)
        wait_stamp "$t" 1 @obs  # the observer sees the creation too (the analysis takes its last line)
        t0=$(now_ns)
        "$BIN" --spool "$spool" tasks set "$t" --status succeeded >/dev/null
        t1=$(now_ns)
        wait_stamp "$t" 1
        wait_stamp "$t" 2 @obs
        echo "$phase $spool/flows/$flow/tasks/$t.json $((t1 - t0))" >> "$WORK/writes"
    done
}

echo "clawflow $("$BIN" --version), $N writes per phase, $RUNS run jobs; spools on $(df --output=fstype /tmp | tail -1) (/tmp)"

# A. floor
S="$WORK/floor"
"$BIN" --spool "$S" init >/dev/null
start_watcher "$S"
flow=$("$BIN" --spool "$S" flows create --owner floor-probe --goal bench --controller bench --running)
# hookfloor watches one flow's tasks/: the phase uses that flow.
observe "$S" "$flow" "$WORK/hookstamp"
for ((i = 0; i < N; i++)); do
    t=$("$BIN" --spool "$S" tasks add "$flow" --runtime bench --status running)
    wait_stamp "$t"  # the floor reacts to the creation too (the analysis takes its last lines)
    t0=$(now_ns)
    "$BIN" --spool "$S" tasks set "$t" --status succeeded >/dev/null
    t1=$(now_ns)
    wait_stamp "$t" 2
    echo "floor $S/flows/$flow/tasks/$t.json $((t1 - t0))" >> "$WORK/writes"
done
stop_all

# B. a spool-wide hook, watcher running
S="$WORK/hooks"
"$BIN" --spool "$S" init >/dev/null
mkdir "$S/hooks" && install -m 0755 "$WORK/hookstamp" "$S/hooks/10-stamp"
start_watcher "$S"
writes watcher "$S"
stop_all

# C. the same without a watcher
S="$WORK/hooks-nowatch"
"$BIN" --spool "$S" init >/dev/null
mkdir "$S/hooks" && install -m 0755 "$WORK/hookstamp" "$S/hooks/10-stamp"
writes nowatcher "$S"
stop_all

# D. run --on-finish, watcher running
S="$WORK/runs"
"$BIN" --spool "$S" init >/dev/null
start_watcher "$S"
for ((i = 0; i < RUNS; i++)); do
    read -r flow t < <("$BIN" --spool "$S" run --owner bench-run --on-finish "$WORK/hookstamp" -- true)
    wait_stamp "$t"
    echo "run $S/flows/$flow/tasks/$t.json 0" >> "$WORK/writes"
done
stop_all

python3 - "$WORK/writes" "$STAMP_OUT" <<'PY'
import os, sys
writes = [l.split() for l in open(sys.argv[1])]
stamps = {}
for l in open(sys.argv[2]):
    name, ns = l.split()
    stamps.setdefault(name, []).append(int(ns))
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]
lat, wall, coarse = {}, {}, {}
for phase, path, w in writes:
    task = os.path.basename(path)[:-5]
    ctime = os.stat(path).st_ctime_ns
    seen = stamps.get(task + "@obs", [ctime])[-1]  # the terminal write's rename (the creation's came first)
    # The floor stamps the creation too, so its last stamp; a hook is told once, so its first.
    stamp = stamps[task][-1] if phase == "floor" else stamps[task][0]
    lat.setdefault(phase, []).append((stamp - seen) / 1e6)
    coarse.setdefault(phase, []).append((stamp - ctime) / 1e6)
    wall.setdefault(phase, []).append(int(w) / 1e6)
names = {"floor": "A. floor (inotify + fork/exec, no durability)", "watcher": "B. hook, watcher running",
         "nowatcher": "C. hook, no watcher (the command's deliverer)", "run": "D. run --on-finish, watcher running"}
print("\nterminal write -> hook start (ms; from the task file's rename, as an inotify observer saw it; D from its ctime)")
print(f"{'':50} {'n':>5} {'median':>8} {'p99':>8} {'max':>8}")
for phase in ["floor", "watcher", "nowatcher", "run"]:
    xs = lat.get(phase, [])
    if xs:
        print(f"{names[phase]:50} {len(xs):5d} {pct(xs, 50):8.2f} {pct(xs, 99):8.2f} {max(xs):8.2f}   (from the ctime: median {pct(coarse[phase], 50):.2f})")
m = pct(lat["watcher"], 50)
print(f"\ntarget: median <= 5 ms with the watcher running: {m:.2f} ms, {'meets' if m <= 5 else 'MISSES'}; "
      f"{m / pct(lat['floor'], 50):.1f}x the floor's median")
print("\ntasks set wall time (ms, the whole command)")
for phase in ["floor", "watcher", "nowatcher"]:
    xs = wall[phase]
    print(f"{names[phase]:50} median {pct(xs, 50):6.2f}  p99 {pct(xs, 99):6.2f}")
print(f"a hook to tell costs the write {pct(wall['watcher'], 50) - pct(wall['floor'], 50):+.2f} ms (median, B - A)")
PY
