"""What several test modules build and check programs with."""

from __future__ import annotations

from typing import List, Tuple

from greenfuzz.harness import model
from greenfuzz.harness.execution import at_exit, implementations, runner
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import Op, Program

#: The installed greenlet, loaded once for the tests that run programs in process.
GREENLET = implementations.load("greenlet")


def prog(main: List[Op], **greenlets: List[Op]) -> Program:
    """A validated program: ``main``'s ops and each greenlet's, by name."""
    program = Program(main=tuple(main),
                      greenlets=tuple((name, tuple(ops)) for name, ops in greenlets.items()))
    program.validate()
    return program


def agreed(program: Program) -> List[Tuple]:
    """The model's trace, after checking with the harness's own comparison
    (``checks.compare``) that greenlet produces the same."""
    expected = model.predict(program)
    if at_exit.at_exit(program):  # ends with the interpreter's exit: a process of its own
        observation = at_exit.run(program, "greenlet")
    else:
        observation = runner.run_inprocess(program, GREENLET)
    verdict = checks.compare(program, expected, observation)
    assert verdict.ok, verdict.summary
    return expected
