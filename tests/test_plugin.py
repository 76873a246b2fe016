"""The pytest plugin, used as another project would: test modules in ``tmp_path``, run by
a pytest of their own (this environment's, where greenfuzz is installed, or a fresh one
with only the built wheel)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTANT = ROOT / "tests" / "mutants" / "no_args_none.py"
FUZZ_TEST = ("from greenfuzz.harness.extra.pytest_plugin import fuzz_test\n\n"
             "test_agrees_with_model = fuzz_test({args})\n")


def _environment(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "GREENFUZZ_", "GITHUB_", "HYPOTHESIS_"))}
    env.pop("CI", None)
    env.update(extra)
    return env


def pytest_in(project: Path, *args: str, python: str = sys.executable,
              env: Optional[Dict[str, str]] = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env or _environment(), capture_output=True,
                          text=True, timeout=timeout)


def test_user_implementation_through_fuzz_test(tmp_path: Path) -> None:
    """``fuzz_test(impl=...)`` fuzzes the project's own implementation: the failure is
    shrunk, saved (smallest only) with its reproducer, and named in the test's report."""
    (tmp_path / "test_mine.py").write_text(FUZZ_TEST.format(args=f"impl={str(MUTANT)!r}, "
                                                                  "shards=1"))
    done = pytest_in(tmp_path, "--greenfuzz-findings", "out", "--hypothesis-seed", "3")
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["implementation"] == str(MUTANT) and summary["seed"] == 3
    findings = summary["findings"]
    assert findings and all(f["program"]["main"] for f in findings)
    # Each records the seed its test ran with (one shard: --hypothesis-seed 3 gives 3000).
    assert {f["seed"] for f in findings} == {3000} and findings[0]["greenfuzz"]
    # Hypothesis reports the smallest failure it shrank to, with its reproducer.
    assert any(f"reproducer: {f['reproducer']}" in done.stdout for f in findings)
    # Only the smallest failing program of each kind of failure stays on disk.
    assert sorted(p.name for p in (tmp_path / "out").glob("*.py")
                  if not p.name.endswith(".plain.py")) == sorted(
        f"{f['id']}.py" for f in findings)
    # The same seed, without the example database's memory of the first run, shrinks to
    # the same reported failure again.
    shutil.rmtree(tmp_path / ".hypothesis", ignore_errors=True)
    again = pytest_in(tmp_path, "--greenfuzz-findings", "again", "--hypothesis-seed", "3")
    assert again.returncode == 1
    assert reported(again.stdout) == reported(done.stdout) != []


def reported(output: str) -> List[str]:
    """The findings named in a pytest run's failure reports."""
    return sorted(set(re.findall(r"reproducer: \S+/([^/\s]+)\.py", output)))


def test_options_and_fixture(tmp_path: Path) -> None:
    """``--greenfuzz-families`` and the ``greenfuzz`` fixture a suite writes its own test
    body with; a bad option is a usage error (pytest's exit status 4)."""
    (tmp_path / "test_own.py").write_text(
        "from hypothesis import given, settings, strategies as st\n\n"
        "@settings(max_examples=20, deadline=None)\n"
        "@given(data=st.data())\n"
        "def test_own(data, greenfuzz):\n"
        "    campaign = greenfuzz.campaign()\n"
        "    assert campaign.config.families == ('core', 'exceptions')\n"
        "    assert campaign.config.impl.spec == 'greenlet'\n"
        "    campaign.check(data.draw(campaign.programs))\n")
    done = pytest_in(tmp_path, "--greenfuzz-families", "exceptions",
                     "--greenfuzz-findings", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["programs"] == 20 and set(summary["families"]) <= {"core", "exceptions"}
    bad = pytest_in(tmp_path, "--greenfuzz-families", "exceptionz")
    assert bad.returncode == 4 and "unknown family exceptionz" in bad.stderr


#: A greenlet that ends into a parent chain leading to an ended thread's main greenlet:
#: greenlet aborts the process (docs/upstream/parent-chain-into-ended-thread.md), a bug
#: its release's bundled profile lists (``greenlet-open-bugs``).
PARENT_CHAIN_INTO_ENDED_THREAD = json.dumps({
    "format": "greenfuzz-program/1",
    "main": [{"op": "Spawn", "name": "g2", "parent": None, "subclass": False, "kind": "plain"},
             {"op": "Spawn", "name": "g1", "parent": "g2", "subclass": False, "kind": "plain"},
             {"op": "Switch", "target": "g1", "args": {"tuple": []}, "kwargs": {},
              "catch": False}],
    "greenlets": {"g1": [{"op": "InThread",
                          "then": [{"op": "ThreadParent", "target": "g2", "catch": True}]}],
                  "g2": []}})


def test_known_bugs_of_the_greenlet_release_are_known(tmp_path: Path) -> None:
    """On the installed greenlet, the plugin counts what its release's bundled profiles
    list as known, as ``greenfuzz fuzz`` does: CI once failed on this abort."""
    (tmp_path / "test_known.py").write_text(
        "from greenfuzz.harness.program.ir import Program\n\n"
        f"PROGRAM = Program.loads({PARENT_CHAIN_INTO_ENDED_THREAD!r})\n\n"
        "def test_known(greenfuzz):\n"
        "    greenfuzz.campaign().check(PROGRAM)\n")
    done = pytest_in(tmp_path, "--greenfuzz-findings", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["known"] == {"parent-chain-into-ended-thread": 1}, summary
    assert summary["findings"] == []


def test_no_greenfuzz_test_no_summary_and_no_profile_change(tmp_path: Path) -> None:
    """Installed in a project that does not ask for it, the plugin changes nothing: no
    files, and Hypothesis's settings are its own."""
    (tmp_path / "test_other.py").write_text(
        "from hypothesis import settings\n\n"
        "def test_settings():\n"
        "    assert settings().max_examples == 100 and settings().deadline is not None\n")
    done = pytest_in(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "greenfuzz-findings").exists()


@pytest.mark.parametrize("variable, deprecated", [("GREENFUZZ_HYPOTHESIS_PROFILE", False),
                                                  ("GREENFUZZ_PROFILE", True)])
def test_hypothesis_profile_variable(tmp_path: Path, variable: str, deprecated: bool) -> None:
    (tmp_path / "test_profile.py").write_text(
        "from hypothesis import settings\n\n"
        "def test_profile():\n"
        "    assert settings().max_examples == 20_000 and settings().deadline is None\n")
    done = pytest_in(tmp_path, "-W", "default", env=_environment(**{variable: "deep"}))
    assert done.returncode == 0, done.stdout + done.stderr
    said = "GREENFUZZ_PROFILE is deprecated: use GREENFUZZ_HYPOTHESIS_PROFILE"
    assert (said in done.stdout + done.stderr) == deprecated


def test_database_variable_loads_a_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared-db"
    (tmp_path / "test_db.py").write_text(
        "from hypothesis import settings\n\n"
        "def test_db():\n"
        f"    assert str(settings().database.path) == {str(shared)!r}\n")
    done = pytest_in(tmp_path, env=_environment(GREENFUZZ_DATABASE=str(shared)))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hypofuzz_collects_the_fuzz_test(tmp_path: Path) -> None:
    """The issue's complaint: HypoFuzz collected nothing from ``tests/test_fuzz.py``.  A
    ``fuzz_test`` is a module-level ``@given`` test: every shard is a fuzz target."""
    pytest.importorskip("hypofuzz")
    (tmp_path / "test_fuzz.py").write_text(FUZZ_TEST.format(args="shards=3"))
    check = ("from hypofuzz.collection import collect_tests\n"
             "result = collect_tests(['test_fuzz.py', '-p', 'no:cacheprovider'])\n"
             "print(sorted(t.nodeid for t in result.fuzz_targets))\n")
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=_environment(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(
        [f"test_fuzz.py::test_agrees_with_model[{n}]" for n in range(3)])


@pytest.mark.slow
@pytest.mark.network
def test_throwaway_project_with_the_wheel_and_xdist(tmp_path: Path) -> None:
    """Done means (issue 17): a project outside this repository installs the built wheel
    in a fresh environment, runs greenfuzz through its own ``pytest -n 2`` and gets JUnit
    XML, ``summary.json`` (merged over both workers) and the GitHub Actions output."""
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("greenfuzz-*.whl")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "-q",
                                "--disable-pip-version-check", str(wheel)],
                               capture_output=True, text=True, timeout=900)
    if installed.returncode and any(word in installed.stderr for word in (
            "Could not find a version", "NewConnectionError", "Temporary failure")):
        pytest.skip(f"the package index is out of reach: {installed.stderr.splitlines()[-1]}")
    assert installed.returncode == 0, installed.stderr
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "throwaway"\nversion = "0"\n\n'
        "[tool.pytest.ini_options]\n"
        f'greenfuzz_impl = "{MUTANT}"\n'
        'greenfuzz_hypothesis_profile = "dev"\n')
    (project / "tests").mkdir()
    (project / "tests" / "test_greenfuzz.py").write_text(FUZZ_TEST.format(args=""))
    step_summary = tmp_path / "step-summary.md"
    done = pytest_in(project, "-n", "2", "tests", "--junit-xml", "junit.xml",
                     "--greenfuzz-findings", "findings", python=python,
                     env=_environment(GITHUB_ACTIONS="true",
                                      GITHUB_STEP_SUMMARY=str(step_summary)))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    import greenfuzz.harness.extra.pytest_plugin as here

    assert str(env_dir) not in here.__file__  # the wheel's plugin ran, not this one
    assert "created: 2/2 workers" in done.stdout
    suite = ET.parse(project / "junit.xml").getroot().find("testsuite")
    cases = list(suite.iter("testcase"))
    assert len(cases) == 2 and all(c.find("failure") is not None for c in cases)
    assert all("reproducer: " in c.find("failure").text for c in cases)
    summary = json.loads((project / "findings" / "summary.json").read_text())
    assert summary["command"] == "pytest" and summary["implementation"] == str(MUTANT)
    assert summary["programs"] > 0 and summary["families"]["core"] == summary["programs"]
    assert summary["findings"] and summary["interpreter"]["executable"] == python
    for finding in summary["findings"]:
        assert Path(finding["reproducer"]).exists()
        assert str(project / "findings") in finding["reproducer"]
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == len(summary["findings"])
    assert step_summary.read_text().startswith("### greenfuzz pytest")


def test_a_workers_summary_with_findings_can_be_sent_to_the_controller() -> None:
    """pytest-xdist sends each worker's summary through execnet, which refuses a
    finding's ``Kind`` (a ``str`` subclass): the worker then went down at the end and
    ``summary.json`` was never written under ``-n 2`` (the throwaway-project test)."""
    import execnet

    from greenfuzz.harness.execution.runner import Observation
    from greenfuzz.harness.extra.pytest_plugin import worker_output
    from greenfuzz.harness.judging.checks import Kind, Verdict
    from greenfuzz.harness.program.ir import Program
    from greenfuzz.harness.reporting import ci
    from greenfuzz.harness.reporting.findings import Finding

    summary = ci.RunSummary("pytest", "")
    finding = Finding(Program(), [], Observation([]), Verdict(Kind.MISMATCH, "differs"),
                      "greenlet")
    summary.add(finding, Path("repro.py"))
    sent = execnet.loads(execnet.dumps(worker_output(summary)))
    assert sent == json.loads(json.dumps(summary.to_json()))
    assert sent["findings"][0]["kind"] == "mismatch"
