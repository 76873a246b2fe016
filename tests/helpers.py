"""What several test modules build and check programs with."""

from __future__ import annotations

import atexit
import os
import platform
import subprocess
import sys
from typing import Any, List, Mapping, Optional, Tuple

from greenfuzz.harness import model
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import checks, differences
from greenfuzz.harness.program.ir import Op, Program
from greenfuzz.harness.search.campaign import DEFAULT_PROGRAMS_PER_CHILD

#: The installed greenlet, loaded once for the tests that run programs in process.
GREENLET = implementations.load("greenlet")


def prog(main: List[Op], **greenlets: List[Op]) -> Program:
    """A validated program: ``main``'s ops and each greenlet's, by name."""
    program = Program(main=tuple(main),
                      greenlets=tuple((name, tuple(ops)) for name, ops in greenlets.items()))
    program.validate()
    return program


#: greenlet's own bugs, as its bundled data documents them (``judging/documented/``).
KNOWN_BUGS = differences.for_greenlet(GREENLET.version, platform.python_version())


_EXECUTOR: Optional[IsolatedExecutor] = None


def executor() -> IsolatedExecutor:
    """This test process's isolated executor on the installed greenlet, started at first
    use: a program that crashes greenlet is an observation, where in process it killed
    the pytest-xdist worker (the gc family's segfault on CPython 3.11, in a full run)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = IsolatedExecutor("greenlet", timeout=30.0,
                                     programs_per_child=DEFAULT_PROGRAMS_PER_CHILD)
        _EXECUTOR.start()
        atexit.register(_EXECUTOR.close)
    return _EXECUTOR


def agreed(program: Program) -> List[Tuple]:
    """The model's trace, after checking with the harness's own comparison
    (``checks.compare``) that greenlet produces the same, or differs only where its
    bundled data documents one of its bugs (the concurrent family's self-switch, the
    gc family's segfault on CPython 3.11).  Programs run as a campaign runs them: in a
    worker's child, again in a fresh one if they fail after others there, and those that
    end with the interpreter's exit in a process of their own."""
    expected = model.predict(program)
    observation = executor().run(program)
    verdict = checks.compare(program, expected, observation)
    if not verdict.ok and observation.extra.get("programs_before"):
        observation = executor().run(program, fresh=True)
        verdict = checks.compare(program, expected, observation)
    if not verdict.ok and KNOWN_BUGS is not None:
        known = KNOWN_BUGS.known(program, verdict.kind, expected, observation.trace,
                                 verdict.index, f"{verdict.summary}\n{observation.detail}")
        assert known is not None, verdict.summary
        return expected
    assert verdict.ok, verdict.summary
    return expected


def run_cli(*args: str, timeout: float = 300, env: Optional[Mapping[str, str]] = None,
            **popen: Any) -> subprocess.CompletedProcess:
    """``python -m greenfuzz ARGS`` in a fresh process, output captured, with a time limit
    (``env``: variables set on top of this process's environment)."""
    return subprocess.run([sys.executable, "-m", "greenfuzz", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})),
                          **popen)
