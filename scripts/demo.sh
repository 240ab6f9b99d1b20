#!/usr/bin/env bash
# The demo: a few flows on the default spool, listed, shown by owner key, cancelled.
set -euo pipefail
clawflow=${1:?usage: demo.sh path/to/clawflow}
run() { printf '\n$ clawflow %s\n' "$*"; "$clawflow" "$@"; }

spool=${CLAWFLOW_SPOOL:-${XDG_STATE_HOME:-$HOME/.local/state}/clawflow}
owner="demo-$(date +%H%M%S)"
echo "clawflow demo on the spool at $spool (owner keys $owner-*)"

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
kill -TERM "$watcher"; wait "$watcher" || true
run events --flow "$owner-drop"
run fsck

cat <<EOT

The spool is a directory; try:
  ls $spool/flows
  cat $spool/owners/$owner-agent/manifest.json
  jq . $spool/flows/$flow/tasks/*.json
  cat $spool/flows/$flow/events.jsonl
EOT
