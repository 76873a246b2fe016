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
import signal
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from greenfuzz.harness.execution import lifetime
from greenfuzz.harness.execution.runner import CRASH, HANG

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

    def to_json(self) -> Dict[str, object]:
        return {"reproduced": self.reproduced, "how": self.how, "output": self.output}


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def run_reproducer(script: Path, *, kind: str, impl: str, python: Optional[str],
                   timeout: float, signum: Optional[int] = None,
                   memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT) -> Reproduction:
    """Run ``script`` and say whether it reproduced a finding of ``kind``.

    ``signum`` is the signal the crash died of in the campaign, when it was one.
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
        what = f"killed by {_signal_name(-code)}"
        if kind == CRASH:
            same = signum is None or signum == -code
            return Reproduction(same, what if same else
                                f"{what}, not {_signal_name(signum or 0)}", out)
        return Reproduction(False, what, out)
    if kind == CRASH:
        # A crash that is an exit status (an abort handler, os._exit) rather than a signal.
        return Reproduction(code not in (0, 1) and signum is None,
                            f"exited with status {code}", out)
    if kind == HANG:
        return Reproduction(False, f"finished (exit status {code}) instead of hanging", out)
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
