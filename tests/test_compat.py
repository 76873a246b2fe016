"""Validating other implementations: profiles of known differences, diff, matrix, impls."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.judging import differences as profiles
from greenfuzz.harness.program.ir import MAIN, Program, SetParent, Spawn, Switch
from greenfuzz.harness.search import differential
from greenfuzz.harness.search.campaign import CampaignConfig
from tests.helpers import run_cli

ROOT = Path(__file__).parent.parent
MUTANTS = Path(__file__).parent / "mutants"
NO_CYCLE_CHECK = str(MUTANTS / "no_cycle_check.py")




def profile_file(tmp_path: Path, match: dict, **entry: str) -> Path:
    data = {"format": profiles.FORMAT, "implementation": "a mutant",
            "differences": [{"id": "accepts-parent-cycles", "summary": "no cycle check",
                             "source": "tests/mutants/no_cycle_check.py", "match": match,
                             **entry}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    return path


CYCLE_MATCH = {"kind": "mismatch", "expected": {"kind": "caught", "exc": "ValueError"},
               "op": "SetParent"}


def test_bundled_profiles_load_and_cite_sources() -> None:
    assert "pypy" in profiles.names()
    for name in profiles.names():
        profile = profiles.load(name)
        assert profile.differences
        assert all("https://" in d.source for d in profile.differences), name


@pytest.mark.parametrize(("change", "message"), [
    ({"source": ""}, "lacks source"),
    ({"match": {"expected": {"colour": "red"}}}, "unknown match keys 'colour'"),
    ({"match": {"program_has": "Garbage"}}, "program_has is a list of 1 to 8 ops"),
])
def test_bad_profiles_are_one_line_errors(tmp_path: Path, change: dict, message: str) -> None:
    entry = {"match": CYCLE_MATCH, **change}
    path = profile_file(tmp_path, entry.pop("match"), **entry)
    done = run_cli("fuzz", "--differences", str(path), "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


def test_a_profile_turns_its_difference_into_known_and_nothing_else(tmp_path: Path) -> None:
    """The mutant accepts parent cycles: a finding without the profile, known with it;
    a program that shows a different bug is still a finding under the profile."""
    cycle = Program(main=(Spawn("g1"), Spawn("g2", parent="g1"), SetParent("g1", "g2")),
                    greenlets=(("g1", ()), ("g2", ())))
    path = tmp_path / "cycle.json"
    path.write_text(cycle.dumps())
    profile = profile_file(tmp_path, CYCLE_MATCH)
    without = run_cli("replay", str(path), "--impl", NO_CYCLE_CHECK)
    assert without.returncode == 1, without.stdout + without.stderr
    known = run_cli("replay", str(path), "--impl", NO_CYCLE_CHECK, "--differences", str(profile))
    assert known.returncode == 0, known.stdout + known.stderr
    assert "KNOWN" in known.stdout and "accepts-parent-cycles" in known.stdout
    # The same profile does not excuse another implementation's different bug.
    other = run_cli("replay", str(path), "--impl", str(MUTANTS / "kwargs_dropped.py"),
                    "--differences", str(profile))
    assert other.returncode == 0  # kwargs_dropped has no cycle bug: it agrees here
    kwargs = Program(main=(Spawn("g1"), Switch("g1", (0,), (("k", 1),))),
                     greenlets=(("g1", (Switch(MAIN),)),))
    kwargs_path = tmp_path / "kwargs.json"
    kwargs_path.write_text(kwargs.dumps())
    still = run_cli("replay", str(kwargs_path), "--impl", str(MUTANTS / "kwargs_dropped.py"),
                    "--differences", str(profile))
    assert still.returncode == 1, still.stdout + still.stderr


def test_fuzz_with_a_profile_counts_known_differences(tmp_path: Path) -> None:
    profile = profile_file(tmp_path, CYCLE_MATCH)
    done = run_cli("fuzz", "--impl", NO_CYCLE_CHECK, "--differences", str(profile),
                   "--families", "core", "--max-examples", "600", "--seed", "2",
                   "--budget", "120", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepts-parent-cycles" in done.stdout
    assert not list((tmp_path / "out").glob("*-*.json"))  # findings, not summary.json


def test_impls_lists_every_known_implementation() -> None:
    done = run_cli("impls", timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("greenlet", "pypy", "tealet", "debian", "threaded"):
        assert name in done.stdout


def test_diff_finds_where_two_implementations_disagree(tmp_path: Path) -> None:
    done = run_cli("diff", "--impl", "greenlet", "--impl", str(MUTANTS / "kwargs_dropped.py"),
                   "--seed", "1", "--budget", "120", "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    (found,) = tmp_path.glob("diff-*.json")
    data = json.loads(found.read_text())
    assert [side["verdict"] for side in data["sides"]] == ["ok", "mismatch"]
    assert Program.from_json(data["program"]).size() <= 8
    assert found.with_suffix(".py").exists()


def test_diff_shrinks_within_its_time(tmp_path: Path) -> None:
    """Shrinking a disagreement stops after ``shrink_seconds`` and keeps the smallest
    program so far (``--budget 8`` once ran 80 s, shrinking): with 0 s, the first
    disagreeing program is kept as drawn, where a real shrink ends smaller."""
    sides = [_diff_side("greenlet"), _diff_side(str(MUTANTS / "kwargs_dropped.py"))]
    try:
        runs = {limit: differential.run_diff(sides, out=tmp_path / str(limit), budget=120,
                                             max_examples=2000, seed_value=1,
                                             families=("core",), shrink_seconds=limit)
                for limit in (0.0, 60.0)}
    finally:
        for side in sides:
            side.executor.close()
    (kept,), (shrunk,) = (runs[limit].disagreements for limit in (0.0, 60.0))
    assert kept.signature == shrunk.signature
    assert kept.program.size() > shrunk.program.size()
    # Same seed, same programs up to the first disagreement: no shrinking run after it.
    assert runs[0.0].examples < runs[60.0].examples


def _diff_side(impl: str) -> differential.Side:
    config = CampaignConfig(impl=Implementation(impl), out=Path(os.devnull), timeout=2.0)
    executor = IsolatedExecutor(impl, timeout=2.0)
    executor.start()
    return differential.Side(impl, config, executor)


def test_diff_of_two_correct_implementations_is_quiet(tmp_path: Path) -> None:
    done = run_cli("diff", "--impl", "greenlet", "--impl",
                   str(ROOT / "harness" / "envs" / "threaded_greenlet.py"), "--families", "core",
                   "--seed", "3", "--max-examples", "60", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 disagreement" in done.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["--impl", "greenlet"], "exactly two sides"),
    (["--python", "python3", "--impl", "greenlet"], "must follow the --impl"),
    (["--known", "nonesuch", "--impl", "greenlet"], "unknown implementation name"),
])
def test_diff_usage_errors(argv: list, message: str, tmp_path: Path) -> None:
    done = run_cli("diff", *argv, "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


@pytest.mark.slow
def test_matrix_rows_pass_find_and_skip(tmp_path: Path) -> None:
    mutant = str(MUTANTS / "kwargs_dropped.py")
    done = run_cli("matrix", "greenlet", mutant, str(tmp_path / "missing.py"),
                   "--families", "core,stack", "--budget", "4", "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr  # a cell has a finding
    data = json.loads((tmp_path / "matrix.json").read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert {c["status"] for c in rows["greenlet"]["cells"].values()} == {"pass"}
    for cell in rows["kwargs_dropped"]["cells"].values():
        assert cell["status"] == "finding"
        assert all(Path(path).exists() for _, _, path in cell["findings"])
    (missing,) = [row for name, row in rows.items() if name.endswith("missing.py")]
    assert "not found" in missing["skipped"]
    table = (tmp_path / "matrix.md").read_text()
    assert "| **kwargs_dropped**" in table and "](kwargs_dropped/core/" in table
    assert "<table>" in (tmp_path / "matrix.html").read_text()
