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
from greenfuzz.harness.target import runtime

Event = Tuple[str, int, str, object]

COMPLETED, CRASH, HANG = "completed", "crash", "hang"


@dataclass(frozen=True)
class Observation:
    """What running a program did: its trace, and how the run ended."""

    trace: List[Event]
    outcome: str = COMPLETED
    detail: str = ""
    seconds: float = 0.0
    extra: Dict[str, object] = field(default_factory=dict)

    def to_json(self) -> Dict[str, object]:
        return {
            "trace": runtime.encode_trace(self.trace),
            "outcome": self.outcome,
            "detail": self.detail,
            "seconds": round(self.seconds, 6),
        }


_NAMESPACE = {"FuzzError": runtime.FuzzError, "Unbound": runtime.Unbound}
_CODE_CACHE: Dict[str, object] = {}


def compile_program(program: Program):
    """The ``program(gl, T)`` function for a program (compiled once per source text:
    Hypothesis replays the same program several times while shrinking)."""
    source = render.program_source(program)
    code = _CODE_CACHE.get(source)
    if code is None:
        if len(_CODE_CACHE) > 256:
            _CODE_CACHE.clear()
        code = compile(source, "<greenfuzz program>", "exec")
        _CODE_CACHE[source] = code
    namespace = dict(_NAMESPACE)
    exec(code, namespace)
    return namespace["program"]


def run_inprocess(program: Program, impl: Implementation) -> Observation:
    """Run in this process; anything the implementation raises past the program is
    recorded as an ``escaped`` event rather than propagated."""
    fn = compile_program(program)
    start = time.perf_counter()
    trace = runtime.execute(fn, impl.module)
    return Observation(trace=trace, seconds=time.perf_counter() - start)
