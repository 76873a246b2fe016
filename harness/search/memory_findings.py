"""Raw-memory findings: repeating a program that frees everything must not grow the
process (``leak:raw``), and a parked greenlet must cost at most a budget
(``leak:parked``).  The campaign runs these between batches (``campaign._memory_checks``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from greenfuzz.harness import model
from greenfuzz.harness.execution import runner
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import memcheck
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.reporting.findings import Finding
from greenfuzz.harness.search.minimize import simplify

if TYPE_CHECKING:  # campaign imports this module
    from greenfuzz.harness.search.campaign import CampaignConfig


def frees_everything(expected: List[runner.Event]) -> bool:
    """The model frees every greenlet by the end: repeating such a program must not
    grow.  (Greenlets in a cycle through a suspended frame are never freed, by design;
    a program making one grows by design too.)  Nor a program whose thread ends with
    greenlets of its own suspended (``orphans``): greenlet 3.5.6 keeps about 160 B per
    such greenlet and 250 B per such thread (measured), which its own test of the case
    tolerates (test_leaks ``_check_untracked_memory_thread``: 3 MiB for 40,000).  Nor
    one that runs threads side by side (``threads``, family ``concurrent``): each
    leaves greenlets parked in its ended threads, and starting and joining 3 threads
    that touch no greenlet grows this process by about 4 KiB a time (measured over
    2,000 rounds)."""
    ends = [e for e in expected if e[2] == "alive"]
    return bool(ends) and ends[-1][3] == () and \
        not any(e[2] in ("orphans", "threads") for e in expected)


def memory_finding(program: Program, config: CampaignConfig,
                   executor: Optional[IsolatedExecutor], shrink: int = 12,
                   notes: Optional[List[str]] = None,
                   deadline: Optional[float] = None,
                   timeout: float = memcheck.PROBE_TIMEOUT) -> Optional[Finding]:
    """A ``leak:raw`` finding when repeating ``program`` leaks memory, shrunk with at
    most ``shrink`` further probes (none after ``deadline``); else None.  A probe that
    fails or cannot decide (the program passed once, so that is worth knowing) is
    described in ``notes``."""

    def probe(p: Program) -> Optional[Tuple[Dict[str, object], runner.Observation]]:
        found, observation = memcheck.run_memory_source(memcheck.probe_source(p),
                                                        config.impl, executor, timeout)
        return (found, observation) if found is not None and found.get("leaked") else None

    found, observation = memcheck.run_memory_source(memcheck.probe_source(program),
                                                    config.impl, executor, timeout)
    if notes is not None and (found is None or not found.get("reliable", True)):
        why = (found or {}).get("reason") or observation.outcome + (
            f": {observation.detail.splitlines()[0]}" if observation.detail else
            f": {observation.trace[-1] if observation.trace else 'no trace'}")
        notes.append(f"raw-memory check of a {program.size()}-op program gave no verdict "
                     f"({why})")
    leaked = (found, observation) if found is not None and found.get("leaked") else None
    if leaked is None:
        return None
    if shrink:
        def still_leaks(p: Program) -> bool:
            nonlocal leaked
            if deadline is not None and time.monotonic() > deadline:
                return False
            try:
                expected = model.predict(p)  # the finding states what the model predicts
            except model.ModelError:
                return False  # (a smaller program may be one it leaves out: Unsupported)
            if not frees_everything(expected):
                # Shrinking once ended at a cycle through a suspended frame, which greenlet
                # documents as a leak ("A Cycle Of Greenlets Is A Leak"): not a finding.
                return False
            again = probe(p)
            if again is not None:
                leaked = again
            return again is not None

        program = simplify(program, still_leaks, max_attempts=shrink)
    found, observation = leaked
    return Finding(program, model.predict(program), observation, memcheck.raw_verdict(found),
                   config.impl.spec, config.impl.version, python=config.python,
                   python_version=config.impl.python)


def parked_finding(config: CampaignConfig, executor: Optional[IsolatedExecutor],
                   notes: Optional[List[str]] = None) -> Optional[Finding]:
    """A ``leak:parked`` finding when a parked greenlet costs more than the budget."""
    found, observation = memcheck.run_memory_source(
        memcheck.parked_source(memcheck.PARKED_COUNTS), config.impl, executor,
        memcheck.PARKED_TIMEOUT)
    if found is None:
        if notes is not None:
            notes.append(f"bytes-per-parked-greenlet check gave no result "
                         f"({observation.outcome}{': ' if observation.detail else ''}"
                         f"{observation.detail.splitlines()[0] if observation.detail else ''})")
        return None
    found["budget"] = config.parked_budget
    verdict = memcheck.parked_verdict(found, config.parked_budget)
    if verdict.ok:
        return None
    return Finding(Program(meta=(("scenario", "parked"),)), [], observation, verdict,
                   config.impl.spec, config.impl.version, python=config.python,
                   python_version=config.impl.python)
