"""Scale recipes: every shape passes on greenlet, misbehaviour at scale is found and shrunk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings

from greenfuzz.harness.program.recipes import Recipe
from greenfuzz.harness.search import lockstep, scale
from greenfuzz.strategies.recipes import random_recipes, recipes
from tests import helpers

#: This module's runs are long (large recipes; a root filesystem built once).
run_cli = partial(helpers.run_cli, timeout=900)

PAST_200K = str(Path(__file__).parent / "scale_mutants" / "past_200k.py")


def mutant_threshold(path: str) -> int:
    """The live-greenlet count past which a scale mutant misbehaves, by default: the
    literal in its ``THRESHOLD = int(os.environ.get(..., "N"))``, read without importing."""
    import ast

    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "THRESHOLD":
            (literal,) = [n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant)
                          and isinstance(n.value, str) and n.value.isdigit()]
            return int(literal)
    raise AssertionError(f"{path} declares no THRESHOLD")


@settings(max_examples=25, deadline=None)
@given(recipes(max_greenlets=300))
def test_every_recipe_passes_on_greenlet(recipe: Recipe) -> None:
    result = scale.run_recipe(recipe, "greenlet", stall=60)
    assert result.ok, (result.outcome, result.finding, result.detail)
    assert result.done["switches"] >= recipe.greenlets


@pytest.mark.slow
def test_hypothesis_shrinks_a_recipe_to_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the mutant's threshold at 40 live greenlets, Hypothesis finds a failing recipe
    and shrinks it to the simplest one: just over 40 greenlets, no depth, no extra rounds."""
    monkeypatch.setenv("GREENFUZZ_MUTANT_THRESHOLD", "40")
    failing = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(recipes(max_greenlets=200, shapes=("parked", "ring")))
    def check(recipe: Recipe) -> None:
        result = scale.run_recipe(recipe, PAST_200K, stall=60)
        if not result.ok:
            failing.append(recipe)
            raise AssertionError(result.signature)

    with pytest.raises(AssertionError):
        check()
    smallest = failing[-1]
    assert 40 < smallest.greenlets <= 45, smallest
    assert smallest.depth == 0 and smallest.via == "python", smallest




def test_scale_command_passes_and_reports_phases() -> None:
    done = run_cli("scale", "--greenlets", "20000", "--rounds", "2", "--depth", "4",
                   "--via", "c", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert [p["phase"] for p in data["phases"]] == ["park", "resume", "finish and kill"]
    assert data["phases"][0]["bytes_per_live"] > 1000
    assert data["done"]["switches"] == 20000 * 3 + 10000  # park, two resumes, the finishes


#: The live-greenlet count past which ``past_200k`` misbehaves in the ring test
#: (``GREENFUZZ_MUTANT_THRESHOLD``; 200,000 by default, a run of 210,000 took about
#: 190 s on 2 cores under load): the same search and bisection, at a tenth of the size.
RING_THRESHOLD = 20_000


@pytest.mark.slow
def test_a_bug_past_a_live_count_is_found_and_shrunk(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant misbehaves only with more than its threshold of greenlets alive
    (200,000 by default, ``RING_THRESHOLD`` here): a ring run 5% past it finds it,
    shrinks the count to just above the threshold (within 0.25%), and the saved
    reproducer fails on the mutant and passes on greenlet."""
    assert mutant_threshold(PAST_200K) == 200_000 > RING_THRESHOLD
    monkeypatch.setenv("GREENFUZZ_MUTANT_THRESHOLD", str(RING_THRESHOLD))
    done = run_cli("scale", "--greenlets", str(RING_THRESHOLD * 105 // 100), "--shape",
                   "ring", "--impl", PAST_200K, "--out", str(tmp_path), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert RING_THRESHOLD < data["shrunk_recipe"]["greenlets"] \
        <= RING_THRESHOLD * 1.0025, data["shrunk_recipe"]
    (script,) = tmp_path.glob("scale-*.py")
    broken = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, GREENFUZZ_IMPL=PAST_200K))
    assert broken.returncode == 1, broken.stdout[-2000:] + broken.stderr[-2000:]
    fixed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, GREENFUZZ_IMPL="greenlet"))
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]


def test_a_recipe_that_does_not_fit_in_memory_is_refused() -> None:
    done = run_cli("scale", "--greenlets", "100000000", "--depth", "50", "--via", "c",
                   timeout=60)
    assert done.returncode == 2 and "GiB is available" in done.stderr


# -- the random shape, checked by the reference model in lockstep --------------------------

SCALE_MUTANTS = Path(__file__).parent / "scale_mutants"
THROW_PAST_100K = str(SCALE_MUTANTS / "throw_drops_value_past_100k.py")
PARENT_PAST_100K = str(SCALE_MUTANTS / "parent_ignored_past_100k.py")


def _target_events(recipe: Recipe, impl: object = None) -> list:
    """The events the target records for ``recipe``, run in this process."""
    import io

    import greenlet

    from greenfuzz.harness.target import scale_random

    batches: list = []
    run = scale_random.RandomRun(impl or greenlet, recipe.to_json(), batches.append,
                                 io.StringIO())
    run.run()
    return [event for batch in batches for event in batch]


@settings(max_examples=15, deadline=None)
@given(random_recipes(max_greenlets=400))
def test_random_streams_agree_with_the_model_on_greenlet(recipe: Recipe) -> None:
    """The model, stepping the same stream, predicts every event greenlet records."""
    events = _target_events(recipe)
    checker = lockstep.check_batches(recipe.to_json(), [events])
    assert checker.taken == len(events) > 0


def test_a_random_stream_performs_every_kind_of_operation() -> None:
    """One stream of 2,000 greenlets hands out every operation, throws in every style
    (GreenletExit among the types), bogus parents, and targets in every state."""
    from greenfuzz.harness.families import MAIN

    recipe = Recipe("random", 2000, depth=20, seed=3)
    model = lockstep.StreamModel(recipe.to_json())
    model.log = []
    states: Counter = Counter()
    performed = model.performed

    def note(who: str, pc: int, op: object) -> None:
        performed(who, pc, op)
        target = getattr(op, "target", None)
        if isinstance(target, str) and target != MAIN and model.registry.get(target):
            states[model.registry[target].state.value] += 1

    model.performed = note  # type: ignore[method-assign]
    model.begin()
    while model.more():
        model.events.clear()
    kinds = Counter(type(op).__name__ for _, _, op in model.log)
    assert set(kinds) >= {"Switch", "Throw", "Return", "Raise", "Spawn", "SetParent", "Drop",
                          "Recurse", "Inspect"}, kinds
    throws = [op for _, _, op in model.log if type(op).__name__ == "Throw"]
    assert {t.style for t in throws} == {"none", "class", "class_args", "instance"}
    assert any(t.exc is not None and t.exc.type == "GreenletExit" for t in throws)
    assert any(type(op).__name__ == "SetParent" and not isinstance(op.parent, str)
               for _, _, op in model.log)
    assert set(states) == {"unstarted", "suspended", "dead", "running"}, states


def test_the_model_keeps_memory_of_the_live_set_only() -> None:
    """Ten times the operations over ten times the greenlets, with the same names held:
    the model's state (greenlet objects, pending work, events) stays the same size."""
    import gc

    from greenfuzz.harness.model.state import MG

    def held(greenlets: int) -> int:
        recipe = Recipe("random", greenlets, depth=5, seed=1, live=100,
                        operations=5 * greenlets)
        model = lockstep.StreamModel(recipe.to_json())
        model.begin()
        while not model.finished:
            model.fill(len(model.events) + 1000)
            model.events.clear()
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, MG)) + len(model.work)

    small, large = held(2_000), held(20_000)
    assert large < 3 * 100 + 50 and abs(large - small) < 150, (small, large)


def test_the_same_model_judges_the_stream_and_its_program() -> None:
    """A stream turned into an ordinary program (``to_program``) is predicted by the
    ordinary ``predict`` exactly as the lockstep model predicted the stream (``alive``
    events aside: the stream's list the greenlets freed since the previous one), and
    greenlet runs the program as rendered source to the predicted trace."""
    from greenfuzz.harness.execution import implementations, runner
    from greenfuzz.harness.judging import checks
    from greenfuzz.harness.model import predict

    recipe = Recipe("random", 60, depth=0, seed=5, operations=400)
    program = lockstep.to_program(recipe.to_json())
    program.validate()
    model = lockstep.StreamModel(recipe.to_json())
    model.begin()
    while model.more():
        pass
    expected = predict(program)
    assert [e for e in expected if e[2] != "alive"] == \
        [e for e in model.events if e[2] != "alive"]
    observation = runner.run_inprocess(program, implementations.load("greenlet"))
    assert checks.compare(program, expected, observation).ok


@pytest.mark.slow
def test_a_small_random_finding_becomes_an_ordinary_minimized_program(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the throw mutant's threshold at 50 live greenlets, a random run finds it,
    shrinking cuts it to a few dozen greenlets, and it comes out as an ordinary finding
    (a program the usual minimizer shrank, with its readable reproducer)."""
    monkeypatch.setenv("GREENFUZZ_MUTANT_THRESHOLD", "50")
    result = scale.run_recipe(Recipe("random", 2000, depth=20), THROW_PAST_100K, stall=60)
    assert result.outcome == "finding", (result.outcome, result.detail)
    shrunk = scale.shrink(result, THROW_PAST_100K, None, 60)
    assert 50 < shrunk.recipe.greenlets <= 80 and shrunk.recipe.operations \
        < result.recipe.operations, shrunk.recipe
    finding = scale.program_finding(shrunk, THROW_PAST_100K, tmp_path)
    assert finding is not None and finding.kind == "mismatch", finding
    assert finding.program.size() < shrunk.recipe.operations
    assert (tmp_path / f"{finding.id}.py").exists()


def test_random_scale_command_passes_on_greenlet() -> None:
    done = run_cli("scale", "--shape", "random", "--greenlets", "3000", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["outcome"] == "completed"
    assert data["done"]["operations"] == 15_000 == data["recipe"]["operations"]
    assert data["done"]["checked_events"] > 15_000


def test_random_options_need_the_random_shape() -> None:
    done = run_cli("scale", "--greenlets", "10", "--operations", "5", timeout=60)
    assert done.returncode == 2 and "--shape random" in done.stderr


#: The live-greenlet count past which the random-run tests make a 10^5 mutant misbehave
#: (``GREENFUZZ_MUTANT_THRESHOLD``): the same defect, the same search and shrinking, at a
#: tenth of the greenlets (a run of 160,000 took about 400 s on 2 cores).
RANDOM_THRESHOLD = 10_000


@pytest.mark.slow
@pytest.mark.parametrize("mutant", [THROW_PAST_100K, PARENT_PAST_100K],
                         ids=["throw_drops_value", "parent_ignored"])
def test_a_random_run_finds_a_bug_past_a_live_count(mutant: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mutant misbehaves only with more than its threshold of greenlets alive (10^5
    by default, lowered to ``RANDOM_THRESHOLD`` here), in an operation the fixed shapes
    never perform: a random run of 1.6 times the threshold finds it and shrinks the
    greenlet count to the smallest that still fails (a count 0.1% lower passed), the
    finding stays a scale finding (too large for an ordinary program), and the saved
    standalone reproducer fails on the mutant and passes on greenlet."""
    assert mutant_threshold(mutant) == 100_000 > RANDOM_THRESHOLD
    monkeypatch.setenv("GREENFUZZ_MUTANT_THRESHOLD", str(RANDOM_THRESHOLD))
    greenlets = RANDOM_THRESHOLD * 16 // 10
    done = run_cli("scale", "--shape", "random", "--greenlets", str(greenlets), "--impl",
                   mutant, "--out", str(tmp_path), "--json")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(done.stdout)
    shrunk = data["shrunk_recipe"]
    passing = data["largest_passing_greenlets"]
    # More than the threshold alive needs more than that many spawned; the window drops
    # some.
    assert RANDOM_THRESHOLD < shrunk["greenlets"] < greenlets, shrunk
    assert 0 < shrunk["greenlets"] - passing <= shrunk["greenlets"] // 1000 + 1, (passing,
                                                                                 shrunk)
    assert shrunk["operations"] < data["recipe"]["operations"], shrunk
    assert data["program"] is None
    (script,) = tmp_path.glob("scale-*.py")
    broken = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=900, env=dict(os.environ, GREENFUZZ_IMPL=mutant))
    assert broken.returncode == 1, broken.stdout[-2000:] + broken.stderr[-2000:]
    fixed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=900, env=dict(os.environ, GREENFUZZ_IMPL="greenlet"))
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]


def test_the_checker_reports_the_first_event_that_differs() -> None:
    """A changed value, a missing event and an extra one are each reported at their
    index, whichever batch they fall in; deaths by collection in another order agree."""
    recipe = Recipe("random", 600, depth=10, seed=2)
    events = _target_events(recipe)
    values = [i for i, e in enumerate(events) if e[2] == "value"]
    at = values[len(values) // 2]
    changed = list(events)
    changed[at] = (*events[at][:3], ("not", "sent"))
    for batches in ([changed], [changed[:at], changed[at:]], [changed[:at + 1], changed[at + 1:]]):
        with pytest.raises(lockstep.Divergence) as caught:
            lockstep.check_batches(recipe.to_json(), batches)
        assert caught.value.index == at
        assert caught.value.expected == (*events[at][:3], lockstep.decode(events[at][3]))
    with pytest.raises(lockstep.Divergence) as caught:
        lockstep.check_batches(recipe.to_json(), [events[:at] + events[at + 1:]])
    assert caught.value.index == at
    with pytest.raises(lockstep.Divergence) as caught:
        lockstep.check_batches(recipe.to_json(), [[*events, ("main", -1, "alive", ())]])
    assert caught.value.index == len(events) and caught.value.expected is None
    deaths = [i for i in range(len(events) - 1)
              if events[i][2] == events[i + 1][2] == "died"
              and events[i][3][:2] == events[i + 1][3][:2] == ["exc", "GreenletExit"]]
    assert deaths, "no two deaths by collection in a row"
    i = deaths[0]
    swapped = [*events[:i], events[i + 1], events[i], *events[i + 2:]]
    assert lockstep.check_batches(recipe.to_json(), [swapped[:i + 1], swapped[i + 1:]]
                                  ).taken == len(events)
