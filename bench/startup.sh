#!/usr/bin/env bash
# Start-up instruction counts: `bash bench/startup.sh [--check | --write]`. See bench/README.md,
# "Start-up".
#
# Builds the release binary (make release) and the parse floor (make parsefloor: clawflow's
# swift-argument-parser command tree in a program that does nothing else, built the same way),
# compiles bench/hello.swift as the issue's reference (swiftc -O -static-stdlib), and counts
# the instructions of each command under `valgrind --tool=callgrind` (on `strip --strip-debug`
# copies: valgrind 3.19 cannot read the toolchain's DWARF 5). Counts are deterministic for a
# given binary, arguments and environment, whatever else the machine does, so every command
# runs once, with a fixed environment (env -i) and working directory.
#
#   (no flag)  prints each count beside the hello world's and the floor's
#   --check    counts clawflow only (no floor build) and exits 1 when a count is more than
#              10 % above its figure in bench/startup-counts.txt (make test runs this)
#   --write    prints as with no flag and rewrites bench/startup-counts.txt
#
# Knobs: BENCH_SKIP_BUILD=1 (use .build-release and .build-floor as built); BENCH_BIN=PATH
# counts another clawflow binary (an older build, to compare), with BENCH_SKIP_BUILD=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
MODE=${1:-}
FIGURES="$HERE/startup-counts.txt"
TOLERANCE=10   # percent
fail() { printf 'bench/startup: FAILED: %s\n' "$*" >&2; exit 2; }
case "$MODE" in ""|--check|--write) ;; *) fail "unknown argument $MODE (use --check or --write)";; esac

command -v valgrind >/dev/null || fail "valgrind is not installed (make deps installs it)"
BIN=${BENCH_BIN:-"$REPO/.build-release/release/clawflow"}
FLOOR="$REPO/.build-floor/release/parsefloor"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    if [[ $MODE == --check ]]; then
        make -s -C "$REPO" release >/dev/null 2>&1 || fail "make release"
    else
        make -s -C "$REPO" parsefloor >/dev/null 2>&1 || fail "make parsefloor"
    fi
fi
[[ -x "$BIN" ]] || fail "no release binary at $BIN"

WORK=$(mktemp -d /tmp/clawflow-startup.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
strip --strip-debug -o "$WORK/clawflow" "$BIN"
if [[ $MODE != --check ]]; then
    [[ -x "$FLOOR" ]] || fail "no parse floor at $FLOOR"
    strip --strip-debug -o "$WORK/parsefloor" "$FLOOR"
    swiftc -O -static-stdlib "$HERE/hello.swift" -o "$WORK/hello.full" >/dev/null 2>&1 || fail "swiftc hello.swift"
    strip --strip-debug -o "$WORK/hello" "$WORK/hello.full"
fi
cc -O2 -o "$WORK/mkspool" "$HERE/mkspool.c" || fail "cc mkspool.c"

# count PROGRAM ARGS...: the program's instruction count, run in $WORK with a fixed environment.
count() {
    local out
    out=$(cd "$WORK" && env -i PATH=/usr/bin:/bin HOME="$WORK" LC_ALL=C \
        valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null) || true
    out=$(grep -o 'Collected : [0-9]*' <<<"$out" | tail -1 | tr -dc 0-9)
    [[ -n $out ]] || fail "no count for $*"
    echo "$out"
}

# Fixtures: 100 mirrored flows (as run.sh's item 2), and the same with one queued task added
# by `tasks add`, copied afresh for each `tasks set` so that every count sees the same state.
"$WORK/mkspool" "$WORK/s100" 100 mirrored >/dev/null
cp -a "$WORK/s100" "$WORK/s100-task"
TASK=$("$BIN" --spool "$WORK/s100-task" tasks add --owner bench-set --runtime cron --label x)
[[ $TASK =~ ^[0-9a-f-]{36}$ ]] || fail "tasks add printed \"$TASK\", not a task id"

# The commands, one a line: name (the key in startup-counts.txt) | label | arguments. Those
# that read or write a spool get a fresh one (fixture below).
COMMANDS=(
    "version|clawflow --version|--version"
    "show|flows show owner-0 (100 flows)|--spool $WORK/spool flows show owner-0"
    "set|tasks set <id> --status running (100 flows + 1)|--spool $WORK/spool tasks set $TASK --status running"
    "list-empty|flows list (no spool yet)|--spool $WORK/spool flows list"
    "add|tasks add --owner k --runtime cron --label x (new spool)|--spool $WORK/spool tasks add --owner k --runtime cron --label x"
)
declare -A LABEL ARGS
NAMES=()
for entry in "${COMMANDS[@]}"; do
    IFS='|' read -r n label args <<<"$entry"
    NAMES+=("$n")
    LABEL[$n]=$label
    ARGS[$n]=$args
done
fixture() {
    rm -rf "$WORK/spool"
    case $1 in
        show) cp -a "$WORK/s100" "$WORK/spool" ;;
        set) cp -a "$WORK/s100-task" "$WORK/spool" ;;
    esac
}

declare -A CF FL
for n in "${NAMES[@]}"; do
    fixture "$n"
    # shellcheck disable=SC2086  # the arguments are words without spaces
    CF[$n]=$(count "$WORK/clawflow" ${ARGS[$n]})
    if [[ $MODE != --check ]]; then
        fixture "$n"
        # shellcheck disable=SC2086
        FL[$n]=$(count "$WORK/parsefloor" ${ARGS[$n]})
    fi
done

if [[ $MODE == --check ]]; then
    [[ -f $FIGURES ]] || fail "no $FIGURES (bash bench/startup.sh --write makes it)"
    status=0
    for n in "${NAMES[@]}"; do
        want=$(awk -v n="$n" '$1 == n { print $2 }' "$FIGURES")
        [[ -n $want ]] || fail "$FIGURES has no figure for $n"
        verdict=$(awk -v c="${CF[$n]}" -v w="$want" -v t="$TOLERANCE" 'BEGIN { printf "%+.1f%% %s", (c / w - 1) * 100, (c <= w * (1 + t / 100) ? "ok" : "ROSE") }')
        printf 'start-up count %-12s %11s instructions (committed %s: %s)\n' "$n" "${CF[$n]}" "$want" "$verdict"
        [[ $verdict == *ROSE ]] && status=1
    done
    if [[ $status != 0 ]]; then
        echo "bench/startup: a start-up count rose more than $TOLERANCE % above bench/startup-counts.txt: find the cause (bench/README.md, \"Start-up\"), or, for a rise that is worth it, commit new figures with bash bench/startup.sh --write" >&2
    fi
    exit $status
fi

HELLO=$(count "$WORK/hello")
printf '\n== start-up instruction counts (valgrind --tool=callgrind, %s) ==\n' "$(valgrind --version)"
printf 'Swift hello world (swiftc -O -static-stdlib, stripped of debug info): %s\n' "$HELLO"
printf '%-52s %12s %7s %12s %9s\n' "command" "clawflow" "/hello" "parse floor" "/floor"
for n in "${NAMES[@]}"; do
    awk -v l="${LABEL[$n]}" -v c="${CF[$n]}" -v h="$HELLO" -v f="${FL[$n]}" \
        'BEGIN { printf "%-52s %12d %6.2fx %12d %8.2fx\n", l, c, c / h, f, c / f }'
done
# The issue's targets (item 1), and the floor's (item 4) where they cannot be met.
for n in version show set; do
    limit=$([[ $n == version ]] && echo 2 || echo 3)
    awk -v l="${LABEL[$n]}" -v c="${CF[$n]}" -v h="$HELLO" -v f="${FL[$n]}" -v m="$limit" -v fh="${FL[$n]}" \
        'BEGIN { printf "target %s: <= %dx hello world: %s (%.2fx); the floor alone is %.2fx; <= 1.2x the floor: %s (%.2fx)\n", l, m, (c <= m * h ? "meets" : "MISSES"), c / h, f / h, (c <= 1.2 * f ? "meets" : "MISSES"), c / f }'
done

if [[ $MODE == --write ]]; then
    {
        echo "# Start-up instruction counts of the release binary (bash bench/startup.sh --write)."
        echo "# make test fails when one rises more than $TOLERANCE % above its figure here"
        echo "# (bench/startup.sh --check). $(valgrind --version), $(swift --version 2>/dev/null | head -1)."
        for n in "${NAMES[@]}"; do printf '%s %s\n' "$n" "${CF[$n]}"; done
        printf '# for reference, not checked: the Swift hello world and the parse floor\n'
        printf '# hello %s\n' "$HELLO"
        for n in "${NAMES[@]}"; do printf '# floor-%s %s\n' "$n" "${FL[$n]}"; done
    } >"$FIGURES"
    echo "wrote $FIGURES"
fi
