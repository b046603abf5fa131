"""Issue 12 class 2: GRUB files are shell scripts, and the real /bin/sh (dash) judges every edit.

Each case is a real file under tmp_path; kernel_cmdline either edits it so that /bin/sh, sourcing it
the way grub-mkconfig does, computes the requested line (and the module reports exactly what sh
computes), or refuses naming the file and line and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import (
    untouched_args, unmet_args, validate_request,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._grub_shell import (
    ENV, SH, build_eval_script, parse_eval_output,
)
from ansible_collections.vfio.passthrough.plugins.modules import kernel_cmdline
from module_runner import run_module

INTEL = {'present': ['intel_iommu=on', 'iommu=pt'], 'absent': ['intel_iommu=off', 'amd_iommu=off']}
REQUEST = validate_request(INTEL['present'], INTEL['absent'])

if not os.access(SH, os.X_OK):  # pragma: no cover - every Debian has dash as /bin/sh
    print('skipped: no %s to evaluate GRUB files with' % SH)
    pytest.skip('no %s to evaluate GRUB files with' % SH, allow_module_level=True)


def sh_line(grub_file):
    """What grub-mkconfig's sourcing gives the kernel, computed here independently of the module."""
    script = build_eval_script(str(grub_file), str(grub_file) + '.d')
    out = subprocess.run(['env', '-i', *ENV, SH, '-c', script], capture_output=True, text=True, check=False).stdout
    evaluation = parse_eval_output(out)
    if not evaluation['complete']:
        return None
    files = evaluation['files']
    return ' '.join(v for v in files[-1][1:] if v) if files else ''


@pytest.fixture
def grub(tmp_path, monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    stub = bin_dir / 'update-grub'
    stub.write_text('#!/bin/sh\nexit 0\n')
    stub.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bin_dir, os.environ['PATH']))
    path = tmp_path / 'etc/default/grub'
    path.parent.mkdir(parents=True)
    proc = tmp_path / 'proc_cmdline'
    proc.write_text('BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=UUID=1234 ro quiet\n')
    return path


def run(grub_file, **extra):
    args = dict(INTEL, grub_file=str(grub_file), bootloader='grub', grub_cfg=str(grub_file) + '.cfg',
                proc_cmdline=str(grub_file.parents[2] / 'proc_cmdline'),
                uuids_file=str(grub_file.parents[2] / 'none'))
    args.update(extra)
    return run_module(kernel_cmdline.main, args)


def write_dropin(grub_file, name, text):
    directory = Path(str(grub_file) + '.d')
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return directory / name


# (default file, drop-in or None, the kernel line sh computes after the edit)
EDITED = [
    # An assignment sharing its line with another command.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"; GRUB_TIMEOUT=5\n', None, 'quiet intel_iommu=on iommu=pt'),
    ('GRUB_TIMEOUT=5; GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None, 'quiet intel_iommu=on iommu=pt'),
    # Two assignments on one line.
    ('GRUB_TIMEOUT=5 GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None, 'quiet intel_iommu=on iommu=pt'),
    ('GRUB_CMDLINE_LINUX="console=ttyS0 intel_iommu=off" GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None,
     'console=ttyS0 quiet intel_iommu=on iommu=pt'),
    # In an if/case branch the shell takes.
    ('if true; then\n  GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nfi\n', None, 'quiet intel_iommu=on iommu=pt'),
    ('case x in\n  x) GRUB_CMDLINE_LINUX_DEFAULT="quiet" ;;\nesac\n', None, 'quiet intel_iommu=on iommu=pt'),
    # && and || lists that run the assignment.
    ('true && GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n', None, 'quiet splash intel_iommu=on iommu=pt'),
    ('[ -e /nonexistent ] || GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None, 'quiet intel_iommu=on iommu=pt'),
    # unset before the assignment.
    ('unset GRUB_CMDLINE_LINUX_DEFAULT\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None, 'quiet intel_iommu=on iommu=pt'),
    # Backslash-newline continuations inside the value.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet \\\n  splash"\n', None, 'quiet   splash intel_iommu=on iommu=pt'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet \\\n  intel_iommu=off"\n', None, 'quiet   intel_iommu=on iommu=pt'),
    # A reference to a variable the file sets to a plain value: evaluated, kept.
    ('EXTRA="hugepagesz=1G hugepages=16"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA"\n', None,
     'quiet hugepagesz=1G hugepages=16 intel_iommu=on iommu=pt'),
    # Drop-ins that only add, or override only in a branch sh does not take.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT hugepages=16"\n',
     'quiet intel_iommu=on iommu=pt hugepages=16'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'if false; then GRUB_CMDLINE_LINUX_DEFAULT=""; fi\n',
     'quiet intel_iommu=on iommu=pt'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'false && unset GRUB_CMDLINE_LINUX_DEFAULT\nGRUB_TIMEOUT=5\n',
     'quiet intel_iommu=on iommu=pt'),
    # An assignment inside a function that a later line calls: that one is what sh keeps.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nf() { GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off"; }\nf\n', None,
     'intel_iommu=on iommu=pt'),
    # Init's arguments after '--' stay last; the kernel's go before it.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet -- single"\n', None, 'quiet intel_iommu=on iommu=pt -- single'),
    # intel_iommu=off earlier, the requested on later: the kernel's last on/off wins.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'if true; then\n  GRUB_CMDLINE_LINUX="intel_iommu=off"\nfi\n',
     'intel_iommu=off quiet intel_iommu=on iommu=pt'),
]


@pytest.mark.parametrize('text, dropin, effective', EDITED)
def test_edits_that_sh_proves(grub, text, dropin, effective):
    grub.write_text(text)
    if dropin is not None:
        write_dropin(grub, '50-local.cfg', dropin)
    result = run(grub)
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is True
    assert result['effective'] == effective
    assert sh_line(grub) == effective
    assert run(grub)['changed'] is False


# (default file, drop-in or None, what the message names)
REFUSED = [
    # The last assignment sits in a branch sh does not take: the edit would not reach the kernel.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nif [ -e /nonexistent ]; then\n  GRUB_CMDLINE_LINUX_DEFAULT="splash"\nfi\n',
     None, ['grub line 3: the edit of GRUB_CMDLINE_LINUX_DEFAULT there does not reach the kernel', 'line 1']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nfalse && GRUB_CMDLINE_LINUX_DEFAULT="splash"\nGRUB_TIMEOUT=5\n',
     None, ['grub line 2: the edit', 'missing intel_iommu=on']),
    ('case y in\n  x) GRUB_CMDLINE_LINUX_DEFAULT="quiet" ;;\nesac\n', None, ['grub line 2: the edit']),
    # unset after the assignment.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nunset GRUB_CMDLINE_LINUX_DEFAULT\n', None,
     ['grub line 1: the edit', 'line 2 also set or use GRUB_CMDLINE_*']),
    # A later assignment the editor cannot see as one (an eval) overrides it.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\neval \'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off"\'\n', None,
     ['grub line 1: the edit', 'still has intel_iommu=off', 'line 2 also set or use']),
    # A '--' in GRUB_CMDLINE_LINUX hands all of GRUB_CMDLINE_LINUX_DEFAULT to init.
    ('GRUB_CMDLINE_LINUX="ro -- single"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None,
     ['grub line 2: ', 'missing intel_iommu=on', 'a bare -- before it']),
    # Drop-ins overriding the variable in each form.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', ['50-local.cfg line 1 overrides']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'unset GRUB_CMDLINE_LINUX_DEFAULT\n', ['50-local.cfg line 1 overrides']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_TIMEOUT=1; GRUB_CMDLINE_LINUX_DEFAULT=""\n',
     ['50-local.cfg line 1 overrides']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
     'if true; then\n  GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=off"\nfi\n',
     ['50-local.cfg line 2 overrides', 'still has intel_iommu=off']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'true && GRUB_CMDLINE_LINUX_DEFAULT="quiet \\\nsplash"\n',
     ['50-local.cfg line 1 overrides']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'X=$(echo iommu=soft)\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT $X"\n',
     ['50-local.cfg line 2 overrides', 'missing iommu=pt']),
    # A value only update-grub's run decides, while arguments are asked absent: refused, naming file and line.
    ('EXTRA=$(echo hugepagesz=1G hugepages=16)\nGRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA"\n', None,
     ['grub line 2: GRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA intel_iommu=on iommu=pt" cannot be evaluated before it runs',
      '$EXTRA takes its value from', 'grub line 1 (EXTRA=$(echo hugepagesz=1G hugepages=16))',
      'an argument asked absent (intel_iommu=off amd_iommu=off) could survive']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA"\n', None,
     ['grub line 1: GRUB_CMDLINE_LINUX_DEFAULT=', '$EXTRA is not set by these files, so the environment update-grub '
      'runs in decides it']),
    ('GRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
     'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX $(cat /nonexistent-h21 2>/dev/null || true)"\n',
     ['50-local.cfg line 1: GRUB_CMDLINE_LINUX=', 'command substitution']),
    ('GRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX="`true`"\n',
     ['50-local.cfg line 1: GRUB_CMDLINE_LINUX=', 'command substitution']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT $GRUB_DEVICE"\n',
     ['50-local.cfg line 1: ', '$GRUB_DEVICE is not set by these files']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet ${EXTRA:-}"\n', None, ['grub line 1: cannot evaluate']),
    # Syntax errors name their file, drop-ins included.
    ('if true; then\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None, ['grub: /bin/sh -n finds a syntax error']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT\nfi\n',
     ['50-local.cfg: /bin/sh -n finds a syntax error']),
    # grub-mkconfig runs under set -e: a failing command stops it, so update-grub would fail.
    ('false\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', None, ['grub: sourcing it as grub-mkconfig does (set -e)']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'exit 0\n', ['50-local.cfg: sourcing it as grub-mkconfig does']),
    # The status of a file is its last command's: a trailing false && list stops grub-mkconfig too.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'false && GRUB_CMDLINE_LINUX_DEFAULT=""\n',
     ['50-local.cfg: sourcing it as grub-mkconfig does (set -e) ends the shell early']),
    # An unbalanced quote inside a value: never appended into.
    ("GRUB_CMDLINE_LINUX_DEFAULT='quiet acpi_osi=\"Windows'\n", None,
     ['grub line 1', 'unbalanced double quote', 'acpi_osi="Windows']),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', "GRUB_CMDLINE_LINUX='acpi_osi=\"Linux'\n",
     ['GRUB_CMDLINE_LINUX as /bin/sh computes it after', '50-local.cfg', 'unbalanced double quote']),
]


@pytest.mark.parametrize('text, dropin, fragments', REFUSED)
def test_refusals_name_file_and_line_and_write_nothing(grub, text, dropin, fragments):
    grub.write_text(text)
    if dropin is not None:
        write_dropin(grub, '50-local.cfg', dropin)
    before = sorted((p, p.read_bytes()) for p in grub.parent.rglob('*') if p.is_file())
    result = run(grub)
    assert result['failed'] is True
    for fragment in fragments:
        assert fragment in result['msg']
    assert sorted((p, p.read_bytes()) for p in grub.parent.rglob('*') if p.is_file()) == before
    assert not Path(str(grub) + '.cfg').exists()


@pytest.mark.parametrize('text, dropin', [
    ('EXTRA=$(echo hugepagesz=1G)\nGRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA"\n', None),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT $GRUB_DEVICE"\n'),
])
def test_a_value_sh_alone_computes_is_accepted_when_nothing_is_asked_absent(grub, text, dropin):
    grub.write_text(text)
    if dropin is not None:
        write_dropin(grub, '50-local.cfg', dropin)
    result = run(grub, absent=[])
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is True


def test_check_mode_judges_the_same_way(grub):
    grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    write_dropin(grub, '50-local.cfg', 'unset GRUB_CMDLINE_LINUX_DEFAULT\n')
    result = run_module(kernel_cmdline.main, dict(INTEL, grub_file=str(grub), bootloader='grub',
                                                  proc_cmdline=str(grub.parents[2] / 'proc_cmdline')),
                        check_mode=True)
    assert result['failed'] is True and '50-local.cfg line 1 overrides' in result['msg']


# --- property: what the module writes, sh evaluates to the request with every other argument kept ---------

_LINES = st.sampled_from([
    'GRUB_TIMEOUT=5', '# GRUB_CMDLINE_LINUX_DEFAULT="commented intel_iommu=off"', '',
    'GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`',
    'GRUB_CMDLINE_LINUX="console=ttyS0"', 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX iommu=soft"',
    'true && GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT splash"',
    'false && GRUB_CMDLINE_LINUX_DEFAULT="never"',
    'if [ -e /nonexistent ]; then GRUB_CMDLINE_LINUX_DEFAULT="never"; fi',
    'case a in a) GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX nomodeset" ;; esac',
    'unset GRUB_CMDLINE_LINUX', 'EXTRA=$(echo hugepages=16)', 'GRUB_GFXMODE=640x480 GRUB_TIMEOUT=3',
])
_VALUE = st.lists(st.sampled_from(['quiet', 'splash', 'intel_iommu=off', 'intel_iommu=on,igfx_off', 'iommu=soft',
                                   '$EXTRA', 'amd_iommu=off', '\\\n  nomodeset']), max_size=4).map(' '.join)
_DROPIN = st.sampled_from([None, 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT hugepages=16"',
                           'if false; then unset GRUB_CMDLINE_LINUX_DEFAULT; fi',
                           'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX intel_iommu=off"'])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_LINES, max_size=4), _VALUE, st.lists(_LINES, max_size=3), _DROPIN)
def test_an_edited_file_evaluates_to_the_request(tmp_path_factory, head, value, tail, dropin):
    root = tmp_path_factory.mktemp('grub')
    grub = root / 'etc/default/grub'
    grub.parent.mkdir(parents=True)
    (root / 'proc_cmdline').write_text('ro quiet\n')
    text = '\n'.join(head + ['GRUB_CMDLINE_LINUX_DEFAULT="%s"' % value] + tail) + '\n'
    grub.write_text(text)
    if dropin:
        write_dropin(grub, '10-x.cfg', dropin + '\n')
    before = sh_line(grub)
    result = run(grub, apply=False)
    if before is None:
        assert result['failed'] is True and 'set -e' in result['msg']
    if result.get('failed'):
        assert grub.read_text() == text
        named = [str(grub)] + ([str(grub) + '.d/10-x.cfg'] if dropin else [])
        assert any(result['msg'].startswith(path + sep) for path in named for sep in (': ', ' line ')) \
            or result['msg'].startswith('drop-in %s.d/10-x.cfg line ' % grub), result['msg']
        return
    after = sh_line(grub)
    assert result['effective'] == after
    assert unmet_args(after, REQUEST) == []
    assert untouched_args(after, REQUEST) == untouched_args(before, REQUEST)
