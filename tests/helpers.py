"""What several test modules build and check programs with."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any, List, Mapping, Optional, Tuple

from greenfuzz.harness import model
from greenfuzz.harness.execution import at_exit, implementations, runner
from greenfuzz.harness.judging import checks, differences
from greenfuzz.harness.program.ir import Op, Program

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


def agreed(program: Program) -> List[Tuple]:
    """The model's trace, after checking with the harness's own comparison
    (``checks.compare``) that greenlet produces the same, or differs only where its
    bundled data documents one of its bugs (the concurrent family's self-switch)."""
    expected = model.predict(program)
    if at_exit.at_exit(program):  # ends with the interpreter's exit: a process of its own
        observation = at_exit.run(program, "greenlet")
    else:
        observation = runner.run_inprocess(program, GREENLET)
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
