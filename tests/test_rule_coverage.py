"""Rule coverage: every rule of the model has a name, and counting says which fired."""

from __future__ import annotations

import json
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import List

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from greenfuzz.harness import families as registry
from greenfuzz.harness.cli.main import main
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.families.base import Exc
from greenfuzz.harness.model import CORE_RULES, predict, rules
from greenfuzz.harness.program.ir import Drop, Program, Raise, Spawn, Switch
from greenfuzz.harness.search import campaign
from greenfuzz.harness.search.campaign import CampaignConfig, run_campaign

MUTANTS = Path(__file__).parent / "mutants"


def _fired(program: Program) -> Counter:
    fired: Counter = Counter()
    predict(program, fired)
    return fired


def test_every_rule_has_one_name() -> None:
    names = rules()
    assert len(names) == len(set(names))
    assert {f"op:{name}" for name in registry.op_types()} <= set(names)
    assert {f"core:{r}" for r in CORE_RULES} <= set(names)


def test_only_named_rules_fire() -> None:
    program = Program(main=(Spawn("g1"), Switch("g1", (1,)), Drop("g1")),
                      greenlets=(("g1", (Switch("main"), Raise(Exc("ValueError")))),))
    fired = _fired(program)
    assert set(fired) <= set(rules())


def test_a_kill_and_a_start_are_counted() -> None:
    # g1 starts, switches back to main and is dropped while suspended: collected, killed.
    program = Program(main=(Spawn("g1"), Switch("g1", (1,)), Drop("g1")),
                      greenlets=(("g1", (Switch("main"),)),))
    fired = _fired(program)
    assert fired["core:enter.start"] == 1
    assert fired["core:collect.kill"] == 1
    assert fired["core:kill"] == 1
    assert fired["op:Switch"] == 2
    assert fired["op:Drop"] == 1
    assert fired["core:finish.main"] == 1
    assert fired["core:receive.raise"] == 0


def test_an_uncaught_raise_unwinds_to_the_parent() -> None:
    program = Program(main=(Spawn("g1"), Switch("g1", catch=True)),
                      greenlets=(("g1", (Raise(Exc("ValueError")),)),))
    fired = _fired(program)
    assert fired["op:Raise"] == 1
    assert fired["core:unwind.out"] == 1  # out of run: g1 ends
    assert fired["core:finish.raise"] == 1
    assert fired["core:receive.raise"] == 1  # main's switch gets it back
    assert fired["core:fail.caught"] == 1


def test_counts_add_up_over_programs() -> None:
    program = Program(main=(Spawn("g1"), Switch("g1")), greenlets=(("g1", ()),))
    fired: Counter = Counter()
    predict(program, fired)
    predict(program, fired)
    assert fired["core:enter.start"] == 2
    assert fired["core:finish.return"] == 4  # g1 and main, each time


def test_fuzz_reports_rule_coverage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stats = tmp_path / "stats.json"
    status = main(["fuzz", "--in-process", "--max-examples", "40", "--seed", "1",
                   "--families", "core,stack", "--no-memory", "--quiet",
                   "--out", str(tmp_path / "out"), "--stats", str(stats)])
    assert status == 0
    data = json.loads(stats.read_text())
    assert data["programs"] + data["repeats"] >= 40  # drawn: run, or run before
    assert set(data["rules"]) == set(rules())
    assert data["rules"]["core:enter.start"] > 0 and data["rules"]["op:Recurse"] > 0
    assert data["rules"]["op:Trace"] == 0  # tracing was not drawn
    assert "op:Trace" in data["never_fired"]
    assert data["op_pairs_seen"] > 0
    assert "model rules fired" in capsys.readouterr().out


def _findings(tmp: Path, mutant: str) -> List[str]:
    config = CampaignConfig(impl=implementations.load(str(MUTANTS / mutant)), out=tmp,
                            budget=120, max_examples=150, seed=11, isolate=False,
                            memory=False, verify=False, families=("core",))
    return sorted(f.program.dumps() for f in run_campaign(config).findings)


@pytest.mark.slow
def test_same_seed_same_findings(tmp_path: Path) -> None:
    first = _findings(tmp_path / "a", "kwargs_dropped.py")
    assert first  # the mutant is found
    assert _findings(tmp_path / "b", "kwargs_dropped.py") == first


@pytest.mark.parametrize("remember", [True, False])
def test_a_program_drawn_again_is_not_run_again(tmp_path: Path, remember: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis draws an equal program from other choices: it runs once, and the
    repeats are counted apart from the programs run (without the memory: every time)."""
    config = CampaignConfig(impl=implementations.load("greenlet"), out=tmp_path,
                            isolate=False, memory=False, verify=False, families=("core",))
    runs: List[Program] = []
    judge = campaign.judge
    monkeypatch.setattr(campaign, "judge",
                        lambda program, *a, **k: runs.append(program) or judge(program, *a, **k))
    result = campaign.CampaignResult()
    test = campaign._make_test(config, None, result, time.monotonic(), [], lambda r: None,
                               passed=OrderedDict() if remember else None)

    @settings(max_examples=10, database=None, phases=[Phase.generate], deadline=None)
    @given(st.integers(0, 10**6).map(
        lambda _: Program(main=(Spawn("g1"), Switch("g1")), greenlets=(("g1", ()),))))
    def draw(program: Program) -> None:
        test(program)

    draw()
    assert len(runs) == result.examples
    if remember:
        assert result.examples == 1 and result.repeats == 9
    else:
        assert result.examples == 10 and result.repeats == 0
