"""The verdict on a program that ended with the interpreter's exit (family
``shutdown``): the oracle is ``target/exit_runtime.judge``, the same function the
reproducer's judging parent runs."""

from __future__ import annotations

from typing import Sequence

from greenfuzz.harness.execution.runner import HANG, Event, Observation
from greenfuzz.harness.families.shutdown import expected_status
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import exit_runtime, runtime


def verdict(program: Program, expected: Sequence[Event], observed: Observation,
            verdict_type: type) -> object:
    """A ``checks.Verdict`` (``verdict_type``) for a run at exit."""
    if observed.outcome == HANG:
        return verdict_type(HANG, f"hang at exit: {observed.detail.splitlines()[0]}",
                            signature="hang:exit")
    status = observed.extra.get("status")
    signum = observed.extra.get("signum")
    found = exit_runtime.judge(list(expected), list(observed.trace),
                               status if isinstance(status, int) and status >= 0 else None,
                               signum if isinstance(signum, int) else None,
                               str(observed.extra.get("output", "")),
                               expected_status(program, expected), runtime.first_divergence)
    if found is None:
        return verdict_type("ok")
    kind, summary, index, signature = found
    return verdict_type(kind, summary, index, signature)
