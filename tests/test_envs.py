"""Other greenlet releases and interpreters, as users ask for them on the command line.

These make real virtual environments from the package index (once, cached under
``$GREENFUZZ_CACHE``) and run real campaigns under other interpreters; each skips with
the reason when this machine lacks the interpreter.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from greenfuzz.harness.families.finalizers import Finalize, Resurrect
from greenfuzz.harness.families.threads import InThread, ThreadParent
from greenfuzz.harness.program.ir import MAIN, Drop, Program, Spawn, Switch
from tests.helpers import run_cli
from tests.test_executor import pyenv_pythons

MUTANTS = Path(__file__).parent / "mutants"




def python312() -> str:
    pythons = pyenv_pythons("3.12.*")
    if not pythons:
        pytest.skip("no pyenv CPython 3.12 on this machine")
    return pythons[-1]


@pytest.mark.network
def test_env_makes_the_release_once_and_prints_its_interpreter() -> None:
    python = python312()
    first = run_cli("env", "--python", python, "--greenlet", "3.0.3")
    assert first.returncode == 0, first.stderr
    path = first.stdout.strip()
    version = subprocess.run([path, "-c", "import greenlet, sys; print(greenlet.__version__, "
                              "sys.version_info[:2])"], capture_output=True, text=True,
                             timeout=30).stdout.split(None, 1)
    assert version == ["3.0.3", "(3, 12)\n"]
    again = run_cli("env", "--python", python, "--greenlet", "3.0.3", timeout=30)
    assert again.stdout.strip() == path  # cached, not made again
    listing = run_cli("env", timeout=30)
    assert path in listing.stdout and "3.0.3" in listing.stdout


@pytest.mark.network
def test_fuzz_and_replay_an_old_release_under_another_python(tmp_path: Path) -> None:
    python = python312()
    done = run_cli("fuzz", "--greenlet", "3.0.3", "--python", python, "--max-examples", "40",
                   "--seed", "3", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "greenlet 3.0.3 under cpython 3.12" in done.stdout
    program = Program(main=(Spawn("g1"), Switch("g1", (1,)), Drop("g1")),
                      greenlets=(("g1", (Switch(MAIN, (2,)),)),))
    path = tmp_path / "program.json"
    path.write_text(program.dumps())
    replay = run_cli("replay", str(path), "--greenlet", "3.0.3", "--python", python)
    assert replay.returncode == 0 and "3.0.3" in replay.stdout, replay.stdout + replay.stderr


@pytest.mark.network
def test_a_release_without_a_wheel_is_one_line(tmp_path: Path) -> None:
    done = run_cli("fuzz", "--greenlet", "0.4.0", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "greenlet 0.4.0 has no wheel for CPython" in done.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--greenlet", "latest"], "needs a release number"),
    (["--python", "/no/such/python"], "python interpreter not found"),
    (["--greenlet", "3.0.3", "--in-process"], "cannot be combined with --greenlet"),
])
def test_bad_environment_options(argv: list, message: str, tmp_path: Path) -> None:
    done = run_cli("fuzz", *argv, "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


def pypy3() -> str:
    path = shutil.which("pypy3")
    if path is None:
        pytest.skip("pypy3 not installed (Debian package pypy3; .ci/run installs it)")
    return path


def test_pypy_runs_and_shows_its_documented_difference(tmp_path: Path) -> None:
    """PyPy's own greenlet under the isolated worker: plain switching agrees with the
    model; a dropped suspended greenlet gets no GreenletExit there (a known PyPy
    difference, see shared/reference/greenlet-semantics.md), so it is a finding."""
    python = pypy3()
    agree = Program(main=(Spawn("g1"), Switch("g1", (1,), (("k", 2),)), Switch("g1", (4,))),
                    greenlets=(("g1", (Switch(MAIN, (3,)),)),))  # g1 ends: nothing to kill
    differ = Program(main=(Spawn("g1"), Switch("g1"), Drop("g1")),
                     greenlets=(("g1", (Switch(MAIN),)),))
    for name, program, code in (("agree", agree, 0), ("differ", differ, 1)):
        path = tmp_path / f"{name}.json"
        path.write_text(program.dumps())
        done = run_cli("replay", str(path), "--python", python, timeout=120)
        assert done.returncode == code, done.stdout + done.stderr
        assert "under pypy" in done.stdout
    assert "expected g1: died ExcValue('GreenletExit'" in done.stdout


#: What a campaign on PyPy 3.9.16 (``--known pypy``, seed 2045) found in its first 116 s,
#: each shrunk: PyPy's greenlet, documented in ``pypy.json`` since, by difference id.
PYPY_DIFFERENCES = {
    "finalizer-runs-at-collection": Program(
        main=(Spawn("g1"), Finalize("g1", "weakref")), greenlets=(("g1", ()),)),
    "no-resurrection-on-collection": Program(
        main=(Spawn("g1"), Switch("g1", catch=True)),
        greenlets=(("g1", (Resurrect(MAIN, (Switch(MAIN, catch=True),)),)),)),
    "parent-without-thread-check": Program(
        main=(Spawn("g1"), Switch("g1", catch=True),
              InThread((ThreadParent("g1", catch=True),))), greenlets=(("g1", ()),)),
}


@pytest.mark.parametrize("difference", sorted(PYPY_DIFFERENCES))
def test_pypys_documented_differences_are_known_with_its_profile(tmp_path: Path,
                                                                 difference: str) -> None:
    python = pypy3()
    path = tmp_path / "program.json"
    path.write_text(PYPY_DIFFERENCES[difference].dumps())
    found = run_cli("replay", str(path), "--python", python, timeout=120)
    assert found.returncode == 1, found.stdout + found.stderr
    known = run_cli("replay", str(path), "--python", python, "--differences", "pypy",
                    timeout=120)
    assert known.returncode == 0, known.stdout + known.stderr
    assert f"known difference {difference}:" in known.stdout, known.stdout


@pytest.mark.parametrize("how", ["dead", "unstarted"])
def test_pypys_parent_chain_bugs_the_docs_name(how: str) -> None:
    """docs/implementations.md: under PyPy a greenlet under a finished parent cannot run,
    and one that ends skips its unstarted parent; greenlet does both as documented (the
    PyPy campaign of the tenth session met both again, as findings)."""
    python = pypy3()
    script = str(Path(__file__).parent / "crashes" / "pypy_parent_chain.py")
    on_pypy = subprocess.run([python, script, how], capture_output=True, text=True,
                             timeout=60)
    assert on_pypy.returncode == 1, on_pypy.stdout + on_pypy.stderr
    if how == "dead":
        assert "got an already-finished continulet" in on_pypy.stdout
    on_greenlet = subprocess.run([sys.executable, script, how], capture_output=True,
                                 text=True, timeout=60)
    assert on_greenlet.returncode == 0, on_greenlet.stdout + on_greenlet.stderr


def test_a_full_disk_loses_no_finding(tmp_path: Path) -> None:
    """Findings that cannot be written go whole to stderr, with a one-line error."""
    limit = 4096  # bytes per file: Hypothesis's tiny entries fit, a finding does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = run_cli("fuzz", "--impl", str(MUTANTS / "dead_switch_raises.py"), "--seed", "1",
                   "--families", "core",
                   "--budget", "60", "--out", str(tmp_path), "--no-verify",
                   preexec_fn=small_files,
                   env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("greenfuzz:")]
    assert len(errors) == 1 and "could not write finding" in errors[0]
    assert "File too large" in errors[0]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert Program.from_json(json.loads(line)["program"]).size() > 0
    assert not list(tmp_path.glob("*.py"))
