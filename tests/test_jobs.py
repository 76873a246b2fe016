"""``greenfuzz fuzz --jobs N``: jobs side by side as one run.

Two jobs finding the same mutant's bug save one finding; each job draws the same programs
for the same seed (job 0 those of ``--jobs 1``), and ``--stats`` adds up the jobs'
counts; SIGINT / SIGTERM stop every job and every process the jobs started; a bad
``--jobs`` is one line and exit status 2.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import psutil
import pytest

from greenfuzz.harness.search.campaign import CampaignResult
from greenfuzz.harness.search.jobs import job_seed, job_share, merge
from greenfuzz.harness.search.shared import SharedRun
from tests.helpers import run_cli

MUTANT = Path(__file__).parent / "mutants" / "list_return.py"
#: The promise: a run stops this many seconds after the signal at most.
STOP_WITHIN = 2.0
#: Options that keep a run to fuzzing itself: one family, no raw-memory checks.
QUICK = ("--families", "core", "--no-memory")


@pytest.mark.parametrize("value", ["0", "-1", "x", "2000"])
def test_a_bad_jobs_value_is_one_line_and_exit_2(value: str, tmp_path: Path) -> None:
    done = run_cli("fuzz", f"--jobs={value}", "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--jobs" in lines[0], done.stderr
    assert not list(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.parametrize("args, env, needle", [
    (("--jobs", "2", "--in-process"), {}, "--in-process"),
    ((), {"GREENFUZZ_JOBS": "0"}, "GREENFUZZ_JOBS"),
    ((), {"GREENFUZZ_JOBS": "many"}, "GREENFUZZ_JOBS"),
])
def test_jobs_that_cannot_be_are_one_line_and_exit_2(args: tuple, env: dict, needle: str,
                                                     tmp_path: Path) -> None:
    done = run_cli("fuzz", *args, "--out", str(tmp_path), env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr


def test_job_seeds_and_shares() -> None:
    seeds = [job_seed(7, k) for k in range(8)]
    assert seeds[0] == 7 and len(set(seeds)) == 8
    assert seeds == [job_seed(7, k) for k in range(8)]  # derived, not drawn
    # The campaign seeds batch i with seed + i: no job's batches meet another's.
    assert min(abs(a - b) for a in seeds for b in seeds if a != b) > 10**6
    assert job_seed(None, 3) is None
    for total, jobs in ((10, 3), (2, 2), (10**9, 7)):
        shares = [job_share(total, jobs, k) for k in range(jobs)]
        assert sum(shares) == total and max(shares) - min(shares) <= 1


def test_a_signature_is_claimed_by_one_job_only(tmp_path: Path) -> None:
    one, two = SharedRun(tmp_path, 0), SharedRun(tmp_path, 1)
    assert two.holder("mismatch@3") is None
    assert one.claim("mismatch@3", "mismatch-0123456789") is None
    assert one.claim("mismatch@3", "mismatch-0123456789") is None  # still its own
    assert two.claim("mismatch@3", "mismatch-abcdefabcd") == "job 0, mismatch-0123456789"
    assert two.holder("mismatch@3") == "job 0, mismatch-0123456789"
    assert one.holder("mismatch@3") is None  # not another job's
    assert two.claim("hang", "hang-abcdefabcd") is None
    assert not one.stop_requested()
    SharedRun(tmp_path, -1).request_stop()
    assert one.stop_requested() and two.stop_requested()


def test_merge_adds_the_jobs_up() -> None:
    a = CampaignResult(examples=3, run_seconds=1.0, rules=Counter({"r": 2, "s": 1}),
                       pairs=Counter({("A", "B"): 1}), known={"d": 1},
                       family_counts={"core": 3}, notes=["same", "a"], duplicates=1)
    b = CampaignResult(examples=4, run_seconds=2.0, rules=Counter({"r": 5}),
                       pairs=Counter({("A", "B"): 2, ("B", "C"): 1}), known={"d": 2, "e": 1},
                       family_counts={"core": 4, "gc": 1}, notes=["same", "b"])
    merged = merge([a, b], elapsed=9.0, budget=5.0, interrupted=None)
    assert merged.examples == 7 and merged.run_seconds == 3.0
    assert merged.rules == Counter({"r": 7, "s": 1})
    assert merged.pairs == Counter({("A", "B"): 3, ("B", "C"): 1})
    assert merged.known == {"d": 3, "e": 1}
    assert merged.family_counts == {"core": 7, "gc": 1}
    assert merged.notes == ["same", "a", "b"]
    assert merged.duplicates == 1 and merged.overrun == 4.0


@pytest.mark.slow
def test_two_jobs_find_a_mutant_once(tmp_path: Path) -> None:
    done = run_cli("fuzz", "--jobs", "2", "--impl", str(MUTANT), "--seed", "1",
                   "--budget", "60", "--out", str(tmp_path), *QUICK, timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr
    findings = sorted(tmp_path.glob("*-*.json"))
    assert len(findings) == 1, done.stdout
    assert findings[0].name.startswith("mismatch-")
    assert json.loads(findings[0].read_text())["confirmed"] is True
    assert done.stdout.count("programs run") == 1  # one summary for both jobs
    assert f"2, seeds 1, {job_seed(1, 1)}" in done.stdout, done.stdout
    # Both jobs met the bug (list_return breaks every keyword switch): the second one
    # to meet it counts it, neither shrinking nor saving it.
    assert "failed like another job's finding" in done.stdout, done.stdout


def _stats(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / name
    done = run_cli("fuzz", *args, "--budget", "600", "--out", str(out), "--stats",
                   str(out / "stats.json"), *QUICK, "--no-verify", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "stats.json").read_text())


@pytest.mark.slow
def test_each_job_draws_the_same_programs_for_the_same_seed(tmp_path: Path) -> None:
    """Two jobs, 2 x 40 programs: job 0's are those of ``--jobs 1`` with the run's seed,
    job 1's those of ``--jobs 1`` with the seed derived for it, and the run's rule counts
    are the two runs' added up."""
    both = _stats(tmp_path, "both", "--jobs", "2", "--seed", "11", "--max-examples", "80")
    assert both["programs"] + both["repeats"] == 80  # drawn: run, or drawn again
    jobs = both["jobs"]
    assert [j["seed"] for j in jobs] == [11, job_seed(11, 1)]
    assert [j["programs"] + j["repeats"] for j in jobs] == [40, 40]
    alone = [_stats(tmp_path, f"alone{k}", "--jobs", "1", "--seed", str(j["seed"]),
                    "--max-examples", "40") for k, j in enumerate(jobs)]
    assert [a["programs_digest"] for a in alone] == [j["programs_digest"] for j in jobs]
    assert alone[0]["programs_digest"] != alone[1]["programs_digest"]
    assert both["rules"] == {rule: alone[0]["rules"][rule] + alone[1]["rules"][rule]
                             for rule in both["rules"]}
    assert both["never_fired"] == [r for r in both["rules"] if not both["rules"][r]]


def _descendants(pid: int) -> List[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("signum", [signal.SIGINT,
                                    pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_signal_stops_every_job(signum: int, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenfuzz", "fuzz", "--jobs", "2", "--budget", "120",
         "--out", str(tmp_path), "--families", "core,exceptions"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    seen: List[psutil.Process] = []
    at_once = 0  # the most processes seen running at the same time
    try:
        # Running: two jobs, each with its worker and the worker's forked child.
        # Every process seen over a second once six ran at once: a job's forked child is
        # replaced every 100 programs, so one look can fall between two children (5 seen
        # in a loaded CI run).
        deadline = time.monotonic() + 60
        by_pid: Dict[int, psutil.Process] = {}
        while time.monotonic() < deadline:
            now = _descendants(proc.pid)
            by_pid.update((p.pid, p) for p in now)
            at_once = max(at_once, len(now))
            if at_once >= 6:
                break
            time.sleep(0.1)
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            by_pid.update((p.pid, p) for p in _descendants(proc.pid))
            time.sleep(0.1)
        seen = list(by_pid.values())
        sent = time.monotonic()
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.3)  # a process killed with the run needs a moment to be reaped
    left = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:  # the test must not leave them either
        p.kill()
    assert at_once >= 6, output
    assert proc.returncode == 128 + signum, output
    assert seconds <= STOP_WITHIN, f"stopped {seconds:.2f} s after the signal"
    assert output.count("programs run") == 1, output
    assert f"by {signal.Signals(signum).name}" in output, output
    assert not left, f"still running: {[p.pid for p in left]}"
