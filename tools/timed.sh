#!/usr/bin/env bash
# Usage: tools/timed.sh LABEL COMMAND...
# Run COMMAND and print one line with its result and wall-clock duration, so a
# `make test` log shows where the time goes. Exits with COMMAND's status.
# COMMAND's output (stdout and stderr) is also kept in tests/output/stages/LABEL.log, and a failed
# stage leaves LABEL.failed beside it: CI keeps only the end of a long log, and
# tools/failed-stages.sh prints, at the end of a run, why each failed stage failed.
set -uo pipefail
label=$1
shift
stages="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/output/stages"
mkdir -p "$stages"
rm -f "$stages/$label.failed"
start=$(date +%s.%N)
"$@" 2>&1 | tee "$stages/$label.log"
rc=${PIPESTATUS[0]}
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
# Clock and load: a CI log that ends in a timeout still says when each stage ended and how busy
# the machine was.
when="ended $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
if [[ $rc -eq 0 ]]; then
    echo "== $label: ok in ${elapsed}s ($when)"
else
    echo "== $label: FAILED (exit $rc) in ${elapsed}s ($when)" | tee "$stages/$label.failed"
fi
exit "$rc"
