"""Comparing an observation with the model's prediction: a verdict.

A verdict is ``ok`` or a finding of one kind:

* ``mismatch``: the trace differs from the model (a value, an exception, an order);
* ``crash``: the child died (signal or exit status);
* ``hang``: the child gave no result within the time limit;
* ``leak``: the trace agrees up to an ``alive`` event (after a drop, and at the end)
  that names different greenlets than the model: one still exists although nothing the
  model counts refers to it, or one was freed although something still does;
* ``stack``: a ``Recurse`` level found a canary local, a value returned from the level
  below or a C function's result changed (a ``stack`` event, which the model never
  predicts): the implementation corrupted a suspended stack.

The first divergence is given as expected vs observed with the op that caused it, so a
report reads like a failing assertion, not like a trace dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from greenfuzz.harness import model
from greenfuzz.harness.execution.render import op_comment
from greenfuzz.harness.execution.runner import COMPLETED, CRASH, HANG, Event, Observation
from greenfuzz.harness.program.ir import MAIN, Program, flatten
from greenfuzz.harness.target.codec import ExcValue
from greenfuzz.harness.target.exit_runtime import judged_events
from greenfuzz.harness.target.protocol import TextEnum
from greenfuzz.harness.target.tracediff import first_divergence


class Kind(TextEnum):
    """What a verdict says (see the module docstring); findings store it as its word."""

    OK = "ok"
    MISMATCH = "mismatch"
    CRASH = "crash"
    HANG = "hang"
    STACK = "stack"
    LEAK = "leak"
    KNOWN = "known"  # a finding a documented difference explains (``differences``)


OK, MISMATCH, STACK, LEAK = Kind.OK, Kind.MISMATCH, Kind.STACK, Kind.LEAK


@dataclass(frozen=True)
class Verdict:
    """The result of checking one program on one implementation."""

    kind: Kind
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
        script = flatten(program.script(who))
        if 0 <= pc < len(script):
            where = f"{who} op {pc} ({op_comment(script[pc])})"
    except KeyError:
        pass
    return f"{where}: {kind} {payload!r}"


def judged_trace(observed: Observation) -> List[Event]:
    """The events a verdict's ``index`` counts in: a run at exit is judged without its
    ``late`` events (``exit_runtime.judged_events``), others on the whole trace."""
    if observed.extra.get("at_exit"):
        return judged_events(observed.trace)
    return list(observed.trace)


def compare(program: Program, expected: Sequence[Event], observed: Observation) -> Verdict:
    if observed.extra.get("at_exit"):
        from greenfuzz.harness.judging import at_exit  # family shutdown: its own oracle

        return at_exit.verdict(program, expected, observed, Verdict)  # type: ignore[return-value]
    if observed.outcome == HANG:
        return Verdict(Kind.HANG, f"hang: {observed.detail}", signature=str(Kind.HANG))
    if observed.outcome == CRASH:
        first = observed.detail.splitlines()[0] if observed.detail else "crashed"
        return Verdict(Kind.CRASH, f"crash: {first}", signature=f"{Kind.CRASH}:{first}")
    assert observed.outcome == COMPLETED, observed.outcome
    at = first_divergence(list(expected), list(observed.trace))
    if at is None:
        return Verdict(OK)
    want = expected[at] if at < len(expected) else None
    got = observed.trace[at] if at < len(observed.trace) else None
    if want is not None and got is not None and want[2] == got[2] == "alive":
        return leak_verdict(program, expected, at, got[3])
    kind = STACK if got is not None and got[2] == "stack" else MISMATCH
    summary = (
        f"{kind} at event {at}\n"
        f"  expected {describe_event(program, want)}\n"
        f"  observed {describe_event(program, got)}"
    )
    if kind == STACK:
        assert got is not None
        check = got[3][0] if isinstance(got[3], tuple) and got[3] else "?"
        return Verdict(STACK, summary, at, f"{STACK}:{check}")
    signature = f"{MISMATCH}:{_kind_of(want)}->{_kind_of(got)}"
    return Verdict(MISMATCH, summary, at, signature)


def leak_verdict(program: Program, expected: Sequence[Event], at: int,
                 observed_alive: object) -> Verdict:
    """A liveness divergence: which greenlets outlived their references or died early,
    with what the model counts as holding the ones that must still exist."""
    who = expected[at][0]
    want = set(expected[at][3] or ())
    got = set(observed_alive) if isinstance(observed_alive, (tuple, list)) else set()
    kept, freed = sorted(got - want), sorted(want - got)
    where = "at the end of the program" if at == len(expected) - 1 else (
        f"after {who} dropped {_dropped(program, expected, at) or 'a greenlet'}")
    lines = [f"leak at event {at}, {where}:"]
    if kept:
        lines.append(f"  still alive although nothing the program holds refers to it: "
                     f"{', '.join(kept)}")
    if freed:
        reasons = model.explain_alive(program, at)
        lines.append("  freed although still referenced: " + ", ".join(
            f"{name} (by {' and '.join(reasons.get(name, []) or ['?'])})" for name in freed))
    lines.append(f"  expected alive {tuple(sorted(want))}, observed {tuple(sorted(got))}")
    signature = f"{LEAK}:{'kept' if kept else 'freed'}"
    return Verdict(LEAK, "\n".join(lines), at, signature)


def _dropped(program: Program, expected: Sequence[Event], at: int) -> Optional[str]:
    """The greenlet whose drop the ``alive`` event at ``at`` follows: the drop's
    ``done`` event comes next, and its op names it."""
    if at + 1 >= len(expected):
        return None
    who, pc = expected[at + 1][:2]
    try:
        op = flatten(program.script(who))[pc]
    except (KeyError, IndexError):
        return None
    return getattr(op, "target", None)


def _kind_of(event: Optional[Event]) -> str:
    if event is None:
        return "end"
    payload = event[3]
    if isinstance(payload, ExcValue):
        return f"{event[2]}:{payload.type}"
    return event[2]


def context_lines(expected: Sequence[Event], observed: Sequence[Event], at: int,
                  before: int = 3) -> List[str]:
    """The events leading up to a divergence, for reports."""
    lines = [f"   same     {expected[i]!r}" for i in range(max(0, at - before), at)]
    lines.append(f"   expected {expected[at]!r}" if at < len(expected) else "   expected end")
    lines.append(f"   observed {observed[at]!r}" if at < len(observed) else "   observed end")
    return lines


__all__ = ["LEAK", "MAIN", "MISMATCH", "OK", "STACK", "Kind", "Verdict", "compare",
           "context_lines", "leak_verdict"]
