"""The QEMU machine of a test VM: accelerator, command line, firmware, and the QEMU 10 that igb NICs need.

vmctl.py starts it; bench and the scenarios read choose_accel() and qemu10() through vmctl.
Standard library only.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from vmimages import log

if TYPE_CHECKING:
    from vmctl import VM

QEMU10_SCRIPT = Path(__file__).resolve().parent / "qemu10.sh"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MEMORY_MB = 1536
SMP = 2


def choose_accel() -> tuple[str, str]:
    """Pick the accelerator and say why.

    /dev/kvm alone proves nothing here: on this project's machines it is a PVM backend
    (kvm_pvm, no VMX/SVM) that cannot boot a stock Debian kernel, so KVM is used only when
    the CPU offers hardware virtualisation and no PVM module is loaded.
    """
    if os.environ.get("VFIO_VM_ACCEL") == "tcg":
        return "tcg", "VFIO_VM_ACCEL=tcg"
    if not os.path.exists("/dev/kvm"):
        return "tcg", "no /dev/kvm"
    if os.path.isdir("/sys/module/kvm_pvm"):
        return "tcg", ("/dev/kvm is a PVM backend (kvm_pvm loaded), which cannot boot a stock "
                       "kernel; TCG is slower but works")
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if not re.search(r"^flags\s*:.*\b(vmx|svm)\b", cpuinfo, re.M):
        return "tcg", "CPU has no vmx/svm flag"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm not accessible"
    return "kvm", "/dev/kvm with hardware virtualisation (vmx/svm)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_argv(vm: VM) -> list[str]:
    cpu = "max,vendor=GenuineIntel" if vm.flavour == "intel" else "max"
    accel = ["-accel", "tcg,thread=multi", "-cpu", cpu]
    if vm.accel == "kvm":
        accel = ["-accel", "kvm", "-cpu", "host"]
    # The vIOMMU comes before every PCI device so that all of them sit behind it.
    iommu = ("intel-iommu,intremap=on,caching-mode=on" if vm.flavour == "intel"
             else "amd-iommu,intremap=on")
    argv = [
        vm.qemu, "-name", vm.name,
        "-M", "q35,kernel-irqchip=split", *accel,
        "-m", str(MEMORY_MB), "-smp", str(SMP),
        "-device", iommu,
        *firmware_argv(vm),
        "-drive", f"file={vm.overlay},if=none,id=disk0,format=qcow2,discard=unmap",
        "-device", "virtio-blk-pci,drive=disk0",
        "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{vm.port}-:22",
        "-device", "virtio-net-pci,netdev=mgmt",
    ]
    # Passthrough candidates: e1000e is 8086:10d3; the guest's network config ignores it.
    for i in range(vm.nics):
        argv += ["-netdev", f"user,id=pt{i}", "-device", f"e1000e,netdev=pt{i}"]
    argv += igb_argv(vm.igb)
    argv += [
        "-display", "none", "-vga", "none",
        "-serial", f"file:{vm.serial_log}",
        "-qmp", f"unix:{vm.run_dir / 'qmp.sock'},server=on,wait=off",
        "-pidfile", str(vm.pidfile), "-daemonize",
    ]
    return argv


def igb_argv(count: int) -> list[str]:
    """``count`` igb PFs, each alone behind a root port (which has ACS: PF and each VF get their own group)."""
    argv = []
    for i in range(count):
        argv += ["-device", f"pcie-root-port,id=sriov{i},chassis={20 + i},slot={20 + i}",
                 "-netdev", f"user,id=igb{i}", "-device", f"igb,bus=sriov{i},netdev=igb{i}"]
    return argv


def qemu10() -> str:
    """The QEMU 10 wrapper tests/vm/qemu10.sh installs (once, cached), for guests with igb NICs."""
    done = subprocess.run(["bash", str(QEMU10_SCRIPT)], check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def firmware_argv(vm: VM) -> list[str]:
    """OVMF on two pflash drives for UEFI guests (code read-only, the VM's own NVRAM); SeaBIOS else."""
    if vm.boot == "bios":
        return []
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vm.efi_vars}"]


def ensure_ovmf() -> None:
    if OVMF_CODE.is_file() and OVMF_VARS.is_file():
        return
    log("installing host package ovmf")
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
                    "--no-install-recommends", "ovmf"], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
