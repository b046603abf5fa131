"""Run ansible-playbook the one way every bench part does, and read its PLAY RECAP.

Shared by vm_bench.py and container_bench.py, so the VM and the container
figures are measured identically: wall seconds around the whole subprocess
(interpreter start, inventory, every task) and per-host recap counts.

Task count = ok + failed: Ansible's ``ok`` already includes ``changed``;
``skipped`` tasks did not run on the host and are reported apart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ROOT / '.cache' / 'collections'
RECAP_KEYS = ('ok', 'changed', 'unreachable', 'failed', 'skipped', 'rescued', 'ignored')
# "host : ok=5 changed=0 ..." after the PLAY RECAP banner; host names may hold
# any non-space character (container names, IPs, FQDNs).
_RECAP_LINE = re.compile(r'^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$')


def collection_link_parent():
    """The directory holding ansible_collections/vfio/passthrough -> this checkout."""
    return subprocess.run([str(ROOT / 'tools' / 'collection-link.sh'), '--collections-path'], check=True,
                          capture_output=True, text=True).stdout.strip()


def collections_path():
    """ANSIBLE_COLLECTIONS_PATH: this checkout's collection link, then vendored ones (containers.podman, ansible.posix)."""
    return os.pathsep.join([collection_link_parent(), str(VENDORED)])


def ansible_playbook():
    """The ansible-playbook next to the running interpreter (the .venv one under make)."""
    candidate = Path(sys.executable).with_name('ansible-playbook')
    return str(candidate if candidate.exists() else ROOT / '.venv' / 'bin' / 'ansible-playbook')


def parse_recap(output):
    """{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}} from the last PLAY RECAP."""
    start = output.rfind('PLAY RECAP')
    if start < 0:
        return {}
    recap = {}
    for line in output[start:].splitlines()[1:]:
        match = _RECAP_LINE.match(line.strip())
        if not match:
            continue
        counts = dict.fromkeys(RECAP_KEYS, 0)
        for pair in match.group('counts').split():
            key, value = pair.split('=')
            counts[key] = int(value)
        recap[match.group('host')] = counts
    return recap


@dataclass
class Run:
    rc: int
    seconds: float
    recap: dict
    output: str
    argv: list = field(default_factory=list)

    def host(self, name=None):
        """Counts of one host (the only one when ``name`` is None) plus ``tasks`` = ok + failed."""
        if name is None:
            if len(self.recap) != 1:
                raise ValueError('run has %d hosts in its recap, name one: %s' % (len(self.recap), sorted(self.recap)))
            name = next(iter(self.recap))
        counts = dict(self.recap[name])
        counts['tasks'] = counts['ok'] + counts['failed']
        return counts

    def total(self, key):
        """Sum of one recap key (or ``tasks``) over every host."""
        if key == 'tasks':
            return sum(c['ok'] + c['failed'] for c in self.recap.values())
        return sum(c[key] for c in self.recap.values())

    @property
    def succeeded(self):
        return self.rc == 0 and bool(self.recap) and not self.total('failed') and not self.total('unreachable')

    def tail(self, lines=40):
        return '\n'.join(self.output.splitlines()[-lines:])


def run_playbook(playbook, inventory, extra_vars=None, env=None, args=(), log=None, timeout=3600):
    """Run ``ansible-playbook -i inventory playbook`` and return a Run.

    ``extra_vars`` (a dict) goes through a JSON file so types survive; ``env``
    adds to or overrides the environment (e.g. ANSIBLE_FORKS,
    ANSIBLE_CALLBACKS_ENABLED); ``args`` are more command-line arguments
    (``--check``, ``--limit`` ...); ``log`` receives the full output.
    """
    argv = [ansible_playbook(), '-i', str(inventory), str(playbook), *map(str, args)]
    cleanup = None
    if extra_vars:
        handle, cleanup = tempfile.mkstemp(prefix='bench-vars-', suffix='.json')
        with os.fdopen(handle, 'w') as stream:
            json.dump(extra_vars, stream)
        argv += ['-e', '@' + cleanup]
    environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
                   ANSIBLE_FORCE_COLOR='0', ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False')
    environ.update(env or {})
    try:
        started = time.monotonic()
        result = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=timeout, check=False,
                                cwd=ROOT)
        seconds = time.monotonic() - started
    finally:
        if cleanup:
            os.unlink(cleanup)
    output = result.stdout + result.stderr
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text('$ %s\n%s' % (' '.join(argv), output))
    return Run(result.returncode, seconds, parse_recap(result.stdout), output, argv)
