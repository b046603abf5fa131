"""Keep README.md's table of the role's variables equal to roles/pcie_passthrough/meta/argument_specs.yml.

Usage: python tools/readme_variables.py [--check | --write] [--readme PATH] [--spec PATH]

Without an option, print the table. --check exits 1 and prints a unified diff
when the README's block differs from the spec; --write rewrites only the lines
between the two marker comments (atomically; every other byte is kept). The
spec is the one source: argument validation, ansible-doc and this table all
read it, so a variable added there cannot be missing from the README.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
SPEC = ROOT / 'roles' / 'pcie_passthrough' / 'meta' / 'argument_specs.yml'
BEGIN = '<!-- BEGIN variables (tools/readme_variables.py) -->'
END = '<!-- END variables -->'

# Ansible doc markup to Markdown: V(), C(), O(), M() are code, I() italic,
# B() bold, U() a bare link, L(text,url) a link.
_MARKUP = [
    (re.compile(r'[VCOM]\(([^()]*)\)'), r'`\1`'),
    (re.compile(r'I\(([^()]*)\)'), r'*\1*'),
    (re.compile(r'B\(([^()]*)\)'), r'**\1**'),
    (re.compile(r'U\(([^()]*)\)'), r'<\1>'),
    (re.compile(r'L\(([^(),]*),\s*([^()]*)\)'), r'[\1](\2)'),
]


class ReadmeError(Exception):
    """A README or spec this tool cannot work with; the message names the file and the problem."""


def _cell(text):
    """One table cell: on one line, with pipes escaped so they cannot split the row."""
    return ' '.join(str(text).split()).replace('|', '\\|')


def markdown(text):
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


def render_default(option):
    if option.get('required'):
        return 'required'
    if 'default' not in option or option['default'] is None:
        return '(none)'
    value = option['default']
    if isinstance(value, bool):
        shown = 'true' if value else 'false'
    elif isinstance(value, str):
        shown = value if value else "''"
    else:
        shown = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()
        shown = shown.removesuffix('\n...').strip()
    return '`%s`' % shown


def render_type(option):
    kind = option.get('type', 'str')
    if kind == 'list' and option.get('elements'):
        kind = 'list of %s' % option['elements']
    if option.get('choices'):
        kind += ': %s' % ', '.join('`%s`' % c for c in option['choices'])
    return kind


def render_table(spec):
    """The Markdown table (one line per variable, in the spec's order) for a parsed argument_specs.yml."""
    try:
        options = spec['argument_specs']['main']['options']
    except (KeyError, TypeError):
        raise ReadmeError('the spec has no argument_specs.main.options') from None
    lines = ['| variable | type | default | description |', '| --- | --- | --- | --- |']
    for name, option in options.items():
        description = option.get('description', '')
        if isinstance(description, list):
            description = ' '.join(description)
        cells = (name, render_type(option), render_default(option), markdown(description))
        lines.append('| `%s` | %s | %s | %s |' % tuple(_cell(c) for c in cells))
    return '\n'.join(lines) + '\n'


def load_spec(path):
    try:
        return yaml.safe_load(Path(path).read_text(encoding='utf-8'))
    except OSError as exc:
        raise ReadmeError('cannot read %s: %s' % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise ReadmeError('%s is not valid YAML: %s' % (path, exc)) from None


def split_readme(text, path='README.md'):
    """(before and including the BEGIN line, the block, from the END line on); exactly one pair, in order."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ReadmeError('%s needs exactly one %r line followed by one %r line (found %d and %d)'
                          % (path, BEGIN, END, len(begins), len(ends)))
    b, e = begins[0], ends[0]
    return ''.join(lines[:b + 1]), ''.join(lines[b + 1:e]), ''.join(lines[e:])


def _atomic_write(path, text):
    path = Path(path)
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.%s.' % path.name)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(readme=README, spec=SPEC, mode='print', out=sys.stdout):
    """Return the exit status: 0 when in sync (or printed / written), 1 when --check finds a difference."""
    table = render_table(load_spec(spec))
    if mode == 'print':
        out.write(table)
        return 0
    try:
        text = Path(readme).read_text(encoding='utf-8')
    except OSError as exc:
        raise ReadmeError('cannot read %s: %s' % (readme, exc.strerror)) from None
    head, block, tail = split_readme(text, readme)
    if block == table:
        return 0
    if mode == 'write':
        _atomic_write(readme, head + table + tail)
        out.write('%s: variables table rewritten from %s\n' % (readme, spec))
        return 0
    out.writelines(difflib.unified_diff(block.splitlines(keepends=True), table.splitlines(keepends=True),
                                        '%s (variables table)' % readme, '%s (generated)' % spec))
    out.write('%s is out of date: run python tools/readme_variables.py --write\n' % readme)
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--check', action='store_const', dest='mode', const='check', help='exit 1 with a diff when out of date')
    group.add_argument('--write', action='store_const', dest='mode', const='write', help='rewrite the block in the README')
    parser.add_argument('--readme', type=Path, default=README)
    parser.add_argument('--spec', type=Path, default=SPEC)
    args = parser.parse_args(argv)
    try:
        return run(args.readme, args.spec, args.mode or 'print')
    except ReadmeError as exc:
        print('readme_variables: %s' % exc, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
