#!/usr/bin/env bash
# Soak: a spool of 10,000 flows under 8 CLI writers, a watcher applying drops from a dropper,
# `run` jobs and `maintenance --apply`, for SECONDS (default 600). At the end every
# acknowledged write and drop is checked against the spool, `fsck` must be clean, and the
# watcher's descriptors and memory are compared with what they were after its start.
#
#   bench/soak.sh [SECONDS] [CLAWFLOW]      CLAWFLOW defaults to the debug build
#   SOAK_ONE_OWNER=1 bench/soak.sh ...     every drop under one owner key (see bench/README.md:
#                                          an owner with thousands of flows is slow to relink)
#
# Prints one line per check and ends with "soak: OK" (exit 0) or "soak: FAILED" (exit 1).
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
clawflow=${2:-$PWD/.build/debug/clawflow}
work=$(mktemp -d "${TMPDIR:-/tmp}/clawflow-soak.XXXXXX")
spool=$work/spool
acks=$work/acks
mkdir -p "$acks"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
failed=0
check() { if eval "$2"; then echo "soak: ok   $1"; else echo "soak: FAIL $1"; failed=1; fi; }

cc -O2 -o "$work/mkspool" bench/mkspool.c || { echo "soak: cannot build bench/mkspool.c"; exit 1; }
"$work/mkspool" "$spool" 10000 mirrored >/dev/null || { echo "soak: mkspool failed"; exit 1; }
echo "soak: a spool of 10,000 flows at $spool; ${seconds}s of load"

"$clawflow" --spool "$spool" watch --log-level error --maintenance-interval 30s 2>"$work/watch.log" &
watcher=$!
pids+=("$watcher")
sleep 2
fds() { ls "/proc/$watcher/fd" 2>/dev/null | wc -l; }
rss() { awk '/VmRSS/ { print $2 }' "/proc/$watcher/status" 2>/dev/null; }
fd0=$(fds); rss0=$(rss)
end=$((SECONDS + seconds))

# 8 writers: a task each loop, then its end; each step acknowledged only after exit 0.
for w in 1 2 3 4 5 6 7 8; do
    (
        i=0
        while ((SECONDS < end)); do
            i=$((i + 1))
            id=$("$clawflow" --spool "$spool" tasks add --owner "soak-w$w" --runtime cron --run-id "w$w-$i" --status running 2>/dev/null) || continue
            echo "$id running" >>"$acks/w$w"
            "$clawflow" --spool "$spool" tasks set "$id" --status succeeded >/dev/null 2>&1 && echo "$id succeeded" >>"$acks/w$w"
        done
    ) &
    pids+=($!)
done
# A dropper: Maildir drops, each a task and its update, names of their own.
(
    i=0
    while ((SECONDS < end)); do
        i=$((i + 1))
        owner=soak-drop-$i
        [[ -n ${SOAK_ONE_OWNER:-} ]] && owner=soak-drop
        printf '{"kind":"task","ownerKey":"%s","runtime":"cron","runId":"d-%d","status":"running"}\n' "$owner" "$i" >"$spool/incoming/tmp/d-$i.json"
        mv "$spool/incoming/tmp/d-$i.json" "$spool/incoming/new/" && echo "d-$i" >>"$acks/drops"
        printf '{"kind":"task-update","runId":"d-%d","status":"succeeded"}\n' "$i" >"$spool/incoming/tmp/u-$i.json"
        mv "$spool/incoming/tmp/u-$i.json" "$spool/incoming/new/"
        sleep 0.05
    done
) &
pids+=($!)
# run jobs and maintenance.
(
    while ((SECONDS < end)); do
        out=$("$clawflow" --spool "$spool" run --owner soak-run -- true 2>/dev/null) && echo "${out##* }" >>"$acks/runs"
        sleep 0.5
    done
) &
pids+=($!)
(
    while ((SECONDS < end)); do
        "$clawflow" --spool "$spool" maintenance --apply >/dev/null 2>&1
        sleep 20
    done
) &
pids+=($!)

# Samples of the watcher's descriptors and memory while the load runs; the baseline is taken
# a third of the way in, once the watcher has warmed up (its watches and caches filled).
peak_fd=$fd0
third=$((SECONDS + seconds / 3))
while ((SECONDS < end)); do
    sleep 5
    n=$(fds)
    ((n > peak_fd)) && peak_fd=$n
    if ((SECONDS >= third)) && [[ -z ${rss_third:-} ]]; then rss_third=$(rss); fd_third=$(fds); fi
done
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null; done
sleep 3  # the watcher applies the last drops
"$clawflow" --spool "$spool" ingest >/dev/null
sleep 5  # and finishes any write in flight
fd1=$(fds); rss1=$(rss)
ls -l "/proc/$watcher/fd" >"$work/watcher-fds.txt" 2>/dev/null

writes=$(cat "$acks"/w* 2>/dev/null | wc -l)
drops=$(wc -l <"$acks/drops" 2>/dev/null || echo 0)
runs=$(wc -l <"$acks/runs" 2>/dev/null || echo 0)
echo "soak: acknowledged $writes writes, $drops drops, $runs run jobs"
"$clawflow" --spool "$spool" tasks list --json >"$work/tasks.json"
missing=$(cat "$acks"/w* | python3 -c '
import json, sys
tasks = {t["taskId"]: t["status"] for t in json.load(open(sys.argv[1]))["tasks"]}
missing = 0
for line in sys.stdin:
    task, status = line.split()
    got = tasks.get(task)
    if got is None or (status == "succeeded" and got != "succeeded"):
        missing += 1
print(missing)' "$work/tasks.json")
check "every acknowledged write present with its state ($missing missing)" "((missing == 0))"
listed=$(jq '[.tasks[] | select(.ownerKey | startswith("soak-drop"))] | length' "$work/tasks.json")
twice=$(jq '[.tasks[] | select(.ownerKey | startswith("soak-drop")) | .runId] | group_by(.) | map(select(length > 1)) | length' "$work/tasks.json")
check "every acknowledged drop applied ($listed tasks for $drops drops), none twice ($twice)" "((listed == drops && twice == 0))"
done_drops=$(jq '[.tasks[] | select((.ownerKey | startswith("soak-drop")) and .status == "succeeded")] | length' "$work/tasks.json")
check "every drop's update applied ($done_drops of $drops)" "((done_drops == drops))"
check "fsck clean" "\"$clawflow\" --spool \"$spool\" fsck >/dev/null"
check "watcher alive" "kill -0 $watcher"
check "watcher descriptors steady: $fd0 after its start, ${fd_third:-?} a third in (the spool's directories it opens on first use), $fd1 at the end (peak $peak_fd under load)" "((fd1 <= ${fd_third:-0}))"
# Memory: a maintenance pass holds every flow it reads, so the watcher's resident size follows
# the spool's size (which the load grows). A fresh watcher on the final spool, after two of
# its maintenance passes, is the measure: the soaked one must not hold much more.
kill "$watcher"; wait "$watcher" 2>/dev/null
"$clawflow" --spool "$spool" watch --log-level error --maintenance-interval 15s 2>>"$work/watch.log" &
watcher=$!
pids+=("$watcher")
sleep 40
fresh=$(rss)
check "watcher memory steady: ${rss0} KiB after its start, ${rss_third:-?} KiB a third in, ${rss1} KiB at the end; a fresh watcher on the final spool: ${fresh} KiB" "((rss1 <= fresh * 3 / 2 + 16384))"
if ((failed)); then echo "soak: FAILED (kept $work)"; exit 1; fi
rm -rf "$work"
echo "soak: OK"
