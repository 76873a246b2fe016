"""Explaining liveness findings: what still holds a greenlet the model says is gone.

The liveness check itself is part of every run (``Tracer.check_alive`` records an
``alive`` event after each drop and at the end; the model predicts it; ``checks``
calls a divergence there a ``leak``).  Naming the holders needs ``gc.get_referrers``,
which scans every object the collector tracks, so it is done only once a leak has been
found and shrunk: the program is run once more with ``T.explain`` set, in the same
place (worker or this process) and on the same implementation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence

from greenfuzz.harness.execution import render, runner
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import runtime

_HEADER = "def program(gl, T):\n"


def explain_source(program: Program) -> str:
    """The program's source with ``T.explain`` switched on before anything runs."""
    source = render.program_source(program)
    assert source.startswith(_HEADER), source[:40]
    return _HEADER + "    T.explain = True\n" + source[len(_HEADER):]


def holders(program: Program, ordinal: int, impl: Implementation,
            executor: Optional[IsolatedExecutor], timeout: float) -> Dict[str, List[str]]:
    """What holds each greenlet alive at the ``ordinal``-th ``alive`` event, as the
    implementation's own objects say (empty when the explaining run fails)."""
    if executor is not None:
        observation = executor.run_source(explain_source(program), timeout, fresh=True)
        if observation.outcome != runner.COMPLETED:
            return {}
        trace = observation.trace
    else:
        trace = runtime.execute(runner.compile_program(program), impl.module, explain=True)
    return runtime.alive_holders(trace, ordinal)


def explain(program: Program, verdict: checks.Verdict, expected: Sequence[runner.Event],
            observed: Sequence[runner.Event], impl: Implementation,
            executor: Optional[IsolatedExecutor], timeout: float) -> checks.Verdict:
    """A ``leak`` verdict with one line per greenlet kept alive saying what holds it."""
    at = verdict.index
    if verdict.kind != checks.LEAK or at is None or at >= min(len(observed), len(expected)):
        return verdict
    alive = observed[at][3]
    if not isinstance(alive, (tuple, list)):
        return verdict
    kept = sorted(set(alive) - set(expected[at][3] or ()))
    ordinal = sum(1 for e in observed[:at] if e[2] == "alive")
    found = holders(program, ordinal, impl, executor, timeout) if kept else {}
    lines = [f"  {name} is held by: " + "; ".join(found.get(name) or ["nothing gc can see"])
             for name in kept]
    if not lines:
        return verdict
    return replace(verdict, summary=verdict.summary + "\n" + "\n".join(lines))
