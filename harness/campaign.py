"""A fuzzing campaign: Hypothesis draws programs, the model and runner judge them.

The campaign runs Hypothesis in batches (one ``@given`` run per batch, each with its own
seed) so that a wall-clock budget can end it between batches; a failing batch ends in
Hypothesis's shrinking, and the minimal program it settles on becomes the finding.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky

from harness import checks, model, runner
from harness.executor import IsolatedExecutor
from harness.findings import Finding
from harness.implementations import Implementation
from harness.ir import Program
from harness.minimize import simplify
from harness.reproduce import run_reproducer
from strategies import programs


@dataclass(frozen=True)
class CampaignConfig:
    impl: Implementation
    out: Path
    python: Optional[str] = None
    budget: float = 60.0
    max_examples: int = 10**9
    seed: Optional[int] = None
    isolate: bool = True
    timeout: float = 2.0
    keep_going: bool = False
    max_greenlets: int = 6
    batch: int = 200
    #: Run each finding's standalone reproducer in a fresh process before reporting it.
    verify: bool = True


@dataclass
class CampaignResult:
    examples: int = 0
    findings: List[Finding] = field(default_factory=list)
    saved: List[Path] = field(default_factory=list)
    elapsed: float = 0.0
    model_errors: int = 0
    run_seconds: float = 0.0
    notes: List[str] = field(default_factory=list)
    #: Findings that could not be written (disk full...), with the reason.
    unsaved: List[Tuple[Finding, str]] = field(default_factory=list)


class _FindingRaised(Exception):
    """Tells Hypothesis that a program failed (it then shrinks it)."""


def open_executor(config: CampaignConfig) -> Optional[IsolatedExecutor]:
    """The worker isolated programs run in (None in-process); ``ImplementationError``
    when the interpreter or the implementation cannot be used."""
    if not config.isolate:
        return None
    executor = IsolatedExecutor(config.impl.spec, python=config.python or sys.executable,
                                timeout=config.timeout)
    executor.start()
    return executor


def judge(program: Program, config: CampaignConfig, executor: Optional[IsolatedExecutor],
          timeout: Optional[float] = None) -> Finding:
    """Run one program and compare; the returned Finding's verdict may be ``ok``."""
    expected = model.predict(program)
    if executor is not None:
        observation = executor.run(program, timeout or config.timeout)
    else:
        observation = runner.run_inprocess(program, config.impl)
    verdict = checks.compare(program, expected, observation)
    return Finding(program, expected, observation, verdict, config.impl.spec,
                   config.impl.version, python=config.python,
                   python_version=config.impl.python)


def run_campaign(config: CampaignConfig,
                 progress: Callable[[CampaignResult], None] = lambda r: None,
                 executor: Optional[IsolatedExecutor] = None) -> CampaignResult:
    """Fuzz until the budget or example count runs out, or (unless ``keep_going``) the
    first finding; every finding is saved before this returns.  Isolated campaigns use
    ``executor`` when given (the caller closes it), else a worker of their own."""
    if executor is not None or not config.isolate:
        return _campaign(config, executor, progress)
    executor = open_executor(config)
    try:
        return _campaign(config, executor, progress)
    finally:
        if executor is not None:
            executor.close()


def _campaign(config: CampaignConfig, executor: Optional[IsolatedExecutor],
              progress: Callable[[CampaignResult], None]) -> CampaignResult:
    result = CampaignResult()
    start = time.monotonic()
    deadline = start + config.budget
    seen: Dict[str, Finding] = {}
    database = DirectoryBasedExampleDatabase(str(config.out / ".hypothesis"))
    batch_index = 0
    while result.examples < config.max_examples and time.monotonic() < deadline:
        if seen and not config.keep_going:
            break
        # Size the batch to what fits in the remaining budget at the rate seen so far,
        # so that the budget is kept to within about one batch's shrinking.
        elapsed = time.monotonic() - start
        rate = result.examples / elapsed if result.examples else 20.0
        fits = int(rate * (deadline - time.monotonic()) * 0.9)
        n = max(5, min(config.batch, fits, config.max_examples - result.examples))
        failures: List[Finding] = []
        test = _make_test(config, executor, result, start, failures, progress)
        seed_value = None if config.seed is None else config.seed + batch_index
        wrapped = given(programs(max_greenlets=config.max_greenlets))(test)
        wrapped = settings(
            max_examples=n,
            deadline=None,
            # Saved failures replay first; once one is found, a keep-going campaign
            # must look elsewhere, not re-find it at the start of every batch.
            database=None if seen else database,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            report_multiple_bugs=False,
            print_blob=False,
        )(wrapped)
        if seed_value is not None:
            wrapped = seed(seed_value)(wrapped)
        batch_index += 1
        try:
            wrapped()
        except _FindingRaised:
            _record(failures[-1], result, seen, config, executor)
        except Flaky:
            # The minimal example did not fail again (typical of crashes and hangs
            # that depend on timing): keep the smallest one that did fail.
            smallest = min(failures, key=lambda f: f.program.size())
            result.notes.append(f"{smallest.id}: did not fail on every replay (flaky)")
            _record(smallest, result, seen, config, executor)
        result.elapsed = time.monotonic() - start
        progress(result)
    result.elapsed = time.monotonic() - start
    return result


def hang_timeout(config: CampaignConfig, result: CampaignResult) -> float:
    """A time limit far above what programs take (50 times the mean, at least 0.25 s)."""
    typical = result.run_seconds / max(1, result.examples)
    return min(config.timeout, max(0.25, 50 * typical))


def _make_test(config: CampaignConfig, executor: Optional[IsolatedExecutor],
               result: CampaignResult, start: float,
               failures: List[Finding], progress: Callable[[CampaignResult], None]
               ) -> Callable[[Program], None]:
    """The body Hypothesis runs for each program of one batch."""
    shrink_timeout: List[float] = []

    def test(program: Program) -> None:
        result.examples += 1
        result.elapsed = time.monotonic() - start
        progress(result)
        try:
            finding = judge(program, config, executor,
                            shrink_timeout[0] if shrink_timeout else None)
        except model.ModelError:
            result.model_errors += 1
            assume(False)
            raise AssertionError("unreachable") from None
        if finding.kind != runner.HANG:
            result.run_seconds += finding.observation.seconds
        if not finding.verdict.ok:
            if finding.kind == runner.HANG and not shrink_timeout:
                # While shrinking a hang, every attempt that hangs costs the limit:
                # keep it short (but far above what programs take); a genuine hang
                # still exceeds it.
                shrink_timeout.append(hang_timeout(config, result))
            failures.append(finding)
            raise _FindingRaised(finding.verdict.signature)

    return test


def _record(finding: Finding, result: CampaignResult, seen: Dict[str, Finding],
            config: CampaignConfig, executor: Optional[IsolatedExecutor]) -> None:
    signature = finding.verdict.signature
    if signature in seen:
        return
    # Every attempt that still hangs costs the time limit: keep it short for hangs.
    timeout = hang_timeout(config, result) if finding.kind == runner.HANG else None
    smaller = simplify(
        finding.program,
        lambda p: judge(p, config, executor, timeout).verdict.signature == signature,
        max_attempts=60 if timeout else 300)
    if smaller != finding.program:
        again = judge(smaller, config, executor, timeout)
        if again.verdict.signature == signature:
            finding = again
    seen[signature] = finding
    result.findings.append(finding)
    try:
        paths = finding.save(config.out)
    except OSError as e:
        # The finding stays in memory and the CLI prints it whole: never lost.
        result.unsaved.append((finding, _why(e, config.out)))
        return
    result.saved += paths
    if config.verify:
        finding = verify(finding, paths[1], config)
        result.findings[-1] = finding
        try:
            finding.save(config.out)  # again, now with the reproduction recorded
        except OSError as e:
            result.notes.append(f"{finding.id}: reproduction not recorded: "
                                f"{_why(e, config.out)}")


def _why(error: OSError, where: Path) -> str:
    return f"{error.strerror or error} ({error.filename or where})"


def verify(finding: Finding, script: Path, config: CampaignConfig) -> Finding:
    """The finding with the result of its reproducer run standalone (``harness.reproduce``)."""
    signum = finding.observation.extra.get("signum")
    outcome = run_reproducer(script, kind=finding.kind, impl=config.impl.spec,
                             python=config.python, timeout=config.timeout,
                             signum=signum if isinstance(signum, int) else None)
    return replace(finding, reproduction=outcome)
