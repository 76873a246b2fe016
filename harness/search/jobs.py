"""``greenfuzz fuzz --jobs N``: N campaigns side by side, a process each, as one run.

Each job is ``python -c 'from ...jobs import job_main; job_main()'`` running the ordinary
campaign (``run_campaign``) with a worker of its own, on a seed derived from the run's
(``job_seed``): job 0 keeps the run's seed, so its programs are those of ``--jobs 1``.
The jobs share the findings folder and the Hypothesis example database in it
(``DirectoryBasedExampleDatabase`` writes each entry to a file of its own, safe for
processes side by side), and a folder of the run's own (``shared.SharedRun``) in which
each finding signature is claimed once: two jobs finding the same failure save one
finding.  ``--max-examples`` is the run's total, shared out between the jobs; the budget
is wall-clock, the same for every job.

A job reports to this process over a pipe (``multiprocessing.connection`` framing):
progress at most every ``PROGRESS_INTERVAL`` seconds, then its ``CampaignResult``.  Jobs
run in sessions of their own, so that the terminal's Ctrl-C reaches this process only;
it passes SIGINT / SIGTERM on to every job, which saves what it was shrinking and
reports, gives them ``GRACE`` seconds, and kills those still running; a job dies with
this process too (``PR_SET_PDEATHSIG``), and its worker with it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.lifetime import child_setup
from greenfuzz.harness.reporting.findings import clean_stale
from greenfuzz.harness.search.campaign import CampaignConfig, CampaignResult, run_campaign
from greenfuzz.harness.search.interrupts import Interrupted, stop_on_signals, wind_down
from greenfuzz.harness.search.shared import SharedRun

#: Seconds between a job's progress reports.
PROGRESS_INTERVAL = 0.25
#: Seconds the jobs get, after a signal, to save what they hold and report before they
#: are killed (a job stops within one program's time limit; the promise is two seconds).
GRACE = 1.5
#: What the signals that stop a run are blocked around: a message half sent or half read
#: would garble the pipe for the rest of the run.
_STOPPING = {signal.SIGINT, signal.SIGTERM}


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def job_seed(seed: Optional[int], job: int) -> Optional[int]:
    """Job 0 keeps ``seed``; each other job a 48-bit number hashed from it.  The
    campaign seeds batch ``i`` with ``seed + i``: seeds far apart keep the jobs' batches
    from repeating one another."""
    if seed is None or job == 0:
        return seed
    digest = hashlib.sha256(f"greenfuzz job {job} of seed {seed}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def job_share(total: int, jobs: int, job: int) -> int:
    """Job ``job``'s part of ``total`` programs: equal parts, the first jobs one more."""
    return total // jobs + (1 if job < total % jobs else 0)


@dataclass
class RunProgress:
    """What the progress line shows for the whole run (``cli.progress``)."""

    examples: int = 0
    elapsed: float = 0.0
    findings: List[str] = field(default_factory=list)
    running: int = 0


class JobError(Exception):
    """A job failed (a greenfuzz bug): the message holds its traceback; ``result``
    merges what every job reported."""

    def __init__(self, message: str, result: CampaignResult) -> None:
        super().__init__(message)
        self.result = result


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT / SIGTERM wait until the block ends (then the handler runs as usual)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class _Job:
    index: int
    seed: Optional[int]
    process: subprocess.Popen
    conn: Connection
    open: bool = True
    examples: int = 0
    findings: List[str] = field(default_factory=list)
    confirmed: bool = False
    result: Optional[CampaignResult] = None
    error: Optional[str] = None

    def receive(self) -> None:
        """Read one message (or the end of the pipe)."""
        try:
            with _signals_held():
                kind, payload = self.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            self.close()
            return
        if kind == "progress":
            self.examples, self.findings, self.confirmed = payload
        elif kind == "result":
            self.result = payload
            self.examples = payload.examples
            self.findings = [f.id for f in payload.findings]
            self.confirmed = any(f.confirmed for f in payload.findings)
        elif kind == "error":
            self.error = payload

    def close(self) -> None:
        self.open = False
        self.conn.close()

    def kill(self) -> None:
        """SIGKILL the job if it still runs, and reap it (its worker dies with it)."""
        if self.process.poll() is None:
            with suppress(OSError):
                self.process.kill()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def run_jobs(config: CampaignConfig, jobs: int, memory_limit: Optional[int],
             progress: Callable[[RunProgress], None] = lambda p: None) -> CampaignResult:
    """Run ``jobs`` campaigns of ``config`` side by side (isolated only) and merge their
    results; ``JobError`` when one of them failed.  Called under ``stop_on_signals``."""
    start = time.monotonic()
    removed = clean_stale(config.out)  # once, before any job writes there
    jobs = max(1, min(jobs, config.max_examples))
    interrupted: Optional[int] = None
    started: List[_Job] = []
    with tempfile.TemporaryDirectory(prefix="greenfuzz-jobs-") as folder:
        controller = SharedRun(Path(folder), -1)
        try:
            for index in range(jobs):
                seed = job_seed(config.seed, index)
                job_config = replace(
                    config, seed=seed, max_examples=job_share(config.max_examples, jobs, index),
                    shared=SharedRun(Path(folder), index),
                    # Bytes per parked greenlet are measured once per run, not per job.
                    parked_budget=config.parked_budget if index == 0 else 0)
                started.append(_start(index, seed, job_config, memory_limit,
                                      deadline=start + config.budget))
            _supervise(started, config, controller, start, progress)
        except Interrupted as e:
            wind_down()  # from here signals are only recorded: the jobs are saving
            interrupted = e.signum
            for job in started:
                if job.process.poll() is None:
                    with suppress(OSError):
                        job.process.send_signal(e.signum)
            _supervise(started, config, controller, start, progress,
                       until=time.monotonic() + GRACE)
        finally:
            for job in started:
                job.kill()
                if job.open:
                    job.close()
    result = merge([job.result for job in started if job.result is not None],
                   elapsed=time.monotonic() - start, budget=config.budget,
                   interrupted=interrupted)
    result.per_job = [{"job": job.index, "seed": job.seed,
                       "programs": job.result.examples if job.result else job.examples,
                       "repeats": job.result.repeats if job.result else 0,
                       "programs_digest": job.result.programs_digest if job.result else None}
                      for job in started]
    if removed:
        result.notes.insert(0, f"removed {len(removed)} file(s) an interrupted run left half "
                               f"written in {config.out}: {', '.join(sorted(removed)[:5])}")
    failed = [job for job in started if job.error is not None
              or (job.result is None and interrupted is None)]
    for job in started:
        if job.result is None and interrupted is not None:
            result.notes.append(f"job {job.index} did not report within {GRACE:g} s of the "
                                "signal and was killed (what it had saved is on disk)")
    if failed:
        job = failed[0]
        why = job.error or (f"ended without a result (exit status "
                            f"{job.process.returncode})")
        raise JobError(f"job {job.index} of {jobs} failed: {why}", result)
    return result


def _start(index: int, seed: Optional[int], config: CampaignConfig,
           memory_limit: Optional[int], deadline: float) -> _Job:
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", "from greenfuzz.harness.search.jobs import job_main; "
             "job_main()", str(write)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write,),
            start_new_session=True, preexec_fn=child_setup())
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    job = _Job(index, seed, process, Connection(read, writable=False))
    assert process.stdin is not None
    try:
        process.stdin.write(pickle.dumps((config, memory_limit, deadline)))
        process.stdin.close()
    except OSError:
        pass  # it died at once: the pipe's end says so
    return job


def _supervise(started: List[_Job], config: CampaignConfig, controller: SharedRun,
               start: float, progress: Callable[[RunProgress], None],
               until: Optional[float] = None) -> None:
    """Read the jobs' messages until every pipe has ended (or ``until``), showing
    progress; without ``keep_going``, the first confirmed finding stops every job."""
    stopping = False
    while any(job.open for job in started):
        left = None if until is None else until - time.monotonic()
        if left is not None and left <= 0:
            return
        ready = wait([job.conn for job in started if job.open],
                     timeout=PROGRESS_INTERVAL if left is None else min(left, PROGRESS_INTERVAL))
        for job in started:
            if job.open and job.conn in ready:
                job.receive()
        if not stopping and not config.keep_going and any(j.confirmed for j in started):
            controller.request_stop()
            stopping = True
        progress(RunProgress(sum(j.examples for j in started), time.monotonic() - start,
                             [f for j in started for f in j.findings],
                             sum(j.open for j in started)))


def merge(results: List[CampaignResult], elapsed: float, budget: float,
          interrupted: Optional[int]) -> CampaignResult:
    """One result for the run: counts added up, findings and notes put together (a note
    several jobs made once)."""
    merged = CampaignResult(elapsed=elapsed, interrupted=interrupted,
                            overrun=max(0.0, elapsed - budget))
    notes: Dict[str, None] = {}
    for r in results:
        merged.examples += r.examples
        merged.findings += r.findings
        merged.saved += r.saved
        merged.model_errors += r.model_errors
        merged.refused += r.refused
        merged.run_seconds += r.run_seconds
        merged.unsaved += r.unsaved
        merged.memory_checks += r.memory_checks
        merged.memory_seconds += r.memory_seconds
        merged.duplicates += r.duplicates
        merged.repeats += r.repeats
        merged.rules.update(r.rules)
        merged.pairs.update(r.pairs)
        merged.state_dependent_by.update(r.state_dependent_by)
        for counts, into in ((r.known, merged.known), (r.family_counts, merged.family_counts)):
            for name, count in counts.items():
                into[name] = into.get(name, 0) + count
        notes.update(dict.fromkeys(r.notes))
    merged.notes = list(notes)
    return merged


def job_main() -> None:
    """A job: read its config on standard input, run the campaign, report on the pipe
    whose descriptor is the first argument."""
    conn = Connection(int(sys.argv[1]), readable=False)

    def send(message: Any) -> None:
        with _signals_held():
            conn.send(message)

    last = [0.0]

    def report(result: CampaignResult) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL:
            last[0] = now
            send(("progress", (result.examples, [f.id for f in result.findings],
                               any(f.confirmed for f in result.findings))))

    try:
        with stop_on_signals():
            try:
                config, memory_limit, deadline = pickle.load(sys.stdin.buffer)
                result = _run_job(config, memory_limit, deadline, report)
            except Interrupted as e:  # before the campaign began: nothing to keep
                wind_down()
                result = CampaignResult(interrupted=e.signum)
            send(("result", result))
    except BaseException as e:  # a greenfuzz bug: the controller reports it
        with suppress(Exception):
            send(("error", f"{type(e).__name__}: {e}\n"
                           + "".join(traceback.format_exception(type(e), e, e.__traceback__))))
        raise SystemExit(3) from None
    finally:
        conn.close()


def _run_job(config: CampaignConfig, memory_limit: Optional[int], deadline: float,
             report: Callable[[CampaignResult], None]) -> CampaignResult:
    """The campaign with a worker of its own, started as ``cli.common.prepare`` does,
    until the run's ``deadline`` (``time.monotonic``: one clock for every process of the
    machine), so that starting the job is not time added to the budget."""
    executor: Optional[IsolatedExecutor] = None
    try:
        executor = IsolatedExecutor(
            config.impl.spec, python=config.python or sys.executable,
            timeout=config.timeout, memory_limit=memory_limit,
            programs_per_child=config.programs_per_child)
        executor.start()
        budget = max(0.01, deadline - time.monotonic())
        return run_campaign(replace(config, budget=budget), report, executor)
    finally:
        wind_down()  # the campaign is over: a signal now must not cut its report short
        if executor is not None:
            executor.close()
