"""Executing programs on an implementation and observing what happens.

``run_inprocess`` execs the rendered program in this process: fast, for trusted
implementations (a segfault here ends the harness).  ``greenfuzz.harness.execution.executor``
produces the
same ``Observation`` from an isolated worker, where a crash or hang is reported instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from greenfuzz.harness.execution import render
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import codec, loader, runtime
from greenfuzz.harness.target.protocol import Outcome

Event = Tuple[str, int, str, object]

#: How a run ended (``Outcome``, shared with the worker), by its members' short names.
COMPLETED, CRASH, HANG = Outcome.COMPLETED, Outcome.CRASH, Outcome.HANG


@dataclass(frozen=True)
class Observation:
    """What running a program did: its trace, and how the run ended."""

    trace: List[Event]
    outcome: Outcome = COMPLETED
    detail: str = ""
    seconds: float = 0.0
    extra: Dict[str, object] = field(default_factory=dict)

    def to_json(self) -> Dict[str, object]:
        return {
            "trace": codec.encode_trace(self.trace),
            "outcome": self.outcome,
            "detail": self.detail,
            "seconds": round(self.seconds, 6),
        }


def compile_program(program: Program):
    """The ``program(gl, T)`` function for a program (compiled once per source text:
    Hypothesis replays the same program several times while shrinking)."""
    return runtime.define_program(loader.compiled(render.program_source(program)))


def run_inprocess(program: Program, impl: Implementation) -> Observation:
    """Run in this process; anything the implementation raises past the program is
    recorded as an ``escaped`` event rather than propagated."""
    fn = compile_program(program)
    start = time.perf_counter()
    trace = runtime.execute(fn, impl.module)
    return Observation(trace=trace, seconds=time.perf_counter() - start)
