"""Differential runs: the same programs on two implementations, reporting where they differ.

The model judges each side too, so a disagreement says which side is wrong (or that the
model has no opinion: both differ from it, each its own way).  Disagreements are found
and shrunk by Hypothesis like findings, then simplified by ``greenfuzz.harness.search.minimize``
while
the two sides still disagree the same way; each is saved as ``diff-<hash>.json`` (the
program, both observations and both verdicts) with the model's reproducer ``.py``,
which can be run against either side (``GREENFUZZ_IMPL``, or that side's interpreter).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.errors import Flaky

from greenfuzz.harness import model
from greenfuzz.harness.execution import render
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.runner import COMPLETED, Observation
from greenfuzz.harness.judging.checks import OK
from greenfuzz.harness.judging.differences import KNOWN
from greenfuzz.harness.program.ir import FAMILIES, Program
from greenfuzz.harness.reporting.findings import Finding, clean_stale, write_pair
from greenfuzz.harness.search.campaign import CampaignConfig, judge
from greenfuzz.harness.search.interrupts import Interrupted, check_signals, wind_down
from greenfuzz.harness.search.minimize import simplify
from greenfuzz.harness.target import runtime
from greenfuzz.strategies import programs

FORMAT = "greenfuzz-diff/1"


@dataclass(frozen=True)
class Side:
    """One implementation of a differential run: its campaign config and worker."""

    label: str
    config: CampaignConfig
    executor: IsolatedExecutor


@dataclass(frozen=True)
class Disagreement:
    program: Program
    findings: Tuple[Finding, Finding]  # each side against the model (verdict may be ok)
    labels: Tuple[str, str]
    summary: str

    @property
    def signature(self) -> str:
        # What each side did wrong by the model's lights: stable while shrinking.
        return " | ".join(f.verdict.signature or "ok" for f in self.findings)

    @property
    def known(self) -> Optional[str]:
        """The documented difference that explains it: one side agrees with the model and
        the other differs as its profile says."""
        kinds = [f.kind for f in self.findings]
        if sorted(kinds) == sorted([OK, KNOWN]):
            known = self.findings[kinds.index(KNOWN)]
            return known.verdict.signature.split(":", 1)[1]
        return None

    @property
    def id(self) -> str:
        digest = hashlib.sha1((self.program.dumps() + "".join(self.labels)).encode())
        return f"diff-{digest.hexdigest()[:10]}"

    def report(self) -> str:
        lines = [f"[diff] {self.id}: {self.labels[0]} and {self.labels[1]} disagree",
                 f"  program: {len(self.program.greenlets)} greenlets, "
                 f"{self.program.size()} operations", "  " + self.summary]
        for label, finding in zip(self.labels, self.findings):
            verdict = "agrees with the model" if finding.verdict.ok else \
                finding.verdict.summary.splitlines()[0]
            lines.append(f"  model vs {label}: {verdict}")
        return "\n".join(lines)

    def to_json(self) -> Dict[str, object]:
        return {
            "format": FORMAT, "id": self.id, "summary": self.summary,
            "program": self.program.to_json(),
            "expected": runtime.encode_trace(self.findings[0].expected),
            "sides": [{"label": label, "implementation": {"spec": f.impl,
                                                           "version": f.impl_version},
                       "python": f.python_info(), "verdict": f.verdict.kind,
                       "summary": f.verdict.summary, "observed": f.observation.to_json()}
                      for label, f in zip(self.labels, self.findings)],
        }

    def save(self, directory: Path) -> List[Path]:
        json_path, py_path = directory / f"{self.id}.json", directory / f"{self.id}.py"
        wrong = next((f for f in self.findings if not f.verdict.ok), self.findings[0])
        details = [self.report(), "", "Run it against either side: set GREENFUZZ_IMPL and "
                   "use that side's interpreter."]
        write_pair(json_path, json.dumps(self.to_json(), indent=1) + "\n", py_path,
                   render.reproducer(self.program, wrong.expected, impl=wrong.impl,
                                     title=f"{self.labels[0]} and {self.labels[1]} disagree",
                                     details=details))
        return [json_path, py_path]


def compare_sides(a: Observation, b: Observation) -> Optional[str]:
    """How two observations of one program differ, or None when they agree."""
    if a.outcome != b.outcome:
        return f"outcome: {a.outcome} vs {b.outcome}"
    if a.outcome != COMPLETED:
        return None  # both crashed or both hung: the same to this comparison
    at = runtime.first_divergence(_without_addresses(a.trace), _without_addresses(b.trace))
    if at is None:
        return None
    first = a.trace[at] if at < len(a.trace) else "end of trace"
    second = b.trace[at] if at < len(b.trace) else "end of trace"
    return f"event {at}: {first!r} vs {second!r}"


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def _without_addresses(value: Any) -> Any:
    """``value`` (a trace, event or part of one) with object addresses (``0x7f...``) in
    its strings made equal: two runs never place objects at the same addresses, and
    error messages quote them (``cannot switch to <greenlet object at 0x...>``); and the
    messages of ``greenlet.error`` left out, as the model leaves them out."""
    if isinstance(value, str):
        return _ADDRESS.sub("0x?", value)
    if isinstance(value, runtime.ExcValue):
        if value.type == "greenlet.error":
            # The implementation's own error: its type is the API, its message is not
            # (greenlet's own says "cannot switch to a different thread" one of two ways,
            # depending on whether that thread has finished exiting yet).
            return runtime.ExcValue(value.type, None)
        return runtime.ExcValue(value.type, _without_addresses(value.args))
    if isinstance(value, tuple):
        return tuple(_without_addresses(v) for v in value)
    if isinstance(value, list):
        return [_without_addresses(v) for v in value]
    return value


def judge_both(program: Program, sides: Sequence[Side]) -> Optional[Disagreement]:
    first, second = (judge(program, s.config, s.executor) for s in sides)
    differs = compare_sides(first.observation, second.observation)
    if differs is None:
        return None
    return Disagreement(program, (first, second), (sides[0].label, sides[1].label), differs)


@dataclass
class DiffResult:
    examples: int = 0
    disagreements: List[Disagreement] = field(default_factory=list)
    saved: List[Path] = field(default_factory=list)
    elapsed: float = 0.0
    model_errors: int = 0
    #: Disagreements explained by a side's profile, by difference id.
    known: Dict[str, int] = field(default_factory=dict)
    #: The signal that stopped the run (None: it ran to its end).
    interrupted: Optional[int] = None


class _Disagree(Exception):
    pass


class _OutOfTime(BaseException):
    """The budget ran out within a batch (Hypothesis lets a BaseException through)."""


def run_diff(sides: Sequence[Side], *, out: Path, budget: float, max_examples: int,
             seed_value: Optional[int], keep_going: bool = False, max_greenlets: int = 6,
             families: Sequence[str] = FAMILIES, shrink_seconds: float = 60.0,
             progress: Callable[[DiffResult], None] = lambda r: None) -> DiffResult:
    """Run the same programs on both sides until the budget or a disagreement; each of
    the two passes that shrink a disagreement (Hypothesis's, then ``simplify``) stops
    after ``shrink_seconds``, keeping the smallest program so far (``--budget 8`` once
    ran 80 s, shrinking)."""
    result = DiffResult()
    clean_stale(out)
    start = time.monotonic()
    seen: Dict[str, Disagreement] = {}
    batch = 0
    found: List[Disagreement] = []
    shrink_until: List[float] = []

    def test(program: Program) -> None:
        check_signals()
        now = time.monotonic()
        if (not found and now - start > budget) or (found and now > shrink_until[0]):
            raise _OutOfTime
        result.examples += 1
        result.elapsed = time.monotonic() - start
        progress(result)
        try:
            disagreement = judge_both(program, sides)
        except model.ModelError:
            result.model_errors += 1
            return
        if disagreement is not None and disagreement.known is not None:
            result.known[disagreement.known] = result.known.get(disagreement.known, 0) + 1
            return
        if disagreement is not None and disagreement.signature not in seen:
            if not found:
                shrink_until[:] = [time.monotonic() + shrink_seconds]
            found.append(disagreement)
            raise _Disagree(disagreement.signature)

    def smallest_found() -> Disagreement:
        return min(found, key=lambda d: d.program.size())

    def keep(disagreement: Disagreement) -> None:
        seen[disagreement.signature] = disagreement
        result.disagreements.append(disagreement)
        result.saved += disagreement.save(out)

    while (time.monotonic() - start < budget and result.examples < max_examples
           and (keep_going or not seen)):
        found.clear()
        shrink_until.clear()
        fits = max(5, min(200, max_examples - result.examples))
        wrapped = settings(max_examples=fits, deadline=None, database=None,
                           suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                           phases=[Phase.generate, Phase.shrink], print_blob=False,
                           verbosity=Verbosity.quiet,
                           # Hypothesis's ci profile derandomizes: every batch would
                           # draw the first batch's programs.
                           derandomize=False)(
            given(programs(max_greenlets=max_greenlets, families=tuple(families)))(test))
        if seed_value is not None:
            wrapped = seed(seed_value + batch)(wrapped)
        batch += 1
        try:
            wrapped()
        except _OutOfTime:
            if not found:
                break
            keep(smallest_found())  # shrinking ran out of time: the smallest so far counts
        except Interrupted as e:
            wind_down()
            result.interrupted = e.signum
            if found and found[-1].signature not in seen:  # kept as it stands
                keep(smallest_found())
            break
        except _Disagree:
            smallest = found[-1]
            signature = smallest.signature
            until = time.monotonic() + shrink_seconds
            smaller = simplify(smallest.program, partial(_same, sides=sides,
                                                         signature=signature, until=until))
            again = judge_both(smaller, sides) if smaller != smallest.program else None
            keep(again if again is not None and again.signature == signature else smallest)
        except Flaky:  # the minimal example did not disagree again: keep the smallest
            keep(smallest_found())
        result.elapsed = time.monotonic() - start
        progress(result)
    result.elapsed = time.monotonic() - start
    return result


def _same(program: Program, *, sides: Sequence[Side], signature: str,
          until: float = math.inf) -> bool:
    if time.monotonic() > until:
        return False
    try:
        disagreement = judge_both(program, sides)
    except model.ModelError:
        return False
    return disagreement is not None and disagreement.signature == signature


