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
if [[ $rc -eq 0 ]]; then
    echo "== $label: ok in ${elapsed}s"
else
    echo "== $label: FAILED (exit $rc) in ${elapsed}s"
fi
exit "$rc"
