# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After the reboot: is interrupt remapping on, and is the IOMMU in the mode the role asked for?

One rule, judged on ``ansible_facts.iommu`` and quoting its ``evidence``, so
each message names the file or log line that decided it.
"""

from __future__ import annotations

__all__ = ['judge_remapping_and_mode']

_UNSAFE = 'vfio_iommu_type1 allow_unsafe_interrupts=1'


def _said(facts, key):
    return (facts.get('evidence') or {}).get(key) or 'nothing said so'


def judge_remapping_and_mode(facts, iommu_pt):
    """(errors, warnings) for a host whose IOMMU is on; nothing to say while it is off.

    Interrupt remapping off fails unless vfio_iommu_type1 allow_unsafe_interrupts
    is on (then a warning names it); unknown warns. With ``iommu_pt``
    (pcie_passthrough_iommu_pt), a translated default domain fails and an unknown one warns.
    """
    errors, warnings = [], []
    if not facts.get('enabled'):
        return errors, warnings
    remapping = facts.get('interrupt_remapping')
    if remapping is False:
        if facts.get('allow_unsafe_interrupts'):
            warnings.append('Interrupt remapping is off (%s); vfio assigns devices only because %s is set (%s), which '
                            'lets a guest inject interrupts into the host (MSI attacks). Enable interrupt remapping '
                            '/ x2APIC in firmware and remove it.'
                            % (_said(facts, 'interrupt_remapping'), _UNSAFE, _said(facts, 'allow_unsafe_interrupts')))
        else:
            errors.append('Interrupt remapping is off (%s), so vfio refuses to assign devices to a VM (%s). Enable '
                          'interrupt remapping / x2APIC in firmware; only on a host whose guests are trusted, set '
                          '"options %s" in modprobe.d instead (it lets a guest inject interrupts into the host).'
                          % (_said(facts, 'interrupt_remapping'), _said(facts, 'allow_unsafe_interrupts'), _UNSAFE))
    elif remapping is None:
        warnings.append('Cannot tell whether interrupt remapping is on: neither /proc/interrupts (no IR- or plain '
                        'interrupt chip) nor the kernel log says.')
    if iommu_pt:
        mode = facts.get('passthrough_mode')
        if mode is False:
            errors.append('pcie_passthrough_iommu_pt asks for IOMMU passthrough mode (iommu=pt), but the running kernel '
                          'translates DMA for host devices (%s; /proc/cmdline is "%s"). Check that the boot loader '
                          'uses the edited command line.' % (_said(facts, 'passthrough_mode'), facts.get('cmdline')))
        elif mode is None:
            warnings.append('pcie_passthrough_iommu_pt asks for IOMMU passthrough mode (iommu=pt), and nothing tells '
                            'the running mode: no group type under /sys/kernel/iommu_groups, no "iommu: Default domain '
                            'type:" kernel line and no iommu= in /proc/cmdline.')
    return errors, warnings
