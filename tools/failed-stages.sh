#!/usr/bin/env bash
# Usage: tools/failed-stages.sh
# After a failed `make test`: for each stage tools/timed.sh saw fail, in the order they failed, its
# result line and the lines of its log that say why (pytest's and Ansible's failures, ansible-test's
# errors, the molecule and VM lanes' own summaries of why), else its last lines. A CI log keeps only
# its end, where this is printed.
set -uo pipefail
stages="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/output/stages"
# molecule.sh and lanes.py end a failed run with their own account of why: from its first line on.
own='^\[molecule\.sh\] why |^\[lanes\] FAILED '
# Else the lines a failing tool writes about the failure; FAILED - RETRYING is molecule polling.
why='^(FAILED |ERROR|FATAL)|fatal: \[|^E   |Traceback'
found=0
while IFS= read -r marker; do
    found=1
    label=$(basename "$marker" .failed)
    log="$stages/$label.log"
    echo
    echo "== why $label failed ($log):"
    cat "$marker"
    if grep -qE "$own" "$log" 2>/dev/null; then
        sed -nE "/$own/,\$p" "$log" | grep -v '^$' | tail -n 40 | cut -c1-400 | sed 's/^/  /'
    elif grep -qE "$why" "$log" 2>/dev/null; then
        grep -E "$why" "$log" | grep -v 'FAILED - RETRYING' | tail -n 30 | cut -c1-400 | sed 's/^/  /'
    else
        tail -n 20 "$log" 2>/dev/null | cut -c1-400 | sed 's/^/  /'
    fi
done < <(find "$stages" -maxdepth 1 -name '*.failed' -printf '%T@ %p\n' 2>/dev/null | sort -n | cut -d' ' -f2-)
[[ $found -eq 1 ]] || echo "failed-stages: no stage recorded a failure in $stages"
