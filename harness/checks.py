"""Comparing an observation with the model's prediction: a verdict.

A verdict is ``ok`` or a finding of one kind:

* ``mismatch``: the trace differs from the model (a value, an exception, an order);
* ``crash``: the child died (signal or exit status);
* ``hang``: the child gave no result within the time limit.

The first divergence is given as expected vs observed with the op that caused it, so a
report reads like a failing assertion, not like a trace dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from harness import runtime
from harness.ir import MAIN, Program
from harness.render import op_comment
from harness.runner import COMPLETED, CRASH, HANG, Event, Observation

OK, MISMATCH = "ok", "mismatch"
KINDS = (MISMATCH, CRASH, HANG)


@dataclass(frozen=True)
class Verdict:
    """The result of checking one program on one implementation."""

    kind: str
    summary: str = ""
    index: Optional[int] = None  # first divergent event
    #: What makes two findings 'the same bug', for de-duplication while fuzzing.
    signature: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == OK


def describe_event(program: Program, event: Optional[Event]) -> str:
    if event is None:
        return "end of trace"
    who, pc, kind, payload = event
    where = who
    try:
        script = program.script(who)
        if 0 <= pc < len(script):
            where = f"{who} op {pc} ({op_comment(script[pc])})"
    except KeyError:
        pass
    return f"{where}: {kind} {payload!r}"


def compare(program: Program, expected: Sequence[Event], observed: Observation) -> Verdict:
    if observed.outcome == HANG:
        return Verdict(HANG, f"hang: {observed.detail}", signature=HANG)
    if observed.outcome == CRASH:
        first = observed.detail.splitlines()[0] if observed.detail else "crashed"
        return Verdict(CRASH, f"crash: {first}", signature=f"{CRASH}:{first}")
    assert observed.outcome == COMPLETED, observed.outcome
    at = runtime.first_divergence(list(expected), list(observed.trace))
    if at is None:
        return Verdict(OK)
    want = expected[at] if at < len(expected) else None
    got = observed.trace[at] if at < len(observed.trace) else None
    summary = (
        f"mismatch at event {at}\n"
        f"  expected {describe_event(program, want)}\n"
        f"  observed {describe_event(program, got)}"
    )
    signature = f"{MISMATCH}:{_kind_of(want)}->{_kind_of(got)}"
    return Verdict(MISMATCH, summary, at, signature)


def _kind_of(event: Optional[Event]) -> str:
    if event is None:
        return "end"
    payload = event[3]
    if isinstance(payload, runtime.ExcValue):
        return f"{event[2]}:{payload.type}"
    return event[2]


def context_lines(expected: Sequence[Event], observed: Sequence[Event], at: int,
                  before: int = 3) -> List[str]:
    """The events leading up to a divergence, for reports."""
    lines = [f"   same     {expected[i]!r}" for i in range(max(0, at - before), at)]
    lines.append(f"   expected {expected[at]!r}" if at < len(expected) else "   expected end")
    lines.append(f"   observed {observed[at]!r}" if at < len(observed) else "   observed end")
    return lines


__all__ = ["KINDS", "MAIN", "MISMATCH", "OK", "Verdict", "compare", "context_lines"]
