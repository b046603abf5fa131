"""_sriov_script: the script the udev rule runs, on a fake kernel; every exit restores what it changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_boot import render, script_argv
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_script import SRIOV_SCRIPT, script_text
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sriov_hosts import PF0, VFS0, sriov_host  # noqa: E402
from tree_snapshot import tree_snapshot  # noqa: E402


def test_the_script_is_the_constant_with_its_three_marks_filled_in_once():
    assert re.findall(r'@[A-Z]+@', SRIOV_SCRIPT) == ['@HEADER@', '@SCRIPT@', '@RULES@']
    text = script_text('# owned', '/sbin/@RULES@', '/r')
    assert text.split('\n')[:5] == [
        '#!/bin/sh', '# owned',
        '# vfio.passthrough: give an SR-IOV physical function its virtual functions and their drivers.',
        '# Usage: /sbin/@RULES@ PF COUNT VFIO   (VFIO: comma-separated VF indexes for vfio-pci, or -)',
        "# The udev rule /r runs it when the PF's driver binds (at boot"]
    assert text.split('\n')[5:] == SRIOV_SCRIPT.split('\n')[5:]


# -- the rendered script, on a fake kernel -------------------------------------

# The script's one sysfs primitive, replaced by a kernel made of shell: sriov_numvfs refuses a non-zero
# count over another (EBUSY), removes every VF (driver and driver_override gone with it) and creates
# the VFs listed in fake-vfN, binding their fake-driver when sriov_drivers_autoprobe is 1; drivers_probe
# binds driver_override or fake-driver; unbind drops the driver. A file FILE.fail-VALUE makes writing
# VALUE to FILE fail. Every write is logged to kernel.log beside sys/.
PUT = 'put() {{ echo "$1" > "$2"; }}'
FAKE_KERNEL = r"""put() {
    echo "${2#"$sys"/} $1" >> "$sys/../kernel.log"
    [ ! -e "$2.fail-$1" ] || return 1
    case $2 in */sriov_numvfs) if [ "$1" != 0 ] && [ "$(cat "$2")" != 0 ]; then return 1; fi ;; esac
    echo "$1" > "$2" || return 1
    case $2 in
    */sriov_numvfs)
        d=${2%/*}
        for link in "$d"/virtfn*; do
            [ -L "$link" ] || continue
            rm -f "$link/driver" "$link/driver_override" "$link"
        done
        n=0
        while [ "$n" -lt "$1" ]; do
            if [ -e "$d/fake-vf$n" ]; then
                v=$(cat "$d/fake-vf$n")
                ln -s "$v" "$d/virtfn$n"
                [ "$(cat "$d/sriov_drivers_autoprobe")" = 0 ] || bind "$v" "$(cat "$v/fake-driver")"
            fi
            n=$((n + 1))
        done ;;
    */drivers_probe)
        v=$sys/bus/pci/devices/$1
        o=$(cat "$v/driver_override" 2>/dev/null) || o=
        [ -e "$v/driver" ] || bind "$v" "${o:-$(cat "$v/fake-driver")}" ;;
    */unbind) rm -f "$sys/bus/pci/devices/$1/driver" ;;
    esac
}
bind() { mkdir -p "$sys/bus/pci/drivers/$2"; ln -s "$sys/bus/pci/drivers/$2" "$1/driver"; }"""
VF2 = '0000:01:10.4'


def kernel_host(root, pool=(VFS0[0], VFS0[1], VF2)):
    """sriov_host on the fake kernel: PF0 can have the VFs of ``pool`` (igbvf by default), two made now."""
    host = sriov_host(root)
    host.add_device(VF2, '8086', '10ca', '020000', parent_bridge='0000:00:02.0')
    pf = Path(root) / host.device_dir(PF0)
    for index, vf in enumerate(pool):
        (pf / ('fake-vf%d' % index)).write_text(str(Path(root) / host.device_dir(vf)) + '\n')
    for vf in (VFS0[0], VFS0[1], VF2):
        (Path(root) / host.device_dir(vf) / 'fake-driver').write_text('igbvf\n')
    return host


def rendered_script(tmp_path, kernel=True, modprobe='true'):
    """The script as render() writes it, on the fake kernel (the put line replaced) and a fake modprobe."""
    text = render([{'pf': PF0, 'vfs': 1, 'vfio': []}])[1][1]
    assert text.count(PUT.format()) == 1 and text.count('modprobe=/sbin/modprobe\n') == 1
    if kernel:
        text = text.replace(PUT.format(), FAKE_KERNEL)
    fake = tmp_path / 'fake-modprobe'
    fake.write_text('#!/bin/sh\n%s\n' % modprobe)
    fake.chmod(0o755)
    path = tmp_path / 'sriov.sh'
    path.write_text(text.replace('modprobe=/sbin/modprobe\n', 'modprobe=%s\n' % fake))
    return path


def run_script(tmp_path, *args, **kwargs):
    env = dict(os.environ, VFIO_PASSTHROUGH_SYSFS=str(tmp_path / 'root/sys'))
    return subprocess.run(['sh', str(rendered_script(tmp_path, **kwargs))] + list(args), env=env,
                          capture_output=True, text=True, check=False)


def _state(root, host):
    """What the script may change: the PF's count and autoprobe, each VF's driver and override (index order)."""
    pf = root / host.device_dir(PF0)
    vfs = []
    for index in range(int((pf / 'sriov_numvfs').read_text())):
        link = pf / ('virtfn%d' % index)
        if not link.is_symlink():
            vfs.append(None)
            continue
        driver = link / 'driver'
        override = link / 'driver_override'
        vfs.append((link.resolve().name, os.path.basename(os.readlink(driver)) if driver.is_symlink() else None,
                    override.read_text().strip() if override.exists() else None))
    return {'numvfs': (pf / 'sriov_numvfs').read_text().strip(),
            'autoprobe': (pf / 'sriov_drivers_autoprobe').read_text().strip(), 'vfs': vfs}


BEFORE = {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'vfio-pci', None), (VFS0[1], 'igbvf', None)]}


@pytest.mark.parametrize('args, fail, modprobe, rc, state, says', [
    # success: 2 -> 3 VFs, VF 0 for vfio-pci
    ((PF0, '3', '0'), (), 'true', 0,
     {'numvfs': '3', 'autoprobe': '1', 'vfs': [(VFS0[0], 'vfio-pci', 'vfio-pci'), (VFS0[1], 'igbvf', ''),
                                               (VF2, 'igbvf', '')]}, ''),
    # success without a count change: VF 1 to vfio-pci, VF 0 back to the host; autoprobe never written
    ((PF0, '2', '1'), (), 'true', 0,
     {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', ''), (VFS0[1], 'vfio-pci', 'vfio-pci')]}, ''),
    # bad arguments and a device without SR-IOV: nothing is written
    ((PF0, 'x', '-'), (), 'true', 2, BEFORE, "COUNT 'x' is no number"),
    ((PF0, '2', '0,,1'), (), 'true', 2, BEFORE, "VFIO '0,,1' is neither - nor a list of indexes"),
    ((PF0,), (), 'true', 2, BEFORE, "COUNT '' is no number"),
    (('../../x', '2', '-'), (), 'true', 2, BEFORE, "PF '../../x' is no PCI address"),
    (('0000:00:04.0', '2', '-'), (), 'true', 1, BEFORE, 'no such SR-IOV physical function'),
    # each write that can fail
    ((PF0, '3', '0'), ('PF:sriov_drivers_autoprobe.fail-0',), 'true', 1, BEFORE, 'cannot set sriov_drivers_autoprobe to 0'),
    ((PF0, '3', '0'), ('PF:sriov_numvfs.fail-0',), 'true', 1, BEFORE, 'cannot remove its 2 VFs'),
    ((PF0, '3', '0'), ('PF:sriov_numvfs.fail-3',), 'true', 1,
     {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', None), (VFS0[1], 'igbvf', None)]},
     'cannot create 3 VFs'),
    ((PF0, '3', '1'), ('VF1:driver_override.fail-vfio-pci',), 'true', 1,
     {'numvfs': '3', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', ''), (VFS0[1], 'igbvf', None), (VF2, 'igbvf', None)]},
     'cannot set driver_override of VF 1 (0000:01:10.2)'),
    ((PF0, '2', '1'), ('BUS:drivers/igbvf/unbind.fail-' + VFS0[1],), 'true', 1,
     {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', ''), (VFS0[1], 'igbvf', 'vfio-pci')]},
     'cannot unbind VF 1 (0000:01:10.2) from igbvf'),
    # the kernel made fewer VFs than asked: the ones it made still get their drivers
    ((PF0, '4', '0,3'), (), 'true', 1,
     {'numvfs': '4', 'autoprobe': '1', 'vfs': [(VFS0[0], 'vfio-pci', 'vfio-pci'), (VFS0[1], 'igbvf', ''),
                                               (VF2, 'igbvf', ''), None]}, 'virtfn3 missing'),
    # interrupted (TERM) between the count change and the drivers
    ((PF0, '3', '0'), (), 'kill -TERM $PPID; sleep 1', 1,
     {'numvfs': '3', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', None), (VFS0[1], 'igbvf', None),
                                               (VF2, 'igbvf', None)]}, ''),
], ids=['grow', 'rebind', 'bad-count', 'bad-vfio', 'no-args', 'bad-pf', 'no-sriov', 'autoprobe-fails',
        'remove-fails', 'create-fails', 'override-fails', 'unbind-fails', 'fewer-vfs', 'interrupted'])
def test_every_exit_of_the_script_restores_what_it_changed(tmp_path, args, fail, modprobe, rc, state, says):
    root = tmp_path / 'root'
    host = kernel_host(root)
    for marker in fail:
        where, _sep, name = marker.partition(':')
        base = {'PF': host.device_dir(PF0), 'VF1': host.device_dir(VFS0[1]), 'BUS': 'sys/bus/pci'}[where]
        (root / base / name).write_text('')
    before = tree_snapshot(root)
    done = run_script(tmp_path, *args, modprobe=modprobe)
    assert (done.returncode, _state(root, host)) == (rc, state), done.stderr
    assert says in done.stderr
    log = (tmp_path / 'root/kernel.log').read_text().splitlines() if (tmp_path / 'root/kernel.log').exists() else []
    if rc == 2 or 'no such' in says:
        assert log == [] and tree_snapshot(root) == before   # refused before any write: not a file touched
    elif state == BEFORE:
        # Failed before the count changed: every file holds what it held.
        assert {k: v[0] for k, v in tree_snapshot(root).items() if k != 'kernel.log'} == \
            {k: v[0] for k, v in before.items()}
    zeroed = [n for n, line in enumerate(log) if line.endswith('sriov_drivers_autoprobe 0')]
    if zeroed and 'fail-0' not in ''.join(fail):
        # Set to 0 once, and written back to what it was after.
        assert [line for line in log[zeroed[0] + 1:] if 'sriov_drivers_autoprobe' in line][-1].endswith(' 1'), log


def test_putting_back_the_old_count_comes_after_autoprobe_so_its_vfs_get_drivers(tmp_path):
    root = tmp_path / 'root'
    host = kernel_host(root)
    (root / host.device_dir(PF0) / 'sriov_numvfs.fail-3').write_text('')
    done = run_script(tmp_path, PF0, '3', '0')
    assert done.returncode == 1 and 'putting back the 2 VFs it had' in done.stderr
    writes = [line.rsplit('/', 1)[-1] for line in (root / 'kernel.log').read_text().splitlines()]
    assert writes == ['sriov_drivers_autoprobe 0', 'sriov_numvfs 0', 'sriov_numvfs 3', 'sriov_drivers_autoprobe 1',
                      'sriov_numvfs 2']


def test_the_rule_runs_the_script_with_arguments_it_accepts(tmp_path):
    root = tmp_path / 'root'
    host = kernel_host(root)
    entry = {'pf': PF0, 'vfs': 3, 'vfio': [0, 2]}
    done = run_script(tmp_path, *script_argv(entry)[2:])
    assert done.returncode == 0, done.stderr
    assert [vf[1] for vf in _state(root, host)['vfs']] == ['vfio-pci', 'igbvf', 'vfio-pci']
    assert verify([entry], read_pci_devices(str(root))) == []
