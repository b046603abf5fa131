#!/usr/bin/env bash
# Five cases of issue 22 against real corosync 3.1.7 / qnetd 3.0.3 (bed.sh); logs under $H22_BED/out.
# Run as root from the checkout: tests/cluster/run.sh   (about 5 minutes; `bed.sh setup` once before).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
B=${H22_BED:-/tmp/h22-coro}
bed=$here/bed.sh
out=$B/out
mkdir -p "$out"
ANSIBLE_COLLECTIONS_PATH=$("$root/tools/collection-link.sh" --collections-path)
export ANSIBLE_COLLECTIONS_PATH ANSIBLE_NOCOLOR=1
playbook=${ANSIBLE_PLAYBOOK:-ansible-playbook}

inventory() {  # inventory N
    echo '[all]'
    for i in $(seq 1 "$1"); do
        echo "pve$i ansible_connection=local ansible_python_interpreter=$B/bin/py-n$i node_index=$i bed=$bed bed_dir=$B"
    done > "$B/inv$1.ini"
}

cluster() {  # cluster N [qdevice|two_node]: a fresh cluster, every node up
    for i in 1 2 3 4 5; do "$bed" stop "$i" 2>/dev/null; done
    sleep 2
    "$bed" net 5
    "$bed" conf "$@"
    for i in $(seq 1 "$1"); do "$bed" start "$i"; done
    if [[ ${2:-} == qdevice ]]; then sleep 3; for i in $(seq 1 "$1"); do "$bed" qdevice-start "$i"; done; fi
    sleep 8
    inventory "$1"
}

summarise() {  # A node that has just started sees only itself (total=1, not quorate) until it joins:
    # that is its own view, not the cluster losing quorum; any other "not quorate" sample is.
    awk '{ n++ } /quorate=Yes/ { t = substr($3, 7) + 0; if (low == "" || t < low) low = t }
         /quorate=No/ { t = substr($3, 7) + 0; if (t == 1) alone++; else lost++ }
         END { printf "  watcher: %d samples; lowest total votes among quorate views: %s; not quorate: %d" \
               " (%d a starting node alone, %d a node that sees others)\n", n, low, alone + lost, alone, lost }' "$1"
}

case_run() {  # case_run NAME N PLAYBOOK [ansible-playbook args]: quorumtool before, watcher during
    local name=$1 n=$2 book=$3; shift 3
    "$bed" qt 1 -s > "$out/$name.before.txt" 2>&1
    "$bed" watch "$n" "$out/$name.watch.log" & local watcher=$!
    "$playbook" -i "$B/inv$n.ini" "$here/$book" "$@" > "$out/$name.play.log" 2>&1
    echo "$name: ansible-playbook exit $?"
    kill "$watcher"
    grep -E '"msg"|fatal|failed:' "$out/$name.play.log" | cut -c1-400
    summarise "$out/$name.watch.log"
}

[[ -x $B/bin/py-n1 ]] || "$bed" setup
cluster 3
case_run case1-three-up 3 roll.yml
"$bed" stop 3; sleep 4
case_run case2-three-one-down 3 roll.yml -e roll_hosts=pve1,pve2
cluster 5
"$bed" stop 5; sleep 4
case_run case3-five-one-down 5 roll.yml -e roll_hosts=pve1,pve2,pve3,pve4
case_run case4-batch 5 batch.yml -e roll_hosts=pve1,pve2,pve3,pve4 -e pcie_passthrough_serial=4 \
    -e __pcie_passthrough_corosync_conf="$B/cfg/n1/corosync.conf"
"$bed" qnetd-start
cluster 2 qdevice
case_run case5a-qdevice-qnetd-up 2 roll.yml
"$bed" qnetd-stop; sleep 12
case_run case5b-qdevice-qnetd-down 2 roll.yml
