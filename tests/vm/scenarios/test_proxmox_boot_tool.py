"""The Proxmox boot path for real (issues 14, 24): UEFI guests whose ESPs the real proxmox-boot-tool manages.

Debian 12 under OVMF with Proxmox VE 8's proxmox-kernel-helper 8.1.0, and Debian 13 with Proxmox VE
9.2's 9.2.0 built and installed as its package (../shared/vendor, never copied into the project).
Debian 12: one systemd-boot guest serves scenario 1 (converge) and then scenario 4 (restore.yml on
the same guest); a GRUB-on-the-ESP guest serves scenario 2 and then scenario 3 (the same ESP given
systemd-boot too, as a switch between the loaders leaves it). Debian 13: one systemd-boot guest
serves scenario 5 (converge), 6 (a boot-loader package reinstall: the helper's reinit) and 7
(restore); a Debian 13 GRUB-on-the-ESP guest serves scenario 8 (converge) and 9
(restore). Every boot costs minutes under TCG, so each class boots one guest and stops it before
the next class starts. Each check reads the guest directly: the tool's own status, the boot entries
on the ESP, /proc/cmdline, sha256 of the files, boot ids, sysfs driver links, and the runs of the
tool and of its kernel hook as the guest's kernel reported them (tests/vm/esp_sync_watch.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import E1000E, OUTPUT, PLAYBOOK_TIMEOUT, ROOT, Guest, PlaybookRun, iommu_log_lines, say

import vmctl

# Each helper version: the variable naming its source tree and the tree's default name beside the checkout.
HELPERS = {'8.1.0': ('VFIO_PBT_VENDOR', 'proxmox-kernel-helper'),
           '9.2.0': ('VFIO_PBT92_VENDOR', 'proxmox-kernel-helper-9.2.0')}


def needs_helper(version):
    """A class mark: skip, with the reason printed, when that helper's source tree is absent."""
    variable, tree = HELPERS[version]
    vendor = Path(os.environ.get(variable, ROOT.parent / 'shared' / 'vendor' / tree))
    tool = vendor / 'src' / 'bin' / 'proxmox-boot-tool'
    if tool.is_file():
        return pytest.mark.skipif(False, reason='proxmox-kernel-helper %s found at %s' % (version, vendor))
    reason = ('proxmox-boot-tool not found at %s: this scenario boots Proxmox\'s own proxmox-kernel-helper %s '
              '(its Debian source package, from Proxmox\'s public git: proxmox-kernel-helper, debian/changelog '
              '%s); set %s to the unpacked source tree (default: ../shared/vendor/%s beside this checkout). The '
              'molecule scenario with the stub still covers the logic' % (tool, version, version, variable, tree))
    say('SKIP test_proxmox_boot_tool (helper %s): %s' % (version, reason))
    return pytest.mark.skip(reason=reason)


GRUB = '/etc/default/grub'
GRUB_DROPIN = '/etc/default/grub.d/installer.cfg'
KERNEL_CMDLINE = '/etc/kernel/cmdline'
BACKUPS = OUTPUT / 'pbt-backups'
# The tool mounts the ESP itself (it is in no fstab); the checks mount it read-only and let go.
ESP_MOUNT = '/run/vfio-check-esp'
# The vendor GUID of systemd-boot's Boot Loader Interface variables (written here, not imported: the
# check reads efivarfs independently of the code under test).
SYSTEMD_BOOT_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f'
# The guest-side logger of the tool's and its hook's runs (see its docstring) and its unit.
WATCH_SCRIPT = Path(__file__).resolve().parents[1] / 'esp_sync_watch.py'
WATCH_LOG = '/var/log/vfio-esp-watch.jsonl'
WATCH_UNIT = """[Unit]
Description=vfio tests: log proxmox-boot-tool and kernel hook runs (kernel exec events)
Before=ssh.service

[Service]
Type=notify
ExecStart=/usr/bin/python3 /usr/local/sbin/vfio-esp-watch

[Install]
WantedBy=multi-user.target
"""
# The hook's own re-execution of update-initramfs's post-update call (proxmox-boot-sync).
HOOK_REFRESH = ['refresh', '--hook', 'zz-proxmox-boot']
# Proxmox VE 9's memtest86+ entry: a loader entry that starts an EFI program, not a kernel.
MEMTEST_ENTRY = 'memtest86+x64.efi.conf'


def entry_keys(text):
    """A Boot Loader Specification entry as {key: value} (first word the key, the rest the value)."""
    pairs = (line.strip().split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith('#'))
    return {pair[0]: pair[1].strip() if len(pair) > 1 else '' for pair in pairs}


class EspRuns:
    """The tool's and its hook's runs between two points, as the guest's kernel reported them."""

    def __init__(self, records):
        self.records = records
        lost = [r for r in records if r['what'] == 'lost']
        assert not lost, 'the guest-side logger lost exec events, so nothing can be counted: %s' % lost

    @property
    def syncs(self):
        """ESP refreshes: the hook's runs in its private mount namespace (the ones that copy to the ESPs)."""
        return [r for r in self.records if r['what'] == 'hook' and r['unshared']]

    @property
    def calls(self):
        """The arguments of each proxmox-boot-tool call, as called (not its own re-execution)."""
        return [r['argv'][2:] for r in self.records if r['what'] == 'tool' and not r['unshared']]

    def mounts(self, pids):
        return sorted({r['options'] for r in self.records if r['what'] == 'mount' and r['pid'] in pids})

    def __str__(self):
        return '%d ESP refresh(es) by the hook (pids %s); proxmox-boot-tool calls: %s' % (
            len(self.syncs), [r['pid'] for r in self.syncs], [' '.join(c) for c in self.calls])


class PbtGuest(Guest):
    """A UEFI guest plus the raw checks on its proxmox-boot-tool ESP."""

    def sh(self, command, check=True):
        # ssh's own failures (exit 255: "Connection timed out during banner exchange" at load 10-15)
        # are retried; the guest command itself runs once.
        for attempt in range(1, 6):
            result = self.vm.ssh(command, check=False, timeout=600)
            if result.returncode != 255:
                break
            say('%s: ssh failed (%s), attempt %d of 5' % (self.vm.name, result.stderr.strip(), attempt))
            time.sleep(10)
        if check and result.returncode != 0:
            raise AssertionError('guest command failed (rc=%d): %s\n%s%s'
                                 % (result.returncode, command, result.stdout, result.stderr))
        return result.stdout

    def packages_with_helper_920(self, *installed, absent=()):
        """dpkg's {package: 'version status'}, asserted to hold proxmox-kernel-helper 9.2.0 and installed, and
        none of absent installed."""
        names = ('proxmox-kernel-helper',) + installed + tuple(absent)
        packages = dict(line.split(None, 1) for line in self.sh(
            "dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\\n' %s 2>/dev/null || true"
            % ' '.join(names)).strip().splitlines())
        assert packages['proxmox-kernel-helper'] == '9.2.0 installed', packages
        for name in installed:
            assert packages.get(name, '').endswith(' installed'), (name, packages)
        for name in absent:
            assert not packages.get(name, '').endswith(' installed'), (name, packages)
        return packages

    def only_grub_file_changed(self, hashes_before):
        """The sha256 of GRUB's file, its installer drop-in and /etc/kernel/cmdline now, asserted: GRUB's file
        changed, the drop-in and /etc/kernel/cmdline (which GRUB does not read) did not."""
        hashes_after = self.file_hashes((GRUB, GRUB_DROPIN, KERNEL_CMDLINE))
        assert hashes_after[GRUB] != hashes_before[GRUB]
        assert hashes_after[KERNEL_CMDLINE] == hashes_before[KERNEL_CMDLINE], 'GRUB does not read /etc/kernel/cmdline'
        assert hashes_after[GRUB_DROPIN] == hashes_before[GRUB_DROPIN]
        return hashes_after

    def status(self):
        return self.sh('proxmox-boot-tool status 2>&1')

    def configured_only(self, mode):
        """`status` after a UEFI boot with the one ESP configured in mode alone: (status text, ESP UUID)."""
        status, uuid = self.status(), self.esp_uuid()
        other = {'uefi': 'grub', 'grub': 'uefi'}[mode]
        assert 'System currently booted with uefi' in status, status
        assert '%s is configured with: %s (versions: ' % (uuid, mode) in status, status
        assert '%s (versions' % other not in status, status
        return status, uuid

    def esp_uuid(self):
        [uuid] = self.sh('cat /etc/kernel/proxmox-boot-uuids').split()
        return uuid

    def esp(self, command):
        """Run a command with the ESP mounted read-only at ESP_MOUNT."""
        return self.sh('mkdir -p %s && mount -o ro /dev/disk/by-uuid/%s %s && (cd %s && %s); rc=$?; umount %s; '
                       'exit $rc' % (ESP_MOUNT, self.esp_uuid(), ESP_MOUNT, ESP_MOUNT, command, ESP_MOUNT))

    def loader_entries(self):
        """Every loader entry on the ESP: {file name: {key: value}}."""
        out = self.esp('for f in loader/entries/*.conf; do printf "==> %s\\n" "${f##*/}"; cat "$f"; done')
        entries = {}
        for block in out.split('==> ')[1:]:
            name, _newline, text = block.partition('\n')
            entries[name] = entry_keys(text)
        return entries

    def loader_options(self):
        """The `options` of each kernel entry on the ESP (one with `linux`), by entry file. Entries that start
        anything else (9.x's memtest86+ entry: `efi`) are no kernel entry and carry no kernel command line."""
        return {name: keys['options'] for name, keys in self.loader_entries().items() if 'linux' in keys}

    def watch_esp(self):
        """Install and start the guest-side logger of the tool's runs (idempotent; it starts again at each boot)."""
        subprocess.run(self.vm.ssh_argv('cat > /usr/local/sbin/vfio-esp-watch'), input=WATCH_SCRIPT.read_bytes(),
                       check=True, timeout=300, capture_output=True)
        self.sh("cat > /etc/systemd/system/vfio-esp-watch.service <<'EOF'\n%sEOF\n"
                "systemctl daemon-reload && systemctl enable --now -q vfio-esp-watch.service" % WATCH_UNIT)
        assert self.sh('systemctl is-active vfio-esp-watch.service').strip() == 'active'

    def esp_log(self):
        return [json.loads(line) for line in self.sh('cat %s 2>/dev/null || true' % WATCH_LOG).splitlines()
                if line.strip()]

    def esp_mark(self):
        """A point in the log; esp_runs(mark) reads what ran after it."""
        return len(self.esp_log())

    def esp_runs(self, mark, boots=()):
        """The runs after mark; each boot in boots (ids) must have had the logger running."""
        records = self.esp_log()
        watched = {r['boot'] for r in records if r['what'] == 'watching'}
        assert set(boots) <= watched, ('the logger did not run in every boot', boots, watched)
        return EspRuns(records[mark:])

    def one_hook_refresh(self, mark, boots):
        """The ESP runs since mark, asserted to hold exactly one refresh, the kernel hook's."""
        runs = self.esp_runs(mark, boots=boots)
        assert len(runs.syncs) == 1, str(runs)
        assert [call for call in runs.calls if call[:1] == ['refresh']] == [HOOK_REFRESH], str(runs)
        return runs

    def sha256(self, path):
        return self.sh('sha256sum %s' % path).split()[0]

    def file_hashes(self, paths=(GRUB, KERNEL_CMDLINE)):
        return {path: self.sha256(path) for path in paths}

    def esp_initrd_matches_boot(self, layout='EFI/proxmox/{kver}/initrd.img-{kver}'):
        kver = self.sh('uname -r').strip()
        on_esp = self.esp('sha256sum ' + layout.format(kver=kver)).split()[0]
        return on_esp == self.sha256('/boot/initrd.img-%s' % kver)

    def systemd_boot_vars(self):
        """The Boot Loader Interface EFI variables present now (name without the vendor GUID), raw from efivarfs."""
        out = self.sh('ls /sys/firmware/efi/efivars | grep -- -%s || true' % SYSTEMD_BOOT_GUID)
        return sorted(name.rsplit('-', 5)[0] for name in out.split())

    def loader_info(self):
        """The text of the LoaderInfo EFI variable (who set it names itself), or None; raw from efivarfs."""
        # efivarfs: 4 attribute bytes, then the UTF-16LE text with its NUL (no iconv in the image: python3 is).
        script = ("import os, sys\n"
                  "f = '/sys/firmware/efi/efivars/LoaderInfo-%s'\n"
                  "if os.path.exists(f):\n"
                  "    sys.stdout.write(open(f, 'rb').read()[4:].decode('utf-16-le').rstrip('\\0'))\n"
                  % SYSTEMD_BOOT_GUID)
        return self.sh('python3 -c %s' % shlex.quote(script)).strip() or None

    def boot_entry(self):
        """(BootCurrent, BootOrder, BootCurrent's label), raw from efivarfs (no efibootmgr in the image): the
        firmware's own record of which boot entry it started."""
        script = ("import struct\n"
                  "d, g = '/sys/firmware/efi/efivars/', '-8be4df61-93ca-11d2-aa0d-00e098032b8c'\n"
                  "r = lambda n: open(d + n + g, 'rb').read()[4:]\n"
                  "cur = '%04X' % struct.unpack('<H', r('BootCurrent'))[0]\n"
                  "o = r('BootOrder')\n"
                  "order = ','.join('%04X' % x for x in struct.unpack('<%dH' % (len(o) // 2), o))\n"
                  "print(cur, order, r('Boot' + cur)[6:].decode('utf-16-le', 'replace').split('\\0')[0], sep='\\t')\n")
        current, order, label = self.sh("python3 -c %s" % shlex.quote(script)).rstrip('\n').split('\t')
        return current, order, label

    def esp_grub_linux_lines(self):
        """The kernel `linux` lines of the grub.cfg that proxmox-boot-tool wrote on the ESP, recovery entries left
        out (`single`: they take GRUB_CMDLINE_LINUX only, not GRUB_CMDLINE_LINUX_DEFAULT, which the role edits).
        A `linux` line that loads anything but a vmlinuz (Debian 13's memtest86+ entry) is no kernel's."""
        out = self.esp("grep -E '^\\s+linux\\s' grub/grub.cfg")
        lines = [line.split() for line in out.splitlines()]
        return [' '.join(words) for words in lines
                if len(words) > 1 and words[1].rsplit('/', 1)[-1].startswith('vmlinuz-') and 'single' not in words]

    def esp_grub_memtest_lines(self):
        """The grub.cfg lines on the ESP that name memtest86+ (its menu entry, which Debian's memtest86+ adds)."""
        return [line.strip() for line in self.esp("grep -i memtest grub/grub.cfg || true").splitlines()]


def say_before_after(title, pairs, tail):
    """The scenario's raw evidence for the log: each (label, before, after), then timings."""
    lines = [title + ':']
    for label, before, after in pairs:
        for when, value in (('before', before), ('after', after)):
            lines.append('  %s %s: %s' % (label, when, str(value).strip().replace('\n', '\n      ')))
    say('\n'.join(lines + ['  ' + tail]))


def booted_line(output):
    """The role's last 'Booted by ...' line (verify.yml, after the reboot), unquoted from the debug output."""
    lines = [line.strip().rstrip(',').strip('"') for line in output.splitlines() if '"Booted by ' in line]
    assert lines, 'the role did not say which loader booted'
    return lines[-1]


def booted_by_systemd_boot(guest, run, uuid):
    """After a converge with its reboot: the ESP still the one configured for uefi, systemd-boot's EFI variables
    set, and the role saying which file it edited and which loader the firmware started.
    Returns (proxmox-boot-tool status, the EFI variables, the role's "Booted by" line)."""
    status_after, uuid_after = guest.configured_only('uefi')
    assert uuid_after == uuid, (uuid, uuid_after)
    loader_vars_after = guest.systemd_boot_vars()
    assert {'LoaderInfo', 'LoaderEntrySelected'} <= set(loader_vars_after), loader_vars_after
    assert 'Kernel command line read by systemd-boot: proxmox-boot-tool status: ESPs configured with uefi' \
        in run.output, run.tail()
    booted = booted_line(run.output)
    assert booted.startswith('Booted by systemd-boot (UEFI): UEFI boot; systemd-boot set the EFI variables '
                             'LoaderInfo and LoaderEntrySelected (systemd-boot '), booted
    return status_after, loader_vars_after, booted


def rerun_changes_nothing(collections_path, guest, name, variables, boot):
    """The converged playbook again: 0 changed, the same boot, no ESP refresh counted in the guest.
    Returns (the run, the ESP runs the guest logged during it)."""
    mark = guest.esp_mark()
    rerun = run_ansible(collections_path, guest, 'passthrough.yml', name, variables)
    assert rerun.rc == 0 and rerun.changed == 0, rerun.tail()
    assert guest.boot_id() == boot
    runs = guest.esp_runs(mark)
    assert not runs.syncs, 'the rerun refreshed the ESP: %s' % runs
    return rerun, runs


def run_ansible(collections_path, guest, playbook, name, variables, extra_args=()):
    """ansible-playbook on the guest; conftest's runner knows only passthrough.yml."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    inventory = OUTPUT / ('%s.ini' % guest.vm.name)
    inventory.write_text(vmctl.render_inventory([guest.vm]))
    extra = OUTPUT / ('%s.vars.json' % name)
    extra.write_text(json.dumps(dict(variables, pcie_passthrough_hosts='vfio_vms')))
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(inventory),
            str(ROOT / 'playbooks' / playbook), '-e', '@%s' % extra] + list(extra_args)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False')
    log = OUTPUT / ('%s.log' % name)
    say('%s: ansible-playbook playbooks/%s (log: %s)' % (name, playbook, log.relative_to(ROOT)))
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, check=False)
    output = result.stdout + result.stderr
    log.write_text(output)
    run = PlaybookRun(result.returncode, output, time.monotonic() - started, log)
    say('%s: rc=%d changed=%s failed=%s in %.1f s' % (name, run.rc, run.changed, run.failed, run.seconds))
    return run


def backups_of(guest):
    """This guest's backup dir: the lanes run two of these classes at once, and each converge empties its own."""
    return BACKUPS / guest.vm.name


def converge_once(collections_path, guest, name, nic, boot, boots):
    """passthrough.yml for nic (backups to backups_of(guest)) with -v, so every module's result is in the output and a check
    on what the modules returned is not a check on task banners. Asserts rc 0, exactly one reboot and exactly one
    ESP refresh, the kernel hook's, counted in the guest: (run, variables, boot id after, the ESP runs)."""
    shutil.rmtree(backups_of(guest), ignore_errors=True)
    variables = {'pcie_passthrough_devices': [nic], 'pcie_passthrough_backup_dir': str(backups_of(guest))}
    mark = guest.esp_mark()
    run = run_ansible(collections_path, guest, 'passthrough.yml', name, variables, ['-v'])
    assert run.rc == 0, run.tail()
    boot_after = guest.boot_id()
    assert boot_after != boot and guest.boots() == boots + 1, (boot, boot_after)
    return run, variables, boot_after, guest.one_hook_refresh(mark, (boot, boot_after))


def restore_once(collections_path, state, name, converged_by):
    """restore.yml on the guest a scenario converged; asserts rc 0 and REBOOT REQUIRED: (guest, run, ESP mark)."""
    if not state.get('converged'):
        pytest.fail('%s did not converge this guest, so there is nothing to restore' % converged_by)
    guest = state['guest']
    mark = guest.esp_mark()
    run = run_ansible(collections_path, guest, 'restore.yml', name, {'pcie_passthrough_backup_dir': str(backups_of(guest))})
    assert run.rc == 0 and 'REBOOT REQUIRED' in run.output, run.tail()
    return guest, run, mark


def boot_uefi(variant, suite='bookworm'):
    """A UEFI guest (AMD IOMMU) of an image variant, with the ESP logger running, and a dict its class's tests share."""
    started = time.monotonic()
    vmctl.ensure_image(build=True, suite=suite, boot='uefi-' + variant)
    say('%s UEFI image (%s) ready in %.1f s' % (suite, variant, time.monotonic() - started))
    started = time.monotonic()
    vm = vmctl.start('amd', nics=1, suite=suite, boot='uefi-' + variant)
    guest = PbtGuest(vm, time.monotonic() - started)
    say('%s: Debian %s UEFI (%s, proxmox-boot-tool) amd guest up in %.1f s'
        % (vm.name, suite, variant, guest.boot_seconds))
    guest.watch_esp()
    return {'guest': guest, 'started': started}


def stop_uefi(state):
    state['guest'].vm.stop(keep_logs=True)
    say('%s: guest time %.1f s (boot to stop)' % (state['guest'].vm.name, time.monotonic() - state['started']))


@pytest.fixture(scope='class')
def uefi_guest():
    state = boot_uefi('sdboot')
    yield state
    stop_uefi(state)


@pytest.fixture(scope='class')
def grub_esp_guest():
    state = boot_uefi('grub')
    yield state
    stop_uefi(state)


@pytest.fixture(scope='class')
def trixie_sdboot_guest():
    state = boot_uefi('sdboot', 'trixie')
    yield state
    stop_uefi(state)


@pytest.fixture(scope='class')
def trixie_grub_esp_guest():
    state = boot_uefi('grub', 'trixie')
    yield state
    stop_uefi(state)


@needs_helper('8.1.0')
class TestBookwormSystemdBoot:
    def test_systemd_boot_converges_through_kernel_cmdline_only(self, uefi_guest, collections_path):
        """Scenario 1: the role edits /etc/kernel/cmdline only, the initramfs hook refreshes the ESP, one reboot."""
        guest = uefi_guest['guest']
        started = time.monotonic()
        guest.enable_boot_count()
        status, uuid = guest.configured_only('uefi')
        assert guest.sh('test -d /sys/firmware/efi && echo efi').strip() == 'efi'
        [nic] = guest.pci_by_id(E1000E)
        boot, boots = guest.boot_id(), guest.boots()
        mark = guest.esp_mark()
        cmdline_before = guest.sh('cat /proc/cmdline').strip()
        assert 'amd_iommu=off' in cmdline_before.split(), cmdline_before
        # systemd-boot hands the initrd over on the command line: proof of the boot path itself.
        assert any(arg.startswith('initrd=\\EFI\\proxmox\\') for arg in cmdline_before.split()), cmdline_before
        options_before = guest.loader_options()
        assert options_before, 'no proxmox loader entry on the ESP'
        kernel_cmdline_before = guest.sh('cat %s' % KERNEL_CMDLINE).strip()
        for options in options_before.values():
            assert options.split() == kernel_cmdline_before.split(), (options, kernel_cmdline_before)
        hashes_before = guest.file_hashes()
        uefi_guest.update(cmdline_before=cmdline_before, options_before=options_before, hashes_before=hashes_before)
        # systemd-boot announces itself in volatile EFI variables on every boot it makes.
        loader_vars_before = guest.systemd_boot_vars()
        assert {'LoaderInfo', 'LoaderEntrySelected'} <= set(loader_vars_before), loader_vars_before

        shutil.rmtree(backups_of(guest), ignore_errors=True)
        variables = {'pcie_passthrough_devices': [nic], 'pcie_passthrough_backup_dir': str(backups_of(guest))}
        run = run_ansible(collections_path, guest, 'passthrough.yml', 'bookworm-uefi-sdboot-converge', variables)
        assert run.rc == 0, run.tail()

        hashes_after = guest.file_hashes()
        assert hashes_after[GRUB] == hashes_before[GRUB], 'the role touched /etc/default/grub on a systemd-boot host'
        assert hashes_after[KERNEL_CMDLINE] != hashes_before[KERNEL_CMDLINE]
        cmdline = guest.sh('cat /proc/cmdline').strip()
        boot_after = guest.boot_id()
        assert boot_after != boot and guest.boots() == boots + 1, (boot, boot_after)
        args = cmdline.split()
        assert 'iommu=pt' in args and 'amd_iommu=off' not in args, cmdline
        assert not [a for a in args if a.startswith('amd_iommu=')], cmdline
        options_after = guest.loader_options()
        assert set(options_after) == set(options_before)
        kernel_cmdline_after = guest.sh('cat %s' % KERNEL_CMDLINE).strip()
        for options in options_after.values():
            assert options.split() == kernel_cmdline_after.split(), (options, kernel_cmdline_after)
            assert 'iommu=pt' in options.split() and 'amd_iommu=off' not in options.split(), options
        # The ESP holds the rebuilt initrd and the new options from exactly one refresh, counted in the guest:
        # the initramfs rebuild's post-update hook (proxmox-boot-sync) made it, the role ran no second one.
        assert guest.esp_initrd_matches_boot()
        esp_runs = guest.one_hook_refresh(mark, (boot, boot_after))
        link = guest.sh('readlink /sys/bus/pci/devices/%s/driver' % nic).strip()
        assert link.endswith('/vfio-pci'), link
        log = '\n'.join(iommu_log_lines(guest))
        assert 'AMD-Vi: Interrupt remapping enabled' in log, log
        assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
        status_after, loader_vars_after, booted = booted_by_systemd_boot(guest, run, uuid)

        rerun, _rerun_runs = rerun_changes_nothing(collections_path, guest, 'bookworm-uefi-sdboot-rerun', variables, boot_after)
        uefi_guest['converged'] = True
        say_before_after('bookworm uefi-sdboot (scenario 1)', [
            ('proxmox-boot-tool status', status, status_after), ('loader entry options', options_before, options_after),
            ('/proc/cmdline', cmdline_before, cmdline), ('boot id', boot, boot_after),
            ('sha256', hashes_before, hashes_after), (nic + ' driver', 'e1000e', link),
            ('systemd-boot EFI variables', loader_vars_before, loader_vars_after), ('role says', '-', booted),
            ('counted in the guest', '-', esp_runs)],
            'converge+reboot %.1f s, rerun %.1f s, scenario %.1f s'
            % (run.seconds, rerun.seconds, time.monotonic() - started))

    def test_restore_puts_the_original_command_line_back(self, uefi_guest, collections_path):
        """Scenario 4 on the same guest: restore.yml puts the files back and refreshes the ESP; after a reboot
        /proc/cmdline is the original again."""
        if not uefi_guest.get('converged'):
            pytest.fail('scenario 1 did not converge this guest, so there is nothing to restore')
        guest = uefi_guest['guest']
        started = time.monotonic()
        mark = guest.esp_mark()
        run = run_ansible(collections_path, guest, 'restore.yml', 'bookworm-uefi-sdboot-restore',
                          {'pcie_passthrough_backup_dir': str(backups_of(guest))})
        assert run.rc == 0, run.tail()
        assert 'REBOOT REQUIRED' in run.output, run.tail()
        hashes = guest.file_hashes()
        assert hashes == uefi_guest['hashes_before'], (hashes, uefi_guest['hashes_before'])
        # Before the reboot: the ESP already holds the original options (one refresh reached it).
        assert guest.loader_options() == uefi_guest['options_before']
        assert guest.esp_initrd_matches_boot()
        esp_runs = guest.esp_runs(mark)
        assert len(esp_runs.syncs) == 1, str(esp_runs)
        old, new, reboot_seconds = guest.vm.reboot()
        cmdline = guest.sh('cat /proc/cmdline').strip()
        assert cmdline == uefi_guest['cmdline_before'], (cmdline, uefi_guest['cmdline_before'])
        assert 'LoaderInfo' in guest.systemd_boot_vars()
        [nic] = guest.pci_by_id(E1000E)
        assert guest.driver(nic) == 'e1000e', guest.driver(nic)
        say('bookworm uefi-sdboot restore (scenario 4):\n  loader entry options: %s\n  /proc/cmdline: %s\n'
            '  boot ids %s -> %s\n  sha256: %s\n  %s driver -> e1000e\n  counted in the guest: %s\n'
            '  restore %.1f s, reboot %.1f s, scenario %.1f s'
            % (guest.loader_options(), cmdline, old, new, hashes, nic, esp_runs, run.seconds, reboot_seconds,
               time.monotonic() - started))


@needs_helper('8.1.0')
class TestBookwormGrubOnTheEsp:
    def test_grub_esp_converges_through_grub_not_kernel_cmdline(self, grub_esp_guest, collections_path):
        """Scenario 2: ESP configured with grub; the role edits GRUB, not /etc/kernel/cmdline, refreshes through
        proxmox-boot-tool (the initramfs hook), reboots once."""
        guest = grub_esp_guest['guest']
        started = time.monotonic()
        guest.enable_boot_count()
        status, uuid = guest.configured_only('grub')
        # An installer-style drop-in and an /etc/kernel/cmdline that GRUB does not read are both there.
        assert 'console=ttyS0' in guest.sh('cat %s' % GRUB_DROPIN)
        assert 'root=' in guest.sh('cat %s' % KERNEL_CMDLINE)
        [nic] = guest.pci_by_id(E1000E)
        boot, boots = guest.boot_id(), guest.boots()
        cmdline_before = guest.sh('cat /proc/cmdline').strip()
        assert 'amd_iommu=off' in cmdline_before.split() and 'console=ttyS0,115200n8' in cmdline_before.split()
        # GRUB's linux command leaves BOOT_IMAGE= (systemd-boot leaves initrd=): the booted loader, seen raw.
        assert cmdline_before.startswith('BOOT_IMAGE=/vmlinuz-'), cmdline_before
        linux_before = guest.esp_grub_linux_lines()
        assert linux_before and all('amd_iommu=off' in line.split() for line in linux_before), linux_before
        # GRUB sets none of systemd-boot's EFI variables.
        loader_vars_before = guest.systemd_boot_vars()
        assert not {'LoaderInfo', 'LoaderEntrySelected'} & set(loader_vars_before), loader_vars_before
        paths = (GRUB, GRUB_DROPIN, KERNEL_CMDLINE)
        hashes_before = guest.file_hashes(paths)
        mark = guest.esp_mark()

        variables = {'pcie_passthrough_devices': [nic]}
        run = run_ansible(collections_path, guest, 'passthrough.yml', 'bookworm-uefi-grub-converge', variables)
        assert run.rc == 0, run.tail()

        hashes_after = guest.only_grub_file_changed(hashes_before)
        cmdline = guest.sh('cat /proc/cmdline').strip()
        boot_after = guest.boot_id()
        assert boot_after != boot and guest.boots() == boots + 1, (boot, boot_after)
        args = cmdline.split()
        assert 'iommu=pt' in args and 'console=ttyS0,115200n8' in args, cmdline
        assert not [a for a in args if a.startswith('amd_iommu=')], cmdline
        linux_after = guest.esp_grub_linux_lines()
        assert all('iommu=pt' in line.split() and 'amd_iommu=off' not in line.split() for line in linux_after)
        assert guest.esp_initrd_matches_boot('initrd.img-{kver}')
        # The ESP's grub.cfg holds the arguments: the initramfs hook's one refresh ran update-grub on the ESP.
        esp_runs = guest.one_hook_refresh(mark, (boot, boot_after))
        link = guest.sh('readlink /sys/bus/pci/devices/%s/driver' % nic).strip()
        assert link.endswith('/vfio-pci'), link
        status_after, uuid_after = guest.configured_only('grub')
        assert uuid_after == uuid
        loader_vars_after = guest.systemd_boot_vars()
        assert not {'LoaderInfo', 'LoaderEntrySelected'} & set(loader_vars_after), loader_vars_after
        assert 'Kernel command line read by grub: proxmox-boot-tool status: ESPs configured with grub' in run.output
        booted = booted_line(run.output)
        assert booted.startswith('Booted by grub (UEFI): UEFI boot; no systemd-boot EFI variable '
                                 '(LoaderInfo, LoaderEntrySelected) and BOOT_IMAGE=/vmlinuz-'), booted

        rerun, _rerun_runs = rerun_changes_nothing(collections_path, guest, 'bookworm-uefi-grub-rerun', variables, boot_after)
        grub_esp_guest.update(converged=True, nic=nic, boots=boots + 1, uuid=uuid)
        say_before_after('bookworm uefi-grub (scenario 2)', [
            ('proxmox-boot-tool status', status, status_after), ('ESP grub.cfg linux', linux_before, linux_after),
            ('/proc/cmdline', cmdline_before, cmdline), ('boot id', boot, boot_after),
            ('sha256', hashes_before, hashes_after), (nic + ' driver', 'e1000e', link),
            ('systemd-boot EFI variables', loader_vars_before, loader_vars_after), ('role says', '-', booted),
            ('counted in the guest', '-', esp_runs)],
            'converge+reboot %.1f s, rerun %.1f s, scenario %.1f s'
            % (run.seconds, rerun.seconds, time.monotonic() - started))

    def test_both_kinds_on_one_esp_edits_both_files_and_says_which_booted(self, grub_esp_guest, collections_path):
        """Scenario 3 on the same guest: the ESP also gets systemd-boot (what a switch between the two leaves: status
        lists `uefi (...), grub (...)`); a changed argument set writes /etc/kernel/cmdline and the GRUB file, one
        refresh, one reboot, and the role says which loader the firmware started."""
        if not grub_esp_guest.get('converged'):
            pytest.fail('scenario 2 did not converge this guest, so the mixed ESP would start from an unknown state')
        guest, nic, uuid = grub_esp_guest['guest'], grub_esp_guest['nic'], grub_esp_guest['uuid']
        started = time.monotonic()
        esp = '/dev/disk/by-uuid/' + uuid
        # systemd-boot onto the GRUB ESP (bootctl install, loader.conf; the tool's refresh still treats an ESP
        # holding EFI/proxmox/grubx64.efi as GRUB), then reinit (mode from the ESP: grub), which makes the
        # firmware's first boot entry GRUB's again, as a switch to GRUB for Secure Boot does.
        init_log = guest.sh('proxmox-boot-tool init %s systemd-boot 2>&1 && proxmox-boot-tool reinit 2>&1' % esp)
        status = guest.status()
        assert '%s is configured with: uefi (versions: ' % uuid in status, status
        assert '), grub (versions: ' in status, status
        entries_before = guest.esp('ls -1 loader/entries/ 2>/dev/null || true').split()
        [boot_entry_before] = [guest.boot_entry()]
        boot, boots = guest.boot_id(), guest.boots()
        assert boots == grub_esp_guest['boots'], (boots, grub_esp_guest['boots'])
        cmdline_before = guest.sh('cat /proc/cmdline').strip()
        paths = (GRUB, GRUB_DROPIN, KERNEL_CMDLINE)
        hashes_before = guest.file_hashes(paths)
        loader_vars_before = guest.systemd_boot_vars()
        mark = guest.esp_mark()

        # A changed argument set: nothing that goes into the initramfs changes, so the one refresh is the
        # role's own proxmox-boot-tool refresh (-v shows each module's command; the guest counts it).
        variables = {'pcie_passthrough_devices': [nic], 'pcie_passthrough_kernel_args': ['initcall_blacklist=sysfb_init']}
        run = run_ansible(collections_path, guest, 'passthrough.yml', 'bookworm-uefi-mixed-converge', variables, ['-v'])
        assert run.rc == 0, run.tail()
        assert 'Kernel command line read by grub and systemd-boot: proxmox-boot-tool status: ESPs configured with ' \
            'grub and uefi' in run.output, run.tail()
        refreshes = re.findall(r'"command": \[\s*"[^"]*proxmox-boot-tool",\s*"refresh"\s*\]', run.output)
        assert len(refreshes) == 1, refreshes
        boot_after = guest.boot_id()
        esp_runs = guest.esp_runs(mark, boots=(boot, boot_after))
        assert len(esp_runs.syncs) == 1, str(esp_runs)
        assert [call for call in esp_runs.calls if call[:1] == ['refresh']] == [['refresh']], str(esp_runs)
        assert re.search(r'TASK \[vfio.passthrough.pcie_passthrough : Rebuild the initramfs for all kernels\][^\n]*\n'
                         r'skipping', run.output), 'the initramfs was rebuilt, so its hook refreshed too'

        hashes_after = guest.file_hashes(paths)
        assert hashes_after[GRUB] != hashes_before[GRUB]
        assert hashes_after[KERNEL_CMDLINE] != hashes_before[KERNEL_CMDLINE]
        assert hashes_after[GRUB_DROPIN] == hashes_before[GRUB_DROPIN]
        assert 'initcall_blacklist=sysfb_init' in guest.sh('cat %s' % KERNEL_CMDLINE).split()
        assert boot_after != boot and guest.boots() == boots + 1, (boot, boot_after)
        cmdline = guest.sh('cat /proc/cmdline').strip()
        args = cmdline.split()
        assert 'initcall_blacklist=sysfb_init' in args and 'iommu=pt' in args, cmdline
        # The ESP was refreshed in the mode the tool gives it (GRUB: it holds grubx64.efi).
        linux_after = guest.esp_grub_linux_lines()
        assert linux_after and all('initcall_blacklist=sysfb_init' in line.split() for line in linux_after)
        entries_after = guest.esp('ls -1 loader/entries/ 2>/dev/null || true').split()
        boot_entry_after = guest.boot_entry()
        loader_vars_after = guest.systemd_boot_vars()
        booted = booted_line(run.output)
        # Which path the firmware took, seen raw and said by the role: GRUB's boot entry, BOOT_IMAGE= first,
        # no LoaderInfo/LoaderEntrySelected (whatever bootctl install left in NVRAM).
        assert cmdline.startswith('BOOT_IMAGE=/vmlinuz-'), cmdline
        # bootctl install registered 'Linux Boot Manager'; reinit's grub-install registered 'proxmox' again.
        assert boot_entry_after[2] != 'Linux Boot Manager', boot_entry_after
        assert not {'LoaderInfo', 'LoaderEntrySelected'} & set(loader_vars_after), loader_vars_after
        assert booted.startswith('Booted by grub (UEFI): UEFI boot; no systemd-boot EFI variable'), booted
        assert guest.driver(nic) == 'vfio-pci', guest.driver(nic)
        status_after = guest.status()
        say('bookworm uefi mixed ESP: init systemd-boot + reinit:\n      ' + init_log.strip().replace('\n', '\n      '))
        say_before_after('bookworm uefi mixed ESP (scenario 3)', [
            ('proxmox-boot-tool status', status, status_after), ('ESP loader/entries', entries_before, entries_after),
            ('ESP grub.cfg linux', '-', linux_after),
            ('/proc/cmdline', cmdline_before, cmdline), ('boot id', boot, boot_after),
            ('sha256', hashes_before, hashes_after), ('firmware boot entry (BootCurrent, BootOrder, label)',
                                                      boot_entry_before, boot_entry_after),
            ('systemd-boot EFI variables', loader_vars_before, loader_vars_after), ('role says', '-', booted),
            ('refresh commands', '-', refreshes), ('counted in the guest', '-', esp_runs)],
            'init+reinit, converge+reboot %.1f s, scenario %.1f s' % (run.seconds, time.monotonic() - started))


@needs_helper('9.2.0')
class TestTrixieSystemdBoot:
    """Proxmox VE 9.2's helper (9.2.0, built and installed as its package) on Debian 13, booted by systemd-boot."""

    def test_trixie_systemd_boot_converges_with_one_esp_refresh(self, trixie_sdboot_guest, collections_path):
        """Scenario 5: /etc/kernel/cmdline edited only, exactly one ESP refresh (counted in the guest), one reboot,
        "Booted by systemd-boot", rerun 0 changed; the memtest86+ entry is kept and never taken for a kernel."""
        state = trixie_sdboot_guest
        guest = state['guest']
        started = time.monotonic()
        guest.enable_boot_count()
        # As on a Proxmox VE 9 host: no systemd-boot package (and with it none of Debian's own sd-boot hooks).
        packages = guest.packages_with_helper_920('systemd-boot-efi', 'systemd-boot-tools', 'memtest86+',
                                                  absent=('systemd-boot',))
        kver = guest.sh('uname -r').strip()
        status, uuid = guest.configured_only('uefi')
        assert '%s is configured with: uefi (versions: %s)' % (uuid, kver) in status, status
        [nic] = guest.pci_by_id(E1000E)
        boot, boots = guest.boot_id(), guest.boots()
        cmdline_before = guest.sh('cat /proc/cmdline').strip()
        assert 'amd_iommu=off' in cmdline_before.split(), cmdline_before
        assert any(arg.startswith('initrd=\\EFI\\proxmox\\') for arg in cmdline_before.split()), cmdline_before
        # 9.x's init wrote a memtest86+ entry beside the kernel's: it starts an EFI program, it has no options.
        entries_before = guest.loader_entries()
        assert set(entries_before) == {'proxmox-%s.conf' % kver, MEMTEST_ENTRY}, entries_before
        memtest = entries_before[MEMTEST_ENTRY]
        assert memtest.get('efi') == '/EFI/memtest86+x64.efi' and not {'linux', 'options'} & set(memtest), memtest
        assert guest.esp('sha256sum EFI/memtest86+x64.efi').split()[0] == guest.sha256('/boot/memtest86+x64.efi')
        memtest_hash = guest.esp('sha256sum loader/entries/' + MEMTEST_ENTRY).split()[0]
        options_before = guest.loader_options()
        assert list(options_before) == ['proxmox-%s.conf' % kver], options_before
        kernel_cmdline_before = guest.sh('cat %s' % KERNEL_CMDLINE).strip()
        assert options_before['proxmox-%s.conf' % kver].split() == kernel_cmdline_before.split()
        hashes_before = guest.file_hashes()
        loader_vars_before = guest.systemd_boot_vars()
        assert {'LoaderInfo', 'LoaderEntrySelected'} <= set(loader_vars_before), loader_vars_before
        # 9.0.4 masks systemd-gpt-auto-generator (its hook did so when the package was installed): nothing
        # mounts the ESP behind the tool's back, so no /efi or /boot/efi mount is there for the role to meet.
        assert guest.sh('readlink /etc/systemd/system-generators/systemd-gpt-auto-generator').strip() == '/dev/null'
        assert guest.sh('findmnt -n -o TARGET,FSTYPE --types vfat || true').strip() == ''
        state.update(cmdline_before=cmdline_before, options_before=options_before, hashes_before=hashes_before,
                     kver=kver, uuid=uuid, memtest_hash=memtest_hash, entries_before=entries_before)

        run, variables, boot_after, esp_runs = converge_once(collections_path, guest, 'trixie-uefi-sdboot-converge',
                                                             nic, boot, boots)
        # 9.0.2: the helper mounts the ESP with umask=0077 (seen in the hook's own mount namespace).
        mounts = esp_runs.mounts({run_['pid'] for run_ in esp_runs.syncs})
        assert mounts and all('fmask=0077' in o.split(',') and 'dmask=0077' in o.split(',') for o in mounts), mounts
        hashes_after = guest.file_hashes()
        assert hashes_after[GRUB] == hashes_before[GRUB], 'the role touched /etc/default/grub on a systemd-boot host'
        assert hashes_after[KERNEL_CMDLINE] != hashes_before[KERNEL_CMDLINE]
        cmdline = guest.sh('cat /proc/cmdline').strip()
        args = cmdline.split()
        assert 'iommu=pt' in args and not [a for a in args if a.startswith('amd_iommu=')], cmdline
        entries_after = guest.loader_entries()
        assert set(entries_after) == set(entries_before), entries_after
        assert entries_after[MEMTEST_ENTRY] == memtest
        assert guest.esp('sha256sum loader/entries/' + MEMTEST_ENTRY).split()[0] == memtest_hash
        options_after = guest.loader_options()
        kernel_cmdline_after = guest.sh('cat %s' % KERNEL_CMDLINE).strip()
        assert list(options_after) == ['proxmox-%s.conf' % kver], options_after
        assert options_after['proxmox-%s.conf' % kver].split() == kernel_cmdline_after.split()
        assert guest.esp_initrd_matches_boot()
        assert 'memtest' not in run.output.lower(), 'a module reported the memtest86+ image or entry'
        assert guest.driver(nic) == 'vfio-pci', guest.driver(nic)
        assert 'AMD-Vi: Interrupt remapping enabled' in '\n'.join(iommu_log_lines(guest))
        status_after, loader_vars_after, booted = booted_by_systemd_boot(guest, run, uuid)
        assert '(versions: %s)' % kver in status_after, status_after

        rerun, rerun_runs = rerun_changes_nothing(collections_path, guest, 'trixie-uefi-sdboot-rerun', variables,
                                                  boot_after)
        state.update(converged=True, nic=nic, boot=boot_after, boots=boots + 1, variables=variables)
        say_before_after('trixie uefi-sdboot, proxmox-kernel-helper 9.2.0 (scenario 5)', [
            ('packages', '-', packages),
            ('proxmox-boot-tool status', status, status_after), ('ESP loader entries', entries_before, entries_after),
            ('/proc/cmdline', cmdline_before, cmdline), ('boot id', boot, boot_after),
            ('sha256', hashes_before, hashes_after), (nic + ' driver', 'e1000e', guest.driver(nic)),
            ('systemd-boot EFI variables', loader_vars_before, loader_vars_after), ('role says', '-', booted),
            ('counted in the guest (converge)', '-', esp_runs), ('ESP mount options in the hook', '-', mounts),
            ('counted in the guest (rerun)', '-', rerun_runs)],
            'converge+reboot %.1f s, rerun %.1f s, scenario %.1f s'
            % (run.seconds, rerun.seconds, time.monotonic() - started))

    def test_boot_loader_package_reinstall_reinits_and_keeps_the_arguments(self, trixie_sdboot_guest,
                                                                           collections_path):
        """Scenario 6: reinstalling systemd-boot-efi triggers the helper's reinit (9.0.1); the kernel entry keeps
        the arguments, the memtest entry and the removable fallback loader are current, a rerun changes nothing."""
        state = trixie_sdboot_guest
        if not state.get('converged'):
            pytest.fail('scenario 5 did not converge this guest, so there is nothing to keep')
        guest, kver = state['guest'], state['kver']
        started = time.monotonic()
        options_before = guest.loader_options()
        mark = guest.esp_mark()
        # Offline: the image keeps its package lists and the installed .deb in apt's cache.
        reinstall = guest.sh('apt-get install --reinstall --no-download -y systemd-boot-efi 2>&1')
        esp_runs = guest.esp_runs(mark)
        assert 'Processing triggers for proxmox-kernel-helper (9.2.0)' in reinstall, reinstall
        assert [call for call in esp_runs.calls if call[:1] == ['reinit']] == [['reinit']], str(esp_runs)
        assert not esp_runs.syncs, 'reinit does not copy kernels: %s' % esp_runs
        inner = {r['pid'] for r in esp_runs.records if r['what'] == 'tool' and r['unshared']}
        mounts = esp_runs.mounts(inner)
        assert mounts and all('fmask=0077' in o.split(',') for o in mounts), mounts
        for line in ('Installing systemd-boot..', 'Configuring systemd-boot..', 'Adding memtest86+x64.efi ..'):
            assert line in reinstall, (line, reinstall)
        entries = guest.loader_entries()
        assert set(entries) == {'proxmox-%s.conf' % kver, MEMTEST_ENTRY}, entries
        assert guest.loader_options() == options_before
        assert 'iommu=pt' in options_before['proxmox-%s.conf' % kver].split()
        assert entries[MEMTEST_ENTRY].get('efi') == '/EFI/memtest86+x64.efi', entries[MEMTEST_ENTRY]
        # The removable fallback loader (what firmware without a boot entry starts) is the same systemd-boot.
        efi = guest.sha256('/usr/lib/systemd/boot/efi/systemd-bootx64.efi')
        fallback = guest.esp('sha256sum EFI/BOOT/BOOTX64.EFI EFI/systemd/systemd-bootx64.efi')
        assert [line.split()[0] for line in fallback.splitlines()] == [efi, efi], fallback

        mark = guest.esp_mark()
        rerun = run_ansible(collections_path, guest, 'passthrough.yml', 'trixie-uefi-sdboot-rerun-after-reinstall',
                            state['variables'])
        assert rerun.rc == 0 and rerun.changed == 0, rerun.tail()
        assert guest.boot_id() == state['boot']
        assert not guest.esp_runs(mark).syncs
        # The kernel hook itself, run once by hand: what it prints on 9.2.0, and the count's own check (a
        # refresh that is known to happen shows as exactly one). The removable-fallback check (8.1.1) speaks
        # only of GRUB's /boot/efi/EFI/BOOT/BOOTX64.efi, which this systemd-boot layout does not have.
        mark = guest.esp_mark()
        refresh = guest.sh('proxmox-boot-tool refresh 2>&1')
        refresh_runs = guest.esp_runs(mark)
        assert len(refresh_runs.syncs) == 1 and refresh_runs.calls == [['refresh']], str(refresh_runs)
        assert 'Copying and configuring kernels on /dev/disk/by-uuid/%s' % state['uuid'] in refresh, refresh
        assert 'Removable bootloader found' not in refresh, refresh
        assert guest.loader_options() == options_before
        status = guest.status()
        say('trixie uefi-sdboot, systemd-boot-efi reinstalled (scenario 6):\n  apt-get install --reinstall '
            'systemd-boot-efi:\n      %s\n  counted in the guest: %s\n  ESP mount options in reinit: %s\n'
            '  loader entries: %s\n  EFI/BOOT/BOOTX64.EFI = systemd-bootx64.efi: %s\n  rerun: changed=%s\n'
            '  proxmox-boot-tool refresh (by hand):\n      %s\n  counted in the guest: %s\n'
            '  proxmox-boot-tool status:\n      %s\n  scenario %.1f s'
            % (reinstall.strip().replace('\n', '\n      '), esp_runs, mounts, entries, efi, rerun.changed,
               refresh.strip().replace('\n', '\n      '), refresh_runs, status.strip().replace('\n', '\n      '),
               time.monotonic() - started))

    def test_trixie_restore_puts_the_original_command_line_back(self, trixie_sdboot_guest, collections_path):
        """Scenario 7: restore.yml puts the files back with one ESP refresh; after a reboot /proc/cmdline is the
        original again and the memtest entry is still there."""
        state = trixie_sdboot_guest
        started = time.monotonic()
        guest, run, mark = restore_once(collections_path, state, 'trixie-uefi-sdboot-restore', 'scenario 5')
        hashes = guest.file_hashes()
        assert hashes == state['hashes_before'], (hashes, state['hashes_before'])
        assert guest.loader_options() == state['options_before']
        esp_runs = guest.esp_runs(mark)
        assert len(esp_runs.syncs) == 1, str(esp_runs)
        old, new, reboot_seconds = guest.vm.reboot()
        cmdline = guest.sh('cat /proc/cmdline').strip()
        assert cmdline == state['cmdline_before'], (cmdline, state['cmdline_before'])
        assert set(guest.loader_entries()) == set(state['entries_before'])
        assert guest.driver(state['nic']) == 'e1000e', guest.driver(state['nic'])
        say('trixie uefi-sdboot restore (scenario 7):\n  loader entry options: %s\n  /proc/cmdline: %s\n'
            '  boot ids %s -> %s\n  counted in the guest: %s\n  restore %.1f s, reboot %.1f s, scenario %.1f s'
            % (guest.loader_options(), cmdline, old, new, esp_runs, run.seconds, reboot_seconds,
               time.monotonic() - started))


@needs_helper('9.2.0')
class TestTrixieGrubOnTheEsp:
    """Proxmox VE 9.2's helper (9.2.0, built and installed as its package) on Debian 13 with GRUB on the ESP (a
    Secure Boot style install): the role edits GRUB's file, not /etc/kernel/cmdline."""

    def test_trixie_grub_esp_converges_through_grub_with_one_esp_refresh(self, trixie_grub_esp_guest,
                                                                         collections_path):
        """Scenario 8: /etc/default/grub edited (the drop-in and /etc/kernel/cmdline untouched), exactly one ESP
        refresh (counted in the guest), one reboot, "Booted by grub (UEFI)", rerun 0 changed; 9.x's memtest86+
        image and menu entry stay, never taken for a kernel, and both GRUB images (the named one and 9.x's
        removable fallback) are on the ESP."""
        state = trixie_grub_esp_guest
        guest = state['guest']
        started = time.monotonic()
        guest.enable_boot_count()
        packages = guest.packages_with_helper_920('grub-efi-amd64-bin', 'memtest86+')
        kver = guest.sh('uname -r').strip()
        status, uuid = guest.configured_only('grub')
        assert '%s is configured with: grub (versions: %s)' % (uuid, kver) in status, status
        assert 'console=ttyS0' in guest.sh('cat %s' % GRUB_DROPIN)
        [nic] = guest.pci_by_id(E1000E)
        boot, boots = guest.boot_id(), guest.boots()
        cmdline_before = guest.sh('cat /proc/cmdline').strip()
        assert 'amd_iommu=off' in cmdline_before.split(), cmdline_before
        assert cmdline_before.startswith('BOOT_IMAGE=/vmlinuz-%s ' % kver), cmdline_before
        linux_before = guest.esp_grub_linux_lines()
        assert linux_before and all('amd_iommu=off' in line.split() for line in linux_before), linux_before
        # 9.x's init copies memtest86+ to the ESP on every loader; on GRUB the menu entry is Debian's own.
        esp_files = guest.esp('sha256sum memtest86+x64.efi EFI/proxmox/grubx64.efi EFI/BOOT/BOOTX64.EFI')
        sums = {line.split()[1]: line.split()[0] for line in esp_files.splitlines()}
        assert sums['memtest86+x64.efi'] == guest.sha256('/boot/memtest86+x64.efi'), sums
        memtest_before = guest.esp_grub_memtest_lines()
        assert memtest_before, 'no memtest86+ entry in the ESP grub.cfg'
        # Debian 13's GRUB 2.12 (its bli module) sets LoaderInfo to its own name; only systemd-boot sets
        # LoaderEntrySelected. The role must not take this LoaderInfo for systemd-boot's.
        loader_vars_before = guest.systemd_boot_vars()
        assert 'LoaderEntrySelected' not in loader_vars_before, loader_vars_before
        loader_info = guest.loader_info()
        assert loader_info and loader_info.startswith('GRUB '), loader_info
        paths = (GRUB, GRUB_DROPIN, KERNEL_CMDLINE)
        hashes_before = guest.file_hashes(paths)
        state.update(cmdline_before=cmdline_before, hashes_before=hashes_before, kver=kver, uuid=uuid)

        run, variables, boot_after, esp_runs = converge_once(collections_path, guest, 'trixie-uefi-grub-converge',
                                                             nic, boot, boots)
        hashes_after = guest.only_grub_file_changed(hashes_before)
        cmdline = guest.sh('cat /proc/cmdline').strip()
        args = cmdline.split()
        assert 'iommu=pt' in args and 'console=ttyS0,115200n8' in args, cmdline
        assert not [a for a in args if a.startswith('amd_iommu=')], cmdline
        linux_after = guest.esp_grub_linux_lines()
        assert linux_after and all('iommu=pt' in line.split() and 'amd_iommu=off' not in line.split()
                                   for line in linux_after), linux_after
        assert guest.esp_grub_memtest_lines() == memtest_before
        assert guest.esp_initrd_matches_boot('initrd.img-{kver}')
        # The kernel hook's update-grub names the image it found (relayed in the rebuild's stderr); nothing else
        # in what the modules returned may name memtest86+.
        relayed = 'Found memtest86+ 64bit EFI image: /boot/memtest86+x64.efi'
        assert relayed in run.output, 'update-grub on the ESP did not find memtest86+'
        assert 'memtest' not in run.output.replace(relayed, '').lower(), 'a module reported the memtest86+ image'
        assert guest.driver(nic) == 'vfio-pci', guest.driver(nic)
        assert 'AMD-Vi: Interrupt remapping enabled' in '\n'.join(iommu_log_lines(guest))
        status_after, uuid_after = guest.configured_only('grub')
        assert uuid_after == uuid and '(versions: %s)' % kver in status_after, status_after
        assert 'Kernel command line read by grub: proxmox-boot-tool status: ESPs configured with grub' in run.output
        booted = booted_line(run.output)
        loader_vars_after = guest.systemd_boot_vars()
        assert booted == ('Booted by grub (UEFI): UEFI boot; GRUB set the EFI variable LoaderInfo (%s) '
                          'and BOOT_IMAGE=/vmlinuz-%s on /proc/cmdline' % (loader_info, kver)), booted

        rerun, rerun_runs = rerun_changes_nothing(collections_path, guest, 'trixie-uefi-grub-rerun', variables,
                                                  boot_after)
        state.update(converged=True, nic=nic)
        say_before_after('trixie uefi-grub, proxmox-kernel-helper 9.2.0 (scenario 8)', [
            ('packages', '-', packages), ('proxmox-boot-tool status', status, status_after),
            ('ESP grub.cfg kernel lines', linux_before, linux_after),
            ('ESP grub.cfg memtest86+ lines', memtest_before, guest.esp_grub_memtest_lines()),
            ('ESP images (sha256)', '-', sums),
            ('/proc/cmdline', cmdline_before, cmdline), ('boot id', boot, boot_after),
            ('sha256', hashes_before, hashes_after), (nic + ' driver', 'e1000e', guest.driver(nic)),
            ('EFI variables under systemd\'s vendor GUID', loader_vars_before, loader_vars_after),
            ('LoaderInfo', loader_info, guest.loader_info()),
            ('role says', '-', booted), ('counted in the guest (converge)', '-', esp_runs),
            ('counted in the guest (rerun)', '-', rerun_runs)],
            'converge+reboot %.1f s, rerun %.1f s, scenario %.1f s'
            % (run.seconds, rerun.seconds, time.monotonic() - started))

    def test_trixie_grub_restore_puts_the_original_command_line_back(self, trixie_grub_esp_guest, collections_path):
        """Scenario 9: restore.yml puts /etc/default/grub back with one ESP refresh; after a reboot /proc/cmdline
        is the original again."""
        state = trixie_grub_esp_guest
        started = time.monotonic()
        guest, run, mark = restore_once(collections_path, state, 'trixie-uefi-grub-restore', 'scenario 8')
        hashes = guest.file_hashes((GRUB, GRUB_DROPIN, KERNEL_CMDLINE))
        assert hashes == state['hashes_before'], (hashes, state['hashes_before'])
        linux = guest.esp_grub_linux_lines()
        assert linux and all('amd_iommu=off' in line.split() for line in linux), linux
        esp_runs = guest.esp_runs(mark)
        assert len(esp_runs.syncs) == 1, str(esp_runs)
        old, new, reboot_seconds = guest.vm.reboot()
        cmdline = guest.sh('cat /proc/cmdline').strip()
        assert cmdline == state['cmdline_before'], (cmdline, state['cmdline_before'])
        assert guest.driver(state['nic']) == 'e1000e', guest.driver(state['nic'])
        say('trixie uefi-grub restore (scenario 9):\n  ESP grub.cfg kernel lines: %s\n  /proc/cmdline: %s\n'
            '  boot ids %s -> %s\n  counted in the guest: %s\n  restore %.1f s, reboot %.1f s, scenario %.1f s'
            % (linux, cmdline, old, new, esp_runs, run.seconds, reboot_seconds, time.monotonic() - started))
