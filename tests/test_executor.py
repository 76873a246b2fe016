"""greenfuzz.harness.execution.executor / greenfuzz.harness.target.worker: programs run in a worker
process, isolated per program.

Every test runs real worker processes.  Each test is bounded by an alarm (``TEST_LIMIT``)
on top of the executor's own deadlines, so a wedged worker fails a test, never the run.
"""

from __future__ import annotations

import ast
import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import psutil
import pytest

from greenfuzz.harness import target
from greenfuzz.harness.envs import envs
from greenfuzz.harness.execution import implementations, runner
from greenfuzz.harness.execution.executor import KILL_SLACK, IsolatedExecutor
from greenfuzz.harness.execution.implementations import ImplementationError
from greenfuzz.harness.program.ir import (
    Drop,
    Exc,
    Inspect,
    Program,
    Raise,
    Return,
    Spawn,
    Switch,
    Throw,
)
from greenfuzz.harness.target.worker import SPARES

TEST_LIMIT = 20.0
ROOT = Path(__file__).resolve().parent.parent

#: Behaves as greenlet, except: ``switch(666)`` segfaults, ``switch(777)`` asks for 2 GiB,
#: ``switch(888)`` prints, and ``throw()`` never returns.
MUTANT = '''
import ctypes
import sys

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

__version__ = "mutant"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if args == (666,):
            ctypes.string_at(0)
        if args == (777,):
            args = (len(bytearray(2 << 30)),)
        if args == (888,):
            print("mutant says hello")
            print("mutant complains", file=sys.stderr)
        return super().switch(*args, **kwargs)

    def throw(self, *args):
        n = 0
        while True:
            n += 1
'''

#: Hand-built programs covering switch packing, throw, raise, parents and dropping.
PROGRAMS = [
    Program(main=(Spawn("g1"), Switch("g1", (1, 2))), greenlets=(("g1", (Switch("main", (3,)),)),)),
    Program(
        main=(Spawn("g1"), Switch("g1", (), (("a", 1),)), Throw("g1", Exc("ValueError", (5,))),
              Inspect("g1", "dead"), Switch("g1", ("x",))),
        greenlets=(("g1", (Switch("main", ({"b": None},)), Return((1, "y")))),),
    ),
    Program(
        main=(Spawn("g1"), Spawn("g2", "g1"), Switch("g2", (None,)), Drop("g1"),
              Inspect("g2", "parent"), Switch("g2")),
        greenlets=(("g1", (Switch("main"),)),
                   ("g2", (Switch("main", (4,)), Raise(Exc("KeyError", ("k",)))))),
    ),
]
#: The ones the mutant runs as greenlet does (no throw).
NO_THROW = [p for p in PROGRAMS
            if not any(isinstance(op, Throw) for _, script in p.scripts() for op in script)]
SEGFAULT = Program(main=(Spawn("g1"), Switch("g1", (666,))), greenlets=(("g1", ()),))
HANG = Program(main=(Spawn("g1"), Switch("g1"), Throw("g1", Exc("ValueError"))),
               greenlets=(("g1", (Switch("main"),)),))
MODES: Dict[str, Dict[str, object]] = {
    "fork": {},
    "reuse": {"programs_per_child": 50},
    "no-fork": {"fork": False, "margin": 0.5},
}


@pytest.fixture(autouse=True)
def time_limit() -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"test took more than {TEST_LIMIT:g} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def greenlet_impl() -> implementations.Implementation:
    return implementations.load("greenlet")


@pytest.fixture(scope="module")
def mutant(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("mutant") / "segv_mutant.py"
    path.write_text(MUTANT)
    return str(path)


def expected(program: Program, impl: implementations.Implementation) -> list:
    return runner.run_inprocess(program, impl).trace


@pytest.mark.parametrize("mode", list(MODES))
def test_same_traces_as_in_process(mode: str, greenlet_impl: implementations.Implementation
                                   ) -> None:
    with IsolatedExecutor("greenlet", timeout=5.0, **MODES[mode]) as ex:  # type: ignore[arg-type]
        assert ex.info["fork"] is (mode != "no-fork")
        for _ in range(2):  # the second round replays (compiled-code caches, reuse)
            for program in PROGRAMS:
                obs = ex.run(program)
                assert obs.outcome == runner.COMPLETED, obs.detail
                assert obs.trace == expected(program, greenlet_impl)
        assert ex.starts == 1


@pytest.mark.parametrize("mode", list(MODES))
def test_segfault_is_a_crash_and_the_next_program_runs(
        mode: str, mutant: str, greenlet_impl: implementations.Implementation) -> None:
    with IsolatedExecutor(mutant, timeout=5.0, **MODES[mode]) as ex:  # type: ignore[arg-type]
        assert ex.run(PROGRAMS[0]).outcome == runner.COMPLETED  # a reused child ran this
        obs = ex.run(SEGFAULT)
        assert obs.outcome == runner.CRASH
        assert obs.extra["signal"] == "SIGSEGV"
        assert f"killed by SIGSEGV ({int(signal.SIGSEGV)})" in obs.detail
        assert "Segmentation fault" in obs.detail  # faulthandler's report
        assert "in switch" in obs.detail  # ... with the mutant's frame
        assert obs.trace == []
        if mode == "reuse":
            assert obs.extra["after_other_programs"]["outcome"] == runner.CRASH
        for program in NO_THROW:
            after = ex.run(program)
            assert after.outcome == runner.COMPLETED, after.detail
            assert after.trace == expected(program, greenlet_impl)
        assert ex.starts == (2 if mode == "no-fork" else 1)


@pytest.mark.parametrize("mode", list(MODES))
def test_throw_that_never_returns_is_a_hang(mode: str, mutant: str) -> None:
    timeout = 0.5
    attempts = 2 if mode == "reuse" else 1
    with IsolatedExecutor(mutant, timeout=timeout, **MODES[mode]) as ex:  # type: ignore[arg-type]
        ex.run(PROGRAMS[0])
        start = time.monotonic()
        obs = ex.run(HANG)
        elapsed = time.monotonic() - start
        assert obs.outcome == runner.HANG, obs.detail
        assert elapsed < attempts * timeout + 1.5
        assert elapsed >= timeout
        assert "in throw" in obs.detail  # faulthandler's dump of where it was stuck
        assert ex.run(PROGRAMS[0]).outcome == runner.COMPLETED


def test_child_output_and_memory_limit(mutant: str) -> None:
    printing = Program(main=(Spawn("g1"), Switch("g1", (888,))), greenlets=(("g1", ()),))
    greedy = Program(main=(Spawn("g1"), Switch("g1", (777,))), greenlets=(("g1", ()),))
    with IsolatedExecutor(mutant, timeout=5.0, memory_limit=1 << 30) as ex:
        obs = ex.run(printing)
        assert obs.outcome == runner.COMPLETED
        assert "mutant says hello" in str(obs.extra["output"])
        assert "mutant complains" in str(obs.extra["output"])
        obs = ex.run(greedy)
        assert obs.outcome == runner.COMPLETED, obs.detail
        caught = [payload for who, _, kind, payload in obs.trace if kind == "caught"]
        assert [c.type for c in caught] == ["MemoryError"]


def test_a_dead_worker_is_restarted(greenlet_impl: implementations.Implementation) -> None:
    with IsolatedExecutor("greenlet", timeout=5.0) as ex:
        proc = ex._proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        obs = ex.run(PROGRAMS[0])
        assert obs.outcome == runner.COMPLETED
        assert obs.trace == expected(PROGRAMS[0], greenlet_impl)
        assert ex.starts == 2



def test_each_program_gets_a_fresh_child_and_killed_spares_are_replaced(
        greenlet_impl: implementations.Implementation) -> None:
    """The children forked ahead for the next programs are separate processes, one per
    program; killed from outside while they wait, they are replaced and nothing is
    reported."""
    with IsolatedExecutor("greenlet", timeout=5.0) as ex:
        proc = ex._proc
        assert proc is not None
        worker = psutil.Process(proc.pid)
        for program in PROGRAMS[:2]:  # the second of a run of fresh requests forks spares
            assert ex.run(program).outcome == runner.COMPLETED
        spares = waiting_children(worker, SPARES)
        for spare in spares:
            spare.kill()
        deadline = time.monotonic() + 5
        while any(running(s) for s in spares) and time.monotonic() < deadline:
            time.sleep(0.01)  # dead; the worker has not noticed yet
        seen = {s.pid for s in spares}
        for program in PROGRAMS * 2:
            obs = ex.run(program)
            assert obs.outcome == runner.COMPLETED, obs.detail
            assert obs.trace == expected(program, greenlet_impl)
            assert "programs_before" not in obs.extra
        # The first of those found every spare dead and forked a new set; each later
        # program took one of them.
        assert len(PROGRAMS) * 2 - 1 < SPARES
        left = waiting_children(worker, SPARES - (len(PROGRAMS) * 2 - 1))
        assert not seen & {c.pid for c in left}
        assert ex.starts == 1


def running(child: psutil.Process) -> bool:
    """Not a zombie, and not reaped either (the worker reaps a child that is done as soon
    as it has answered, which may be while this looks at its children)."""
    try:
        return child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def waiting_children(worker: psutil.Process, count: int) -> List[psutil.Process]:
    """The worker's ``count`` live children, once the last program's child has exited."""
    deadline = time.monotonic() + 5
    while True:
        live = [c for c in worker.children() if running(c)]
        if len(live) == count or time.monotonic() > deadline:
            assert len(live) == count, live
            return live
        time.sleep(0.01)


def test_a_reused_child_says_so_and_fresh_requests_get_their_own(
        greenlet_impl: implementations.Implementation) -> None:
    with IsolatedExecutor("greenlet", timeout=5.0, programs_per_child=3) as ex:
        before = [ex.run(PROGRAMS[0]).extra.get("programs_before") for _ in range(4)]
        assert before == [None, 1, 2, None]  # the fourth starts the next child
        obs = ex.run(PROGRAMS[1], fresh=True)
        assert "programs_before" not in obs.extra
        assert obs.trace == expected(PROGRAMS[1], greenlet_impl)
        # ... and the kept child goes on where it was.
        assert ex.run(PROGRAMS[0]).extra.get("programs_before") == 1


#: Right until 40 greenlets have been made in the process, then every switch() with
#: arguments passes one more: wrong only in a child that ran other programs first.
WEARS_OUT = """
import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

made = [0]


class greenlet(_real.greenlet):
    # Wears out through ``run`` rather than a Python ``switch``: a Python frame holding
    # ``self`` would sit in the traceback of every exception passing through it, and
    # the cycle would delay collection, which is a finding of its own.
    def __init__(self, run=None, *args, **kwargs):
        made[0] += 1
        if run is not None and made[0] > 40:
            body = run

            def run(*a, **k):
                return (body(*a, **k), "worn")
        super().__init__(run, *args, **kwargs)
"""


@pytest.mark.parametrize("per_child", [1, 50])
def test_failures_after_other_programs_are_run_again_fresh(tmp_path: Path,
                                                           per_child: int) -> None:
    from greenfuzz.harness.search.campaign import CampaignConfig, run_campaign

    path = tmp_path / "wears_out.py"
    path.write_text(WEARS_OUT)
    config = CampaignConfig(impl=implementations.load(str(path)), out=tmp_path / "out",
                            max_examples=120, seed=5, families=("core",), memory=False,
                            programs_per_child=per_child, timeout=2.0, budget=60)
    result = run_campaign(config)
    assert result.findings == [] and result.examples + result.repeats == 120
    assert result.examples >= 60  # (the others: drawn again after passing, not run)
    if per_child == 1:
        assert result.state_dependent == 0
    else:
        assert result.state_dependent > 0
        assert any("passed in a fresh one" in note for note in result.notes)
        # By how they failed there: a return value worn into another (mismatch:...).
        assert sum(result.state_dependent_by.values()) == result.state_dependent
        assert all(how.startswith("mismatch:") for how in result.state_dependent_by), \
            result.state_dependent_by


def test_a_wedged_worker_is_killed_and_the_program_is_a_hang() -> None:
    with IsolatedExecutor("greenlet", timeout=0.3, margin=0.3) as ex:
        proc = ex._proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)  # stops answering; the executor must not wait
        start = time.monotonic()
        obs = ex.run(PROGRAMS[0])
        assert time.monotonic() - start < 0.3 + KILL_SLACK + 0.3 + 1.0
        assert obs.outcome == runner.HANG
        assert "no answer from the worker" in obs.detail
        assert proc.poll() is not None  # killed
        assert ex.run(PROGRAMS[0]).outcome == runner.COMPLETED
        assert ex.starts == 2


def test_close_ends_the_worker() -> None:
    ex = IsolatedExecutor("greenlet")
    ex.start()
    proc = ex._proc
    assert proc is not None
    ex.close()
    ex.close()
    assert proc.returncode is not None


def one_line_error(spec: str, **kwargs: object) -> str:
    with pytest.raises(ImplementationError) as info:
        IsolatedExecutor(spec, **kwargs).start()  # type: ignore[arg-type]
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_missing_interpreter() -> None:
    assert one_line_error("greenlet", python="/no/such/python3") == (
        "python interpreter not found: /no/such/python3")
    assert "not found" in one_line_error("greenlet", python="no-such-python-anywhere")


def test_unusable_implementations(tmp_path: Path) -> None:
    assert one_line_error("no_such_module_xyz") == (
        "cannot import implementation 'no_such_module_xyz': No module named 'no_such_module_xyz'")
    assert "implementation file not found" in one_line_error(str(tmp_path / "absent.py"))
    (tmp_path / "not_greenlet.py").write_text("x = 1\n")
    assert one_line_error(str(tmp_path / "not_greenlet.py")).endswith(
        "lacks the greenlet API: missing greenlet, getcurrent, GreenletExit, error")
    (tmp_path / "broken.py").write_text("raise RuntimeError('no\\nway')\n")
    assert "failed to import: RuntimeError: no way" in one_line_error(str(tmp_path / "broken.py"))
    # Messages agree with the in-process loader's.
    with pytest.raises(ImplementationError) as info:
        implementations.load("no_such_module_xyz")
    assert str(info.value) == one_line_error("no_such_module_xyz")


def test_an_interpreter_that_is_not_python(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'this is no python' >&2\nexit 7\n")
    fake.chmod(0o755)
    message = one_line_error("greenlet", python=str(fake))
    assert message == f"cannot start a worker with {fake}: exit status 7: this is no python"


def pyenv_pythons(pattern: str) -> list:
    root = os.environ.get("PYENV_ROOT")
    if not root:
        try:
            root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = os.path.expanduser("~/.pyenv")
    return sorted(glob.glob(os.path.join(root, "versions", pattern, "bin", "python")))


def can_import(python: str, module: str) -> bool:
    try:
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_greenlet_303_under_cpython_312(greenlet_impl: implementations.Implementation) -> None:
    """An older greenlet release on a newer CPython, in the venv ``--greenlet`` makes."""
    pythons = pyenv_pythons("3.12.*")
    if not pythons:
        pytest.skip("no pyenv CPython 3.12")
    python = envs.greenlet_python("3.0.3", pythons[-1])
    with IsolatedExecutor("greenlet", python=python, timeout=5.0) as ex:
        assert ex.info["python"].startswith("3.12.")
        assert ex.info["impl_version"] == "3.0.3"
        for program in PROGRAMS:
            obs = ex.run(program)
            assert obs.outcome == runner.COMPLETED, obs.detail
            assert obs.trace == expected(program, greenlet_impl)


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_stdlib_implementation_under_other_cpythons(version: str) -> None:
    """The worker itself on the oldest and newest CPython: source, not marshalled code,
    goes over the wire, and harness/envs/threaded_greenlet.py needs only the stdlib."""
    pythons = pyenv_pythons(f"{version}.*")
    if not pythons:
        pytest.skip(f"no pyenv CPython {version}")
    spec = str(ROOT / "harness" / "envs" / "threaded_greenlet.py")
    impl = implementations.load(spec)
    with IsolatedExecutor(spec, python=pythons[-1], timeout=5.0) as ex:
        assert ex.info["python"].startswith(version + ".")
        assert ex._send_code is (ex.info["cache_tag"] == sys.implementation.cache_tag)
        for program in PROGRAMS:
            obs = ex.run(program)
            assert obs.outcome == runner.COMPLETED, obs.detail
            assert obs.trace == expected(program, impl)


@pytest.mark.parametrize("path", sorted((ROOT / "harness" / "target").glob("*.py")),
                         ids=lambda p: p.name)
def test_target_source_uses_only_the_stdlib(path: Path) -> None:
    """Target modules run in the target interpreter (loaded by path, or pasted mid-file):
    no greenfuzz imports (siblings only, relatively), no ``from __future__``, nothing newer
    than 3.9."""
    source = path.read_text()
    tree = ast.parse(source, path.name, feature_version=(3, 9))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] in ("greenfuzz", "harness")
                           for a in node.names), ast.dump(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 1 or (node.module or "").split(".")[0] not in (
                "greenfuzz", "harness", "__future__"), ast.dump(node)


@pytest.mark.parametrize("names", [target.RUNTIME, target.MEMORY, target.SCALE],
                         ids=["runtime", "memory", "scale"])
def test_pasted_target_modules_stand_alone(names: tuple, tmp_path: Path) -> None:
    """What reproducers paste runs in an isolated interpreter that cannot import greenfuzz,
    and defines the names the reproducers call."""
    script = tmp_path / "pasted.py"
    script.write_text(target.paste(names) + "\nimport sys\n"
                      "assert not any(m.split('.')[0] in ('greenfuzz', 'greenfuzz_target')"
                      " for m in sys.modules), sorted(sys.modules)\n"
                      "print(sorted(n for n in globals() if not n.startswith('_')))\n")
    done = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    wanted = {target.RUNTIME: {"execute", "first_divergence", "explain_leak",
                               "load_implementation", "Tracer"},
              target.MEMORY: {"raw_probe", "measure_parked", "settle", "Tracer"},
              target.SCALE: {"main", "Run", "ScaleFailure"}}[names]
    assert wanted <= set(ast.literal_eval(done.stdout.strip()))


def test_paste_refuses_what_would_not_stand_alone() -> None:
    """A module pasted before a sibling it imports, or two that define one name."""
    with pytest.raises(ValueError, match="imports codec, not pasted before it"):
        target.paste(("tracediff", "codec"))
    with pytest.raises(ValueError, match="defined by both"):
        target.paste(("codec", "codec"))


def test_a_child_collects_as_the_worker_would_nothing_frozen() -> None:
    """When the oldest generation is collected depends on how many objects it holds:
    a child must hold the worker's, as a fresh interpreter holds its own.  With the
    worker's objects frozen (a gc.freeze() before each fork), full collections came at
    other times, and the harness saw a gc-family SIGSEGV every run that a fresh
    interpreter never showed."""
    source = ("def program(gl, T):\n"
              "    import gc\n"
              "    T.rec('main', -1, 'frozen', getattr(gc, 'get_freeze_count', int)())\n"
              "    T.rec('main', -1, 'oldest', len(gc.get_objects(2)) > 1000)\n")
    with IsolatedExecutor("greenlet", timeout=5.0, programs_per_child=100) as ex:
        for fresh in (True, False):
            observation = ex.run_source(source, fresh=fresh)
            assert observation.outcome == runner.COMPLETED, observation.detail
            assert ("main", -1, "frozen", 0) in observation.trace
            assert ("main", -1, "oldest", True) in observation.trace
