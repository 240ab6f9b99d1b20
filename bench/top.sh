#!/usr/bin/env bash
# clawflow top under load: `bash bench/top.sh`. See bench/README.md, "top", and bench/top.py.
# Knobs: BENCH_TOP_N (1000 flows in the burst), BENCH_TOP_LAT_N (50 creations timed),
# BENCH_SKIP_BUILD=1 (use .build-release as built), BENCH_BIN (another binary).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BIN=${BENCH_BIN:-$REPO/.build-release/release/clawflow}
if [[ -z "${BENCH_BIN:-}" && "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    make -s -C "$REPO" release >/dev/null 2>&1 || { echo "bench/top: FAILED: release build" >&2; exit 1; }
fi
[[ -x "$BIN" ]] || { echo "bench/top: FAILED: no binary at $BIN" >&2; exit 1; }
exec python3 "$HERE/top.py" "$BIN"
