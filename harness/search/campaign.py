"""A fuzzing campaign: Hypothesis draws programs, the model and runner judge them.

The campaign runs Hypothesis in batches (one ``@given`` run per batch, each with its own
seed) so that a wall-clock budget can end it between batches; a failing batch ends in
Hypothesis's shrinking, and the minimal program it settles on becomes the finding.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from hypothesis import HealthCheck, Phase, Verbosity, assume, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky

from greenfuzz.harness import model
from greenfuzz.harness.execution import at_exit, runner
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.judging import checks, leaks, memcheck
from greenfuzz.harness.judging.differences import KNOWN, Profile
from greenfuzz.harness.program.ir import FAMILIES, FAMILY_NEEDS, MAIN, Program, program_families
from greenfuzz.harness.reporting.findings import (
    Finding,
    atomic_write,
    clean_stale,
    verify_plain,
)
from greenfuzz.harness.reporting.reproduce import DEFAULT_MEMORY_LIMIT, run_reproducer
from greenfuzz.harness.search import interrupts
from greenfuzz.harness.search.coverage import aim, chain_digest, estimated_seconds, steer
from greenfuzz.harness.search.interrupts import Interrupted, check_signals, wind_down
from greenfuzz.harness.search.memory_findings import (
    frees_everything,
    memory_finding,
    parked_finding,
)
from greenfuzz.harness.search.minimize import simplify
from greenfuzz.harness.search.shared import SharedRun
from greenfuzz.strategies import programs

#: Measured with ``bench/bench_executor.py`` on 2 cores: a fresh child per program runs
#: 150-200 small programs/s, one child for 100 programs 265-430/s.
DEFAULT_PROGRAMS_PER_CHILD = 100
#: The share of a run's time the raw-memory checks may take after the first one.  Each
#: check is a child that runs flat out, so its share of the CPU is about twice its share
#: of the time; 0.1 (it was 0.2) gave about 10 % more programs a second (bench/ A/B,
#: one job: 104-122/s against 96-110/s).
MEMORY_SHARE = 0.1
#: Runs of a reproducer before a raw-memory finding, or one whose reproducer diverged
#: otherwise (``Reproduction.otherwise``), counts as not reproduced.
RAW_ATTEMPTS = 3
#: Seconds of budget the first raw-memory check needs left to start (it repeats a
#: program in batches; about 2-6 s on 2 cores).
FIRST_MEMORY_CHECK = 8.0


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
    #: How many programs one forked child runs in turn (1: a fresh child per program).
    #: A program that fails in a child that ran others first is run again in a fresh
    #: one, and only that run counts: reuse buys speed (a fork and its page faults cost
    #: more than a small program) without findings that depend on earlier programs.
    programs_per_child: int = DEFAULT_PROGRAMS_PER_CHILD
    keep_going: bool = False
    max_greenlets: int = 6
    batch: int = 200
    #: Families of ops programs are drawn from (``greenfuzz.harness.program.ir.FAMILIES``).
    families: Tuple[str, ...] = FAMILIES
    #: Run each finding's standalone reproducer in a fresh process before reporting it.
    verify: bool = True
    #: Raw-memory checks (``greenfuzz.harness.judging.memcheck``): after each batch, the passing
    #: program
    #: that started the most greenlets is repeated under the leak rule, while these
    #: checks, the next one included, take at most ``memory_share`` of the time so far
    #: (the first always runs); once, bytes per parked greenlet are checked against
    #: ``parked_budget`` (0: not checked).
    memory: bool = True
    memory_share: float = MEMORY_SHARE
    parked_budget: float = memcheck.PARKED_BUDGET
    #: Documented differences of the implementation: matching divergences are ``known``.
    profile: Optional[Profile] = None
    #: Most seconds each of the two passes that shrink a failure may take (Hypothesis's
    #: shrinking, counted from the first failure, then ``simplify``); the finding is then
    #: kept as small as it got.  Shrinking is what may run past the budget.
    shrink_seconds: float = 60.0
    #: Set when this campaign is one job of several (``greenfuzz.harness.search.jobs``):
    #: a finding another job claimed is not saved twice, and the run can be stopped.
    shared: Optional[SharedRun] = None


@dataclass
class CampaignResult:
    examples: int = 0
    findings: List[Finding] = field(default_factory=list)
    saved: List[Path] = field(default_factory=list)
    elapsed: float = 0.0
    model_errors: int = 0
    #: Programs the model leaves out on purpose (``model.Unsupported``) that generation
    #: let through: skipped, not a greenfuzz bug.
    refused: int = 0
    run_seconds: float = 0.0
    notes: List[str] = field(default_factory=list)
    #: Programs whose first divergence is a documented difference, by difference id.
    known: Dict[str, int] = field(default_factory=dict)
    #: Findings that could not be written (disk full...), with the reason.
    unsaved: List[Tuple[Finding, str]] = field(default_factory=list)
    #: How many programs run contained ops of each family.
    family_counts: Dict[str, int] = field(default_factory=dict)
    #: Programs that failed in a reused child but passed in a fresh one (state that
    #: earlier programs left behind, in the implementation or the harness; not findings),
    #: by how they failed there: the verdict's signature (``mismatch:value->caught``), or
    #: the outcome of a crash or hang.
    state_dependent_by: Counter = field(default_factory=Counter)
    #: Raw-memory checks run, and the seconds they took.
    memory_checks: int = 0
    memory_seconds: float = 0.0
    #: The signal that stopped the campaign (None: it ran to its end).
    interrupted: Optional[int] = None
    #: Seconds the campaign ran past its budget shrinking and verifying a finding (the
    #: budget is otherwise kept to within one program's time limit).
    overrun: float = 0.0
    #: How often each rule of the model fired (``model.rules()``), and each pair of op
    #: types one after the other in a script: what rule coverage reports and steers by.
    rules: Counter = field(default_factory=Counter)
    pairs: Counter = field(default_factory=Counter)
    #: A digest of every program drawn, in order (``coverage.chain_digest``): two runs
    #: with the same seed and limits drew the same programs when theirs are equal.
    programs_digest: str = ""
    #: Failing programs whose signature another job of the run had claimed (it shrinks
    #: and saves that finding; they are counted here, neither shrunk nor saved).
    duplicates: int = 0
    #: Programs drawn again while one that passed earlier in the run was among the last
    #: ``REPEATS_KEPT`` (the same program from other bytes, or Hypothesis replaying it):
    #: not run again, nor counted as programs run.
    repeats: int = 0
    #: Each job's seed, programs and digest, when the result merges several jobs.
    per_job: List[Dict[str, object]] = field(default_factory=list)

    @property
    def state_dependent(self) -> int:
        """How many programs failed only after other programs (``state_dependent_by``)."""
        return sum(self.state_dependent_by.values())


#: How many of the last programs that passed a campaign remembers, so as not to run one
#: again when Hypothesis draws it again: about a fifth of what a 20 s job draws is such
#: a repeat (641-672 of 2,880-3,034 drawn, measured with this many kept).
REPEATS_KEPT = 1024

#: Most programs that made the model fail kept per run (``keep_model_error``).
MODEL_ERRORS_KEPT = 20
#: Where they are kept, under ``--out``.
MODEL_ERRORS_DIR = "model-errors"


def keep_model_error(program: Program, error: Exception, out: Path) -> None:
    """Keep a program the model failed on (a greenfuzz bug) where a report can cite it:
    ``<out>/model-errors/<digest>.json`` (a bare program: ``greenfuzz replay`` reads it)
    and ``.txt`` (the error).  Best effort: the run goes on whatever happens here."""
    import hashlib

    folder = out / MODEL_ERRORS_DIR
    text = program.dumps()
    stem = hashlib.sha256(text.encode()).hexdigest()[:10]
    try:
        if folder.is_dir() and len(list(folder.glob("*.json"))) >= MODEL_ERRORS_KEPT:
            return
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{stem}.txt", f"{type(error).__name__}: {error}\n")
        atomic_write(folder / f"{stem}.json", text)
    except OSError:
        pass


class _OutOfTime(BaseException):
    """The budget ran out in the middle of a batch: ends it (Hypothesis lets a
    BaseException through without shrinking anything)."""


class _FindingRaised(Exception):
    """Tells Hypothesis that a program failed (it then shrinks it)."""


def open_executor(config: CampaignConfig) -> Optional[IsolatedExecutor]:
    """The worker isolated programs run in (None in-process); ``ImplementationError``
    when the interpreter or the implementation cannot be used."""
    if not config.isolate:
        return None
    executor = IsolatedExecutor(config.impl.spec, python=config.python or sys.executable,
                                timeout=config.timeout,
                                programs_per_child=config.programs_per_child)
    executor.start()
    return executor


def judge(program: Program, config: CampaignConfig, executor: Optional[IsolatedExecutor],
          timeout: Optional[float] = None, fresh: bool = False,
          fired: Optional[Counter] = None) -> Finding:
    """Run one program and compare; the returned Finding's verdict may be ``ok``.
    ``fresh`` runs it in a child of its own (see ``programs_per_child``); ``fired``
    gets the model rules the program fired."""
    expected = model.predict(program, fired)
    if executor is not None:
        observation = executor.run(program, timeout or config.timeout, fresh=fresh)
    elif at_exit.at_exit(program):
        # Ends with the interpreter's exit: never in this process (family shutdown).
        observation = at_exit.run(program, config.impl.spec, timeout=timeout or config.timeout)
    else:
        observation = runner.run_inprocess(program, config.impl)
    verdict = checks.compare(program, expected, observation)
    if not verdict.ok and observation.extra.get("programs_before"):
        # Ran after other programs in the same child: only a fresh child's run counts.
        first = verdict.summary
        observation = executor.run(program, timeout or config.timeout, fresh=True)
        observation.extra["after_other_programs"] = first
        observation.extra["after_other_signature"] = verdict.signature
        verdict = checks.compare(program, expected, observation)
    if not verdict.ok and config.profile is not None:
        difference = config.profile.known(program, verdict.kind, expected,
                                          checks.judged_trace(observation),
                                          verdict.index,
                                          f"{verdict.summary}\n{observation.detail}")
        if difference is not None:
            verdict = checks.Verdict(KNOWN, f"known difference {difference.id}: "
                                     f"{difference.summary} ({difference.source})\n"
                                     + verdict.summary, verdict.index, f"{KNOWN}:{difference.id}")
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
    shared = config.shared
    # Jobs share the folder: the controller cleans it once, before any job writes to it.
    removed = [] if shared is not None else clean_stale(config.out)
    if removed:
        result.notes.append(f"removed {len(removed)} file(s) an interrupted run left half "
                            f"written in {config.out}: {', '.join(sorted(removed)[:5])}")
    families = drawable_families(config)
    for name in config.families:
        if name not in families:
            result.notes.append(f"family {name} skipped: {config.impl.spec} has no "
                                f"{'/'.join(FAMILY_NEEDS[name])}()")
    start = time.monotonic()
    deadline = start + config.budget
    seen: Dict[str, Finding] = {}
    passed: OrderedDict = OrderedDict()  # see ``CampaignResult.repeats``
    database = DirectoryBasedExampleDatabase(str(config.out / ".hypothesis"))
    batch_index = 0
    # (--max-examples counts the programs drawn: those run and the repeats.)
    while result.examples + result.repeats < config.max_examples \
            and time.monotonic() < deadline:
        if shared is not None and shared.stop_requested():
            break
        if not config.keep_going and any(f.confirmed for f in result.findings):
            break  # (an unconfirmed finding does not end the search)
        # Size the batch to what fits in the remaining budget at the rate seen so far,
        # so that the budget is kept to within about one batch's shrinking.
        elapsed = time.monotonic() - start
        drawn = result.examples + result.repeats
        rate = drawn / elapsed if drawn else 20.0
        fits = int(rate * (deadline - time.monotonic()) * 0.9)
        # (At least 5 programs a batch, but never past --max-examples: a job of a
        # --jobs run may have only a few.)
        n = min(max(5, min(config.batch, fits)), config.max_examples - drawn)
        failures: List[Finding] = []
        candidates: List[Tuple[int, Program]] = []
        test = _make_test(config, executor, result, start, failures, progress, candidates,
                          deadline, passed)
        seed_value = None if config.seed is None else config.seed + batch_index
        wrapped = given(programs(max_greenlets=config.max_greenlets,
                                 families=families))(test)
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
            # The campaign reports for itself: no "Falsifying example" or "@seed(...)"
            # lines from Hypothesis on the terminal (an interrupt or the end of the
            # budget is not a failure to reproduce).
            verbosity=Verbosity.quiet,
        )(wrapped)
        if seed_value is not None:
            wrapped = seed(seed_value)(wrapped)
        batch_index += 1
        try:
            check_signals()
            try:
                with _budget_alarm(deadline, failures):
                    try:
                        wrapped()
                    except (_FindingRaised, Flaky, Interrupted):
                        raise
                    except Exception as e:
                        # A signal landing in Hypothesis's own set-up comes out as an
                        # error of Hypothesis's (an AssertionError on ``state._runner``),
                        # as the alarm does: the recorded signal is the interrupt.
                        check_signals()
                        if _raised_while_out_of_time(e):
                            raise _OutOfTime from e
                        raise
            except _OutOfTime:
                if not failures:
                    break
                # Shrinking reached its time limit: the smallest failure so far counts.
                smallest = min(failures, key=lambda f: f.program.size())
                result.notes.append(f"shrinking stopped after {config.shrink_seconds:g} s "
                                    f"(a {smallest.program.size()}-op program)")
                _record(smallest, result, seen, config, executor)
            except _FindingRaised:
                _record(failures[-1], result, seen, config, executor)
            except Flaky as e:
                if not failures:
                    # Nothing failed: Hypothesis found the drawing itself unstable.
                    result.notes.append(f"Hypothesis: {type(e).__name__} with no failing "
                                        "program; the batch is skipped")
                    continue
                # The minimal example did not fail again (typical of crashes and hangs
                # that depend on timing): keep the smallest one that did fail.
                smallest = min(failures, key=lambda f: f.program.size())
                result.notes.append(f"{smallest.id}: did not fail on every replay (flaky)")
                _record(smallest, result, seen, config, executor)
            if config.memory and candidates and (config.keep_going or not seen):
                _memory_checks(config, executor, result, candidates[0][1], seen, start,
                               deadline)
        except Interrupted as e:
            wind_down()
            result.interrupted = e.signum
            if failures and not any(f.verdict.signature in seen for f in failures):
                # Hypothesis was shrinking this one: kept as it stands.
                smallest = min(failures, key=lambda f: f.program.size())
                _save_unshrunk(smallest, result, seen, config)
            break
        result.elapsed = time.monotonic() - start
        progress(result)
    result.elapsed = time.monotonic() - start
    result.overrun = max(0.0, result.elapsed - config.budget)
    return result


@contextmanager
def _budget_alarm(deadline: float, failures: List[Finding]) -> Iterator[None]:
    """Raise ``_OutOfTime`` at ``deadline`` wherever the batch is, unless a failure is
    being shrunk: drawing a program of hundreds of greenlets, or predicting it, takes
    seconds that no time limit of the runner covers.  (Main thread only; elsewhere the
    budget is checked between programs.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        if not failures and not interrupts.pending():
            raise _OutOfTime

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _raised_while_out_of_time(error: BaseException) -> bool:
    """Whether ``error`` was raised while the alarm's ``_OutOfTime`` was being handled:
    landing in Hypothesis's own set-up, the alarm comes out as an error of Hypothesis's
    (an ``AssertionError`` on ``state._runner``) with ``_OutOfTime`` as its context."""
    seen: Set[int] = set()
    cause: Optional[BaseException] = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _OutOfTime):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _save_unshrunk(finding: Finding, result: CampaignResult, seen: Dict[str, Finding],
                   config: CampaignConfig) -> None:
    """Save a finding an interrupt caught before it was shrunk (or verified)."""
    finding = replace(finding, shrunk=False)
    if _claimed_elsewhere(finding, result, seen, config, claim=True):
        return
    seen[finding.verdict.signature] = finding
    result.findings.append(finding)
    result.notes.append(f"{finding.id}: saved as it stood when interrupted (not shrunk, "
                        "not verified)")
    try:
        result.saved += finding.save(config.out)
    except OSError as e:
        result.unsaved.append((finding, _why(e, config.out)))


def _claimed_elsewhere(finding: Finding, result: CampaignResult, seen: Dict[str, Finding],
                       config: CampaignConfig, claim: bool) -> bool:
    """Whether another job of the run has ``finding``'s signature (then it is counted as
    a duplicate and not saved here); ``claim``: claim it for this job if not."""
    shared = config.shared
    if shared is None:
        return False
    signature = finding.verdict.signature
    holder = (shared.claim(signature, finding.id) if claim else shared.holder(signature))
    if holder is None:
        return False
    seen[signature] = finding  # a keep-going job looks elsewhere, as for its own
    result.duplicates += 1
    return True


def drawable_families(config: CampaignConfig) -> Tuple[str, ...]:
    """The chosen families the implementation can run
    (``greenfuzz.harness.program.ir.FAMILY_NEEDS``)."""
    return tuple(name for name in config.families
                 if all(config.impl.has(need) for need in FAMILY_NEEDS.get(name, ())))


def hang_timeout(config: CampaignConfig, result: CampaignResult) -> float:
    """A time limit far above what programs take (50 times the mean, at least 0.25 s)."""
    typical = result.run_seconds / max(1, result.examples)
    return min(config.timeout, max(0.25, 50 * typical))


def _make_test(config: CampaignConfig, executor: Optional[IsolatedExecutor],
               result: CampaignResult, start: float,
               failures: List[Finding], progress: Callable[[CampaignResult], None],
               candidates: Optional[List[Tuple[int, Program]]] = None,
               deadline: Optional[float] = None,
               passed: Optional[OrderedDict] = None) -> Callable[[Program], None]:
    """The body Hypothesis runs for each program of one batch; ``candidates`` gets the
    passing program that started the most greenlets (for the raw-memory check);
    ``passed`` remembers the last programs that passed, with what steered by them
    (see ``CampaignResult.repeats``)."""
    shrink_timeout: List[float] = []
    shrink_until: List[float] = []

    def test(program: Program) -> None:
        check_signals()
        now = time.monotonic()
        if deadline is not None and not failures and now > deadline:
            raise _OutOfTime  # a failure being shrunk is finished first
        if shrink_until and now > shrink_until[0]:
            raise _OutOfTime
        if config.shared is not None and not failures and config.shared.stop_requested():
            raise _OutOfTime
        text = repr(program)  # (programs are not hashable: some ops hold dicts)
        result.programs_digest = chain_digest(result.programs_digest, text)
        if passed is not None and not failures:
            again = passed.get(text)
            if again is not None:
                # Run before, and passed: steered as then, not run again (a repeat says
                # nothing new unless it is flaky, and other programs are likelier to be).
                passed.move_to_end(text)
                result.repeats += 1
                fired, pairs, seconds = again
                aim(fired, pairs, result, seconds)
                return
        result.examples += 1
        for name in program_families(program):
            result.family_counts[name] = result.family_counts.get(name, 0) + 1
        result.elapsed = time.monotonic() - start
        progress(result)
        try:
            # Once a program has failed, Hypothesis is shrinking it: every candidate gets a
            # fresh child, where a failure would be confirmed anyway (a hang then costs
            # one time limit, not two).
            fired: Counter = Counter()
            finding = judge(program, config, executor,
                            shrink_timeout[0] if shrink_timeout else None,
                            fresh=bool(failures), fired=fired)
        except model.Unsupported:
            # Left out on purpose by the model, and by the strategies where a family's
            # ``tame`` step sees it; one that reaches here was missed there (counted).
            result.refused += 1
            assume(False)
            raise AssertionError("unreachable") from None
        except model.ModelError as e:
            result.model_errors += 1
            keep_model_error(program, e, config.out)
            assume(False)
            raise AssertionError("unreachable") from None
        if not failures:
            seconds = estimated_seconds(program, finding.expected)
            pairs = steer(program, fired, result, seconds)
            if passed is not None and finding.verdict.ok:
                passed[text] = (fired, pairs, seconds)
                if len(passed) > REPEATS_KEPT:
                    passed.popitem(last=False)
        if finding.kind != runner.HANG:
            result.run_seconds += finding.observation.seconds
        if finding.verdict.ok and "after_other_programs" in finding.observation.extra:
            extra = finding.observation.extra
            first = extra["after_other_programs"]
            how = str(extra.get("after_other_signature") or (
                first.get("outcome") if isinstance(first, dict) else "") or "failure")
            result.state_dependent_by[how] += 1
            if result.state_dependent == 1:
                result.notes.append(
                    "a program failed in a child that had run other programs and passed in a "
                    "fresh one (state left by earlier programs; not a finding): "
                    + str(finding.observation.extra["after_other_programs"]).splitlines()[0])
        if finding.kind == KNOWN:
            known = finding.verdict.signature.split(":", 1)[1]
            result.known[known] = result.known.get(known, 0) + 1
            return
        if not finding.verdict.ok and not failures and config.shared is not None \
                and config.shared.claim(finding.verdict.signature, finding.id) is not None:
            # Another job met it first and shrinks it: not shrunk twice.  (Claimed here
            # by the first job to meet it; shrinking may settle on another signature,
            # which is claimed again before the finding is saved.)
            result.duplicates += 1
            return
        if not finding.verdict.ok:
            if finding.kind == runner.HANG and not shrink_timeout:
                # While shrinking a hang, every attempt that hangs costs the limit:
                # keep it short (but far above what programs take); a genuine hang
                # still exceeds it.
                shrink_timeout.append(hang_timeout(config, result))
            if not failures:
                shrink_until.append(time.monotonic() + config.shrink_seconds)
            failures.append(finding)
            raise _FindingRaised(finding.verdict.signature)
        if candidates is not None and frees_everything(finding.expected):
            starts = sum(1 for e in finding.expected if e[2] == "start" and e[0] != MAIN)
            if starts and (not candidates or starts > candidates[0][0]):
                candidates[:] = [(starts, program)]

    return test


def _record(finding: Finding, result: CampaignResult, seen: Dict[str, Finding],
            config: CampaignConfig, executor: Optional[IsolatedExecutor]) -> None:
    signature = finding.verdict.signature
    if signature in seen or _claimed_elsewhere(finding, result, seen, config, claim=False):
        return
    # Every attempt that still hangs costs the time limit: keep it short for hangs.
    timeout = hang_timeout(config, result) if finding.kind == runner.HANG else None
    best = [finding]
    until = time.monotonic() + config.shrink_seconds

    def still_fails(p: Program) -> bool:
        check_signals()
        if time.monotonic() > until:
            return False
        again = judge(p, config, executor, timeout, fresh=True)
        if again.verdict.signature == signature:
            best[0] = again
            return True
        return False

    try:
        smaller = finding.program if memcheck.is_raw(finding.verdict) else simplify(
            finding.program, still_fails, max_attempts=60 if timeout else 300)
        if smaller != finding.program:
            again = judge(smaller, config, executor, timeout, fresh=True)
            if again.verdict.signature == signature:
                finding = again
    except Interrupted:
        wind_down()
        _save_unshrunk(best[0], result, seen, config)
        raise
    if finding.kind == checks.LEAK:
        finding = replace(finding, verdict=leaks.explain(
            finding.program, finding.verdict, finding.expected, finding.observation.trace,
            config.impl, executor, config.timeout))
    finding = replace(finding, seed=config.seed)
    if _claimed_elsewhere(finding, result, seen, config, claim=True):
        return
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
        try:
            finding = verify(finding, paths[1], config,
                             executor.memory_limit if executor is not None else None)
        except Interrupted:
            wind_down()
            result.notes.append(f"{finding.id}: saved before its reproducer was checked "
                                "(interrupted)")
            raise
        result.findings[-1] = finding
        try:
            finding.save(config.out)  # again, now with the reproduction recorded
        except OSError as e:
            result.notes.append(f"{finding.id}: reproduction not recorded: "
                                f"{_why(e, config.out)}")


def _memory_checks(config: CampaignConfig, executor: Optional[IsolatedExecutor],
                   result: CampaignResult, program: Program, seen: Dict[str, Finding],
                   start: float, deadline: float) -> None:
    """The raw-memory check on ``program`` (and, the first time, the parked-greenlet
    budget), when the time share allows; findings are recorded like any other."""
    now = time.monotonic()
    if result.memory_checks:
        typical = result.memory_seconds / result.memory_checks
        # The next check counted in (at the typical length of one): else the share is
        # exceeded by a check each time (4 of about 1.1 s each in a 30 s job: 15 %).
        if result.memory_seconds + typical > config.memory_share * (now - start) \
                or deadline - now < 2 * typical:
            return
    elif deadline - now < FIRST_MEMORY_CHECK:
        return
    first = result.memory_checks == 0
    t0 = time.monotonic()
    try:
        finding = memory_finding(program, config, executor, notes=result.notes,
                                 deadline=deadline,
                                 timeout=min(memcheck.PROBE_TIMEOUT, deadline - now))
        if finding is not None:
            _record(finding, result, seen, config, executor)
        elif first and config.parked_budget:
            finding = parked_finding(config, executor, notes=result.notes)
            if finding is not None:
                _record(finding, result, seen, config, executor)
    finally:
        result.memory_checks += 1
        result.memory_seconds += time.monotonic() - t0


def _why(error: OSError, where: Path) -> str:
    return f"{error.strerror or error} ({error.filename or where})"


def verify(finding: Finding, script: Path, config: CampaignConfig,
           memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT) -> Finding:
    """The finding with the result of its reproducer run standalone
    (``greenfuzz.harness.reporting.reproduce``), under the programs' memory limit."""
    signum = finding.observation.extra.get("signum")
    raw = memcheck.is_raw(finding.verdict)
    # A memory measurement is noisy where a trace is not: it is repeated (each run
    # applies the leak rule afresh) before the finding counts as not reproduced.  A
    # reproducer that diverged otherwise met another bug first (greenlet 3.5.6 on
    # CPython 3.11 aborts at exit now and then with a daemon thread switching, the
    # smallest program of a mismatch at exit may need one): it runs again too.
    for _ in range(RAW_ATTEMPTS):
        outcome = run_reproducer(script, kind=finding.kind, impl=config.impl.spec,
                                 python=config.python, timeout=config.timeout,
                                 signum=signum if isinstance(signum, int) else None,
                                 memory_limit=memory_limit, index=finding.verdict.index)
        if outcome.reproduced or not (raw or outcome.otherwise):
            break
    finding = replace(finding, reproduction=outcome)
    return verify_plain(finding, script.with_name(f"{finding.id}.plain.py"),
                        python=config.python, timeout=config.timeout)
