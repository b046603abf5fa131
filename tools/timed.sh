#!/usr/bin/env bash
# Usage: tools/timed.sh LABEL COMMAND...
# Run COMMAND and print one line with its result and wall-clock duration, so a
# `make test` log shows where the time goes. Exits with COMMAND's status.
set -uo pipefail
label=$1
shift
start=$(date +%s.%N)
"$@"
rc=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
# Clock and load: a CI log that ends in a timeout still says when each stage ended and how busy
# the machine was.
when="ended $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
if [[ $rc -eq 0 ]]; then
    echo "== $label: ok in ${elapsed}s ($when)"
else
    echo "== $label: FAILED (exit $rc) in ${elapsed}s ($when)"
fi
exit "$rc"
