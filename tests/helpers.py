"""What several test modules build programs with."""

from __future__ import annotations

from typing import List

from greenfuzz.harness.program.ir import Op, Program


def prog(main: List[Op], **greenlets: List[Op]) -> Program:
    """A validated program: ``main``'s ops and each greenlet's, by name."""
    program = Program(main=tuple(main),
                      greenlets=tuple((name, tuple(ops)) for name, ops in greenlets.items()))
    program.validate()
    return program
