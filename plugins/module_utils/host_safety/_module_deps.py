# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which kernel modules a set of modules pulls in, by the depmod files of every installed kernel.

A module the host needs (the root disk's block driver, the root filesystem)
loads the modules listed for it in ``modules.dep`` and its soft dependencies
(``modules.softdep``, ``softdep`` lines in modprobe.d) first; ``install X
/bin/false`` on any of them makes the load fail just as if the needed module
itself were blocked. A host keeps several kernels and boots the newest, which
may need other modules than the running one: every kernel under
``lib/modules`` counts.

Pure functions over file text, except ``read_kernels``, which reads the files
of each kernel (and the modprobe.d softdeps) through a ``SysfsTree``.
"""

from __future__ import annotations

import collections
import re

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import MODPROBE_DIRS, conf_read_order
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_module

__all__ = [
    'module_name', 'parse_modules_dep', 'parse_softdeps', 'parse_builtin', 'parse_exact_aliases',
    'Kernel', 'read_kernels', 'Need', 'needed_modules', 'describe_need', 'blacklist_problems',
]

_KO = re.compile(r'\.ko(?:\.(?:xz|zst|gz|bz2))?\Z')
_WILDCARD = re.compile(r'[*?\[]')

# One module the host needs, and why: ``module`` in ``kernel`` is reached from
# ``chain[0]`` (which serves ``what``) through ``chain``, by ``via`` (the
# depmod/modprobe files that link each step). ``builtin``: part of that
# kernel's image, so no blacklist can stop it.
Need = collections.namedtuple('Need', 'module kernel chain what via builtin')


def module_name(path):
    """``kernel/fs/ext4/ext4.ko.xz`` -> ``ext4``; ``crc32c-intel.ko`` -> ``crc32c_intel``."""
    return normalise_module(_KO.sub('', path.rsplit('/', 1)[-1]))


def parse_modules_dep(text):
    """{module: [modules it needs, in load order]} from ``modules.dep``."""
    deps = {}
    names = {}  # a few hundred library modules appear thousands of times: name each path once

    def name(path):
        found = names.get(path)
        if found is None:
            found = names[path] = module_name(path)
        return found

    for line in (text or '').splitlines():
        head, sep, tail = line.partition(':')
        if not sep or not head.strip():
            continue
        deps[name(head.strip())] = [name(word) for word in tail.split()]
    return deps


def parse_softdeps(text):
    """{module: [names before or after it]} from ``modules.softdep`` or modprobe.d text.

    The names may be aliases (``crc32c``); ``Kernel.resolve`` maps them to modules.
    """
    result = {}
    for line in (text or '').splitlines():
        words = line.split('#', 1)[0].split()
        if len(words) < 3 or words[0] != 'softdep':
            continue
        names = result.setdefault(normalise_module(words[1]), [])
        for word in words[2:]:
            if word in ('pre:', 'post:'):
                continue
            if normalise_module(word) not in names:
                names.append(normalise_module(word))
    return result


def parse_builtin(text):
    """The modules compiled into the kernel image, from ``modules.builtin``."""
    return {module_name(line.strip()) for line in (text or '').splitlines() if line.strip()}


def parse_exact_aliases(text):
    """{alias: [modules]} from ``modules.alias`` for the aliases without wildcards (``fs-ext4``, ``crc32c``)."""
    result = {}
    for line in (text or '').splitlines():
        if '*' in line:     # most of the file: device aliases with wildcards, skipped before any split
            continue
        words = line.split()
        if len(words) == 3 and words[0] == 'alias' and not _WILDCARD.search(words[1]):
            targets = result.setdefault(words[1], [])
            module = normalise_module(words[2])
            if module not in targets:
                targets.append(module)
    return result


class Kernel:
    """The depmod view of one installed kernel."""

    def __init__(self, version, dep_text, softdep_text='', builtin_text='', alias_text='', config_softdeps=None):
        self.version = version
        self.deps = parse_modules_dep(dep_text)
        self.builtin = parse_builtin(builtin_text)
        self.aliases = parse_exact_aliases(alias_text)
        self.softdeps = {}
        self.config_softdeps = config_softdeps or {}
        for table in (parse_softdeps(softdep_text), self.config_softdeps):
            for module, names in table.items():
                have = self.softdeps.setdefault(module, [])
                have.extend(n for n in names if n not in have)

    def has(self, module):
        return self.unknown or module in self.deps or module in self.builtin

    unknown = False

    @classmethod
    def without_files(cls):
        """A kernel whose depmod files are missing (a chroot, a container): every name is a module without deps."""
        kernel = cls('the running kernel, whose modules.dep is missing', '')
        kernel.unknown = True
        return kernel

    def resolve(self, name):
        """The modules ``name`` stands for in this kernel: itself, or what its alias points to.

        ``fs-<type>`` is the filesystem's module (``filesystem``).
        """
        if name.startswith('fs-'):
            return self.filesystem(name[3:])
        name = normalise_module(name)
        if self.has(name):
            return [name]
        raw = self.aliases.get(name) or self.aliases.get(name.replace('_', '-')) or []
        return [m for m in raw if self.has(m)]

    def filesystem(self, fstype):
        """The module that mounts ``fstype``: the kernel's ``fs-<type>`` alias, else the module of that name."""
        found = [m for m in self.aliases.get('fs-' + fstype, []) if self.has(m)]
        return found or ([normalise_module(fstype)] if self.has(normalise_module(fstype)) else [])


def read_kernels(tree):
    """[Kernel] for every ``lib/modules/<version>`` of ``tree`` (a ``SysfsTree``) that holds a ``modules.dep``.

    ``softdep`` lines of the modprobe.d files (as modprobe reads them) count
    for every kernel.
    """
    listings = [(d, tree.listdir(d.lstrip('/'))) for d in MODPROBE_DIRS]
    config = parse_softdeps('\n'.join(tree.read(path.lstrip('/')) or '' for path in conf_read_order(listings)))
    kernels = []
    for version in tree.listdir('lib/modules'):
        base = 'lib/modules/%s/' % version
        dep = tree.read(base + 'modules.dep')
        if dep is None:
            continue
        kernels.append(Kernel(version, dep, tree.read(base + 'modules.softdep') or '',
                              tree.read(base + 'modules.builtin') or '', tree.read(base + 'modules.alias') or '',
                              config))
    return kernels


def needed_modules(roots, kernels):
    """{module: [Need]}: every module the ``roots`` need in any of ``kernels``, the roots included.

    ``roots`` is a list of ``(name, what)``: a module (or an alias such as
    ``fs-ext4``'s target) and what it serves, for example
    ``('ext4', 'the filesystem of / (ext4)')``. Each module keeps the shortest
    chain that reaches it in each kernel.
    """
    found = {}
    for kernel in kernels:
        seen = {}
        queue = collections.deque()
        for name, what in roots:
            for module in kernel.resolve(name):
                if module not in seen:
                    seen[module] = ([module], what, ())
                    queue.append(module)
        while queue:
            current = queue.popleft()
            chain, what, via = seen[current]
            steps = [(dep, 'modules.dep') for dep in kernel.deps.get(current, [])]
            steps += [(dep, 'softdep') for name in kernel.softdeps.get(current, []) for dep in kernel.resolve(name)]
            for module, how in steps:
                if module not in seen:
                    seen[module] = (chain + [module], what, via + (how,))
                    queue.append(module)
        for module, (chain, what, via) in seen.items():
            found.setdefault(module, []).append(
                Need(module, kernel.version, tuple(chain), what, tuple(dict.fromkeys(via)), module in kernel.builtin))
    return found


def describe_need(needs):
    """One sentence per distinct chain: ``crc16: needed by ext4 (the filesystem of /) via modules.dep of 6.1.0-27-amd64``.

    Kernels with the same chain share a sentence.
    """
    grouped = {}
    for need in needs:
        key = (need.chain, need.what, need.via, need.builtin)
        grouped.setdefault(key, []).append(need.kernel)
    sentences = []
    for (chain, what, via, builtin), versions in grouped.items():
        module = chain[-1]
        kernels = ', '.join(versions)
        if len(chain) == 1:
            sentences.append('%s: %s (%s %s)' % (module, what, 'built into' if builtin else 'in', kernels))
        else:
            sentences.append('%s: needed by %s (%s) via %s of %s%s'
                             % (module, ' -> '.join(chain[:-1]), what, ' and '.join(via), kernels,
                                ', which has it built in' if builtin else ''))
    return sentences


def blacklist_problems(drivers, needs, hard, kernels):
    """(refusals, warnings) for blacklisting ``drivers``, given ``needs`` ({module: [Need]}) of the host.

    A plain ``blacklist`` stops only loading by alias, which is how the host
    loads the modules it needs directly (a device's driver, a filesystem);
    ``hard`` (``install X /bin/false``) also stops loading as another
    module's dependency, so then every module the host needs is refused. A
    module built into a kernel cannot be blacklisted there at all: that is
    said, never refused.
    """
    refusals, warnings = [], []
    for driver in drivers:
        modular = [n for n in needs.get(driver, []) if not n.builtin]
        fatal = modular if hard else [n for n in modular if len(n.chain) == 1]
        if fatal:
            refusals.append('%s is needed by the host: %s' % (driver, '; '.join(describe_need(fatal))))
        elif modular:
            warnings.append('blacklist %s does not stop it loading as a dependency, which the host relies on: %s'
                            % (driver, '; '.join(describe_need(modular))))
        builtin = [k.version for k in kernels if driver in k.builtin]
        if builtin:
            warnings.append('%s is built into %s: a blacklist cannot stop it there' % (driver, ', '.join(builtin)))
    return refusals, warnings
