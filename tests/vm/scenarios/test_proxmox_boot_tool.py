"""The Proxmox boot path for real (issue 14): UEFI guests whose ESPs the real proxmox-boot-tool manages.

Debian 12 under OVMF with Proxmox VE 8's proxmox-kernel-helper (../shared/vendor, never copied
into the project). One systemd-boot guest serves scenario 1 (converge) and then scenario 4
(restore.yml on the same guest). Every boot costs
minutes under TCG, so each class boots one guest and stops it before the next class starts.
Each check reads the guest directly: the tool's own status, the boot entries on the ESP,
/proc/cmdline, sha256 of the files, boot ids, sysfs driver links.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import E1000E, OUTPUT, PLAYBOOK_TIMEOUT, ROOT, Guest, PlaybookRun, iommu_log_lines, say

import vmctl

VENDOR = Path(os.environ.get('VFIO_PBT_VENDOR', ROOT.parent / 'shared' / 'vendor' / 'proxmox-kernel-helper'))
if not (VENDOR / 'src' / 'bin' / 'proxmox-boot-tool').is_file():
    _REASON = ('%s is absent: the real proxmox-boot-tool is vendored beside the checkout only in this '
               'workspace (the container scenario with the stub still covers the logic)' % VENDOR)
    say('SKIP test_proxmox_boot_tool: ' + _REASON)
    pytest.skip(_REASON, allow_module_level=True)

GRUB = '/etc/default/grub'
KERNEL_CMDLINE = '/etc/kernel/cmdline'
BACKUPS = OUTPUT / 'pbt-backups'
# The tool mounts the ESP itself (it is in no fstab); the checks mount it read-only and let go.
ESP_MOUNT = '/run/vfio-check-esp'
# The vendor GUID of systemd-boot's Boot Loader Interface variables (written here, not imported: the
# check reads efivarfs independently of the code under test).
SYSTEMD_BOOT_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f'


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

    def loader_options(self):
        """The `options` line of each proxmox loader entry on the ESP, by entry file."""
        out = self.esp("grep -H '^options' loader/entries/proxmox-*.conf")
        entries = (line.split(':', 1) for line in out.strip().splitlines())
        return {entry: line.split(None, 1)[1].strip() for entry, line in entries}

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


def run_ansible(collections_path, guest, playbook, name, variables):
    """ansible-playbook on the guest; conftest's runner knows only passthrough.yml."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    inventory = OUTPUT / ('%s.ini' % guest.vm.name)
    inventory.write_text(vmctl.render_inventory([guest.vm]))
    extra = OUTPUT / ('%s.vars.json' % name)
    extra.write_text(json.dumps(dict(variables, pcie_passthrough_hosts='vfio_vms')))
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(inventory),
            str(ROOT / 'playbooks' / playbook), '-e', '@%s' % extra]
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


def boot_uefi(variant):
    """A Debian 12 UEFI guest (AMD IOMMU) of an image variant, and a dict its class's tests share."""
    started = time.monotonic()
    vmctl.ensure_uefi_image(build=True, variant=variant)
    say('UEFI image (%s) ready in %.1f s' % (variant, time.monotonic() - started))
    started = time.monotonic()
    vm = vmctl.start('amd', nics=1, suite='bookworm', boot='uefi-' + variant)
    guest = PbtGuest(vm, time.monotonic() - started)
    say('%s: Debian bookworm UEFI (%s, proxmox-boot-tool) amd guest up in %.1f s'
        % (vm.name, variant, guest.boot_seconds))
    return {'guest': guest, 'started': started}


def stop_uefi(state):
    state['guest'].vm.stop(keep_logs=True)
    say('%s: guest time %.1f s (boot to stop)' % (state['guest'].vm.name, time.monotonic() - state['started']))


@pytest.fixture(scope='class')
def uefi_guest():
    state = boot_uefi('sdboot')
    yield state
    stop_uefi(state)


class TestSystemdBoot:
    def test_systemd_boot_converges_through_kernel_cmdline_only(self, uefi_guest, collections_path):
        """Scenario 1: the role edits /etc/kernel/cmdline only, the initramfs hook refreshes the ESP, one reboot."""
        guest = uefi_guest['guest']
        started = time.monotonic()
        guest.enable_boot_count()
        status, uuid = guest.configured_only('uefi')
        assert guest.sh('test -d /sys/firmware/efi && echo efi').strip() == 'efi'
        [nic] = guest.pci_by_id(E1000E)
        boot, boots = guest.boot_id(), guest.boots()
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

        shutil.rmtree(BACKUPS, ignore_errors=True)
        variables = {'pcie_passthrough_devices': [nic], 'pcie_passthrough_backup_dir': str(BACKUPS)}
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
        # The ESP holds the rebuilt initrd and the new options, yet no separate refresh ran: the
        # initramfs rebuild's post-update hook (proxmox-boot-sync) did it.
        assert guest.esp_initrd_matches_boot()
        assert 'TASK [vfio.passthrough.pcie_passthrough : Rebuild the initramfs for all kernels]' in run.output
        assert 'proxmox-boot-tool refresh' not in run.output, 'a separate ESP refresh ran after the initramfs rebuild'
        link = guest.sh('readlink /sys/bus/pci/devices/%s/driver' % nic).strip()
        assert link.endswith('/vfio-pci'), link
        log = '\n'.join(iommu_log_lines(guest))
        assert 'AMD-Vi: Interrupt remapping enabled' in log, log
        assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
        status_after, uuid_after = guest.configured_only('uefi')
        assert uuid_after == uuid
        loader_vars_after = guest.systemd_boot_vars()
        assert {'LoaderInfo', 'LoaderEntrySelected'} <= set(loader_vars_after), loader_vars_after
        # The role says which file it edited and why, and which loader the firmware started after the reboot.
        assert 'Kernel command line read by systemd-boot: proxmox-boot-tool status: ESPs configured with uefi' \
            in run.output, run.tail()
        booted = booted_line(run.output)
        assert booted.startswith('Booted by systemd-boot (UEFI): UEFI boot; systemd-boot set the EFI variables '
                                 'LoaderInfo and LoaderEntrySelected (systemd-boot '), booted

        rerun = run_ansible(collections_path, guest, 'passthrough.yml', 'bookworm-uefi-sdboot-rerun', variables)
        assert rerun.rc == 0 and rerun.changed == 0, rerun.tail()
        assert guest.boot_id() == boot_after
        uefi_guest['converged'] = True
        say_before_after('bookworm uefi-sdboot (scenario 1)', [
            ('proxmox-boot-tool status', status, status_after), ('loader entry options', options_before, options_after),
            ('/proc/cmdline', cmdline_before, cmdline), ('boot id', boot, boot_after),
            ('sha256', hashes_before, hashes_after), (nic + ' driver', 'e1000e', link),
            ('systemd-boot EFI variables', loader_vars_before, loader_vars_after), ('role says', '-', booted)],
            'converge+reboot %.1f s, rerun %.1f s, scenario %.1f s'
            % (run.seconds, rerun.seconds, time.monotonic() - started))

    def test_restore_puts_the_original_command_line_back(self, uefi_guest, collections_path):
        """Scenario 4 on the same guest: restore.yml puts the files back and refreshes the ESP; after a reboot
        /proc/cmdline is the original again."""
        if not uefi_guest.get('converged'):
            pytest.fail('scenario 1 did not converge this guest, so there is nothing to restore')
        guest = uefi_guest['guest']
        started = time.monotonic()
        run = run_ansible(collections_path, guest, 'restore.yml', 'bookworm-uefi-sdboot-restore',
                          {'pcie_passthrough_backup_dir': str(BACKUPS)})
        assert run.rc == 0, run.tail()
        assert 'REBOOT REQUIRED' in run.output, run.tail()
        hashes = guest.file_hashes()
        assert hashes == uefi_guest['hashes_before'], (hashes, uefi_guest['hashes_before'])
        # Before the reboot: the ESP already holds the original options (the refresh reached it).
        assert guest.loader_options() == uefi_guest['options_before']
        assert guest.esp_initrd_matches_boot()
        old, new, reboot_seconds = guest.vm.reboot()
        cmdline = guest.sh('cat /proc/cmdline').strip()
        assert cmdline == uefi_guest['cmdline_before'], (cmdline, uefi_guest['cmdline_before'])
        assert 'LoaderInfo' in guest.systemd_boot_vars()
        [nic] = guest.pci_by_id(E1000E)
        assert guest.driver(nic) == 'e1000e', guest.driver(nic)
        say('bookworm uefi-sdboot restore (scenario 4):\n  loader entry options: %s\n  /proc/cmdline: %s\n'
            '  boot ids %s -> %s\n  sha256: %s\n  %s driver -> e1000e\n  restore %.1f s, reboot %.1f s, scenario %.1f s'
            % (guest.loader_options(), cmdline, old, new, hashes, nic, run.seconds, reboot_seconds,
               time.monotonic() - started))
