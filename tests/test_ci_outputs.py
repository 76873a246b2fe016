"""What CI systems read from greenfuzz: exit statuses, JUnit XML, SARIF, ``summary.json``,
GitHub Actions output, ``--version``, ``[tool.greenfuzz]`` defaults, and the example
workflows' commands run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from hypothesis import settings

from greenfuzz import __version__
from greenfuzz.harness.cli.defaults import EXIT_STATUSES
from greenfuzz.harness.execution.runner import Observation
from greenfuzz.harness.reporting import memprofile
from greenfuzz.harness.search import differential
from greenfuzz.harness.target.runtime import ExcValue

ROOT = Path(__file__).resolve().parent.parent
MUTANT = ROOT / "tests" / "mutants" / "no_args_none.py"
BIN = Path(sys.executable).parent


def clean_environment() -> Dict[str, str]:
    """This environment less what would change a child's behaviour: the outer pytest's
    (and its xdist worker's) variables, greenfuzz's own, GitHub Actions'."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "GREENFUZZ_", "GITHUB_"))}


def greenfuzz(*args: str, cwd: Optional[Path] = None, timeout: float = 300,
              env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    base = clean_environment()
    return subprocess.run([sys.executable, "-m", "greenfuzz", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


# -- fuzz: JUnit XML, SARIF, summary.json, GitHub Actions ------------------------------------


@pytest.mark.slow
def test_fuzz_writes_ci_results_for_a_finding(tmp_path: Path) -> None:
    out, step_summary = tmp_path / "findings", tmp_path / "step-summary.md"
    # One job: with --jobs N a finding records the seed of the job that found it.
    done = greenfuzz("fuzz", "--impl", str(MUTANT), "--budget", "30", "--out", str(out),
                     "--jobs", "1", "--junit-xml", str(tmp_path / "junit.xml"),
                     "--sarif", str(tmp_path / "fuzz.sarif"), "--no-memory", "--quiet",
                     env={"GITHUB_ACTIONS": "true",
                          "GITHUB_STEP_SUMMARY": str(step_summary)})
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["greenfuzz"] == __version__ and summary["command"] == "fuzz"
    assert isinstance(summary["seed"], int)
    assert summary["implementation"] == str(MUTANT)
    assert summary["interpreter"]["executable"] and summary["programs"] > 0
    assert summary["families"]["core"] == summary["programs"]
    (finding,) = summary["findings"]
    script = Path(finding["reproducer"])
    assert script.exists() and script.name == f"{finding['id']}.py"
    # The finding on disk records greenfuzz's version and the run's seed.
    saved = json.loads((out / f"{finding['id']}.json").read_text())
    assert saved["greenfuzz"] == __version__ and saved["seed"] == summary["seed"]
    assert f"seed {summary['seed']}" in done.stdout

    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    (failure,) = suite.iter("failure")
    assert finding["id"] in failure.get("message") and failure.get("type") == finding["kind"]
    assert f"reproducer: {script}" in failure.text

    sarif = json.loads((tmp_path / "fuzz.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == finding["kind"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(script)

    errors = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1 and finding["id"] in errors[0] and f"file={script}" in errors[0]
    assert "\n" not in errors[0]
    markdown = step_summary.read_text()
    assert markdown.startswith("### greenfuzz fuzz") and finding["id"] in markdown


def test_fuzz_ci_results_without_findings(tmp_path: Path) -> None:
    done = greenfuzz("fuzz", "--budget", "2", "--no-memory", "--quiet", "--seed", "7",
                     "--out", str(tmp_path), "--junit-xml", str(tmp_path / "j.xml"))
    assert done.returncode == 0, done.stderr
    assert "::error" not in done.stdout
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "0" and len(list(suite.iter("testcase"))) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seed"] == 7 and summary["findings"] == []


# -- exit statuses ----------------------------------------------------------------------------


def test_version_and_exit_statuses_in_every_help() -> None:
    done = greenfuzz("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"greenfuzz {__version__}")
    for command, statuses in EXIT_STATUSES.items():
        shown = greenfuzz(command, "--help")
        assert shown.returncode == 0
        assert "exit status: " + " ".join(statuses.split()[:3]) in " ".join(shown.stdout.split())


@pytest.mark.slow
def test_matrix_exits_1_on_a_finding_with_a_line_per_cell(tmp_path: Path) -> None:
    done = greenfuzz("matrix", str(MUTANT), "--families", "core,stack", "--budget", "3",
                     "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    # Not a terminal: a plain line per cell as it ends, before the table.
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert any(re.fullmatch(rf"{re.escape(str(MUTANT))} / core: finding \(\d+ programs.*", line)
               for line in lines), done.stdout
    assert any(line.startswith(f"{MUTANT} / stack: ") for line in lines), done.stdout


def test_matrix_exits_2_when_every_cell_is_skipped(tmp_path: Path) -> None:
    done = greenfuzz("matrix", str(tmp_path / "missing.py"), "--families", "core",
                     "--budget", "1", "--out", str(tmp_path / "m"))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("greenfuzz: error: every cell of the matrix was skipped")
    assert "missing.py" in line


def test_diff_ignores_object_addresses() -> None:
    def thread_error(current: str) -> Observation:
        message = (f"Cannot switch to a different thread\n\tCurrent:  <greenlet.greenlet "
                   f"object at {current} (otid=0x7f9aa8000bd0) current active started main>")
        return Observation([("main", 1, "caught", ExcValue("greenlet.error", (message,)))])

    first, second = thread_error("0x7f9aad07e640"), thread_error("0x7f8559ff6a40")
    assert differential.compare_sides(first, second) is None
    other = Observation([("main", 1, "caught", ExcValue("ValueError", ("other",)))])
    assert differential.compare_sides(first, other) is not None
    different = Observation([("main", 1, "caught", ExcValue("KeyError", (1,)))])
    assert differential.compare_sides(other, different) is not None


def test_diff_compares_the_type_of_greenlet_error_not_its_message() -> None:
    """greenlet 3.5.6 against itself disagreed in a CI run: the same cross-thread switch
    said "cannot switch to a different thread (which happens to have exited)" once and
    "Cannot switch to a different thread ..." once, depending on how far the other
    thread had got in exiting.  The model leaves these messages out too."""
    exited = ExcValue("greenlet.error", ("cannot switch to a different thread (which "
                                         "happens to have exited)",))
    exiting = ExcValue("greenlet.error", ("Cannot switch to a different thread",))
    first = Observation([("main@1", 0, "caught", exited)])
    assert differential.compare_sides(first, Observation([("main@1", 0, "caught", exiting)])) \
        is None
    assert differential.compare_sides(first, Observation([("main@1", 0, "value", None)])) \
        is not None


def test_diff_batches_draw_new_programs_under_hypothesis_ci_profile(monkeypatch) -> None:
    """Hypothesis's ``ci`` profile (loaded when ``CI`` is set) derandomizes: without
    ``derandomize=False`` every batch of ``diff`` would draw the same programs."""
    drawn: List[List[str]] = []
    monkeypatch.setattr(differential, "judge_both",
                        lambda program, sides: drawn[-1].append(program.dumps()))
    previous = settings._current_profile or "default"
    settings.load_profile("ci")
    try:
        for _ in range(2):
            drawn.append([])
            differential.run_diff([], out=Path(os.devnull), budget=60, max_examples=10,
                                  seed_value=None)
    finally:
        settings.load_profile(previous)
    assert len(drawn[0]) >= 5 and len(drawn[1]) >= 5
    assert drawn[0] != drawn[1]


@pytest.mark.slow
def test_diff_of_greenlet_with_itself_agrees_under_ci(tmp_path: Path) -> None:
    done = greenfuzz("diff", "--impl", "greenlet", "--impl", "greenlet", "--budget", "8",
                     "--out", str(tmp_path), env={"CI": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 disagreement(s)" in done.stdout


# -- [tool.greenfuzz] -------------------------------------------------------------------------


def test_defaults_from_pyproject_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.greenfuzz]\nfamilies = ["core"]\nbudget = 30\nout = "from-pyproject"\n'
        "no-memory = true\n\n[tool.greenfuzz.fuzz]\nmax-examples = 7\n")
    done = greenfuzz("fuzz", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "from-pyproject" / "summary.json").read_text())
    assert list(summary["families"]) == ["core"] and 7 <= summary["programs"] < 20
    assert summary["seconds"] < 30
    # The command line wins.
    done = greenfuzz("fuzz", "--quiet", "--out", "cli", "--families", "core,stack",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert set(summary["families"]) <= {"core", "stack"}
    assert not (tmp_path / "from-pyproject" / "cli").exists()


@pytest.mark.parametrize("table, message", [
    ("[tool.greenfuzz]\nbudgit = 3\n", "no command has the option --budgit"),
    ("[tool.greenfuzz.fuzz]\nnames = 3\n", "fuzz has no option --names"),
    ("[tool.greenfuzz.fuz]\nbudget = 3\n", "[tool.greenfuzz.fuz]: no such command"),
    ("[tool.greenfuzz]\nbudget = -1\n", "--budget: must be positive"),
])
def test_bad_defaults_are_usage_errors(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(table)
    done = greenfuzz("fuzz", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert message in line


# -- a lean install ---------------------------------------------------------------------------


def test_profile_plots_need_matplotlib_only_when_installed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert memprofile.plots([], tmp_path) == []
    assert list(tmp_path.iterdir()) == []


# -- the example workflows --------------------------------------------------------------------


def _run_steps(path: Path) -> List[str]:
    yaml = pytest.importorskip("yaml")
    document = yaml.safe_load(path.read_text())
    jobs = document.values() if "jobs" not in document else document["jobs"].values()
    steps: List[str] = []
    for job in jobs:
        if not isinstance(job, dict):
            continue
        steps += [step["run"] for step in job.get("steps", []) if "run" in step]
        steps += list(job.get("script", []))
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("workflow", ["github-actions.yml", "gitlab-ci.yml"])
def test_example_workflow_commands_run(tmp_path: Path, workflow: str) -> None:
    """Every command of the example workflow, in order, with a small budget (``pip
    install greenfuzz`` is the one left out: this greenfuzz is installed already), and
    the files its artifacts and reports name are there afterwards."""
    path = ROOT / "examples" / workflow
    steps = _run_steps(path)
    assert any("greenfuzz fuzz" in s for s in steps)
    step_summary = tmp_path / "step-summary.md"
    env = dict(clean_environment(), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(step_summary))
    ran = 0
    for command in steps:
        if command.startswith("pip install"):
            continue
        command = re.sub(r"--budget \d+", "--budget 3", command)
        command = command.replace("python -m pytest", f"{shlex.quote(sys.executable)} -m pytest")
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran += 1
    assert ran >= (3 if workflow == "github-actions.yml" else 1)
    text = path.read_text()
    for name in ("greenfuzz-findings", "greenfuzz-junit.xml", "greenfuzz.sarif"):
        assert name in text and (tmp_path / name).exists(), name
    assert (tmp_path / "greenfuzz-findings" / "summary.json").exists()
    assert ET.parse(tmp_path / "greenfuzz-junit.xml").getroot().get("failures") == "0"
    if workflow == "github-actions.yml":
        assert (tmp_path / "greenfuzz-pytest.xml").exists()
        assert step_summary.read_text().count("### greenfuzz") == 2  # fuzz and pytest


# -- progress ---------------------------------------------------------------------------------


def test_progress_is_plain_lines_in_a_log_and_live_in_a_terminal() -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from greenfuzz.harness.cli.progress import campaign_progress

    state = SimpleNamespace(examples=40, elapsed=2.0, findings=[])
    log = io.StringIO()
    with campaign_progress(Console(file=log, force_terminal=False), interval=0.0) as progress:
        progress(state)
        progress(state)
    assert log.getvalue().splitlines() == ["  40 programs, 20/s, 0 finding(s), 2 s"] * 2
    quiet = io.StringIO()
    with campaign_progress(Console(file=quiet, force_terminal=False), quiet=True) as progress:
        progress(state)
    assert quiet.getvalue() == ""
    terminal = io.StringIO()
    with campaign_progress(Console(file=terminal, force_terminal=True), interval=0.0) as progress:
        progress(state)
    # Redrawn in place (cursor movement), not a line per call.
    assert "40 programs" in terminal.getvalue() and "\x1b[" in terminal.getvalue()
