"""Checking that a finding's standalone reproducer reproduces it, in a fresh process.

A finding is only as good as the script pasted into the bug report.  The reproducer is
run as its reader will run it (``python <id>.py``, a new interpreter, the same
implementation and interpreter the campaign used), and the result must match the kind:
exit status 1 for a semantic finding, death by the same signal for a crash, no exit
within the limit for a hang.  A crash whose signal differs, or a hang that finishes,
is recorded as not reproduced, with what happened instead: timing-dependent bugs are
real but a maintainer needs to know the script is not deterministic.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from greenfuzz.harness.execution import lifetime
from greenfuzz.harness.execution.runner import CRASH, HANG
from greenfuzz.harness.target.protocol import signal_name

#: Seconds a reproducer may take beyond the program's time limit to start and finish.
STARTUP_ALLOWANCE = 10.0
#: Most bytes of the reproducer's output kept in the finding.
OUTPUT_LIMIT = 4096
#: The address-space limit of programs (``IsolatedExecutor``'s default), for the
#: reproducer too: an implementation that allocates without bound fails the same way.
DEFAULT_MEMORY_LIMIT = 4 << 30


@dataclass(frozen=True)
class Reproduction:
    reproduced: bool
    how: str
    output: str = ""
    #: It diverged, but otherwise than the finding (another signal, another event, a
    #: crash for a mismatch): another bug met first, as a known crash at exit can be.
    #: Not written out.
    otherwise: bool = False

    def to_json(self) -> Dict[str, object]:
        return {"reproduced": self.reproduced, "how": self.how, "output": self.output}


#: How a full reproducer names where it diverged: ``DIVERGES at event N`` (``render``),
#: ``mismatch at event N`` (programs that end with the exit, ``exit_runtime``).
_DIVERGED_AT = re.compile(r"^(?:DIVERGES|mismatch) at event (\d+)\b", re.MULTILINE)


def run_reproducer(script: Path, *, kind: str, impl: str, python: Optional[str],
                   timeout: float, signum: Optional[int] = None,
                   memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT,
                   index: Optional[int] = None) -> Reproduction:
    """Run ``script`` and say whether it reproduced a finding of ``kind``.

    ``signum`` is the signal the crash died of in the campaign, when it was one.
    ``index`` is the event the campaign saw the first divergence at: a reproducer that
    says it diverged elsewhere found another divergence, not this one (a known bug met
    on the way once confirmed a finding it did not reproduce).
    ``timeout`` is the program's limit: a hang must outlast it (plus start-up time),
    anything else must finish within it.  ``memory_limit`` is the programs' address-space
    limit.  The script runs in a process group of its own, killed as a whole when the
    check ends (however it ends), and dies with greenfuzz.
    """
    env = dict(os.environ, GREENFUZZ_IMPL=os.path.abspath(impl) if impl.endswith(".py")
               else impl, PYTHONFAULTHANDLER="1")
    limit = timeout + STARTUP_ALLOWANCE if kind != HANG else timeout + 2.0
    try:
        done = _run_contained([python or sys.executable, str(script)], env, limit,
                              memory_limit)
    except subprocess.TimeoutExpired as e:
        out = _text(e.stdout) + _text(e.stderr)
        if kind == HANG:
            return Reproduction(True, f"hung: no exit within {limit:g} s", out[-OUTPUT_LIMIT:])
        return Reproduction(False, f"did not finish within {limit:g} s", out[-OUTPUT_LIMIT:])
    except OSError as e:
        return Reproduction(False, f"could not run the reproducer: {e.strerror}")
    out = (done.stdout + done.stderr)[-OUTPUT_LIMIT:]
    code = done.returncode
    if code < 0:
        what = f"killed by {signal_name(-code)}"
        if kind == CRASH:
            same = signum is None or signum == -code
            return Reproduction(same, what if same else
                                f"{what}, not {signal_name(signum or 0)}", out,
                                otherwise=not same)
        return Reproduction(False, what, out, otherwise=True)
    if kind == CRASH:
        # A crash that is an exit status (an abort handler, os._exit) rather than a signal.
        same = code not in (0, 1) and signum is None
        return Reproduction(same, f"exited with status {code}", out,
                            otherwise=not same and code != 0)
    if kind == HANG:
        return Reproduction(False, f"finished (exit status {code}) instead of hanging", out)
    if code == 1 and index is not None:
        said = _DIVERGED_AT.findall(done.stdout)
        if said and int(said[-1]) != index:
            return Reproduction(False, f"exit status 1, but it diverges at event {said[-1]}, "
                                f"not {index}", out, otherwise=True)
    return Reproduction(code == 1, f"exit status {code}" + (
        " (diverges from the model)" if code == 1 else ""), out)


def _run_contained(cmd: list, env: Dict[str, str], limit: float,
                   memory_limit: Optional[int]) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new session whose whole process group is killed when the
    run ends, by its time limit, an interrupt or an error (``subprocess.run`` kills only
    the script, not what it started)."""
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True,
                          preexec_fn=lifetime.child_setup(memory_limit)) as proc:
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(cmd, limit, out, err) from None
        except BaseException:
            _kill_group(proc)
            raise
        _kill_group(proc)  # whatever the script left behind in its group
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""  # type: ignore[return-value]


# -- the plain reproducer (``greenfuzz.harness.reporting.plain``) -----------------------------

#: The implementation a plain reproducer must pass on: greenlet, under the harness's own
#: interpreter (where greenfuzz is installed, so is the greenlet it was checked against).
REFERENCE = "greenlet"
#: What the reference run says when the finding's implementation is that same greenlet:
#: there is no other greenlet to pass on, and failing there is the reproduction (a plain
#: reproducer of one of greenlet's own bugs was called "NOT usable" for failing on it).
SELF_REFERENCE = "not run: the implementation is the reference greenlet itself"


def same_interpreter(a: str, b: str) -> bool:
    """Whether the interpreter paths ``a`` and ``b`` are one environment: the same path,
    or the same file in the same folder (a virtualenv's ``python`` and ``python3``; its
    base interpreter, elsewhere, has other packages)."""
    a, b = os.path.abspath(a), os.path.abspath(b)
    if a == b:
        return True
    with suppress(OSError):
        return os.path.dirname(a) == os.path.dirname(b) and os.path.samefile(a, b)
    return False


def is_reference(impl: str, python: Optional[str], reference: str = REFERENCE,
                 reference_python: Optional[str] = None) -> bool:
    """Whether ``impl`` under ``python`` (None: this interpreter) is the reference
    implementation itself."""
    return impl == reference and same_interpreter(python or sys.executable,
                                                  reference_python or sys.executable)


#: What ``stand_in`` asks an interpreter: its version as findings record it, and the
#: version of the implementation module named in argv[1] (empty when it has none), found
#: as a reproducer finds it (not in the current folder, which ``-c`` puts first).
_VERSIONS = ("import sys; sys.path.pop(0); import importlib, platform; "
             "m = importlib.import_module(sys.argv[1]); "
             "v = getattr(m, '__version__', ''); print(platform.python_implementation(), "
             "platform.python_version()); print(v if isinstance(v, str) else '')")


def stand_in(impl: str, python_version: str, impl_version: str,
             timeout: float = 30.0) -> Optional[str]:
    """This interpreter, when it is the version a finding was made under and has the same
    version of its implementation module: a finding downloaded from another machine names
    an interpreter path that is not here, and its bug is still checkable on the same
    versions.  None when they differ, or the implementation is a file."""
    if impl.endswith(".py") or not python_version or not impl_version:
        return None
    try:
        done = subprocess.run([sys.executable, "-c", _VERSIONS, impl], capture_output=True,
                              text=True, timeout=timeout, start_new_session=True, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return None
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != 2:
        return None
    return sys.executable if (lines[0], lines[1]) == (python_version, impl_version) else None


@dataclass(frozen=True)
class PlainReproduction:
    """The plain reproducer run standalone: on the finding's implementation (it must fail
    as the finding did) and on greenlet (it must pass)."""

    reproduced: bool
    how: str
    output: str = ""
    #: Whether it passes (exit 0) on the reference greenlet, and what happened there.
    reference_ok: bool = False
    reference_how: str = ""
    #: What the file could not say plainly (``Plain.notes``).
    notes: tuple = ()

    @property
    def usable(self) -> bool:
        """Reproduces on the implementation and passes on greenlet (or the implementation
        is that greenlet): the one to report."""
        return self.reproduced and self.reference_ok

    def to_json(self) -> Dict[str, object]:
        return {"reproduced": self.reproduced, "how": self.how, "output": self.output,
                "reference": {"ok": self.reference_ok, "how": self.reference_how},
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: Dict[str, object]) -> PlainReproduction:
        reference = data.get("reference") or {}
        assert isinstance(reference, dict)
        return cls(bool(data.get("reproduced")), str(data.get("how", "")),
                   str(data.get("output", "")), bool(reference.get("ok")),
                   str(reference.get("how", "")), tuple(data.get("notes") or ()))  # type: ignore[arg-type]


def run_on_reference(script: Path, *, timeout: float, impl: str = REFERENCE,
                     python: Optional[str] = None) -> Reproduction:
    """Run a reproducer on the reference implementation: ``reproduced`` here means it
    passed (exit 0), as a correct implementation must."""
    env = dict(os.environ, GREENFUZZ_IMPL=impl, PYTHONFAULTHANDLER="1")
    try:
        done = subprocess.run([python or sys.executable, str(script)], env=env,
                              capture_output=True, text=True, timeout=timeout + STARTUP_ALLOWANCE,
                              start_new_session=True, check=False)
    except subprocess.TimeoutExpired:
        return Reproduction(False, f"no exit within {timeout + STARTUP_ALLOWANCE:g} s")
    except OSError as e:
        return Reproduction(False, f"could not run it: {e.strerror}")
    out = (done.stdout + done.stderr)[-OUTPUT_LIMIT:]
    if done.returncode < 0:
        return Reproduction(False, f"killed by {signal_name(-done.returncode)}", out)
    return Reproduction(done.returncode == 0, f"exit status {done.returncode}", out)


def verify_plain(script: Path, *, kind: str, impl: str, python: Optional[str],
                 timeout: float, signum: Optional[int] = None,
                 notes: tuple = ()) -> PlainReproduction:
    """Run the plain reproducer as the full one is run (``run_reproducer``), then on greenlet."""
    found = run_reproducer(script, kind=kind, impl=impl, python=python, timeout=timeout,
                           signum=signum)
    if is_reference(impl, python):
        return PlainReproduction(found.reproduced, found.how, found.output, True,
                                 SELF_REFERENCE, tuple(notes))
    reference = run_on_reference(script, timeout=timeout)
    said = reference.output.strip().splitlines()
    how = reference.how + (f": {said[-1]}" if said and not reference.reproduced else "")
    return PlainReproduction(found.reproduced, found.how, found.output, reference.reproduced,
                             how, tuple(notes))
