"""Foreign CPUs under qemu user-mode emulation: cached Debian root filesystems.

greenlet's stack switch is assembly per CPU, and ports break there.  ``greenfuzz env
--arch arm64`` builds (once) a minimal Debian bookworm root filesystem for that CPU with
mmdebstrap, from the mirror the host's apt already uses, with Debian's python3 and
python3-greenlet; ``--greenlet VERSION`` adds that release's manylinux wheel, installed
from the host with ``pip --target`` (no pip runs emulated).  Each (CPU, release) gets a
small launcher script that runs the target's python3 under ``qemu-<cpu>-static -L
ROOTFS`` with a clean environment: host paths stay visible through qemu's ``-L`` prefix
lookup, so the worker, the runtime and ``.py`` implementations are used from the host
as they are, and the launcher is simply the ``--python`` of everything else (executor,
reproducers, replay).  Nothing of the host's apt configuration or architectures changes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

from greenfuzz.harness.envs import envs

SUITE = "bookworm"  # its python3 is 3.11, like the host's Debian
PACKAGES = ("python3", "python3-greenlet", "python3-psutil")
BUILD_TIMEOUT = 1800.0
#: Free space a root filesystem needs while it is built (they end at 260-300 MB).
NEEDED_BYTES = 1 << 30
#: Emulated programs run this many times slower (switches: 125k-240k/s against 3M/s
#: native, interpreter start 0.3-0.6 s): time limits are scaled by it.
SLOWDOWN = 15.0


@dataclass(frozen=True)
class Cpu:
    debian: str  # Debian's name for it: the --arch value
    qemu: str  # qemu-<qemu>-static
    wheel: str  # the machine part of manylinux wheel tags
    machine: str  # what platform.machine() says there


CPUS = {c.debian: c for c in (
    Cpu("arm64", "aarch64", "aarch64", "aarch64"),
    Cpu("ppc64el", "ppc64le", "ppc64le", "ppc64le"),
    Cpu("s390x", "s390x", "s390x", "s390x"),
    Cpu("i386", "i386", "i686", "i686"),
)}


class ArchError(Exception):
    """A target cannot be prepared or used; the message says exactly why, in one line."""


def cpu(name: str) -> Cpu:
    if name not in CPUS:
        raise ArchError(f"unknown --arch {name!r}; choose from {', '.join(CPUS)}")
    return CPUS[name]


def root() -> Path:
    return envs.cache_root() / "arch"


def rootfs(target: Cpu) -> Path:
    return root() / f"{target.debian}-{SUITE}"


def missing(target: Cpu, building: bool) -> List[str]:
    """What this machine lacks to build (``building``) or run a target, each with the fix."""
    problems = []
    qemu = f"qemu-{target.qemu}-static"
    if shutil.which(qemu) is None:
        problems.append(f"{qemu} (apt install qemu-user-static)")
    if building:
        if os.geteuid() != 0:
            problems.append("root (mmdebstrap runs the target's package scripts in a chroot)")
        if shutil.which("mmdebstrap") is None:
            problems.append("mmdebstrap (apt install mmdebstrap)")
        binfmt = Path("/proc/sys/fs/binfmt_misc")
        if not (binfmt / "status").exists():
            problems.append("binfmt_misc mounted (mount -t binfmt_misc binfmt_misc "
                            "/proc/sys/fs/binfmt_misc)")
        elif not (binfmt / f"qemu-{target.qemu}").exists() and not _native(target):
            problems.append(f"binfmt support for qemu-{target.qemu} (apt install "
                            "binfmt-support qemu-user-static; update-binfmts --enable)")
        root().mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root()).free
        if free < NEEDED_BYTES:
            problems.append(f"disk space: {free >> 20} MiB free in {root()}, "
                            f"{NEEDED_BYTES >> 20} MiB needed")
    return problems


def _native(target: Cpu) -> bool:
    """An x86_64 kernel runs i386 binaries itself: mmdebstrap needs no binfmt for it."""
    return target.debian == "i386" and os.uname().machine == "x86_64"


def mirror() -> str:
    """The Debian mirror the host's apt uses (read, never changed)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if path.suffix in (".list", ".sources", "") and path.is_file():
            try:
                texts.append(path.read_text())
            except OSError:
                continue
    for text in texts:
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1)
            if "debian" in uri and "security" not in uri:
                return uri
    return "http://deb.debian.org/debian"


def prepare(name: str, greenlet: Optional[str] = None) -> str:
    """Build what the target needs (once) and return its launcher: a ``--python``."""
    target = cpu(name)
    directory = rootfs(target)
    if not (directory / ".greenfuzz-complete").exists():
        problems = missing(target, building=True)
        if problems:
            raise ArchError(f"cannot build the {name} root filesystem; missing: "
                            + "; ".join(problems))
        with _lock(directory):
            if not (directory / ".greenfuzz-complete").exists():
                _build(target, directory)
    else:
        problems = missing(target, building=False)
        if problems:
            raise ArchError(f"cannot run {name} programs; missing: " + "; ".join(problems))
    site = None
    if greenlet is not None:
        if not envs.VERSION.match(greenlet):
            raise ArchError(f"not a greenlet release number: {greenlet!r}")
        site = directory / "opt" / f"greenlet-{greenlet}"
        if not (site / ".greenfuzz-complete").exists():
            with _lock(site):
                if not (site / ".greenfuzz-complete").exists():
                    _install_wheel(target, greenlet, site)
    return str(_launcher(target, directory, site))


@contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """Another process may be building the same thing: one at a time."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(command: List[str], what: str, timeout: float = BUILD_TIMEOUT) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ArchError(f"{what} took more than {timeout:g} s") from None
    except OSError as e:
        raise ArchError(f"{what}: {e.strerror}") from None
    if done.returncode != 0:
        lines = [x for x in (done.stderr + done.stdout).splitlines() if x.strip()]
        raise ArchError(f"{what} failed: {lines[-1] if lines else 'no output'}")


def _build(target: Cpu, directory: Path) -> None:
    if directory.exists():  # a half-built one from an interrupted run
        shutil.rmtree(directory)
    _run(["mmdebstrap", f"--arch={target.debian}", "--variant=minbase",
          f"--include={','.join(PACKAGES)}", SUITE, str(directory), mirror()],
         f"mmdebstrap of {target.debian}")
    # qemu -L resolves the loader inside the root filesystem: an absolute symlink
    # (ppc64el's usr/lib64/ld64.so.2) would point back at the host.
    for link in directory.glob("usr/lib*/ld*.so*"):
        if link.is_symlink() and os.readlink(link).startswith("/"):
            relative = os.path.relpath(directory / os.readlink(link).lstrip("/"), link.parent)
            link.unlink()
            link.symlink_to(relative)
    (directory / ".greenfuzz-complete").write_text(json.dumps(
        {"arch": target.debian, "suite": SUITE, "mirror": mirror()}))


def _install_wheel(target: Cpu, version: str, site: Path) -> None:
    if site.exists():
        shutil.rmtree(site)
    platforms = [f"manylinux_2_28_{target.wheel}", f"manylinux2014_{target.wheel}",
                 f"manylinux_2_17_{target.wheel}"]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--only-binary=:all:", "--python-version",
               "3.11", "--implementation", "cp", "--abi", "cp311",
               *[x for p in platforms for x in ("--platform", p)],
               "--target", str(site), f"greenlet=={version}"]
    try:
        _run(command, f"installing greenlet {version} for {target.debian}", timeout=600)
    except ArchError as e:
        if "No matching distribution" in str(e) or "Could not find a version" in str(e):
            raise ArchError(f"greenlet {version} has no cp311 wheel for {target.debian} "
                            f"({target.wheel}) on the package index") from None
        raise
    (site / ".greenfuzz-complete").write_text(version)


def _launcher(target: Cpu, directory: Path, site: Optional[Path]) -> Path:
    name = f"python-{target.debian}" + (f"-{site.name}" if site else "")
    path = root() / name
    pythonpath = f" PYTHONPATH={site}" if site else ""
    text = (
        "#!/bin/sh\n"
        f"# greenfuzz: python3 of the {target.debian} root filesystem under qemu.\n"
        # A clean environment: the host's PYTHON*/PIP_*/SSL_* variables name host paths.
        f"exec env -i PATH=/usr/bin:/bin LANG=C.UTF-8 QEMU_LD_PREFIX={directory}"
        f"{pythonpath}"  # and the two variables greenfuzz passes to reproducers:
        ' ${GREENFUZZ_IMPL:+"GREENFUZZ_IMPL=$GREENFUZZ_IMPL"}'
        ' ${PYTHONFAULTHANDLER:+"PYTHONFAULTHANDLER=$PYTHONFAULTHANDLER"}'
        f" qemu-{target.qemu}-static -L {directory} {directory}/usr/bin/python3 \"$@\"\n"
    )
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path


def prepared() -> List[str]:
    """The targets built so far, for ``greenfuzz env``."""
    return sorted(p.parent.name for p in root().glob(f"*-{SUITE}/.greenfuzz-complete"))
