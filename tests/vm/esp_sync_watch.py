"""Guest side: log each run of proxmox-boot-tool and of its kernel hook, as the guest's kernel reports it.

The proxmox-boot-tool scenarios install this in the guest as a systemd unit (Type=notify, before sshd)
so they can count ESP refreshes from the guest itself instead of from Ansible's output. It neither wraps
nor diverts the tool: it subscribes to the kernel's process-event connector (CONFIG_PROC_EVENTS, on in
Debian's kernels; no auditd) and, for each exec of /usr/sbin/proxmox-boot-tool or of the kernel hook
/etc/kernel/postinst.d/zz-proxmox-boot, appends one JSON line to LOG:

    {"boot": <boot id>, "pid": N, "what": "tool"|"hook", "argv": [...], "unshared": true|false, "t": <time>}

`unshared` is PVE_EFIBOOT_UNSHARED=1 in the process's environment: the helper sets it when it re-executes
itself in its private mount namespace, and the hook's run with it set is the one that mounts each ESP and
copies kernels and loader entries to it. So one ESP refresh is one "hook" line with "unshared": true,
whatever started it (`proxmox-boot-tool refresh`, update-initramfs's post-update hook, a kernel package).
While such a run lives, its mount namespace is read (/proc/PID/mountinfo) and each ESP mount it holds is
logged once as {"what": "mount", "pid": N, "mountpoint": ..., "options": ...}: the options the helper
really mounted the ESP with (its namespace is invisible from outside).
"""

import errno
import json
import os
import socket
import struct
import threading
import time

LOG = '/var/log/vfio-esp-watch.jsonl'
NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC = 11, 1, 1
PROC_CN_MCAST_LISTEN, NLMSG_DONE, PROC_EVENT_EXEC = 1, 3, 2
TOOL, HOOK = '/proxmox-boot-tool', '/zz-proxmox-boot'
MOUNT_ROOT = '/var/tmp/espmounts/'
_lock = threading.Lock()
_seen = set()


def boot_id():
    with open('/proc/sys/kernel/random/boot_id') as f:
        return f.read().strip()


BOOT = boot_id()


def write(record):
    record.update(boot=BOOT, t=round(time.time(), 3))
    with _lock, open(LOG, 'a') as f:
        f.write(json.dumps(record, sort_keys=True) + '\n')


def read(pid, name):
    try:
        with open('/proc/%d/%s' % (pid, name), 'rb') as f:
            return f.read()
    except OSError:
        return None


def classify(argv):
    """'tool' or 'hook' for a run of the helper, else None.

    A script's exec shows as [interpreter, script, args...]; unshare's re-execution of the hook as
    [unshare, options..., hook]. A program that merely names the file (cat, sha256sum) is no run.
    """
    program = os.path.basename(argv[0])
    if program in ('sh', 'dash', 'bash') and len(argv) > 1:
        script = argv[1]
    elif program == 'unshare':
        script = next((arg for arg in argv[1:] if not arg.startswith('-') and arg != 'private'), '')
    else:
        script = argv[0]
    if script.endswith(HOOK):
        return 'hook'
    if script.endswith(TOOL):
        return 'tool'
    return None


def follow_mounts(pid):
    """Log the ESP mounts a helper run holds in its own mount namespace, until it exits."""
    logged = set()
    while True:
        text = read(pid, 'mountinfo')
        if text is None:
            return
        for line in text.decode(errors='replace').splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4].startswith(MOUNT_ROOT):
                super_options = line.split(' - ', 1)[1].split()
                key = (fields[4], super_options[-1])
                if key not in logged:
                    logged.add(key)
                    write({'what': 'mount', 'pid': pid, 'mountpoint': fields[4], 'fstype': super_options[0],
                           'options': super_options[-1]})
        time.sleep(0.05)


def on_exec(pid):
    raw = read(pid, 'cmdline')
    if not raw:
        return
    argv = [a.decode(errors='replace') for a in raw.rstrip(b'\0').split(b'\0')]
    what = classify(argv)
    if what is None:
        return
    environ = read(pid, 'environ') or b''
    unshared = b'PVE_EFIBOOT_UNSHARED=1' in environ.split(b'\0')
    stat = read(pid, 'stat') or b''
    started = stat.rsplit(b')', 1)[-1].split()[19:20]
    # unshare re-executes the script in the same process: one line per process (pid and start time).
    key = (pid, tuple(started), what, unshared)
    if key in _seen:
        return
    _seen.add(key)
    write({'what': what, 'pid': pid, 'argv': argv, 'unshared': unshared})
    if unshared:
        threading.Thread(target=follow_mounts, args=(pid,), daemon=True).start()


def notify_ready():
    address = os.environ.get('NOTIFY_SOCKET')
    if not address:
        return
    if address.startswith('@'):
        address = '\0' + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.send(b'READY=1')


def main():
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    # update-initramfs alone runs thousands of programs: a deep queue, and a lost event is said, not hidden.
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root)
    sock.bind((0, CN_IDX_PROC))
    payload = struct.pack('=I', PROC_CN_MCAST_LISTEN)
    cn_msg = struct.pack('=IIIIHH', CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    sock.send(struct.pack('=IHHII', 16 + len(cn_msg), NLMSG_DONE, 0, 0, 0) + cn_msg)
    write({'what': 'watching'})
    notify_ready()
    while True:
        try:
            data = sock.recv(65536)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            write({'what': 'lost', 'error': 'ENOBUFS: exec events were dropped'})
            continue
        # nlmsghdr (16 bytes), cn_msg (20), proc_event: what, cpu, timestamp_ns (16), then the event.
        if len(data) < 60:
            continue
        (what,) = struct.unpack_from('=I', data, 36)
        if what == PROC_EVENT_EXEC:
            _thread_pid, tgid = struct.unpack_from('=ii', data, 52)
            on_exec(tgid)


if __name__ == '__main__':
    main()
