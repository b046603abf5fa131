#!/usr/bin/env bash
# The cases of issue 22 against real corosync clusters of the scenario's containers; run by converge.yml,
# checked by tests/test_cluster.py. For each case: form the cluster, write `corosync-quorumtool -s` as
# seen before, sample it on every member twice a second while the real playbook runs, and keep the
# play's output and exit code and each node's boot log (/var/log/container-boots), in
# tests/output/molecule-cluster/.
#
# CLUSTER_CASES picks cases by number. Default: 1 2 4 (make test); with MOLECULE_FULL=1 (make test-full)
# also 3 (five nodes) and 5 (QDevice), which double the scenario's time.
set -uo pipefail
root=${MOLECULE_PROJECT_DIRECTORY:?run by molecule}
# Outside the ephemeral directory, which molecule's destroy removes: the record outlives the run.
out=$root/tests/output/molecule-cluster
inventory=${MOLECULE_INVENTORY_FILE:?run by molecule}
prefix=${VFIO_MOLECULE_PREFIX:?}-cluster
if [[ ${MOLECULE_FULL:-} == 1 ]]; then cases=${CLUSTER_CASES:-1 2 3 4 5}; else cases=${CLUSTER_CASES:-1 2 4}; fi
rm -rf "$out"; mkdir -p "$out"
echo "$cases" > "$out/CHOSEN"

c() { echo "$prefix-$1"; }
addr() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(c "$1")"; }
qt() { podman exec "$(c "$1")" corosync-quorumtool -s 2>/dev/null; }
votes() { qt "$1" | awk -F: '/^Total votes/ {gsub(/ /, "", $2); print $2}'; }
say() { echo "$(date -u +%T) $*"; }

wait_votes() {  # wait_votes NODE N: until NODE counts N votes (60 s)
    for _ in $(seq 1 120); do [[ $(votes "$1") == "$2" ]] && return 0; sleep 0.5; done
    say "ERROR: $1 does not count $2 votes: $(qt "$1" | tr '\n' ' ')"; return 1
}

members=()
form() {  # form plain|qdevice NODE...: every other node's corosync off; the NODEs a fresh cluster
    local mode=$1 args=(--name vfiolab --secauth) nodes=() conf n
    shift
    [[ $mode == qdevice ]] && args+=(--qdevice "$(addr qnetd)")
    for n in "$@"; do nodes+=("$n=$(addr "$n")"); done
    conf=$("$root/tests/cluster/corosync-conf.sh" "${args[@]}" "${nodes[@]}")
    for n in pve1 pve2 pve3 pve4 pve5; do
        podman exec "$(c "$n")" systemctl disable --now --quiet corosync-qdevice corosync
    done
    for n in "$@"; do
        # Proxmox VE keeps the cluster's copy in /etc/pve and corosync reads /etc/corosync's.
        printf '%s\n' "$conf" | podman exec -i "$(c "$n")" sh -c \
            'cat > /etc/corosync/corosync.conf && cp /etc/corosync/corosync.conf /etc/pve/corosync.conf'
        podman exec "$(c "$n")" systemctl enable --now --quiet corosync
        [[ $mode == qdevice ]] && podman exec "$(c "$n")" systemctl enable --now --quiet corosync-qdevice
    done
    members=("$@")
    local expected=$#
    [[ $mode == qdevice ]] && expected=$((expected + 1))
    wait_votes "$1" "$expected"
}

watch() {  # watch OUT: every member's view (votes, quorum, the members it sees), twice a second, until killed
    local n s t q m
    while :; do
        for n in "${members[@]}"; do
            s=$(qt "$n")
            t=$(awk -F: '/^Total votes/ {gsub(/ /, "", $2); print $2}' <<<"$s")
            q=$(awk -F: '/^Quorate/ {gsub(/ /, "", $2); print $2}' <<<"$s")
            # The membership block: "Nodeid Votes [Qdevice-flags] Name [(local)]" rows, node 0 the QDevice's; a
            # node that left is missing from the others' rows even when its restart is quicker than one round.
            m=$(awk '/^Membership information/ {on = 1}
                     on && $1 ~ /^[1-9][0-9]*$/ && $2 ~ /^[0-9]+$/ {print ($NF == "(local)") ? $(NF - 1) : $NF}' <<<"$s" \
                | paste -sd, -)
            if [[ -n $t ]]; then echo "$(date -u +%T.%3N) $n total=$t quorate=$q members=$m"
            else echo "$(date -u +%T.%3N) $n down"; fi
        done >> "$1"
        sleep 0.5
    done
}

run_case() {  # run_case NAME NODE... -- [ansible-playbook args]: the playbook on NODEs
    local name=$1 hosts=() n w t0
    shift
    while [[ $1 != -- ]]; do hosts+=("$(c "$1")"); shift; done
    shift
    say "$name: members ${members[*]}; playbook on ${hosts[*]##*-}"
    qt "${members[0]}" > "$out/$name.before.txt"
    for n in "${members[@]}"; do podman exec "$(c "$n")" cat /var/log/container-boots > "$out/$name.boots-before.$n"; done
    watch "$out/$name.watch.log" & w=$!
    t0=$SECONDS
    ansible-playbook -i "$inventory" vfio.passthrough.passthrough \
        -e "pcie_passthrough_hosts=$(IFS=,; echo "${hosts[*]}")" "$@" > "$out/$name.play.log" 2>&1
    echo $? > "$out/$name.rc"
    echo $((SECONDS - t0)) > "$out/$name.seconds"
    kill "$w"; wait "$w" 2>/dev/null
    for n in "${members[@]}"; do podman exec "$(c "$n")" cat /var/log/container-boots > "$out/$name.boots-after.$n"; done
    podman exec "$(c pve4)" cat /etc/default/grub > "$out/$name.pve4-grub"
    say "$name: ansible-playbook exit $(cat "$out/$name.rc") after $(cat "$out/$name.seconds") s"
    grep -hoE '(Cluster: [^"]*|REBOOT REQUIRED[^"]*|Not running: [^"]*)' "$out/$name.play.log" | cut -c1-300
}

has() { [[ " $cases " == *" $1 "* ]]; }
start=$SECONDS
if has 1 || has 2; then
    form plain pve1 pve2 pve3
    has 1 && run_case case1-three-up pve1 pve2 pve3 --
    if has 2; then
        podman exec "$(c pve3)" systemctl stop corosync; wait_votes pve1 2
        run_case case2-three-one-down pve1 pve2 --
    fi
fi
if has 3 || has 4; then
    form plain pve1 pve2 pve3 pve4 pve5
    podman exec "$(c pve5)" systemctl stop corosync; wait_votes pve1 4
    has 3 && run_case case3-five-one-down pve1 pve2 --
    has 4 && run_case case4-batch pve1 pve2 pve3 pve4 -- -e pcie_passthrough_serial=4
fi
if has 5; then
    podman exec "$(c qnetd)" systemctl start corosync-qnetd
    form qdevice pve1 pve2
    run_case case5a-qdevice-qnetd-up pve1 pve2 --
    podman exec "$(c qnetd)" systemctl stop corosync-qnetd; wait_votes pve1 2
    run_case case5b-qdevice-qnetd-down pve1 --
fi
say "cases done in $((SECONDS - start)) s"
