"""Family ``concurrent``: threads that run switch graphs of their own at the same time.

The rules against the real greenlet (``agreed``: every thread's trace is its thread
program's prediction, whatever the interleaving, so each program is run several times);
each cross-thread check against an implementation that breaks it; the thread programs a
``Concurrent`` op derives; and the greenlet bug this family found, as a script
(docs/upstream/self-switch-after-foreign-drop.md).  The mutants of this family are in
``tests/mutants/thread_*.py`` with ``FAMILIES = ("core", "concurrent")``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, List

import greenlet
import greenlet as real
import pytest

from greenfuzz.harness import model
from greenfuzz.harness.execution import runner
from greenfuzz.harness.families.concurrent import (
    Concurrent,
    Cross,
    CrossDrop,
    Yield,
    thread_scripts,
)
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import (
    MAIN,
    Current,
    Drop,
    Finally,
    Inspect,
    ProgramError,
    SetParent,
    Spawn,
    Switch,
    Throw,
)
from greenfuzz.harness.target import runtime, side_by_side
from greenfuzz.harness.target.runtime import ExcValue
from tests.helpers import prog
from tests.test_families import GREENLET, agreed

CRASHES = Path(__file__).parent / "crashes"
ERROR = ExcValue("greenlet.error", None)


def of_thread(trace: List[tuple], k: int) -> List[tuple]:
    return [e for e in trace if e[0].endswith(f"@{k}")]


def test_each_thread_runs_its_own_switch_graph_whatever_the_interleaving() -> None:
    """Three threads (two run g1's script, one g2's) switch among greenlets of their own,
    yield the GIL between switches and look at getcurrent(); run ten times."""
    p = prog([Spawn("g1"), Concurrent(("g1", "g2", "g1")), Switch("g1", (7,))],
             g1=[Spawn("g2"), Yield("sleep"), Switch("g2", (1,)), Current(), Yield("io"),
                 Switch("g2"), Current(), Switch(MAIN, ("end",))],
             g2=[Current(), Switch(MAIN, (2,)), Yield("sleep"), Current(), Switch(MAIN)])
    for _ in range(10):
        trace = agreed(p)
    first = of_thread(trace, 0)
    assert first[0] == ("main@0", -1, "start", ((), {}))
    # g1's script as a thread's main: its Current ops answer that thread's main greenlet.
    assert ("main@0", 3, "current", MAIN) in first and ("g2@0", 0, "current", "g2") in first
    assert of_thread(trace, 2) == [(w.replace("@0", "@2"), pc, k, v) for w, pc, k, v in first]
    assert (MAIN, 1, "threads", ()) in trace


def test_switching_or_throwing_into_another_threads_greenlet_is_an_error() -> None:
    """To another thread's main greenlet or a greenlet it parked, while it runs or after
    it ended: greenlet.error, caught (greenlet's test_switch_to_another_thread)."""
    p = prog([Spawn("g1"), Spawn("g2"), Concurrent(("g1", "g2"))],
             g1=[Cross("switch", "main", 1), Cross("throw", "parked", 1), Yield("sleep"),
                 Cross("switch", "parked", 1), Cross("throw", "main", 1)],
             g2=[Cross("throw", "main", 1), Yield("io"), Cross("switch", "parked", 1)])
    for _ in range(5):
        trace = agreed(p)
    assert [e[3] for e in of_thread(trace, 0) if e[2] == "caught"] == [ERROR] * 4
    assert [e[3] for e in of_thread(trace, 1) if e[2] == "caught"] == [ERROR] * 2


def test_threads_start_from_any_greenlet_and_start_none_themselves() -> None:
    """A ``Concurrent`` in g1's script, nested in a try block; the thread program rooted
    at g1 leaves it out."""
    p = prog([Spawn("g1"), Switch("g1")],
             g1=[Spawn("g2"), Finally((Concurrent(("g1", "g2")), Current()), 1), Current()],
             g2=[Current(), Yield("sleep"), Current()])
    trace = agreed(p)
    assert ("g1", 2, "threads", ()) in trace
    assert [e for e in trace if e[0] == "main@0" and e[2] == "threads"] == []


def test_cross_thread_ops_do_nothing_outside_threads_or_towards_the_same_thread() -> None:
    p = prog([Cross("switch"), CrossDrop(2), Spawn("g1"), Concurrent(("g1", "g1")), Yield()],
             g1=[Cross("switch", "main", 2), CrossDrop(2), Current()])
    trace = agreed(p)
    assert (MAIN, 0, "done", None) in trace and (MAIN, 1, "done", None) in trace
    assert ("main@0", 0, "done", None) in trace and ("main@1", 0, "done", None) in trace


def test_a_greenlet_dropped_in_another_thread_dies_in_its_own() -> None:
    """Each thread drops the greenlet the next one parked; the runtime checks where each
    got GreenletExit (its own thread, at most once) after all have ended."""
    p = prog([Spawn("g1"), Concurrent(("g1", "g1", "g1"))],
             g1=[CrossDrop(1), Yield("sleep"), Current(), Yield("sleep"), Current()])
    for _ in range(10):
        agreed(p)


def test_thread_programs_keep_core_and_name_the_root_main() -> None:
    scripts = (
        (MAIN, (Spawn("g1"), Concurrent(("g1",)))),
        ("g1", (Spawn("g2", "g1"), Switch("g2"), Finally((Switch(MAIN),), 1), Drop("g1"),
                Inspect("g1", "dead"), Switch(MAIN), Switch("g1"))),
        ("g2", (Switch("g1", (1,)), SetParent("g1", "g2"), Throw(MAIN), Switch("g2"))),
    )
    assert thread_scripts(scripts, "g1") == (
        (MAIN, (Spawn("g2", MAIN), Switch("g2"), Inspect(MAIN, "dead"))),
        ("g2", (Switch(MAIN, (1,)), Throw(MAIN))),
    )
    assert thread_scripts(scripts, "g1", self_switches=True)[0][1][-2:] == (
        Switch(MAIN), Switch(MAIN))


def test_concurrent_is_validated() -> None:
    with pytest.raises(ProgramError, match="unknown"):
        prog([Concurrent(("g9",))], g1=[])
    with pytest.raises(ProgramError):
        prog([Spawn("g1"), Concurrent(("g1",) * 5)], g1=[])
    with pytest.raises(ProgramError):
        prog([Cross("switch", "main", 0)])
    with pytest.raises(ProgramError):
        prog([Yield("spin")])


def test_the_model_predicts_each_thread_as_its_own_program() -> None:
    p = prog([Spawn("g1"), Spawn("g2"), Concurrent(("g2", "g1"), self_switches=True)],
             g1=[Switch(MAIN, (1,))], g2=[Spawn("g3"), Switch("g3", (3,))], g3=[])
    trace = model.predict(p)
    assert ("g3@0", -1, "start", ((3,), {})) in trace
    assert ("main@1", 0, "value", 1) in trace  # g1's switch to main is to itself there
    # self_switches=False leaves switches to oneself out of the thread programs.
    trace = model.predict(prog([Spawn("g1"), Concurrent(("g1",), self_switches=False)],
                               g1=[Switch(MAIN, (1,))]))
    assert ("main@0", 0, "return", None) in trace


# -- the runtime's cross-thread checks, on implementations that break them -----------------

def run_threads(gl: Any, n: int = 3) -> tuple:
    def program(gl: Any, T: Any) -> None:
        T.rec("main", -1, "start", ((), {}))
        T.cross_drop(T, 1)
        T.yield_gil("sleep")
        gl.getcurrent()

    T = runtime.Tracer(gl)
    return side_by_side.concurrent(T, [program] * n)


def test_no_violation_on_greenlet() -> None:
    for _ in range(5):
        assert run_threads(greenlet) == ()


def test_a_getcurrent_that_answers_another_threads_greenlet_is_reported() -> None:
    answers: List[Any] = []
    lock = threading.Lock()

    class Shared:
        """getcurrent() answers whatever any thread asked last."""

        greenlet = real.greenlet
        GreenletExit = real.GreenletExit
        error = real.error

        @staticmethod
        def getcurrent() -> Any:
            mine = real.getcurrent()
            with lock:
                answers.append(mine)
                return answers[-2] if len(answers) > 1 and answers[-2] is not mine \
                    and not answers[-2].dead else mine

    found = run_threads(Shared)
    assert any("getcurrent()" in v or "parking" in v for v in found), found


def test_a_kill_in_the_wrong_thread_is_reported() -> None:
    """What ``concurrent`` checks once every thread has ended, given a parked greenlet
    that recorded GreenletExit twice, in a thread other than its own."""
    T = runtime.Tracer(real)
    peers = side_by_side.Peers(2)
    peers.idents = [1, 2]
    peers.exits[0].extend([threading.get_ident(), threading.get_ident()])
    # The checks concurrent() makes once every thread has ended:
    runtime_checks = [v for v in _exit_checks(peers)]
    assert any("2 times" in v for v in runtime_checks)
    assert any("another thread" in v for v in runtime_checks)
    assert T.events == []


def _exit_checks(peers: Any) -> List[str]:
    def nothing(gl: Any, T: Any) -> None:
        pass

    T = runtime.Tracer(greenlet)
    original = side_by_side.Peers

    class Preset(original):  # type: ignore[misc,valid-type]
        def __init__(self, n: int) -> None:
            super().__init__(n)
            self.__dict__.update({k: v for k, v in peers.__dict__.items()
                                  if k in ("exits",)})

    side_by_side.Peers = Preset
    try:
        return list(side_by_side.concurrent(T, [nothing, nothing]))
    finally:
        side_by_side.Peers = original


# -- the bug this family found ---------------------------------------------------------

def test_the_family_finds_the_self_switch_bug_when_self_switches_are_kept() -> None:
    """With ``self_switches``, a thread whose parked greenlet another thread drops then
    switches to itself: greenlet 2.0.0-3.5.6 fail that switch (below), so some runs
    diverge there (those where the drop comes first), and only there."""
    release = tuple(int(p) for p in greenlet.__version__.split(".")[:3] if p.isdigit())
    if not (2, 0, 0) <= release <= (3, 5, 6):
        pytest.skip(f"greenlet {greenlet.__version__} was not measured")
    root = [Yield("sleep")] * 8 + [Switch(MAIN, (1, 2))]
    p = prog([Spawn("g1"), Spawn("g2"), Concurrent(("g1", "g2"), self_switches=True)],
             g1=root, g2=[CrossDrop(1)])
    expected = model.predict(p)
    failed: List[str] = []
    for _ in range(300):  # until the drop comes first (a race: most runs, idle or not)
        verdict = checks.compare(p, expected, runner.run_inprocess(p, GREENLET))
        if not verdict.ok:
            failed.append(verdict.summary)
            if len(failed) == 3:
                break
    assert failed and all("returned NULL without" in s for s in failed), failed


@pytest.mark.parametrize("how", [[], ["dead"]])
def test_switch_to_self_after_a_foreign_drop_fails_on_greenlet_2_to_3_5_6(how: List[str]
                                                                           ) -> None:
    """docs/upstream/self-switch-after-foreign-drop.md: measured on greenlet 2.0.0-3.5.6
    (CPython 3.10-3.13), every run, switching to the current greenlet or to a dead one
    whose parent it is; the control (``getcurrent()`` first) works."""
    release = tuple(int(p) for p in greenlet.__version__.split(".")[:3] if p.isdigit())
    script = str(CRASHES / "self_switch_after_foreign_drop.py")
    broken = subprocess.run([sys.executable, script, *how], capture_output=True, text=True,
                            timeout=60)
    control = subprocess.run([sys.executable, script, *how, "getcurrent"],
                             capture_output=True, text=True, timeout=60)
    assert control.returncode == 0, control.stdout + control.stderr
    if (2, 0, 0) <= release <= (3, 5, 6):
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert "returned NULL without" in broken.stdout
    else:
        pytest.skip(f"greenlet {greenlet.__version__} was not measured "
                    f"(exit status {broken.returncode})")
