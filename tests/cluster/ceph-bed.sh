#!/usr/bin/env bash
# A one-host Ceph 16.2.15 (Debian 12) in network namespace h22n4 (bed.sh net 5 first), and the captures under
# tests/fixtures/cluster/ceph/real/: 1 mon, 1 mgr, 3 memstore OSDs, each OSD in its own CRUSH host bucket
# pve1..pve3 so size 3 / min_size 2 PGs reach active+clean. Needs root and about 1 GiB of RAM (memstore).
# Packages are downloaded and unpacked under $H22_CEPH (nothing installed). Not part of `make test`.
#   ceph-bed.sh setup | start | capture | stop
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
B=${H22_CEPH:-/tmp/h22-ceph}
R=$B/root
OUT=${OUT:-$here/../fixtures/cluster/ceph/real}

in_ns() { ip netns exec h22n4 bash -c ". $B/env.sh; exec \"\$@\"" in_ns "$@"; }
ceph() { in_ns python3 "$R/usr/bin/ceph" "$@"; }
daemon() { local name=$1; shift; setsid ip netns exec h22n4 bash -c ". $B/env.sh; exec \"\$@\"" d "$@" > "$B/log/$name.out" 2>&1 & echo $! > "$B/$name.pid"; }
cap() { local name=$1; shift; ceph "$@" > "$OUT/$name.stdout" 2> "$OUT/$name.stderr" && echo 0 > "$OUT/$name.rc" || echo $? > "$OUT/$name.rc"; }
clean() { for _ in $(seq 1 100); do ceph pg stat | grep -q "^33 pgs: 33 active+clean;" && return; sleep 3; done; }

case ${1:-} in
    setup)
        mkdir -p "$B/debs" "$R" "$B"/{run,log,mon,mgr,osd}
        # shellcheck disable=SC2046  # one package name per word
        (cd "$B/debs" && apt-get download $(apt-get install -s --no-install-recommends ceph-mon ceph-mgr ceph-osd ceph-common \
            | awk '/^Inst/ {print $2}'))
        for deb in "$B"/debs/*.deb; do dpkg -x "$deb" "$R"; done
        fsid=$(cat /proc/sys/kernel/random/uuid)
        cat > "$B/ceph.conf" <<CONF
[global]
fsid = $fsid
mon_host = v2:10.222.0.4:3300
mon_initial_members = a
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $B/run
admin_socket = $B/run/\$name.asok
log_file = $B/log/\$name.log
plugin_dir = $R/usr/lib/x86_64-linux-gnu/ceph
erasure_code_dir = $R/usr/lib/x86_64-linux-gnu/ceph/erasure-code
mgr_module_path = $R/usr/share/ceph/mgr
mon_data = $B/mon/\$cluster-\$id
osd_data = $B/osd/\$cluster-\$id
mgr_data = $B/mgr/\$cluster-\$id
osd_objectstore = memstore
memstore_device_bytes = 536870912
osd_pool_default_size = 3
osd_pool_default_min_size = 2
osd_crush_update_on_start = false
ms_bind_ipv6 = false
osd_memory_target = 536870912
CONF
        # shellcheck disable=SC2016  # $PATH belongs to env.sh
        printf 'export LD_LIBRARY_PATH=%s\nexport PYTHONPATH=%s\nexport CEPH_CONF=%s\nexport PATH=%s:$PATH\n' \
            "$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/ceph:$R/lib/x86_64-linux-gnu" \
            "$R/usr/lib/python3/dist-packages" "$B/ceph.conf" "$R/usr/bin" > "$B/env.sh"
        in_ns monmaptool --create --add a v2:10.222.0.4:3300 --fsid "$fsid" "$B/monmap"
        in_ns ceph-mon --mkfs -i a --monmap "$B/monmap"
        ;;
    start)
        daemon mon ceph-mon -f -i a; sleep 4
        mkdir -p "$B/mgr/ceph-x"; daemon mgr ceph-mgr -f -i x
        for i in 0 1 2; do
            ceph osd create >/dev/null; mkdir -p "$B/osd/ceph-$i"; in_ns ceph-osd -i "$i" --mkfs
            ceph osd crush add-bucket "pve$((i + 1))" host; ceph osd crush move "pve$((i + 1))" root=default
            ceph osd crush add "osd.$i" 1.0 root=default "host=pve$((i + 1))"
            daemon "osd$i" ceph-osd -f -i "$i"
        done
        sleep 10
        ceph osd pool create rbd 32 32; ceph osd pool set rbd size 3; ceph osd pool set rbd min_size 2
        clean
        in_ns rados -p rbd bench 4 write --no-cleanup -b 65536
        clean
        ;;
    capture)
        mkdir -p "$OUT"
        cap status_clean status --format json
        cap ls_tree_pve2 osd ls-tree --format json pve2
        cap ls_tree_missing osd ls-tree --format json pve9
        cap ok_to_stop_one osd ok-to-stop 1 --format json
        cap ok_to_stop_two osd ok-to-stop 1 2 --format json
        ceph osd set-group noout pve2; sleep 2
        cap status_noout_pve2 status --format json
        ceph osd unset-group noout pve2
        kill "$(cat "$B/osd1.pid")"; rm -f "$B/osd1.pid"; ceph osd down 1 || true; sleep 6
        cap status_osd1_down status --format json
        cap ok_to_stop_two_osd1_down osd ok-to-stop 2 --format json
        daemon osd1 ceph-osd -f -i 1; sleep 60
        cap status_recovering status --format json
        ceph --version > "$OUT/VERSION"
        ;;
    stop)
        for name in osd0 osd1 osd2 mgr mon; do
            [[ -f $B/$name.pid ]] && { kill "$(cat "$B/$name.pid")" 2>/dev/null || true; rm -f "$B/$name.pid"; }
        done
        ;;
    *) sed -n '2,6p' "$0"; exit 2 ;;
esac
