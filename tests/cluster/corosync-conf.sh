#!/usr/bin/env bash
# Print a corosync.conf for a cluster of NAME=ADDR nodes (node ids in the order given, one vote each).
# The one writer of corosync.conf for the namespace bed (bed.sh) and the molecule scenario `cluster`.
#
#   corosync-conf.sh [--name CLUSTER] [--two-node | --qdevice QNETD_ADDR] [--secauth]
#                    [--state-dir DIR] [--logfile FILE] NAME=ADDR...
#
# --secauth: knet with aes256/sha256, as Proxmox VE writes it (every node then needs the same
# /etc/corosync/authkey). --qdevice: a net QDevice (ffsplit, one vote, TLS off) on QNETD_ADDR;
# Proxmox VE's `pvecm qdevice setup` writes the same block with TLS on.
set -euo pipefail
name=h22lab quorum_extra='' crypto=none hash=none system=() logging=()
while [[ ${1:-} == --* ]]; do
    case $1 in
        --name) name=$2; shift 2 ;;
        --two-node) quorum_extra='  two_node: 1'; shift ;;
        --qdevice) quorum_extra=$'  device {\n    model: net\n    votes: 1\n    net {\n      algorithm: ffsplit\n      host: '"$2"$'\n      tls: off\n    }\n  }'; shift 2 ;;
        --secauth) crypto=aes256 hash=sha256; shift ;;
        --state-dir) system+=("  state_dir: $2" '  allow_knet_handle_fallback: yes'); shift 2 ;;
        --logfile) logging=('  to_stderr: no' '  to_logfile: yes' "  logfile: $2" '  to_syslog: no' '  timestamp: on'); shift 2 ;;
        *) echo "corosync-conf.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] || { sed -n '2,10p' "$0" >&2; exit 2; }
if [[ ${#system[@]} -gt 0 ]]; then printf 'system {\n'; printf '%s\n' "${system[@]}"; printf '}\n'; fi
printf 'totem {\n  version: 2\n  cluster_name: %s\n  transport: knet\n  crypto_cipher: %s\n  crypto_hash: %s\n  token: 1000\n}\n' \
    "$name" "$crypto" "$hash"
if [[ ${#logging[@]} -gt 0 ]]; then printf 'logging {\n'; printf '%s\n' "${logging[@]}"; printf '}\n'; fi
printf 'quorum {\n  provider: corosync_votequorum\n%s\n}\nnodelist {\n' "$quorum_extra"
id=0
for node in "$@"; do
    [[ $node == *=* ]] || { echo "corosync-conf.sh: '$node' is not NAME=ADDR" >&2; exit 2; }
    id=$((id + 1))
    printf '  node {\n    name: %s\n    nodeid: %s\n    quorum_votes: 1\n    ring0_addr: %s\n  }\n' "${node%%=*}" "$id" "${node#*=}"
done
echo '}'
