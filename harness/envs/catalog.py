"""The implementations greenfuzz knows how to find, install and run, by short name.

``greenfuzz impls`` lists them with what is available on this machine; ``greenfuzz
matrix`` and ``greenfuzz diff --known NAME`` run them.  A name resolves to a ``Target``:
the module to import, the interpreter to run it under (None: greenfuzz's own) and the
profile of its documented differences.  Resolving may make a cached environment
(``greenfuzz.harness.envs.envs``); it never installs system packages: what needs one says which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from greenfuzz.harness.envs import arch, envs

THREADED = str(Path(__file__).with_name("threaded_greenlet.py"))
#: tealet-greenlet pins tealet 0.1.0rc2; the newest tealet works with it and is used.
TEALET_REQUIREMENTS = ("tealet-greenlet==0.1.0rc1", "tealet==0.1.0rc4")
#: Older greenlet releases in the default matrix (both have wheels for CPython 3.11).
OLD_RELEASES = ("2.0.2", "3.0.3")
DEBIAN_PYTHON = "/usr/bin/python3"
TEALET_LABEL = "tealet-greenlet-0.1.0rc1-tealet-0.1.0rc4"


class Unavailable(Exception):
    """A known implementation that this machine cannot run; the message says what is missing."""


@dataclass(frozen=True)
class Target:
    """One implementation as the harness runs it."""

    name: str
    impl: str
    python: Optional[str] = None
    profile: Optional[str] = None
    #: How much slower programs run there (emulated CPUs): time limits are scaled by it.
    slowdown: float = 1.0


@dataclass(frozen=True)
class Known:
    name: str
    description: str
    options: str  # the equivalent command-line options
    resolve: Callable[[], Target]
    #: For targets that live in a cached environment: its interpreter if made already.
    made: Optional[Callable[[], Optional[str]]] = None


def _installed() -> Target:
    try:
        import greenlet  # noqa: F401
    except ImportError:
        raise Unavailable("greenlet is not installed in greenfuzz's interpreter") from None
    return Target("greenlet", "greenlet")


def _release(version: str) -> Callable[[], Target]:
    def resolve() -> Target:
        try:
            return Target(f"greenlet-{version}", "greenlet", envs.greenlet_python(version))
        except envs.EnvError as e:
            raise Unavailable(str(e)) from None
    return resolve


def _made(label: str) -> Callable[[], Optional[str]]:
    return lambda: envs.made_python(label)


def _imports(python: str, module: str) -> bool:
    try:
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                              timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pypy() -> Target:
    python = shutil.which("pypy3")
    if python is None:
        raise Unavailable("pypy3 is not installed (Debian: apt install pypy3)")
    if not _imports(python, "greenlet"):
        raise Unavailable(f"{python} cannot import greenlet")
    return Target("pypy", "greenlet", python, "pypy")


def _tealet() -> Target:
    try:
        python = envs.packages_python(
            TEALET_LABEL, TEALET_REQUIREMENTS,
            describe="tealet-greenlet 0.1.0rc1 with tealet 0.1.0rc4", no_deps=True,
            info={"tealet-greenlet": "0.1.0rc1", "tealet": "0.1.0rc4"})
    except envs.EnvError as e:
        raise Unavailable(str(e)) from None
    return Target("tealet", "tealet_greenlet", python, "tealet")


def _debian() -> Target:
    if not os.path.exists(DEBIAN_PYTHON) or not _imports(DEBIAN_PYTHON, "greenlet"):
        raise Unavailable(f"{DEBIAN_PYTHON} cannot import greenlet "
                          "(Debian: apt install python3-greenlet)")
    return Target("debian", "greenlet", DEBIAN_PYTHON)


def _threaded() -> Target:
    return Target("threaded", THREADED)


KNOWN: Tuple[Known, ...] = (
    Known("greenlet", "the greenlet installed with greenfuzz", "--impl greenlet", _installed),
    *(Known(f"greenlet-{v}", f"greenlet {v} from the package index, in a cached venv",
            f"--greenlet {v}", _release(v), _made(f"greenlet-{v}")) for v in OLD_RELEASES),
    Known("pypy", "PyPy's own greenlet (lib_pypy/greenlet.py on continulets)",
          "--python pypy3", _pypy),
    Known("tealet", "tealet-greenlet (greenlet API on the tealet engine), cached venv",
          "--python <venv> --impl tealet_greenlet", _tealet, _made(TEALET_LABEL)),
    Known("debian", "Debian's python3-greenlet for the system Python",
          f"--python {DEBIAN_PYTHON}", _debian),
    Known("threaded", "greenfuzz's thread-based reference implementation",
          "--impl harness/envs/threaded_greenlet.py", _threaded),
)


def names() -> List[str]:
    return [k.name for k in KNOWN]


def resolve(name: str) -> Target:
    """The target for a known name, ``greenlet-X.Y.Z`` for any release, either with
    ``@CPU`` for an emulated CPU (``greenlet@arm64``: Debian's greenlet there), or a
    ``.py`` implementation file (run by greenfuzz's interpreter); raises
    ``Unavailable`` (what is missing) or ``KeyError`` (no such name)."""
    if "@" in name:  # greenlet@arm64, greenlet-3.5.6@s390x: on an emulated CPU
        base, _, cpu = name.partition("@")
        version = base[len("greenlet-"):] if base.startswith("greenlet-") else None
        if base != "greenlet" and version is None:
            raise KeyError(name)
        try:
            python = arch.prepare(cpu, version)
        except arch.ArchError as e:
            raise Unavailable(str(e)) from None
        return Target(name, "greenlet", python, None, arch.SLOWDOWN)
    for known in KNOWN:
        if known.name == name:
            return known.resolve()
    if name.startswith("greenlet-"):
        return _release(name[len("greenlet-"):])()
    if name.endswith(".py"):
        if not os.path.exists(name):
            raise Unavailable(f"implementation file not found: {name}")
        return Target(Path(name).stem, name)
    raise KeyError(name)


def survey() -> List[Tuple[Known, str]]:
    """Every known implementation and whether it runs here, without making anything: an
    environment not made yet is "made on first use"."""
    rows = []
    for known in KNOWN:
        if known.made is not None:
            made = known.made()
            rows.append((known, "yes (cached venv)" if made else
                         "made on first use (from the package index)"))
            continue
        try:
            target = known.resolve()
            rows.append((known, f"yes ({target.python})" if target.python else "yes"))
        except Unavailable as e:
            rows.append((known, f"no: {e}"))
    return rows
