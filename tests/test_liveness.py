"""The liveness check: which greenlets exist after each drop, predicted and observed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from greenfuzz.harness import model
from greenfuzz.harness.execution import implementations, runner
from greenfuzz.harness.judging import checks, leaks
from greenfuzz.harness.program.ir import Drop, Program, SetParent, Spawn, Switch
from greenfuzz.harness.reporting.findings import Finding
from tests.helpers import GREENLET

MUTANTS = Path(__file__).parent / "mutants"
KEEP_ALIVE = implementations.load(str(MUTANTS / "keep_alive.py"))

#: g2's parent link keeps g1 alive after its drop; re-parenting g2 frees it.
PARENT_LINK = Program(
    main=(Spawn("g1"), Spawn("g2", parent="g1"), Drop("g1"), SetParent("g2", "main"),
          Drop("g2")),
    greenlets=(("g1", ()), ("g2", ())),
)


def alive_events(trace: list) -> list:
    return [e[3] for e in trace if e[2] == "alive"]


def test_model_counts_parent_links() -> None:
    expected = model.predict(PARENT_LINK)
    # after drop g1 (held by g2.parent), after drop g2 (g1 freed by the re-parenting), end
    assert alive_events(expected) == [("g1", "g2"), (), ()]
    assert model.explain_alive(PARENT_LINK, expected.index(
        ("main", -1, "alive", ("g1", "g2"))))["g1"] == ["g2's parent link"]


def test_greenlet_agrees_with_the_model() -> None:
    observed = runner.run_inprocess(PARENT_LINK, GREENLET)
    assert checks.compare(PARENT_LINK, model.predict(PARENT_LINK), observed).ok


def test_pending_switch_keeps_target_alive() -> None:
    # g1 switches to g2 and is suspended there; dropping g2 then cannot free it.
    program = Program(main=(Spawn("g1"), Spawn("g2"), Switch("g1"), Drop("g2")),
                      greenlets=(("g1", (Switch("g2"),)), ("g2", (Switch("main"),))))
    expected = model.predict(program)
    assert ("main", -1, "alive", ("g1", "g2")) in expected
    assert checks.compare(program, expected, runner.run_inprocess(program, GREENLET)).ok


def test_kept_greenlet_is_a_leak_naming_its_holder() -> None:
    program = Program(main=(Spawn("g1"), Drop("g1")), greenlets=(("g1", ()),))
    expected = model.predict(program)
    observed = runner.run_inprocess(program, KEEP_ALIVE)
    verdict = checks.compare(program, expected, observed)
    assert verdict.kind == checks.LEAK and verdict.signature == "leak:kept"
    assert "after main dropped g1" in verdict.summary
    explained = leaks.explain(program, verdict, expected, observed.trace, KEEP_ALIVE, None, 2.0)
    assert "attribute _KEEP" in explained.summary, explained.summary


def test_freed_too_early_names_what_should_hold_it() -> None:
    expected = model.predict(PARENT_LINK)
    trace = list(expected)
    at = trace.index(("main", -1, "alive", ("g1", "g2")))
    trace[at] = ("main", -1, "alive", ("g2",))
    verdict = checks.compare(PARENT_LINK, expected, runner.Observation(trace=trace))
    assert verdict.signature == "leak:freed"
    assert "g1 (by g2's parent link)" in verdict.summary


def test_unweakrefable_greenlets_are_not_checked() -> None:
    expected = model.predict(PARENT_LINK)
    trace = [(w, pc, k, None if k == "alive" else p) for w, pc, k, p in expected]
    assert checks.compare(PARENT_LINK, expected, runner.Observation(trace=trace)).ok


def test_reproducer_prints_the_holder(tmp_path: Path) -> None:
    program = Program(main=(Spawn("g1"), Drop("g1")), greenlets=(("g1", ()),))
    expected = model.predict(program)
    observed = runner.run_inprocess(program, KEEP_ALIVE)
    finding = Finding(program, expected, observed, checks.compare(program, expected, observed),
                      str(MUTANTS / "keep_alive.py"))
    script = tmp_path / "repro.py"
    script.write_text(finding.reproducer())

    def run(impl: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=30, env={"GREENFUZZ_IMPL": impl, "PATH": ""})

    broken = run(str(MUTANTS / "keep_alive.py"))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "g1 is still alive, held by: list" in broken.stdout
    assert "attribute _KEEP" in broken.stdout
    fixed = run("greenlet")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
