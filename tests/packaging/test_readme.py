"""README.md claims that can drift from the code: the troubleshooting mapping, versions, tarball names."""

from __future__ import annotations

import ast
import functools
import re

import pytest
import yaml

from packaging_support import ROOT, galaxy_meta

README = (ROOT / 'README.md').read_text()

# The Issue column of the Troubleshooting table in the guide Proxmox admins
# follow (shared/seed/pci-passthrough-guide.txt), in its order.
GUIDE_ROWS = [
    'IOMMU not enabled',
    'Devices not isolated',
    'NIC still bound to host',
    "VM won't start with passthrough",
    'Poor throughput',
    'Proxmox UI missing devices',
    'Network drops on bridge',
    'ACS override ignored',
    'ZFS boot ignoring args',
    'IOMMU groups still large',
    "VM doesn't see device",
    'Host hangs on boot',
]


def _norm(text):
    return ' '.join(text.replace('\u2019', "'").split())


# Module documentation is what ansible-doc prints, not what a run prints.
_DOC_NAMES = {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}


def _python_printables(source):
    """Every string literal of a Python source except docstrings and module documentation.

    Read with ast, so comments are gone and adjacent literals are already one string; a docstring
    (the first statement of a module, class or function) says what code does, it prints nothing.
    """
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in _DOC_NAMES for t in node.targets):
            skipped.update(id(sub) for sub in ast.walk(node.value))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped]


def _yaml_printables(source):
    """Every string scalar value of a YAML document (task names, msg, templates); comments and keys are not printed."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            found.append(value)
    for document in yaml.safe_load_all(source):
        walk(document)
    return found


def _jinja_printables(source):
    """A template's text without its {# comments #}."""
    return [re.sub(r'{#.*?#}', '', source, flags=re.S)]


@functools.lru_cache(maxsize=None)
def _code_text():
    """Everything the role and its plugins can print: string literals in code, YAML values, template text.

    Comments, docstrings and module documentation are left out, so a quote that only a comment
    carries is not taken for a message the role prints.
    """
    parts = []
    for path in sorted(ROOT.glob('plugins/**/*.py')):
        parts += _python_printables(path.read_text())
    # plugins/filter/*.yml are the filters' documentation: nothing a run prints.
    for pattern in ('roles/**/*.yml', 'playbooks/*.yml'):
        for path in sorted(ROOT.glob(pattern)):
            parts += _yaml_printables(path.read_text())
    for path in sorted(ROOT.glob('roles/**/*.j2')):
        parts += _jinja_printables(path.read_text())
    return _norm('\n'.join(parts))


@pytest.mark.parametrize('extract, source, printed', [
    pytest.param(_python_printables, '# Booted by grub\nx = 1\n', False, id='python-comment'),
    pytest.param(_python_printables, '"""Booted by grub"""\n', False, id='python-module-docstring'),
    pytest.param(_python_printables, 'def f():\n    """Booted by grub"""\n    return 1\n', False, id='python-function-docstring'),
    pytest.param(_python_printables, 'DOCUMENTATION = """Booted by grub"""\n', False, id='python-module-docs'),
    pytest.param(_python_printables, 'def f():\n    return ("Booted "\n            "by grub")\n', True, id='python-joined-literal'),
    pytest.param(_python_printables, 'def f(x):\n    return f"Booted by {x}"\n', True, id='python-f-string'),
    pytest.param(_yaml_printables, '- name: Reboot\n  # Booted by grub\n  debug: {msg: 1}\n', False, id='yaml-comment'),
    pytest.param(_yaml_printables, '- name: Reboot\n  debug:\n    msg: "Booted by {{ x }}"\n', True, id='yaml-msg'),
    pytest.param(_jinja_printables, '{# Booted by grub #}text', False, id='jinja-comment'),
    pytest.param(_jinja_printables, 'Booted by {{ x }}', True, id='jinja-text'),
])
def test_a_quote_counts_only_where_code_can_print_it(extract, source, printed):
    assert ('Booted by' in _norm('\n'.join(extract(source)))) is printed


def _mapping_rows():
    start = README.index("### The guide's troubleshooting table, as the role reports it")
    rows = {}
    for line in README[start:].splitlines()[1:]:
        if line.startswith('#'):
            break
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') else []
        if len(cells) == 2 and cells[0] not in ('guide row', '---'):
            rows[_norm(cells[0])] = cells[1]
    return rows


def test_every_guide_row_is_mapped_once():
    rows = list(_mapping_rows())
    matched = [g for g in GUIDE_ROWS for r in rows if r == _norm(g) or r.startswith(_norm(g) + ' (')]
    assert sorted(matched) == sorted(GUIDE_ROWS), 'rows: %s' % rows
    assert len(rows) == len(GUIDE_ROWS), 'rows not from the guide: %s' % rows


QUOTES = [(row, quote) for row, text in _mapping_rows().items() for quote in re.findall(r'"([^"]+)"', text)]


def test_the_mapping_quotes_the_role():
    assert len(QUOTES) >= len(GUIDE_ROWS)


@pytest.mark.parametrize('row, quote', QUOTES, ids=['%s: %s' % q for q in QUOTES])
def test_each_quoted_message_is_in_the_code(row, quote):
    assert _norm(quote) in _code_text(), 'README row %r quotes %r, which the role does not print' % (row, quote)


def test_tarball_names_carry_the_galaxy_version():
    version = galaxy_meta()['version']
    names = re.findall(r'vfio-passthrough-(\d[^\s/`]*?)\.tar\.gz', README)
    assert names, 'README names no collection tarball'
    assert set(names) == {version}


def test_compatibility_matrix_states_the_tested_versions():
    start = README.index('## Compatibility')
    section = README[start:README.index('\n## ', start + 1)]
    pin = re.search(r'^ansible-core==(\S+)$', (ROOT / 'requirements' / 'base.txt').read_text(), re.M).group(1)
    requires = yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text())['requires_ansible']
    assert pin in section, 'the matrix must name the ansible-core the tests run (%s)' % pin
    assert requires.lstrip('>=') in section, 'the matrix must name the lowest declared ansible-core (%s)' % requires
    for claim in ('Debian 12', 'Proxmox VE 8', '6.2', '6.8', 'VT-d', 'AMD-Vi', 'GRUB', 'proxmox-boot-tool'):
        assert claim in section, claim


def _controller_lines():
    """The Makefile's CONTROLLER_LINES: {line: [checks]}, e.g. {'2.21': ['units', ...], 'apt': [...]}."""
    makefile = (ROOT / 'Makefile').read_text()
    block = re.search(r'^CONTROLLER_LINES := ((?:.*\\\n)*.*)$', makefile, re.M).group(1)
    specs = block.replace('\\\n', ' ').split()
    return {spec.split('=')[0]: spec.split('=')[1].split(',') for spec in specs}


def test_every_controller_line_has_its_pins_and_is_named_in_the_matrix():
    start = README.index('## Compatibility')
    section = README[start:README.index('\n## ', start + 1)]
    lines = _controller_lines()
    pinned = {path.parent.name.removeprefix('ansible-core-') for path in (ROOT / 'requirements').glob('ansible-core-*/controller.txt')}
    assert pinned == set(lines) - {'apt'}, 'each X.Y in CONTROLLER_LINES has requirements/ansible-core-X.Y/controller.txt'
    for line in pinned:
        pin = re.search(r'^ansible-core==(\S+)$', (ROOT / 'requirements' / ('ansible-core-' + line) / 'controller.txt').read_text(), re.M)
        assert pin, 'requirements/ansible-core-%s/controller.txt pins no ansible-core' % line
        assert pin.group(1) in section, 'the matrix must name ansible-core %s, which make test-controller runs' % pin.group(1)
    assert 'ansible-core' not in (ROOT / 'requirements' / 'debian-13-apt' / 'controller.txt').read_text().split('# Direct')[1], \
        "the apt line's venv must not shadow Debian's ansible-core"
    assert 'Python 3.13' in section and 'Python 3.11' in section
    for checks in lines.values():
        assert {'units', 'sanity', 'package'} <= set(checks)
