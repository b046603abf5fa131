"""Throw-away QEMU VMs with an emulated Intel or AMD IOMMU, for proof on a real kernel.

CLI (also importable: ``start()``, ``get()``, ``VM.ssh()``, ``VM.reboot()``, ``VM.stop()``)::

    vmctl.py build [--suite trixie|bookworm] [--boot bios|uefi-sdboot|uefi-grub] [--kernel LINE]   # build/verify an image
    vmctl.py start --flavour intel|amd [--suite trixie|bookworm] [--boot bios|uefi-sdboot|uefi-grub] [--nics N]
                   [--igb N] [--kernel LINE] [--name NAME] [--timeout S]
    vmctl.py wait-ssh NAME [--timeout S]
    vmctl.py ssh NAME -- 'cat /proc/cmdline'
    vmctl.py boot-id NAME
    vmctl.py reboot NAME [--timeout S]              # reboot inside the same QEMU, check boot_id
    vmctl.py inventory NAME [NAME...] [-o FILE]     # Ansible INI inventory
    vmctl.py list
    vmctl.py stop NAME [--keep-logs] | stop --all

Each VM runs from its own qcow2 overlay on the cached base image, in its own run dir
($VFIO_VM_CACHE/runs/NAME) with its own SSH port, so several may run at once.
Standard library only: pytest imports this module directly.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

# The image and the QEMU machine have modules of their own; their names used by callers stay vmctl's.
from vmimages import BOOTS, BUILD_SCRIPT, DEFAULT_SUITE, KERNELS, SUITES, VMError, build_argv, disk_image, ensure_image, log
from vmqemu import OVMF_VARS, choose_accel, ensure_ovmf, free_port, qemu10, qemu_argv

HERE = Path(__file__).resolve().parent
INVENTORY_TEMPLATE = HERE / "inventory.ini.tmpl"
CACHE = Path(os.environ.get("VFIO_VM_CACHE", "/var/cache/vfio-passthrough-vm"))
RUNS = CACHE / "runs"
FLAVOURS = ("intel", "amd")
# Under TCG on 2 shared cores a Debian 12 boot takes 30-40 s, a Debian 13 one about 1.5x that,
# and 3-5x both on a loaded machine (224-253 s measured): leave room.
DEFAULT_BOOT_TIMEOUT = 600
# A first boot whose console has shown its login prompt for this long without SSH answering is
# booted again (start()): measured, SSH answers within seconds of the prompt, tens under load.
FIRST_SSH_AFTER_PROMPT = 240
SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=3",
]


class SSHTimeout(VMError):
    """A running guest's SSH did not answer in time (QEMU itself is up)."""


# --- VM --------------------------------------------------------------------------------------

@dataclasses.dataclass
class VM:
    name: str
    flavour: str
    run_dir: Path
    port: int
    key: Path
    base: Path
    nics: int
    accel: str
    suite: str = DEFAULT_SUITE
    boot: str = "bios"
    # igb SR-IOV NICs (82576, PF 8086:10c9), each behind its own PCIe root port; they need
    # QEMU 10 (tests/vm/qemu10.sh), which then runs this VM instead of the system's QEMU.
    igb: int = 0
    qemu: str = "qemu-system-x86_64"
    # A trixie-backports kernel line installed beside 6.12 and booted by default (None: Debian's own only).
    kernel: str | None = None

    # paths inside the run dir
    @property
    def overlay(self) -> Path:
        return self.run_dir / "disk.qcow2"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def serial_log(self) -> Path:
        return self.run_dir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"

    @property
    def efi_vars(self) -> Path:
        return self.run_dir / "OVMF_VARS_4M.fd"

    @property
    def inventory_path(self) -> Path:
        return self.run_dir / "inventory.ini"

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(self).items()}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.state_path)

    # process
    def pid(self) -> int | None:
        """QEMU's pid if it is running, checked against its cmdline so a reused pid is not ours."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.overlay).encode() in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def serial_tail(self, lines: int = 25) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return "(no serial log)"
        return "\n".join(text.splitlines()[-lines:])

    # ssh
    def ssh_argv(self, command: str | None = None) -> list[str]:
        argv = ["ssh", "-i", str(self.key), "-p", str(self.port), *SSH_OPTS, "root@127.0.0.1"]
        if command is not None:
            argv.append(command)
        return argv

    def ssh(self, command: str, check: bool = True, timeout: float = 600,
            capture: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command in the guest. check=True raises VMError on a non-zero exit."""
        res = subprocess.run(self.ssh_argv(command), capture_output=capture, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if check and res.returncode != 0:
            raise VMError(f"{self.name}: `{command}` exited {res.returncode}: "
                          f"{(res.stderr or '').strip()}")
        return res

    def wait_ssh(self, timeout: float = DEFAULT_BOOT_TIMEOUT, what: str = "SSH",
                 after_prompt: float | None = None) -> float:
        """Poll until SSH answers; returns the seconds waited. Fails early if QEMU dies.

        after_prompt: also give up this many seconds after the console showed its login prompt (the
        boot is over by then, and sshd starts before the getty).

        A timeout's first line says what the last attempt printed and whether (and when) the console
        reached its login prompt: the lanes' summary repeats it after the serial tail.
        """
        start = time.monotonic()
        next_report = 10.0
        last = "no attempt finished"
        prompt_at = None
        console_from = self.serial_size()  # a reboot's wait must not see the previous boot's prompt
        while True:
            elapsed = time.monotonic() - start
            if not self.running():
                raise VMError(f"{self.name}: QEMU exited while waiting for {what}; serial log "
                              f"tail:\n{self.serial_tail()}")
            try:
                res = self.ssh("true", check=False, timeout=15)
                if res.returncode == 0:
                    elapsed = time.monotonic() - start
                    log(f"{self.name}: {what} up after {elapsed:.1f} s")
                    return elapsed
                last = f"ssh exited {res.returncode}: {(res.stderr or '').strip() or '(nothing on stderr)'}"
            except subprocess.TimeoutExpired:
                last = "ssh did not finish within 15 s"
            if prompt_at is None and self.console_at_login_prompt(console_from):
                prompt_at = elapsed
            past_prompt = (prompt_at is not None and after_prompt is not None
                           and elapsed - prompt_at > after_prompt)
            if elapsed > timeout or past_prompt:
                console = ("the console showed its login prompt %.0f s in" % prompt_at if prompt_at is not None
                           else "the console showed no login prompt")
                raise SSHTimeout(f"{self.name}: no {what} on port {self.port} after {elapsed:.0f} s; {console}; "
                                 f"last attempt: {last}; serial log tail:\n{self.serial_tail()}")
            if elapsed >= next_report:
                log(f"{self.name}: waiting for {what} on port {self.port}... {elapsed:.0f} s ({last})")
                next_report += 10
            time.sleep(2)

    def serial_size(self) -> int:
        try:
            return self.serial_log.stat().st_size
        except OSError:
            return 0

    def console_at_login_prompt(self, since: int = 0) -> bool:
        try:
            with self.serial_log.open("rb") as console:
                console.seek(max(since, self.serial_size() - 4096))
                return b" login:" in console.read()
        except OSError:
            return False

    def boot_id(self) -> str:
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> tuple[str, str, float]:
        """Reboot the guest (QEMU keeps running) and wait until it is back with a new boot_id.

        Returns (old boot_id, new boot_id, seconds from reboot to SSH).
        """
        old = self.boot_id()
        log(f"{self.name}: rebooting (boot_id {old})")
        start = time.monotonic()
        # The connection drops while systemd goes down, so the exit code means nothing.
        self.ssh("systemctl reboot", check=False, timeout=30)
        while True:
            if time.monotonic() - start > timeout:
                raise VMError(f"{self.name}: not back with a new boot_id after {timeout:.0f} s; "
                              f"serial log tail:\n{self.serial_tail()}")
            remaining = timeout - (time.monotonic() - start)
            self.wait_ssh(timeout=max(remaining, 1), what="SSH after reboot")
            try:
                new = self.boot_id()
            except (VMError, subprocess.TimeoutExpired):
                continue
            if new != old:
                elapsed = time.monotonic() - start
                log(f"{self.name}: back after {elapsed:.1f} s, boot_id {new}")
                return old, new, elapsed
            # SSH answered before the old system went down: try again shortly.
            time.sleep(2)

    def inventory_text(self, group: str = "vfio_vms") -> str:
        return render_inventory([self], group)

    def stop(self, timeout: float = 90, keep_logs: bool = False) -> None:
        """Power off over SSH, kill QEMU if it does not exit in time, delete the overlay."""
        pid = self.pid()
        if pid is not None:
            log(f"{self.name}: powering off over SSH")
            try:
                self.ssh("systemctl poweroff", check=False, timeout=20)
            except subprocess.TimeoutExpired:
                pass
            if not _wait_exit(pid, timeout):
                log(f"{self.name}: still running after {timeout:.0f} s, sending SIGTERM")
                _kill(pid, signal.SIGTERM)
                if not _wait_exit(pid, 10):
                    log(f"{self.name}: sending SIGKILL")
                    _kill(pid, signal.SIGKILL)
                    if not _wait_exit(pid, 10):
                        raise VMError(f"{self.name}: QEMU pid {pid} survived SIGKILL")
            log(f"{self.name}: QEMU stopped")
        if keep_logs:
            for p in (self.overlay, self.pidfile, self.run_dir / "qmp.sock"):
                p.unlink(missing_ok=True)
            log(f"{self.name}: overlay removed, logs kept in {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=False)
            log(f"{self.name}: run dir {self.run_dir} removed")


def _wait_exit(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def render_inventory(vms: list[VM], group: str = "vfio_vms") -> str:
    """Ansible INI inventory; header lines of the template once, the host line per VM."""
    tmpl = INVENTORY_TEMPLATE.read_text().splitlines()
    head = [line for line in tmpl if line.startswith(("#", "[")) or not line.strip()]
    host = [line for line in tmpl if line not in head]
    out = [string.Template(line).substitute(group=group) for line in head]
    for vm in vms:
        out += [string.Template(line).substitute(name=vm.name, port=vm.port, key=vm.key,
                                                 flavour=vm.flavour, group=group)
                for line in host]
    return "\n".join(out) + "\n"


# --- start / lookup --------------------------------------------------------------------------

def start(flavour: str, nics: int = 1, name: str | None = None,
          timeout: float = DEFAULT_BOOT_TIMEOUT, build: bool = True, wait: bool = True,
          suite: str = DEFAULT_SUITE, boot: str = "bios", igb: int = 0, kernel: str | None = None) -> VM:
    """Boot a throw-away VM of a Debian suite and (by default) wait for SSH. Returns the VM handle."""
    if flavour not in FLAVOURS:
        raise VMError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
    build_argv(suite, boot, kernel)  # a bad suite, boot or kernel fails here, before anything runs
    if nics < 0:
        raise VMError(f"--nics must be >= 0, not {nics}")
    if igb < 0:
        raise VMError(f"--igb must be >= 0, not {igb}")
    name = name or f"{suite}-{flavour}-{secrets.token_hex(3)}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", name):
        raise VMError(f"bad VM name {name!r}: letters, digits, . _ - only, at most 41 chars")
    for tool in ("qemu-system-x86_64", "qemu-img", "ssh"):
        if shutil.which(tool) is None:
            raise VMError(f"{tool} not found: run {BUILD_SCRIPT}, it installs the host packages")

    images = ensure_image(build, suite, kernel, boot)
    base = disk_image(images, flavour, boot)
    if boot != "bios":
        ensure_ovmf()
    accel, why = choose_accel()
    log(f"accelerator: {accel} ({why})")

    RUNS.mkdir(parents=True, exist_ok=True)
    launch = functools.partial(_launch, name, flavour, nics, images, base, accel, suite, boot, igb, kernel,
                               timeout, wait)
    try:
        return launch()
    except SSHTimeout as exc:
        # The first boot of an untouched base image is the test bed's, not the product's: one more
        # boot from a fresh overlay, said loudly, with the failed boot's logs kept beside it.
        kept = RUNS / f"{name}.no-ssh"
        shutil.rmtree(kept, ignore_errors=True)
        (RUNS / name).rename(kept)
        # Its record names itself, so `list` and `stop` see the kept logs, not the VM booted next.
        dataclasses.replace(get(kept.name), name=kept.name, run_dir=kept).save()
        log(f"{name}: FIRST BOOT GAVE NO SSH, booting once more from a fresh overlay "
            f"(logs of the failed boot: {kept}): {str(exc).splitlines()[0]}")
        return launch()


def _launch(name: str, flavour: str, nics: int, images: Path, base: Path, accel: str, suite: str, boot: str,
            igb: int, kernel: str | None, timeout: float, wait: bool) -> VM:
    run_dir = RUNS / name
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise VMError(f"run dir {run_dir} exists: VM {name!r} is running or was not "
                      f"stopped; `vmctl.py stop {name}` first") from None
    vm = VM(name=name, flavour=flavour, run_dir=run_dir, port=0, key=images / "id_ed25519",
            base=base, nics=nics, accel=accel, suite=suite, boot=boot, igb=igb, kernel=kernel,
            qemu=qemu10() if igb else "qemu-system-x86_64")
    try:
        if boot != "bios":
            shutil.copyfile(OVMF_VARS, vm.efi_vars)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base),
                        "-F", "qcow2", str(vm.overlay)], check=True)
        # The port can be taken between probing and QEMU binding it: retry with a new one.
        for attempt in range(5):
            vm.port = free_port()
            vm.save()  # before QEMU runs, so `stop NAME` can clean up whatever happens next
            argv = qemu_argv(vm)
            (run_dir / "qemu.cmdline").write_text(" ".join(argv) + "\n")
            with open(vm.qemu_log, "w") as qlog:
                res = subprocess.run(argv, stdout=qlog, stderr=subprocess.STDOUT, check=False)
            if res.returncode == 0:
                break
            err = vm.qemu_log.read_text()
            if "hostfwd" not in err and "forwarding" not in err:
                raise VMError(f"QEMU failed to start (exit {res.returncode}):\n{err}")
            log(f"port {vm.port} taken, retrying ({attempt + 1}/5)")
        else:
            raise VMError("could not find a free SSH port for QEMU after 5 tries")
        vm.inventory_path.write_text(vm.inventory_text())
        log(f"{name}: QEMU pid {vm.pid()}, Debian {suite} ({boot}), {flavour} IOMMU, {nics} e1000e, {igb} igb, SSH on "
            f"127.0.0.1:{vm.port}, serial log {vm.serial_log}")
        if wait:
            vm.wait_ssh(timeout, after_prompt=FIRST_SSH_AFTER_PROMPT)
    except BaseException:
        # Never leave a half-started VM behind: it would hold a core for nothing.
        log(f"{name}: start failed, cleaning up")
        try:
            vm.stop(timeout=5, keep_logs=True)
        except Exception as exc:  # report but keep the original error
            log(f"{name}: cleanup failed too: {exc}")
        raise
    return vm


def get(name: str) -> VM:
    state = RUNS / name / "state.json"
    try:
        data = json.loads(state.read_text())
    except FileNotFoundError:
        raise VMError(f"no VM named {name!r} (no {state})") from None
    for k in ("run_dir", "key", "base"):
        data[k] = Path(data[k])
    return VM(**data)


def all_vms() -> list[VM]:
    if not RUNS.is_dir():
        return []
    return [get(p.parent.name) for p in sorted(RUNS.glob("*/state.json"))]


# --- CLI -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vmctl.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="build or verify a cached image (tests/vm/build-image.sh)")
    p.add_argument("--suite", default=DEFAULT_SUITE, choices=SUITES)
    p.add_argument("--boot", default="bios", choices=BOOTS)
    p.add_argument("--kernel", choices=KERNELS, help="also install this trixie-backports kernel line and boot it")
    p = sub.add_parser("start", help="boot a throw-away VM and wait for SSH")
    p.add_argument("--flavour", required=True, choices=FLAVOURS)
    p.add_argument("--suite", default=DEFAULT_SUITE, choices=SUITES)
    p.add_argument("--boot", default="bios", choices=BOOTS,
                   help="bios (default), uefi-sdboot or uefi-grub (OVMF, real proxmox-boot-tool 8.1.0 on bookworm, "
                        "9.2.0 on trixie; amd)")
    p.add_argument("--nics", type=int, default=1, help="e1000e passthrough candidates (default 1)")
    p.add_argument("--igb", type=int, default=0,
                   help="igb SR-IOV NICs behind their own root ports (runs QEMU 10 from tests/vm/qemu10.sh)")
    p.add_argument("--kernel", choices=KERNELS, help="the image with this trixie-backports kernel line (BIOS)")
    p.add_argument("--name")
    p.add_argument("--timeout", type=float, default=DEFAULT_BOOT_TIMEOUT)
    p.add_argument("--no-build", action="store_true", help="fail instead of building the image")
    p.add_argument("--no-wait", action="store_true", help="return once QEMU runs")
    p = sub.add_parser("stop", help="power off, kill after a timeout, delete the overlay")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument("--keep-logs", action="store_true")
    p = sub.add_parser("ssh", help="run a command (or a shell) in the guest")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("wait-ssh")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=DEFAULT_BOOT_TIMEOUT)
    p = sub.add_parser("boot-id")
    p.add_argument("name")
    p = sub.add_parser("reboot", help="reboot the guest and wait for a new boot_id")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=DEFAULT_BOOT_TIMEOUT)
    p = sub.add_parser("inventory", help="print or write an Ansible INI inventory")
    p.add_argument("names", nargs="+")
    p.add_argument("-o", "--output")
    p.add_argument("--group", default="vfio_vms")
    sub.add_parser("list")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "build":
            print(ensure_image(True, args.suite, args.kernel, args.boot))
        elif args.cmd == "start":
            vm = start(args.flavour, args.nics, args.name, args.timeout,
                       build=not args.no_build, wait=not args.no_wait, suite=args.suite,
                       boot=args.boot, igb=args.igb, kernel=args.kernel)
            print(vm.name)
        elif args.cmd == "stop":
            if args.all == bool(args.names):
                ap.error("stop: give VM names or --all, not both or neither")
            for vm in all_vms() if args.all else [get(n) for n in args.names]:
                vm.stop(args.timeout, args.keep_logs)
        elif args.cmd == "ssh":
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            vm = get(args.name)
            argv = vm.ssh_argv(" ".join(cmd) if cmd else None)
            if not cmd:
                argv.insert(1, "-t")
            return subprocess.run(argv, check=False).returncode
        elif args.cmd == "wait-ssh":
            get(args.name).wait_ssh(args.timeout)
        elif args.cmd == "boot-id":
            print(get(args.name).boot_id())
        elif args.cmd == "reboot":
            old, new, secs = get(args.name).reboot(args.timeout)
            print(f"{old} -> {new} ({secs:.1f} s)")
        elif args.cmd == "inventory":
            text = render_inventory([get(n) for n in args.names], args.group)
            if args.output:
                Path(args.output).write_text(text)
                log(f"inventory written to {args.output}")
            else:
                sys.stdout.write(text)
        elif args.cmd == "list":
            for vm in all_vms():
                state = f"running pid {vm.pid()}" if vm.running() else "NOT RUNNING"
                print(f"{vm.name}\t{vm.suite}\t{vm.flavour}\t127.0.0.1:{vm.port}\t{state}\t{vm.run_dir}")
    except (VMError, subprocess.CalledProcessError) as exc:
        log(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
