"""The module closure over real Debian 12, 13 and trixie-backports depmod files: what a needed module pulls in, and why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import (
    Kernel, blacklist_problems, describe_need, module_name, needed_modules, parse_builtin, parse_exact_aliases,
    parse_modules_dep, parse_softdeps, read_kernels,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from depmod_fixtures import DEB12, DEB13, DEB13_BPO, MODULES, install_kernels, kernel  # noqa: E402


@pytest.mark.parametrize('path, name', [
    ('kernel/fs/ext4/ext4.ko', 'ext4'),
    ('kernel/fs/ext4/ext4.ko.xz', 'ext4'),
    ('kernel/arch/x86/crypto/crc32c-intel.ko.zst', 'crc32c_intel'),
    ('updates/dkms/zfs.ko.gz', 'zfs'),
])
def test_module_name(path, name):
    assert module_name(path) == name


@pytest.mark.parametrize('version, module, deps', [
    (DEB12, 'ext4', ['crc16', 'mbcache', 'jbd2']),
    (DEB13, 'ext4', ['crc16', 'mbcache', 'jbd2']),
    (DEB12, 'virtio_blk', ['virtio', 'virtio_ring']),
    (DEB13, 'virtio_blk', []),                          # virtio and virtio_ring are built into Debian 13
    (DEB13_BPO, 'ext4', ['crc16', 'mbcache', 'jbd2']),  # crc16 now under kernel/lib/crc/
    (DEB13_BPO, 'virtio_blk', []),
    (DEB12, 'sd_mod', ['t10_pi', 'crc64_rocksoft', 'scsi_mod', 'scsi_common', 'crc_t10dif', 'crc64',
                       'crct10dif_common']),
    (DEB12, 'ahci', ['libahci', 'libata', 'scsi_mod', 'scsi_common']),
    (DEB12, 'bridge', ['stp', 'llc']),
    (DEB12, 'dm_crypt', ['dm_mod']),
    (DEB12, 'raid1', ['md_mod']),
])
def test_real_modules_dep(version, module, deps):
    assert parse_modules_dep((MODULES / version / 'modules.dep').read_text())[module] == deps


def test_real_softdep_builtin_and_alias_files():
    soft = parse_softdeps((MODULES / DEB12 / 'modules.softdep').read_text())
    assert soft['ext4'] == ['crypto_crc32c'] and soft['libcrc32c'] == ['crc32c']
    assert soft['cifs'][:2] == ['gcm', 'ccm']           # "softdep cifs gcm": no pre:/post: at all
    assert 'virtio_pci' in parse_builtin((MODULES / DEB13 / 'modules.builtin').read_text())
    assert 'virtio_pci' not in parse_builtin((MODULES / DEB12 / 'modules.builtin').read_text())
    aliases = parse_exact_aliases((MODULES / DEB12 / 'modules.alias').read_text())
    assert aliases['fs-ext3'] == ['ext4'] and aliases['crypto-crc32c'] == ['crc32c_intel', 'crc32c_generic']
    assert parse_exact_aliases('alias pci:v00008086d*sv*sd*bc*sc*i* e1000e\nalias fs-xfs xfs\n') == {'fs-xfs': ['xfs']}


@pytest.mark.parametrize('version, name, modules', [
    (DEB12, 'fs-ext4', ['ext4']),
    (DEB12, 'fs-ext3', ['ext4']),           # ext3 is mounted by ext4
    (DEB12, 'fs-vfat', ['vfat']),
    (DEB12, 'fs-zfs', []),                  # no zfs module in Debian's own package
    (DEB12, 'crypto-crc32c', ['crc32c_intel', 'crc32c_generic']),
    (DEB12, 'virtio-pci', ['virtio_pci']),
    (DEB13, 'virtio_pci', ['virtio_pci']),  # built in
    (DEB13, 'crypto-crc32c', ['crc32c_intel', 'crc32c_generic']),
    (DEB13_BPO, 'crypto-crc32c', ['crc32c_cryptoapi']),   # Linux 6.15 folded the arch and generic ones
    (DEB13_BPO, 'crc32c_intel', []),
    (DEB13_BPO, 'virtio_pci', ['virtio_pci']),
    (DEB12, 'no_such_module', []),
])
def test_resolve(version, name, modules):
    assert kernel(version).resolve(name) == modules


def test_ext4_needs_its_deps_and_crc32c_by_softdep_in_both_kernels():
    needs = needed_modules([('fs-ext4', 'filesystem of /')], [kernel(DEB12), kernel(DEB13)])
    assert set(needs) == {'ext4', 'crc16', 'mbcache', 'jbd2', 'crc32c_intel', 'crc32c_generic'}
    assert describe_need(needs['crc16']) == [
        'crc16: needed by ext4 (filesystem of /) via modules.dep of %s, %s' % (DEB12, DEB13)]
    assert describe_need(needs['crc32c_generic']) == [
        'crc32c_generic: needed by ext4 (filesystem of /) via softdep of %s, %s' % (DEB12, DEB13)]
    assert describe_need(needs['ext4']) == ['ext4: filesystem of / (in %s, %s)' % (DEB12, DEB13)]


def test_a_chain_through_two_files_names_every_step():
    needs = needed_modules([('fs-btrfs', 'filesystem of /')], [kernel(DEB13)])
    # btrfs -> libcrc32c by modules.dep; libcrc32c's own softdep would be one step longer than btrfs's
    assert describe_need(needs['libcrc32c']) == ['libcrc32c: needed by btrfs (filesystem of /) via modules.dep of %s' % DEB13]
    assert describe_need(needs['crc32c_generic']) == [
        'crc32c_generic: needed by btrfs (filesystem of /) via softdep of %s' % DEB13]
    needs = needed_modules([('xfs', 'filesystem of /srv')], [kernel(DEB12)])
    assert describe_need(needs['crc32c_generic']) == [
        'crc32c_generic: needed by xfs -> libcrc32c (filesystem of /srv) via modules.dep and softdep of %s' % DEB12]


def test_builtin_modules_are_named_as_built_in():
    needs = needed_modules([('virtio_blk', 'driver of vda under /'), ('virtio_pci', 'driver of vda under /')],
                           [kernel(DEB12), kernel(DEB13)])
    # Debian 13 has no modules.dep line for built-in modules, so nothing leads to virtio_ring there
    assert describe_need(needs['virtio_ring']) == [
        'virtio_ring: needed by virtio_blk (driver of vda under /) via modules.dep of %s' % DEB12]
    assert [n.builtin for n in needs['virtio_pci']] == [False, True]
    assert describe_need(needs['virtio_pci'])[1] == 'virtio_pci: driver of vda under / (built into %s)' % DEB13


def test_modprobe_d_softdeps_count_for_every_kernel():
    config = parse_softdeps('softdep ahci pre: vfio-pci\n# softdep ahci pre: nothing\n')
    k = Kernel('k', 'kernel/ahci.ko:\nkernel/vfio-pci.ko:\n', config_softdeps=config)
    needs = needed_modules([('ahci', 'driver of sda under /')], [k])
    assert describe_need(needs['vfio_pci']) == ['vfio_pci: needed by ahci (driver of sda under /) via softdep of k']


def test_ext4_reaches_crc32c_another_way_in_the_backports_kernel():
    # 6.12: ext4's own softdep names crypto-crc32c (crc32c_intel, crc32c_generic). 7.3 has no such
    # modules and no ext4 softdep: jbd2's softdep reaches crc32c_cryptoapi. The host needs each in its kernel.
    kernels = [kernel(DEB13), kernel(DEB13_BPO)]
    needs = needed_modules([('fs-ext4', 'filesystem of /')], kernels)
    assert [n.kernel for n in needs['crc32c_intel']] == [DEB13]
    assert [n.kernel for n in needs['crc32c_cryptoapi']] == [DEB13_BPO]
    assert [n.kernel for n in needs['jbd2']] == [DEB13, DEB13_BPO]
    assert describe_need(needs['crc32c_cryptoapi']) == [
        'crc32c_cryptoapi: needed by ext4 -> jbd2 (filesystem of /) via modules.dep and softdep of %s' % DEB13_BPO]
    refused, _warned = blacklist_problems(['crc32c_cryptoapi', 'crc32c_intel'], needs, True, kernels)
    assert len(refused) == 2 and DEB13_BPO in refused[0] and DEB13 not in refused[0], refused
    assert DEB13 in refused[1] and DEB13_BPO not in refused[1], refused


def test_read_kernels_on_a_merged_usr_root_with_a_backports_kernel(tmp_path):
    # Debian 13's /lib is a link to usr/lib, and 7.x packages keep vmlinuz, config and System.map in the
    # modules directory too: every kernel is still found, and nothing but a version directory counts.
    (tmp_path / 'usr/lib').mkdir(parents=True)
    (tmp_path / 'lib').symlink_to('usr/lib')
    install_kernels(tmp_path, DEB13, DEB13_BPO)
    for name in ('vmlinuz', 'config', 'System.map'):
        (tmp_path / 'usr/lib/modules' / DEB13_BPO / name).write_bytes(b'\0')
    kernels = read_kernels(SysfsTree(str(tmp_path)))
    assert [k.version for k in kernels] == [DEB13, DEB13_BPO]
    assert kernels[1].deps['vfat'] == ['fat'] and 'virtio_pci' in kernels[1].builtin


def test_read_kernels_reads_every_installed_kernel_and_the_modprobe_d_softdeps(tmp_path):
    install_kernels(tmp_path, DEB12, DEB13)
    (tmp_path / 'lib/modules/6.0.0-old').mkdir()             # no modules.dep: left out
    (tmp_path / 'etc/modprobe.d').mkdir(parents=True)
    (tmp_path / 'etc/modprobe.d/local.conf').write_text('softdep e1000e pre: dca\n')
    kernels = read_kernels(SysfsTree(str(tmp_path)))
    assert [k.version for k in kernels] == [DEB12, DEB13]
    assert kernels[1].softdeps['e1000e'] == ['dca']
    assert read_kernels(SysfsTree(str(tmp_path / 'nothing'))) == []


NEEDS = needed_modules([('fs-ext4', 'filesystem of /'), ('virtio_pci', 'driver of vda under /')],
                       [kernel(DEB12), kernel(DEB13)])


@pytest.mark.parametrize('driver, hard, refused, warned', [
    ('ext4', False, 'ext4 is needed by the host: ext4: filesystem of / (in %s, %s)' % (DEB12, DEB13), None),
    ('crc16', False, None, 'blacklist crc16 does not stop it loading as a dependency'),
    ('crc16', True, 'crc16 is needed by the host: crc16: needed by ext4 (filesystem of /) via modules.dep', None),
    ('crc32c_generic', True, 'crc32c_generic: needed by ext4 (filesystem of /) via softdep of', None),
    # modular in Debian 12: refused; built into Debian 13: said so
    ('virtio_pci', False, 'virtio_pci: driver of vda under / (in %s)' % DEB12, 'virtio_pci is built into %s' % DEB13),
    ('virtio_ring', True, 'virtio_ring: needed by virtio_pci (driver of vda under /) via modules.dep of %s' % DEB12,
     'virtio_ring is built into %s: a blacklist cannot stop it there' % DEB13),
    ('nouveau', True, None, None),
])
def test_blacklist_problems(driver, hard, refused, warned):
    refusals, warnings = blacklist_problems([driver], NEEDS, hard, [kernel(DEB12), kernel(DEB13)])
    assert bool(refusals) is bool(refused)
    if refused:
        assert refused in refusals[0]
    assert bool(warnings) is bool(warned)
    if warned:
        assert warned in warnings[0]


def test_only_builtin_is_never_refused():
    needs = needed_modules([('virtio_pci', 'driver of vda under /')], [kernel(DEB13)])
    assert blacklist_problems(['virtio_pci'], needs, True, [kernel(DEB13)]) == (
        [], ['virtio_pci is built into %s: a blacklist cannot stop it there' % DEB13])


_names = st.sampled_from(['a', 'b', 'c', 'd', 'e', 'f'])


@given(st.dictionaries(_names, st.lists(_names, max_size=3), max_size=6), st.lists(_names, min_size=1, max_size=3))
def test_property_closure_is_closed_and_every_chain_is_real(graph, roots):
    dep = ''.join('%s.ko: %s\n' % (m, ' '.join(d + '.ko' for d in deps)) for m, deps in graph.items())
    dep += ''.join('%s.ko:\n' % m for deps in graph.values() for m in deps if m not in graph)
    k = Kernel('k', dep)
    needs = needed_modules([(r, 'root') for r in roots], [k])
    for module, (need,) in needs.items():
        assert need.chain[0] in roots and need.chain[-1] == module
        for parent, child in zip(need.chain, need.chain[1:]):
            assert child in k.deps[parent]
        assert set(k.deps.get(module, [])) <= set(needs)
