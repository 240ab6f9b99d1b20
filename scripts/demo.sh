#!/usr/bin/env bash
# The demo: a few flows on a spool of its own, listed, shown by owner key, cancelled.
# usage: demo.sh path/to/clawflow [SPOOL]
# Without SPOOL it makes a new temporary spool and leaves it for you to look at; your own
# ledger (the default spool) is never touched. Every task it starts has ended when it
# finishes, so `clawflow audit` on that spool finds nothing, now or later.
set -euo pipefail
clawflow=${1:?usage: demo.sh path/to/clawflow [SPOOL]}
if [[ -n ${2:-} ]]; then
    spool=$2
    cleanup="it is yours: the demo's flows stay in it, all ended"
else
    spool=$(mktemp -d "${TMPDIR:-/tmp}/clawflow-demo.XXXXXX")/spool
    cleanup="remove it when done: rm -r $(dirname "$spool")"
fi
export CLAWFLOW_SPOOL=$spool
run() { printf '\n$ clawflow %s\n' "$*"; "$clawflow" "$@"; }

owner="demo-$(date +%H%M%S)"
echo "clawflow demo on the spool at $spool (owner keys $owner-*)"
"$clawflow" init >/dev/null

# A one-task flow reported by a cron job: queued -> running -> succeeded.
nightly=$("$clawflow" tasks add --owner "$owner-cron" --runtime cron --label "nightly backup" --run-id "$owner-nightly")
run tasks set "$owner-nightly" --status running --progress "copying"
run tasks set "$nightly" --status succeeded --summary "3 GiB copied"

# A managed flow driven by an external controller, with two sub-agent tasks.
flow=$("$clawflow" flows create --owner "$owner-agent" --goal "summarise the inbox" --controller demo-scheduler --running)
first=$("$clawflow" tasks add "$flow" --runtime subagent --label "fetch mail" --status running)
"$clawflow" tasks set "$first" --status succeeded --summary "42 messages" >/dev/null
"$clawflow" tasks add "$flow" --runtime subagent --label "write summary" --status running >/dev/null

run flows list --owner "$owner-cron"
run flows list --owner "$owner-agent"
run flows show "$owner-agent"

# Cancel: the running sub-agent is asked to stop; the flow ends when it answers.
run flows cancel "$owner-agent" || echo "(exit $? — the sub-agent has not answered yet)"
second=$("$clawflow" flows show "$owner-agent" --json | jq -r '.tasks[] | select(.status == "running") | .taskId')
run tasks set "$second" --status cancelled
run flows show "$owner-agent"

# clawflow runs commands itself: a two-step sequence, each step `sh -c CMD`, detached.
echo
echo "\$ clawflow run --owner $owner-build --goal \"build and check\" --step ... --step ..."
"$clawflow" run --owner "$owner-build" --goal "build and check" \
    --step 'echo compiling; sleep 0.3; echo compiled' --step 'echo checking; echo all good' >/dev/null
for _ in $(seq 1 100); do
    [[ $("$clawflow" flows show "$owner-build" --json | jq -r .status) == succeeded ]] && break
    sleep 0.1
done
run flows show "$owner-build"
step2=$("$clawflow" flows show "$owner-build" --json | jq -r '.steps[1].taskId')
run logs "$step2"

# Another program reports work through the drop box while the watcher runs.
echo
echo "\$ clawflow watch &   # the watcher, in the background"
"$clawflow" watch --log-level warning &
watcher=$!
sleep 1
drop="$owner-report.json"
printf '%s\n' "{\"kind\":\"task\",\"ownerKey\":\"$owner-drop\",\"runtime\":\"subagent\",\"label\":\"dropped by another program\",\"status\":\"running\"}" > "$spool/incoming/tmp/$drop"
echo "\$ mv \$spool/incoming/tmp/$drop \$spool/incoming/new/   # a drop arrives"
mv "$spool/incoming/tmp/$drop" "$spool/incoming/new/$drop"
for _ in $(seq 1 50); do "$clawflow" flows show "$owner-drop" >/dev/null 2>&1 && break; sleep 0.1; done
run flows show "$owner-drop"
# The same program reports the end, under a name of its own (a name is an idempotency key).
dropped=$("$clawflow" flows show "$owner-drop" --json | jq -r '.tasks[0].taskId')
printf '%s\n' "{\"kind\":\"task-update\",\"taskId\":\"$dropped\",\"status\":\"succeeded\",\"terminalSummary\":\"reported done\"}" > "$spool/incoming/tmp/$owner-report-done.json"
mv "$spool/incoming/tmp/$owner-report-done.json" "$spool/incoming/new/"
for _ in $(seq 1 50); do [[ $("$clawflow" flows show "$owner-drop" --json | jq -r .status) == succeeded ]] && break; sleep 0.1; done
kill -TERM "$watcher"; wait "$watcher" || true
run events --flow "$owner-drop"

# Anything still running (a slow machine) is cancelled: the demo leaves no work in flight.
for flow in $("$clawflow" flows list --json | jq -r '.flows[] | select(.endedAt == null) | .flowId'); do
    "$clawflow" flows cancel "$flow" >/dev/null 2>&1 || true
done
run flows list
run audit
run fsck

cat <<EOT

The spool is a directory ($cleanup); try:
  ls $spool/flows
  cat $spool/owners/$owner-agent/manifest.json
  jq . $spool/flows/$flow/tasks/*.json
  cat $spool/flows/$flow/events.jsonl
EOT
