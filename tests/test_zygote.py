"""The exit zygote (``execution/zygote.py``): a child it forks ends the way a fresh
interpreter running the same script ends (``atexit``, thread shutdown, module teardown,
statuses, output, crashes, hangs, the memory limit), on the installed greenlet."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional, Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings

from greenfuzz.harness import model
from greenfuzz.harness.execution import at_exit
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.runner import COMPLETED
from greenfuzz.harness.execution.zygote import GIVE_UP_AFTER, ChildRun, ExitZygote
from greenfuzz.harness.families.base import walk
from greenfuzz.harness.families.shutdown import Leave
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import codec, exit_runtime, runtime
from greenfuzz.strategies import programs
from tests.test_shutdown import PROGRAMS

#: A program (as source) that notes, in order, what happens as its process exits:
#: a non-daemon thread ending (thread shutdown), an atexit callback (with which modules
#: are loaded, the signal mask, the address-space limit), and a ``__del__`` of an object
#: only a module global holds (module teardown).
PROBE = '''
def program(gl, T):
    import atexit, gc, threading, time, types
    fd = os.open(%(path)r, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def note(text, _write=os.write, _fd=fd):
        _write(_fd, (text + "\\n").encode())

    def callback():
        note("atexit in main thread: %%s" %% (
            threading.current_thread() is threading.main_thread()))
        note("modules: " + " ".join(sorted(sys.modules)))
        note("gc enabled: %%s" %% gc.isenabled())
        # What decides when full collections happen (the oldest generation's size,
        # nothing frozen): the gc family's collections must come when they would in
        # a fresh interpreter (a gc.freeze() before each fork made them differ).
        note("gc frozen: %%s" %% getattr(gc, "get_freeze_count", lambda: 0)())

    atexit.register(callback)

    def late():
        time.sleep(0.3)
        note("thread ended")

    threading.Thread(target=late).start()

    class Teardown:
        def __del__(self, _note=note):
            _note("del at module teardown")

    module = sys.modules["greenfuzz_probe"] = types.ModuleType("greenfuzz_probe")
    module.obj = Teardown()
    with open("/proc/self/limits") as f:
        note([line for line in f if "address space" in line][0].strip())
    note("blocked signals: %%s" %% sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    note("argv: %%s" %% (sys.argv[1:2],))
    print("to stdout")
    sys.stderr.write("to stderr\\n")
    T.exit_status = 5
'''

MEMORY_LIMIT = 2 << 30


@pytest.fixture(scope="module")
def zygote() -> Iterator[ExitZygote]:
    with ExitZygote("greenlet", memory_limit=MEMORY_LIMIT) as z:
        yield z


def fresh(source: str, tmp_path: Path, timeout: float = 10.0) -> ChildRun:
    """``source`` run by the fresh-interpreter path (the script a reproducer is)."""
    path = tmp_path / "fresh.py"
    path.write_text(at_exit.script(Program(main=()), impl="greenlet", source=source))
    return exit_runtime.run_child(str(path), "greenlet", sys.executable, timeout,
                                  MEMORY_LIMIT)


def forked(zygote: ExitZygote, source: str, timeout: float = 10.0) -> ChildRun:
    ran = zygote.run(source, timeout)
    assert ran is not None, zygote.problem
    return ran


def probe_both(zygote: ExitZygote, tmp_path: Path) -> Tuple[ChildRun, str, ChildRun, str]:
    runs = []
    for name in ("fresh", "zygote"):
        notes = tmp_path / f"{name}.notes"
        source = PROBE % {"path": str(notes)}
        ran = fresh(source, tmp_path) if name == "fresh" else forked(zygote, source)
        runs += [ran, notes.read_text()]
    return runs[0], runs[1], runs[2], runs[3]


def test_exit_is_the_interpreters_own_as_in_a_fresh_one(zygote: ExitZygote,
                                                         tmp_path: Path) -> None:
    fresh_run, fresh_notes, zygote_run, zygote_notes = probe_both(zygote, tmp_path)
    assert zygote_notes == fresh_notes
    lines = zygote_notes.splitlines()
    # Thread shutdown, then atexit callbacks, then module teardown, as CPython orders them.
    order = [next(i for i, line in enumerate(lines) if line.startswith(prefix))
             for prefix in ("thread ended", "atexit in main thread: True", "modules: ",
                            "del at module teardown")]
    assert order == sorted(order), lines
    modules = next(line for line in lines if line.startswith("modules: ")).split()
    assert "greenlet" in modules and "resource" not in modules and "ctypes" not in modules
    assert f"{MEMORY_LIMIT}" in next(line for line in lines if "address space" in line)
    assert "gc enabled: False" in lines  # the child turned it off, as while programs run
    assert "argv: ['--child']" in lines
    for ran in (fresh_run, zygote_run):
        assert ran[1] == 5  # T.exit_status
        assert ran[2] == "to stdout\nto stderr\n"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_shutdown_programs_end_alike(name: str, zygote: ExitZygote) -> None:
    """The family's test programs: same verdict, statuses and events before the exit,
    the same finalization observations (kind and outcome; details carry addresses)."""
    program = PROGRAMS[name]
    expected = model.predict(program)
    seen = []
    for z in (None, zygote):
        observation = at_exit.run(program, "greenlet", timeout=5.0, zygote=z)
        assert observation.extra["interpreter"] == ("fresh" if z is None else "zygote")
        verdict = checks.compare(program, expected, observation)
        assert verdict.ok, verdict.summary
        late = Counter((e[2], e[3][0]) for e in observation.trace if e[0] == "late")
        main = [e[:3] for e in observation.trace if e[0] != "late"]
        seen.append((observation.outcome, observation.extra["status"], main, late))
    assert seen[0] == seen[1]


CRASH_AT_EXIT = '''
def program(gl, T):
    import atexit
    atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    T.rec("main", -1, "armed", None)
'''

HANG_AT_EXIT = '''
def program(gl, T):
    import atexit, time
    atexit.register(lambda: time.sleep(60))
    print("hanging", flush=True)
'''

ALLOCATES = '''
def program(gl, T):
    T.rec("main", -1, "big", len(bytearray(%d)))
''' % (3 << 30)


def test_a_crash_at_exit_is_the_same_signal_and_dump(zygote: ExitZygote,
                                                     tmp_path: Path) -> None:
    for text, code, output, _ in (fresh(CRASH_AT_EXIT, tmp_path),
                                  forked(zygote, CRASH_AT_EXIT)):
        assert code == -signal.SIGSEGV
        assert "Fatal Python error: Segmentation fault" in output  # faulthandler's dump
        assert [e[2] for e in exit_runtime.parse_output(text, runtime.decode_trace)] \
            == ["armed"]


def test_a_hang_is_killed_at_the_limit_and_the_zygote_goes_on(zygote: ExitZygote,
                                                              tmp_path: Path) -> None:
    for _, code, output, seconds in (fresh(HANG_AT_EXIT, tmp_path, timeout=1.0),
                                        forked(zygote, HANG_AT_EXIT, timeout=1.0)):
        assert code is None and 1.0 <= seconds < 5.0
        assert output.startswith("hanging")
    starts = zygote.starts
    assert forked(zygote, "def program(gl, T):\n    pass\n")[1] == 0
    assert zygote.starts == starts


def test_the_memory_limit_holds_in_children(zygote: ExitZygote, tmp_path: Path) -> None:
    for text, code, _, _ in (fresh(ALLOCATES, tmp_path), forked(zygote, ALLOCATES)):
        events = exit_runtime.parse_output(text, runtime.decode_trace)
        assert code == 0
        assert events[0][2:] == ("escaped", codec.ExcValue("MemoryError", ())), events


def test_a_dead_zygote_is_started_again() -> None:
    with ExitZygote("greenlet") as z:
        assert forked(z, "def program(gl, T):\n    pass\n")[1] == 0
        assert z._proc is not None
        os.killpg(z._proc.pid, signal.SIGKILL)
        z._proc.wait(timeout=5.0)
        assert forked(z, "def program(gl, T):\n    pass\n")[1] == 0
        assert z.starts == 2


def test_an_unusable_zygote_falls_back_to_a_fresh_interpreter(tmp_path: Path) -> None:
    program = PROGRAMS["late_switch"]
    broken: Optional[ExitZygote] = ExitZygote("greenlet", python=str(tmp_path / "nope"))
    observation = at_exit.run(program, "greenlet", timeout=5.0, zygote=broken)
    assert broken is not None and "cannot start" in (broken.problem or "")
    assert observation.extra["interpreter"] == "fresh"
    assert observation.outcome == COMPLETED
    assert checks.compare(program, model.predict(program), observation).ok


def test_the_executor_runs_exit_programs_in_its_zygote_and_ends_it() -> None:
    program = PROGRAMS["late_switch"]
    with IsolatedExecutor("greenlet", timeout=5.0) as ex:
        first, second = ex.run(program), ex.run(program)
        zygote = ex._zygote
        assert zygote is not None and zygote._proc is not None
        pid = zygote._proc.pid
        assert [o.extra["interpreter"] for o in (first, second)] == ["zygote", "zygote"]
        assert zygote.starts == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # closing the executor ended the zygote (and reaped it)
    with IsolatedExecutor("greenlet", timeout=5.0, exit_zygote=False) as ex:
        assert ex.run(program).extra["interpreter"] == "fresh"


def test_a_new_zygote_every_so_many_programs_and_none_after_failures(tmp_path: Path) -> None:
    empty = "def program(gl, T):\n    pass\n"
    with ExitZygote("greenlet", programs_per_zygote=2) as z:
        assert [forked(z, empty)[1] for _ in range(3)] == [0, 0, 0]
        assert z.starts == 2  # a new hash seed after two programs
    broken = ExitZygote("greenlet", python=str(tmp_path / "nope"))
    assert [broken.run(empty, 5.0) for _ in range(GIVE_UP_AFTER + 2)] \
        == [None] * (GIVE_UP_AFTER + 2)
    assert broken.failures == GIVE_UP_AFTER  # then no more tries


@pytest.mark.slow
@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(program=programs(families=("shutdown",)))
def test_drawn_shutdown_programs_end_alike(program: Program) -> None:
    """Drawn programs of the family, both ways: the same verdict, outcome and status.
    (Daemon threads switching at exit are left out: that abort depends on load, in a
    fresh interpreter too; docs/upstream/daemon-greenlets-abort-at-exit.md.)"""
    assume(at_exit.at_exit(program) and not any(
        isinstance(op, Leave) and op.kind == "daemon_switching"
        for _, script in program.scripts() for op in walk(script)))
    expected = model.predict(program)
    seen = []
    with ExitZygote("greenlet") as z:
        for zygote in (None, z):
            observation = at_exit.run(program, "greenlet", timeout=5.0, zygote=zygote)
            verdict = checks.compare(program, expected, observation)
            seen.append((verdict.ok, verdict.summary, observation.outcome,
                         observation.extra["status"]))
    assert seen[0] == seen[1]
    assert seen[0][0], seen[0][1]


CONTROLLER = """
import sys, threading, time
from greenfuzz.harness.execution.zygote import ExitZygote
z = ExitZygote("greenlet")
z.run("def program(gl, T):\\n    pass\\n", 10.0)
threading.Thread(target=z.run, args=(sys.argv[1], 1.0), daemon=True).start()
print(z._proc.pid, flush=True)
time.sleep(60)
"""


def test_a_child_ends_after_its_limit_even_when_greenfuzz_was_killed() -> None:
    """Nothing greenfuzz started outlives it: greenfuzz killed by SIGKILL takes the
    zygote with it (``PR_SET_PDEATHSIG``), which leaves the zygote's child with nobody
    to kill it at its limit; so the child ends itself (an alarm)."""
    import subprocess
    import time

    import psutil

    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, HANG_AT_EXIT],
                                  stdout=subprocess.PIPE, text=True)
    try:
        assert controller.stdout is not None
        zygote_process = psutil.Process(int(controller.stdout.readline()))
        deadline = time.monotonic() + 10.0
        while not zygote_process.children() and time.monotonic() < deadline:
            time.sleep(0.01)
        child = zygote_process.children()[0]
        controller.kill()
        controller.wait(10.0)
        _, alive = psutil.wait_procs([child], timeout=8.0)
        for process in alive:
            process.kill()
        assert not alive, "the program outlived greenfuzz by more than its limit"
    finally:
        controller.kill()
        controller.wait(10.0)


def test_the_folders_of_a_killed_greenfuzz_are_removed_by_the_next(tmp_path: Path) -> None:
    """A greenfuzz killed with SIGKILL cannot remove its zygote's folder; the next one
    removes the folders whose greenfuzz is gone and that nothing wrote to for a while,
    and no other."""
    import subprocess
    import tempfile
    import time

    from greenfuzz.harness.execution.zygote import SWEEP_AFTER, sweep

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(10.0)
    long_ago = time.time() - SWEEP_AFTER - 60

    def folder(parent: Path, name: str, old: bool = True) -> Path:
        path = parent / name
        path.mkdir(exist_ok=True)
        (path / "runtime.py").write_text("")
        if old:
            os.utime(path / "runtime.py", (long_ago, long_ago))
        return path

    gone = folder(tmp_path, f"greenfuzz-zygote-{ended.pid}-abcd1234")
    recent = folder(tmp_path, f"greenfuzz-zygote-{ended.pid}-recent12", old=False)
    mine = folder(tmp_path, f"greenfuzz-zygote-{os.getpid()}-abcd1234")
    other = folder(tmp_path, "greenfuzz-zygote-abcd1234")  # not named by a pid
    assert sweep(str(tmp_path)) == 1
    assert not gone.exists() and recent.exists() and mine.exists() and other.exists()

    with ExitZygote("greenlet") as z:  # the first start sweeps the temporary folder
        leftover = folder(Path(tempfile.gettempdir()), f"greenfuzz-zygote-{ended.pid}-efgh5678")
        assert z.run("def program(gl, T):\n    pass\n", 5.0) is not None
        assert not leftover.exists()
        assert z._folder is not None and f"-{os.getpid()}-" in z._folder
