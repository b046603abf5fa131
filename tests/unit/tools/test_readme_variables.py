"""tools/readme_variables.py: README.md's variables table equals meta/argument_specs.yml."""

from __future__ import annotations

import io
import shutil
import stat

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import readme_variables as rv


def _run(mode, readme, spec):
    out = io.StringIO()
    return rv.run(readme, spec, mode, out=out), out.getvalue()


@pytest.fixture
def copies(tmp_path):
    """Temp copies of the real README.md and argument_specs.yml."""
    readme, spec = tmp_path / 'README.md', tmp_path / 'argument_specs.yml'
    shutil.copy2(rv.README, readme)
    shutil.copy2(rv.SPEC, spec)
    return readme, spec


def test_readme_table_equals_the_spec():
    status, output = _run('check', rv.README, rv.SPEC)
    assert status == 0, output


def test_every_spec_variable_has_a_row():
    block = rv.split_readme(rv.README.read_text())[1]
    options = yaml.safe_load(rv.SPEC.read_text())['argument_specs']['main']['options']
    assert options
    for name in options:
        assert '| `%s` |' % name in block


def _add_option(spec, name, option):
    data = yaml.safe_load(spec.read_text())
    data['argument_specs']['main']['options'][name] = option
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize('change', ['add', 'default', 'remove'])
def test_a_changed_spec_fails_check_with_a_diff(copies, change):
    readme, spec = copies
    before = readme.read_bytes()
    data = yaml.safe_load(spec.read_text())
    options = data['argument_specs']['main']['options']
    if change == 'add':
        options['pcie_passthrough_example'] = {'description': 'An example.', 'type': 'bool', 'default': False}
        expected = '+| `pcie_passthrough_example` | bool | `false` | An example. |'
    elif change == 'default':
        options['pcie_passthrough_reboot_timeout']['default'] = 1200
        expected = '+| `pcie_passthrough_reboot_timeout` | int | `1200` |'
    else:
        del options['pcie_passthrough_verify']
        expected = '-| `pcie_passthrough_verify` |'
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    status, output = _run('check', readme, spec)
    assert status == 1
    assert expected in output
    assert 'run python tools/readme_variables.py --write' in output
    assert readme.read_bytes() == before


def test_write_rewrites_only_the_block(copies):
    readme, spec = copies
    readme.chmod(0o640)
    _add_option(spec, 'pcie_passthrough_example', {'description': 'An C(example).', 'type': 'str', 'default': 'x'})
    head, _block, tail = rv.split_readme(readme.read_text())
    status = _run('write', readme, spec)[0]
    assert status == 0
    new_head, block, new_tail = rv.split_readme(readme.read_text())
    assert (new_head, new_tail) == (head, tail)
    assert '| `pcie_passthrough_example` | str | `x` | An `example`. |' in block
    assert stat.S_IMODE(readme.stat().st_mode) == 0o640
    assert _run('check', readme, spec)[0] == 0
    # A second write finds nothing to do and leaves the file alone.
    inode = readme.stat().st_ino
    assert _run('write', readme, spec) == (0, '')
    assert readme.stat().st_ino == inode


@pytest.mark.parametrize('text', [
    'no markers at all\n',
    '%s\n| table |\n' % rv.BEGIN,
    '| table |\n%s\n' % rv.END,
    '%s\n%s\n' % (rv.END, rv.BEGIN),
    '%s\n%s\n%s\n%s\n' % (rv.BEGIN, rv.END, rv.BEGIN, rv.END),
], ids=['none', 'no-end', 'no-begin', 'reversed', 'twice'])
def test_bad_markers_are_refused_and_nothing_written(copies, text):
    readme, spec = copies
    readme.write_text(text)
    with pytest.raises(rv.ReadmeError, match='README.md needs exactly one'):
        rv.run(readme, spec, 'write', out=io.StringIO())
    assert readme.read_text() == text


@pytest.mark.parametrize('spec_text, message', [
    ('argument_specs: {}\n', 'no argument_specs.main.options'),
    ('- a list\n', 'no argument_specs.main.options'),
    ('argument_specs: [unclosed\n', 'is not valid YAML'),
])
def test_bad_spec_is_refused(tmp_path, spec_text, message):
    spec = tmp_path / 'argument_specs.yml'
    spec.write_text(spec_text)
    with pytest.raises(rv.ReadmeError, match=message):
        rv.run(rv.README, spec, 'check', out=io.StringIO())


def test_cli_exit_codes(copies, capsys):
    readme, spec = copies
    assert rv.main(['--check', '--readme', str(readme), '--spec', str(spec)]) == 0
    assert rv.main(['--check', '--readme', str(readme), '--spec', str(readme.with_name('missing.yml'))]) == 2
    assert 'missing.yml' in capsys.readouterr().err


@pytest.mark.parametrize('option, type_cell, default_cell', [
    ({'type': 'bool', 'default': True}, 'bool', '`true`'),
    ({'type': 'int', 'default': 900}, 'int', '`900`'),
    ({'type': 'str', 'default': ''}, 'str', "`''`"),
    ({'type': 'path', 'default': '/'}, 'path', '`/`'),
    ({'type': 'list', 'elements': 'str', 'default': []}, 'list of str', '`[]`'),
    ({'type': 'list', 'elements': 'str', 'default': ['a', 'b']}, 'list of str', '`[a, b]`'),
    ({'type': 'dict', 'default': {'k': 1}}, 'dict', '`{k: 1}`'),
    ({'type': 'str', 'choices': ['auto', 'grub'], 'default': 'auto'}, 'str: `auto`, `grub`', '`auto`'),
    ({'type': 'str'}, 'str', '(none)'),
    ({'type': 'str', 'default': None}, 'str', '(none)'),
    ({'type': 'str', 'required': True}, 'str', 'required'),
])
def test_type_and_default_cells(option, type_cell, default_cell):
    assert rv.render_type(option) == type_cell
    assert rv.render_default(option) == default_cell


@pytest.mark.parametrize('text, expected', [
    ('V(auto) reads C(DMAR)', '`auto` reads `DMAR`'),
    ('see M(vfio.passthrough.iommu_facts) and O(root)', 'see `vfio.passthrough.iommu_facts` and `root`'),
    ('I(only) B(this)', '*only* **this**'),
    ('L(the guide,https://example.invalid/g) or U(https://example.invalid)',
     '[the guide](https://example.invalid/g) or <https://example.invalid>'),
    ('plain text, no markup', 'plain text, no markup'),
])
def test_doc_markup_becomes_markdown(text, expected):
    assert rv.markdown(text) == expected


@given(st.text(alphabet=st.characters(blacklist_categories=('Cs',)), max_size=80))
def test_any_description_stays_one_well_formed_row(description):
    spec = {'argument_specs': {'main': {'options': {'pcie_passthrough_x': {'description': description, 'type': 'str'}}}}}
    row = rv.render_table(spec).splitlines()[2]
    assert '\n' not in row and '\r' not in row
    # Four cells: every pipe inside a cell is escaped.
    assert len([i for i, c in enumerate(row) if c == '|' and (i == 0 or row[i - 1] != '\\')]) == 5
