#!/usr/bin/env bash
# A real corosync cluster on one Linux host, without containers: each node is a network namespace
# (h22nN, 10.222.0.N on bridge h22br) running Debian's corosync 3.1.7 with a private /run, and
# corosync-qnetd 3.0.3 runs in h22n5. Needs root, ip(8), unshare(1), nsenter(1) and Debian 12's apt.
# Not part of `make test`: ./run.sh drives the role's cluster tasks through five cases.
#
#   bed.sh setup | net N | conf N [qdevice|two_node] | start I | stop I | qt I ARGS | qnetd-start |
#   qnetd-stop | qdevice-start I | watch N OUT | teardown
set -euo pipefail
B=${H22_BED:-/tmp/h22-coro}
R=$B/root
LIB=$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu
PKGS=(corosync libknet1 libqb100 libnozzle1 libcorosync-common4 libcfg7 libcmap4 libquorum5 libvotequorum8
      libcpg4 libnl-3-200 libnl-route-3-200 libstatgrab10 libsensors5 liblzo2-2 libnss3 libnspr4
      corosync-qdevice corosync-qnetd)

conf() {  # conf N [qdevice|two_node]: corosync-conf.sh writes it, with this node's state dir and log
    local n=$1 mode=() nodes=()
    case ${2:-} in
        two_node) mode=(--two-node) ;;
        qdevice) mode=(--qdevice 10.222.0.5) ;;
    esac
    for j in $(seq 1 "$n"); do nodes+=("pve$j=10.222.0.$j"); done
    for i in $(seq 1 "$n"); do
        rm -rf "$B/cfg/n$i/state"; mkdir -p "$B/cfg/n$i/state"
        "$(dirname "$0")/corosync-conf.sh" "${mode[@]}" --state-dir "$B/cfg/n$i/state" --logfile "$B/cfg/n$i/corosync.log" \
            "${nodes[@]}" > "$B/cfg/n$i/corosync.conf"
    done
    if [[ ${2:-} == qdevice ]]; then touch "$B/cfg/qdevice_on"; else rm -f "$B/cfg/qdevice_on"; fi
}

case ${1:-} in
    setup)
        mkdir -p "$B/debs" "$R" "$B/cfg/q" "$B/bin"
        (cd "$B/debs" && apt-get download "${PKGS[@]}")
        for deb in "$B"/debs/*.deb; do dpkg -x "$deb" "$R"; done
        printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s/usr/sbin/corosync-quorumtool "$@"\n' "$LIB" "$R" > "$B/bin/corosync-quorumtool"
        for i in 1 2 3 4 5; do
            # The Python Ansible runs node I's modules with: its namespace (corosync's IPC) and host name.
            # shellcheck disable=SC2016  # $PATH and $@ belong to the wrapper, not to this script
            printf '#!/bin/sh\nexec ip netns exec h22n%s unshare -u sh -c '\''hostname pve%s; PATH=%s:$PATH exec /usr/bin/python3 "$@"'\'' py "$@"\n' \
                "$i" "$i" "$B/bin" > "$B/bin/py-n$i"
        done
        chmod +x "$B"/bin/*
        ;;
    net)
        ip link show h22br >/dev/null 2>&1 || { ip link add h22br type bridge; ip link set h22br up; }
        for i in $(seq 1 "$2"); do
            ip netns list | grep -q "^h22n$i\b" && continue
            ip netns add "h22n$i"
            ip link add "h22v$i" type veth peer name eth0 netns "h22n$i"
            ip link set "h22v$i" master h22br up
            ip -n "h22n$i" addr add "10.222.0.$i/24" dev eth0
            ip -n "h22n$i" link set eth0 up
            ip -n "h22n$i" link set lo up
        done
        ;;
    conf) conf "$2" "${3:-}" ;;
    start)  # a private /run: corosync's pid lock is a fixed path
        setsid ip netns exec "h22n$2" unshare -m sh -c "mount -t tmpfs h22run /run && mkdir -p /run/corosync && LD_LIBRARY_PATH=$LIB exec $R/usr/sbin/corosync -f -c $B/cfg/n$2/corosync.conf" \
            > "$B/cfg/n$2/stdout" 2>&1 &
        echo $! > "$B/cfg/n$2/pid"
        ;;
    stop)  # and forget the ids, so that a later stop cannot hit a reused pid
        for f in "$B/cfg/n$2/pid" "$B/cfg/n$2/qdpid"; do
            [[ -f $f ]] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
        done
        ;;
    qt) i=$2; shift 2; ip netns exec "h22n$i" env LC_ALL=C LD_LIBRARY_PATH="$LIB" "$R/usr/sbin/corosync-quorumtool" "$@" ;;
    qnetd-start)
        setsid ip netns exec h22n5 unshare -m sh -c "mount -t tmpfs h22run /run && LD_LIBRARY_PATH=$LIB exec $R/usr/bin/corosync-qnetd -f -s off" > "$B/cfg/q/stdout" 2>&1 &
        echo $! > "$B/cfg/q/pid"
        ;;
    qnetd-stop) kill "$(cat "$B/cfg/q/pid")" 2>/dev/null || true; rm -f "$B/cfg/q/pid" ;;
    qdevice-start)  # in its corosync's network and mount namespaces
        setsid nsenter -t "$(cat "$B/cfg/n$2/pid")" -m -n sh -c "mkdir -p /run/corosync-qdevice && LD_LIBRARY_PATH=$LIB exec $R/usr/sbin/corosync-qdevice -f" \
            > "$B/cfg/n$2/qdev.out" 2>&1 &
        echo $! > "$B/cfg/n$2/qdpid"
        ;;
    watch)  # watch N OUT: every running node's view, twice a second, until killed
        : > "$3"
        while :; do
            for i in $(seq 1 "$2"); do
                if s=$("$0" qt "$i" -s 2>/dev/null) || [[ $? == 2 ]]; then
                    t=$(awk -F: '/^Total votes/{gsub(/ /,"",$2);print $2}' <<<"$s")
                    q=$(awk -F: '/^Quorate/{gsub(/ /,"",$2);print $2}' <<<"$s")
                    [[ -n $t ]] && echo "$(date +%T.%N | cut -c1-12) pve$i total=$t quorate=$q" >> "$3" && continue
                fi
                echo "$(date +%T.%N | cut -c1-12) pve$i down" >> "$3"
            done
            sleep 0.5
        done
        ;;
    teardown)
        for f in "$B"/cfg/n*/pid "$B"/cfg/n*/qdpid "$B"/cfg/q/pid; do
            [[ -f $f ]] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
        done
        for i in 1 2 3 4 5; do ip netns del "h22n$i" 2>/dev/null || true; ip link del "h22v$i" 2>/dev/null || true; done
        ip link del h22br 2>/dev/null || true
        ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
esac
