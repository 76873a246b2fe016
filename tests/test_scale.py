"""Scale recipes: every shape passes on greenlet, misbehaviour at scale is found and shrunk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

from greenfuzz.harness.program.recipes import Recipe
from greenfuzz.harness.search import scale
from greenfuzz.strategies.recipes import recipes

PAST_200K = str(Path(__file__).parent / "scale_mutants" / "past_200k.py")


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


def run_cli(*args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greenfuzz", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **env))


def test_scale_command_passes_and_reports_phases() -> None:
    done = run_cli("scale", "--greenlets", "20000", "--rounds", "2", "--depth", "4",
                   "--via", "c", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert [p["phase"] for p in data["phases"]] == ["park", "resume", "finish and kill"]
    assert data["phases"][0]["bytes_per_live"] > 1000
    assert data["done"]["switches"] == 20000 * 3 + 10000  # park, two resumes, the finishes


@pytest.mark.slow
def test_a_bug_past_200k_live_greenlets_is_found_and_shrunk(tmp_path: Path) -> None:
    """The mutant misbehaves only with more than 200,000 greenlets alive: a scale run of
    210,000 finds it, shrinks the count to just above the threshold, and the saved
    reproducer fails on the mutant and passes on greenlet."""
    done = run_cli("scale", "--greenlets", "210000", "--shape", "ring", "--impl", PAST_200K,
                   "--out", str(tmp_path), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert 200_000 < data["shrunk_recipe"]["greenlets"] <= 200_500, data["shrunk_recipe"]
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
