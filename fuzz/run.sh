#!/usr/bin/env bash
# Fuzzes the JSON parser, the record decoder and the drop validator with libFuzzer (the Swift
# toolchain's, through swiftc -sanitize=fuzzer,address).
#   fuzz/run.sh [SECONDS]   each target for SECONDS (default 600), from the committed corpus
# A crash, a hang (over 10 s for one input) or a round-trip mismatch stops the run: the input
# is kept as .build-fuzz/<target>-crash-*; turn it into a regression test and a corpus file.
# New inputs libFuzzer finds go to .build-fuzz/corpus-<target>, not into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
out=${FUZZ_OUT:-.build-fuzz}  # FUZZ_OUT: another work directory, for two runs at once
mkdir -p "$out"
for target in json record drop; do
    case $target in json) src=FuzzJSON.swift ;; record) src=FuzzRecord.swift ;; drop) src=FuzzDrop.swift ;; esac
    bin=$out/fuzz-$target
    if [[ ! -x $bin || -n $(find Sources/ClawflowModel "fuzz/$src" -newer "$bin" -name '*.swift' | head -1) ]]; then
        swiftc -sanitize=fuzzer,address -parse-as-library -module-name ClawflowFuzz -O \
            Sources/ClawflowModel/*.swift "fuzz/$src" -o "$bin" 2>&1 | grep -v "warning: Cannot export local symbol" || true
        [[ -x $bin ]] || { echo "fuzz: could not build $bin" >&2; exit 1; }
    fi
    mkdir -p "$out/corpus-$target"
    echo "fuzz: $target for ${seconds}s"
    if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/$target-" "$out/corpus-$target" "fuzz/corpus/$target" >"$out/$target.log" 2>&1; then
        tail -30 "$out/$target.log" >&2
        echo "fuzz: $target FAILED (input kept under $out/$target-*)" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$out/$target.log" | tail -2 | sed "s/^/fuzz: $target: /"
done
echo "fuzz: 0 crashes, 0 hangs, 0 round-trip mismatches"
