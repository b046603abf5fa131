"""Scenario 5: two identical e1000e NICs, one requested by address: ids= would take both."""

from __future__ import annotations

import re

from conftest import E1000E, say


def test_5_only_the_requested_twin_goes_to_vfio(guest_factory, run_playbook):
    guest = guest_factory('intel', nics=2)
    guest.enable_boot_count()
    wanted, other = guest.pci_by_id(E1000E)
    boots = guest.boots()
    run = run_playbook(guest, 'twins-converge', {'pcie_passthrough_devices': [wanted]})
    assert run.rc == 0, run.tail()
    assert guest.boots() == boots + 1
    assert guest.driver(wanted) == 'vfio-pci'
    assert guest.driver(other) == 'e1000e'
    # ids= would take both twins: nothing in modprobe.d may name the ID.
    assert guest.sh('grep -rh "ids=" /etc/modprobe.d || true').strip() == ''
    assert 'install e1000e' in guest.sh('cat /etc/modprobe.d/vfio-passthrough-address.conf')
    [ifname] = guest.sh('ls /sys/bus/pci/devices/%s/net' % other).split()
    guest.sh('ip link set dev %s up' % ifname)
    flags = re.search(r'<([^>]*)>', guest.sh('ip -o link show dev %s' % ifname)).group(1).split(',')
    assert 'UP' in flags, flags
    rerun = run_playbook(guest, 'twins-rerun', {'pcie_passthrough_devices': [wanted]})
    assert rerun.rc == 0 and rerun.changed == 0, rerun.tail()
    guest.capture('twins-after')
    say('twins: %s on vfio-pci, %s (%s) on e1000e, converge+reboot %.1f s' % (wanted, other, ifname, run.seconds))
