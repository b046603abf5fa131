"""The cached VM images: which image dir a variant uses, and building it when it is missing.

tests/vm/build-image.sh builds every variant (image/common.sh, image/bios.sh, image/uefi.sh); this
module only asks it for the dir (``--print-dir``, its key hashes what builds the variant) and runs it.
Standard library only: vmctl.py and pytest import it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "build-image.sh"
# Debian 13 is Proxmox VE 9's base and the default; Debian 12 is VE 8's.
SUITES = ("trixie", "bookworm")
DEFAULT_SUITE = SUITES[0]
# bios: GRUB from /boot, an intel and an amd image. uefi-sdboot / uefi-grub: OVMF, systemd-boot or GRUB
# from an ESP that the real proxmox-boot-tool manages (AMD only): Debian 12 with Proxmox VE 8's
# proxmox-kernel-helper 8.1.0, Debian 13 with Proxmox VE 9.2's 9.2.0.
BOOTS = ("bios", "uefi-sdboot", "uefi-grub")
# trixie-backports kernel lines the BIOS image can add beside Debian 13's 6.12 (build-image.sh --kernel).
KERNELS = ("7.0", "7.3")


class VMError(RuntimeError):
    """A VM (or its image) could not be built, started, reached or stopped."""


def log(msg: str) -> None:
    print(f"[vmctl] {msg}", file=sys.stderr, flush=True)


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise VMError(f"suite must be one of {SUITES}, not {suite!r}")
    return suite


def build_argv(suite: str = DEFAULT_SUITE, boot: str = "bios", kernel: str | None = None) -> list[str]:
    """build-image.sh's arguments for a variant, checked here so a bad one names the value."""
    check_suite(suite)
    if boot not in BOOTS:
        raise VMError(f"boot must be one of {BOOTS}, not {boot!r}")
    if kernel is not None and kernel not in KERNELS:
        raise VMError(f"kernel must be one of {KERNELS}, not {kernel!r}")
    if kernel is not None and boot != "bios":
        raise VMError(f"kernel {kernel!r} exists for boot 'bios' only, not {boot!r}")
    return [str(BUILD_SCRIPT), "--boot", boot, "--suite", suite, *(["--kernel", kernel] if kernel else [])]


def image_dir(suite: str = DEFAULT_SUITE, kernel: str | None = None, boot: str = "bios") -> Path:
    """The image dir the current builder produces for a variant (exit 3 for UEFI: no vendored tool)."""
    argv = build_argv(suite, boot, kernel)
    out = subprocess.run([*argv, "--print-dir"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise VMError(f"{' '.join(argv)} --print-dir exited {out.returncode}: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def ensure_image(build: bool = True, suite: str = DEFAULT_SUITE, kernel: str | None = None,
                 boot: str = "bios") -> Path:
    """Return a variant's image dir, building it first if missing (a no-op when up to date)."""
    argv = build_argv(suite, boot, kernel)
    d = image_dir(suite, kernel, boot)
    if not d.is_dir():
        if not build:
            raise VMError(f"no {d.name} image at {d}: run {' '.join(argv)}")
        # UEFI: one OVMF boot; trixie also builds the helper's .deb once.
        cost = "3-6 min" if boot == "bios" else "4-10 min"
        log(f"{d.name} image missing, building it with {' '.join(argv)} ({cost} cold)")
        subprocess.run(argv, check=True)
        if not d.is_dir():
            raise VMError(f"{' '.join(argv)} succeeded but {d} does not exist")
    return d


def disk_image(images: Path, flavour: str, boot: str) -> Path:
    """A flavour's qcow2 in a variant's image dir: intel.qcow2 / amd.qcow2 (bios), amd-sdboot.qcow2 ... (uefi)."""
    base = images / (f"{flavour}.qcow2" if boot == "bios" else f"{flavour}-{boot.removeprefix('uefi-')}.qcow2")
    if not base.is_file():
        raise VMError(f"no {boot} image for flavour {flavour!r}: {base} does not exist")
    return base
