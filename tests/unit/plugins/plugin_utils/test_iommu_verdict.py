"""After the reboot: interrupt remapping and passthrough mode, each verdict quoting its evidence (plugin_utils/_iommu_verdict.py)."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.plugin_utils._iommu_verdict import judge_remapping_and_mode

IR_ON = '/proc/interrupts line 2: 0: 36 0 IR-IO-APIC 2-edge timer'
IR_OFF = '/proc/interrupts line 2: 0: 36 0 IO-APIC 2-edge timer'
UNSAFE_ON = '/etc/modprobe.d/unsafe.conf line 1: options vfio_iommu_type1 allow_unsafe_interrupts=1'
UNSAFE_OFF = '/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts is N'
PT = '/sys/kernel/iommu_groups/*/type: identity in 7 of 7 groups'
DMA = '/sys/kernel/iommu_groups/*/type: DMA-FQ in 6 of 7 groups, identity in 1 of 7 groups'


def facts(remapping=True, unsafe=False, mode=True, enabled=True):
    return {
        'enabled': enabled, 'interrupt_remapping': remapping, 'allow_unsafe_interrupts': unsafe,
        'passthrough_mode': mode, 'cmdline': 'ro quiet intel_iommu=on',
        'evidence': {
            'interrupt_remapping': {True: IR_ON, False: IR_OFF, None: None}[remapping],
            'allow_unsafe_interrupts': UNSAFE_ON if unsafe else UNSAFE_OFF,
            'passthrough_mode': {True: PT, False: DMA, None: None}[mode],
        },
    }


# (facts, iommu_pt, [(error fragments)], [(warning fragments)]): every fragment must be in one message,
# and there must be exactly as many messages as listed.
@pytest.mark.parametrize('live, iommu_pt, errors, warnings', [
    pytest.param(facts(), True, [], [], id='IR on, passthrough: clean'),
    pytest.param(facts(remapping=False), True, [('Interrupt remapping is off', IR_OFF, UNSAFE_OFF)], [],
                 id='IR off fails, naming both files'),
    pytest.param(facts(remapping=False, unsafe=True), True, [],
                 [('Interrupt remapping is off', IR_OFF, 'vfio_iommu_type1 allow_unsafe_interrupts=1', UNSAFE_ON)],
                 id='IR off with allow_unsafe_interrupts warns, naming it'),
    pytest.param(facts(remapping=None), True, [], [('Cannot tell whether interrupt remapping is on',)],
                 id='IR unknown warns'),
    pytest.param(facts(mode=False), True, [('pcie_passthrough_iommu_pt', 'iommu=pt', DMA, 'ro quiet intel_iommu=on')],
                 [], id='translated while iommu=pt asked fails'),
    pytest.param(facts(mode=False), False, [], [], id='translated is fine when iommu=pt is not asked'),
    pytest.param(facts(mode=None), True, [], [('nothing tells the running mode',)], id='mode unknown warns'),
    pytest.param(facts(remapping=False, mode=False), True,
                 [('Interrupt remapping is off', IR_OFF), ('iommu=pt', DMA)], [], id='both wrong: both said'),
    pytest.param(facts(remapping=False, mode=False, enabled=False), True, [], [],
                 id='IOMMU off: verify says that elsewhere'),
])
def test_judge_remapping_and_mode(live, iommu_pt, errors, warnings):
    got_errors, got_warnings = judge_remapping_and_mode(live, iommu_pt)
    for got, wanted in ((got_errors, errors), (got_warnings, warnings)):
        assert len(got) == len(wanted), got
        for message, fragments in zip(got, wanted):
            for fragment in fragments:
                assert fragment in message, (fragment, message)


def test_evidence_missing_is_said_not_crashed():
    live = facts(remapping=False)
    del live['evidence']
    errors, _warnings = judge_remapping_and_mode(live, True)
    assert 'Interrupt remapping is off (nothing said so)' in errors[0]
