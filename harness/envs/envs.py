"""Interpreters with a chosen greenlet release: cached virtual environments.

``greenfuzz env --greenlet 3.0.3 --python python3.12`` and ``fuzz --greenlet`` need an
interpreter that imports exactly that release.  One virtual environment per
(interpreter, release) is made once under the user cache folder and reused; it is made
under a lock and marked complete last, so parallel test workers and campaigns never
use half an environment.  Only wheels are accepted: building an old
greenlet from source needs a compiler and headers the target may not have, and the
question the user asked ("does release X work on this Python") is about the release as
users install it.  The venv is made without pip and the harness's own pip installs into
it (``pip --python``), so a target interpreter without ``ensurepip`` (Debian's) still works.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: Seconds allowed for asking an interpreter what it is.
PROBE_TIMEOUT = 30.0
#: Seconds allowed for creating a venv and installing one wheel into it.
INSTALL_TIMEOUT = 300.0
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?$")


class EnvError(Exception):
    """An environment cannot be made or used; the message says why, in one line."""


@dataclass(frozen=True)
class Interpreter:
    """What an interpreter says it is (asked by running it, never guessed from its name)."""

    path: str
    implementation: str  # "cpython", "pypy"
    version: str  # "3.12"
    machine: str  # "x86_64"

    @property
    def tag(self) -> str:
        return f"{self.implementation}-{self.version}-{self.machine}"

    def describe(self) -> str:
        name = {"cpython": "CPython", "pypy": "PyPy"}.get(self.implementation,
                                                          self.implementation)
        return f"{name} {self.version} ({self.machine})"


def cache_root() -> Path:
    """``$GREENFUZZ_CACHE``, else ``$XDG_CACHE_HOME/greenfuzz``, else ``~/.cache/greenfuzz``."""
    explicit = os.environ.get("GREENFUZZ_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "greenfuzz"


def find_interpreter(python: Optional[str]) -> str:
    """An absolute path for ``python`` (a path or a name on PATH); this one for None."""
    if python is None:
        return sys.executable
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.path.exists(found):
        raise EnvError(f"python interpreter not found: {python}")
    if not os.access(found, os.X_OK):
        raise EnvError(f"interpreter is not executable: {python}")
    return os.path.abspath(found)


_PROBE = ("import json, platform, sys; print(json.dumps([sys.implementation.name, "
          "'%d.%d' % sys.version_info[:2], platform.machine()]))")


def probe(python: Optional[str]) -> Interpreter:
    path = find_interpreter(python)
    try:
        done = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise EnvError(f"interpreter {path} did not answer within {PROBE_TIMEOUT:g} s") from None
    except OSError as e:
        raise EnvError(f"cannot run interpreter {path}: {e.strerror}") from None
    try:
        impl, version, machine = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvError(f"{path} is not a working Python interpreter: {last}") from None
    return Interpreter(path, impl, version, machine)


def env_dir(interpreter: Interpreter, label: str) -> Path:
    # The hash tells apart two interpreters of the same version (pyenv's and Debian's).
    digest = hashlib.sha256(os.path.realpath(interpreter.path).encode()).hexdigest()[:8]
    return cache_root() / "envs" / f"{interpreter.tag}-{digest}-{label}"


def _env_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def greenlet_python(version: str, python: Optional[str] = None) -> str:
    """The interpreter of a cached venv of ``python`` with greenlet ``version``, made once."""
    if not VERSION.match(version):
        raise EnvError(f"not a greenlet release number: {version!r} (for example 3.0.3)")
    return packages_python(f"greenlet-{version}", [f"greenlet=={version}"], python,
                           describe=f"greenlet {version}", info={"greenlet": version})


def made_python(label: str, python: Optional[str] = None) -> Optional[str]:
    """The interpreter of the environment ``label`` if it was made already, else None."""
    directory = env_dir(probe(python), label)
    return str(_env_python(directory)) if (directory / "greenfuzz-env.json").exists() else None


def packages_python(label: str, requirements: Sequence[str], python: Optional[str] = None,
                    *, describe: str, info: Optional[Dict[str, str]] = None,
                    no_deps: bool = False) -> str:
    """The interpreter of a cached venv of ``python`` with exactly ``requirements``
    (wheels only; ``no_deps`` when the list is complete and overrides their pins)."""
    interpreter = probe(python)
    directory = env_dir(interpreter, label)
    if (directory / "greenfuzz-env.json").exists():
        return str(_env_python(directory))
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be making the same one
        if not (directory / "greenfuzz-env.json").exists():
            _make(interpreter, directory, list(requirements), describe, no_deps,
                  {"label": label, **(info or {})})
    return str(_env_python(directory))


def _make(interpreter: Interpreter, directory: Path, requirements: List[str], describe: str,
          no_deps: bool, info: Dict[str, str]) -> None:
    # Made in place (a venv's scripts hold its path); the marker file, written last,
    # says it is complete, so a half-made one from a killed run is made again.
    if directory.exists():
        shutil.rmtree(directory)
    _run([interpreter.path, "-m", "venv", "--without-pip", str(directory)],
         f"cannot make a virtual environment with {interpreter.path}")
    command = [sys.executable, "-m", "pip", "--python", str(_env_python(directory)),
               "install", "--quiet", "--disable-pip-version-check", "--no-input",
               "--only-binary=:all:", *(["--no-deps"] if no_deps else []), *requirements]
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        shutil.rmtree(directory, ignore_errors=True)
        raise EnvError(f"installing {describe} took more than {INSTALL_TIMEOUT:g} s "
                       "(is the package index reachable?)") from None
    if result.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise EnvError(_pip_failure(result.stdout + result.stderr, interpreter, describe))
    (directory / "greenfuzz-env.json").write_text(json.dumps(
        {"interpreter": interpreter.path, "tag": interpreter.tag, **info}))


def _run(command: List[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvError(f"{what}: {e}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvError(f"{what}: {last}")


def _pip_failure(output: str, interpreter: Interpreter, describe: str) -> str:
    if "No matching distribution" in output or "Could not find a version" in output:
        return (f"{describe} has no wheel for {interpreter.describe()} on the "
                "package index (or no such release)")
    lines = [line for line in output.strip().splitlines()
             if line.strip() and not line.startswith("WARNING")]
    return f"installing {describe} failed: {lines[-1] if lines else 'pip said nothing'}"


def cached() -> List[Dict[str, str]]:
    """Every environment made so far, for ``greenfuzz env`` with no arguments."""
    found = []
    for marker in sorted((cache_root() / "envs").glob("*/greenfuzz-env.json")):
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        info["python"] = str(_env_python(marker.parent))
        found.append(info)
    return found
