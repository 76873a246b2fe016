"""Only confirmed findings fail a run, and documented changes between greenlet releases
are known, not findings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import pytest
from rich.console import Console

from greenfuzz.harness.cli import fuzz
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.execution.runner import Observation
from greenfuzz.harness.judging import differences
from greenfuzz.harness.judging.checks import Verdict
from greenfuzz.harness.program.ir import InThread, Program, Spawn, Switch
from greenfuzz.harness.reporting.findings import Finding
from greenfuzz.harness.reporting.reproduce import Reproduction, run_reproducer
from greenfuzz.harness.search import campaign
from greenfuzz.harness.search.campaign import CampaignConfig, CampaignResult, judge


def _finding(reproduced: bool) -> Finding:
    return Finding(Program(), [], Observation([]), Verdict("leak", "grew", None, "leak:raw"),
                   "greenlet", reproduction=Reproduction(reproduced, "exit status 0"))


@pytest.mark.parametrize(("reproduced", "strict", "status"),
                         [(True, False, 1), (False, False, 0), (False, True, 1)])
def test_only_confirmed_findings_fail_the_run(monkeypatch, tmp_path, reproduced: bool,
                                              strict: bool, status: int) -> None:
    finding = _finding(reproduced)
    assert finding.confirmed is reproduced
    assert finding.to_json()["confirmed"] is reproduced
    monkeypatch.setattr(fuzz, "run_campaign",
                        lambda config, progress, executor: CampaignResult(
                            examples=1, findings=[finding], elapsed=1.0))

    class Config:
        impl = Implementation("greenlet", object(), version="3.0.3")
        out, python, seed = tmp_path, None, 1

    console = Console(record=True, width=120)
    args = argparse.Namespace(programs_per_child=1, in_process=True, budget=1.0,
                              quiet=True, strict=strict)
    assert fuzz._fuzz(args, console, Config(), None) == status
    text = console.export_text()
    assert ("unconfirmed" in text) is (not reproduced)


def test_release_profiles_apply_by_range() -> None:
    def ids(version: str) -> set:
        found = differences.for_greenlet(version)
        return {d.id for d in found.differences} if found else set()

    old = differences.for_greenlet("1.1.2")
    assert old is not None and ids("1.1.2") == {"thread-main-not-dead"}
    assert all("2.0.0a1" in d.source for d in old.differences)
    assert "thread-main-not-dead" in ids("1.1.3.post0")
    assert "thread-main-not-dead" not in ids("2.0.0a1")
    assert "thread-main-not-dead" not in ids("3.0.3")
    # Known bugs of later releases are bundled the same way (greenlet-open-bugs.json).
    assert "parent-chain-into-ended-thread" in ids("3.0.3")
    assert differences.release_key("2.0.0a1") < differences.release_key("2.0.0") \
        < differences.release_key("2.0.0.post1") < differences.release_key("2.0.1")


def test_dead_thread_main_is_known_before_2_0() -> None:
    """greenlet 1.x: the thread event says the ended thread's main greenlet is alive."""
    program = Program(main=(InThread(()),))
    expected = [("main", -1, "start", ((), {})), ("main", 0, "thread", True)]
    observed = [("main", -1, "start", ((), {})), ("main", 0, "thread", False)]
    old = differences.for_greenlet("1.1.2")
    assert old is not None
    found = old.known(program, "mismatch", expected, observed, 1)
    assert found is not None and found.id == "thread-main-not-dead"
    assert old.known(program, "mismatch", expected, [*expected[:1], ("main", 0, "x", 1)],
                     1) is None


def test_release_range_must_be_release_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"format": "greenfuzz-profile/1", "greenlet": {"before": "x y"}, '
                   '"differences": []}')
    with pytest.raises(differences.ProfileError, match="release number"):
        differences.load(str(bad))


def test_a_reproducer_confirms_only_the_divergence_it_was_found_with(tmp_path: Path) -> None:
    """The standalone reproducer must diverge where the campaign saw the finding diverge:
    exit status 1 at another event is another divergence (a known bug met on the way once
    confirmed a finding its reproducer did not show)."""
    mutant = str(Path(__file__).parent / "mutants" / "kwargs_dropped.py")
    program = Program(main=(Spawn("g1"), Switch("g1", (1,), (("a", 2),))),
                      greenlets=(("g1", ()),))
    with IsolatedExecutor(mutant, timeout=2.0) as executor:
        config = CampaignConfig(impl=Implementation(mutant), out=tmp_path, timeout=2.0)
        finding = judge(program, config, executor)
    assert finding.kind == "mismatch" and finding.verdict.index is not None
    script = finding.save(tmp_path)[1]

    def run(index: Optional[int]) -> Reproduction:
        return run_reproducer(script, kind="mismatch", impl=mutant, python=None,
                              timeout=5.0, index=index)

    same = run(finding.verdict.index)
    assert same.reproduced and not same.otherwise and run(None).reproduced
    other = run(finding.verdict.index + 1)
    assert not other.reproduced and other.otherwise
    assert other.how == (f"exit status 1, but it diverges at event {finding.verdict.index}, "
                         f"not {finding.verdict.index + 1}")


@pytest.mark.parametrize(("outcomes", "runs", "confirmed"), [
    # another bug met first (a known crash at exit), then the finding's own divergence
    ([Reproduction(False, "killed by SIGABRT", otherwise=True),
      Reproduction(True, "exit status 1 (diverges from the model)")], 2, True),
    # the reproducer agrees with the model: not run again
    ([Reproduction(False, "exit status 0")], 1, False),
    # other divergences every time: at most three runs
    ([Reproduction(False, "killed by SIGABRT", otherwise=True)] * 5, 3, False),
])
def test_a_reproducer_that_diverged_otherwise_runs_again(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outcomes: list, runs: int,
        confirmed: bool) -> None:
    left = list(outcomes)
    monkeypatch.setattr(campaign, "run_reproducer", lambda *a, **k: left.pop(0))
    monkeypatch.setattr(campaign, "verify_plain", lambda finding, *a, **k: finding)
    finding = Finding(Program(), [], Observation([]),
                      Verdict("mismatch", "differs", 3, "mismatch:value->value"), "greenlet")
    config = CampaignConfig(impl=Implementation("greenlet"), out=tmp_path)
    verified = campaign.verify(finding, tmp_path / "finding.py", config)
    assert len(outcomes) - len(left) == runs
    assert verified.confirmed is confirmed
