"""Plain reproducers of the families that need more than checks in line: programs that
end with the interpreter's exit (``shutdown``: the file judges itself run as a child),
threads side by side (``concurrent``) and the collector on (``gc``).

For each of their op types, a program using it: its plain file passes on greenlet (exit
0) and fails on a broken implementation (``tests/shutdown_mutants/``, ``tests/mutants/``
or one written here), so the check inside the file is real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

from greenfuzz.harness import model
from greenfuzz.harness.families import get_family
from greenfuzz.harness.families.concurrent import Concurrent, Cross, CrossDrop, Yield
from greenfuzz.harness.families.gc import Garbage
from greenfuzz.harness.families.shutdown import AtExit, Exit, Leave
from greenfuzz.harness.program.ir import (
    MAIN,
    Current,
    Drop,
    Program,
    Spawn,
    Switch,
    Throw,
    walk,
)
from greenfuzz.harness.reporting import plain
from tests.helpers import prog

TESTS = Path(__file__).parent

#: A broken implementation written here: a finalizer it leaves in a reference cycle
#: ends the process with status 0 while the interpreter finalizes (the program's own
#: exit status is lost).
STATUS_LOST = '''
import os

from greenlet import GreenletExit, error, getcurrent, greenlet  # noqa: F401


class _Ender:
    def __del__(self):
        os._exit(0)


_ender = _Ender()
_ender.me = _ender
del _ender
'''

#: Op type: (program, broken implementation, the beginning of the FAIL line it gives).
CASES: Dict[str, Tuple[Program, str, str]] = {
    "AtExit": (Program(main=(Spawn("g1"), Switch("g1"), AtExit(True, (Switch("g1", (5,)),))),
                       greenlets=(("g1", (Switch(MAIN),)),)),
               "shutdown_mutants/atexit_switch_drops_value.py",
               "FAIL the child: g1: main.switch(): expected 5, observed ()"),
    "Leave": (Program(main=(Leave("del_cycle"), Leave("cycle", 2))),
              "shutdown_mutants/late_getcurrent_none.py", "FAIL at finalization: getcurrent()"),
    "Exit": (Program(main=(AtExit(False, (Current(),)), Exit(3))), "STATUS_LOST",
             "FAIL exit status 0, expected 3"),
    "Concurrent": (prog([Spawn("g1"), Concurrent(("g1", "g1"))],
                        g1=[Spawn("g2"), Switch("g2", (1,)), Current()], g2=[Switch(MAIN, (2,))]),
                   "mutants/thread_current_shared.py", "FAIL thread"),
    "Cross": (prog([Spawn("g1"), Spawn("g2"), Concurrent(("g1", "g2"))],
                   g1=[Cross("switch", "main", 1), Cross("throw", "parked", 1)],
                   g2=[Cross("switch", "parked", 1)]),
              "mutants/thread_switch_error_type.py", "FAIL peers."),
    "CrossDrop": (prog([Spawn("g1"), Concurrent(("g1", "g1", "g1"))],
                       g1=[CrossDrop(1), Yield("sleep"), Current()]),
                  "mutants/thread_current_shared.py", "FAIL thread"),
    "Yield": (prog([Spawn("g1"), Concurrent(("g1", "g1")), Yield("io")],
                   g1=[Yield("sleep"), Cross("switch", "parked", 1), Yield("io")]),
              "mutants/thread_cross_switch_silent.py",
              "FAIL peers.parked[(k + 1) % 2].switch() raised nothing"),
    "Garbage": (prog([Spawn("g1"), Garbage("del", "park", 2, 0), Switch("g1", (1,)),
                      Garbage("weakref", "kill", 1, 1), Switch("g1")],
                     g1=[Switch(MAIN, (2,)), Garbage("nested", "throw", 1, 2), Switch(MAIN)]),
                "mutants/gc_value_stale.py",
                "FAIL what finalizers saw that greenlet rules out"),
}


def source_of(program: Program, impl: str) -> plain.Plain:
    return plain.render(program, model.predict(program), impl=impl, title="test")


def run_plain(source: str, tmp_path: Path, impl: str) -> subprocess.CompletedProcess:
    path = tmp_path / "repro.plain.py"
    path.write_text(source)
    env = dict(os.environ, GREENFUZZ_IMPL=impl, GREENFUZZ_ATTEMPTS="2")
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)


def broken(name: str, tmp_path: Path) -> str:
    if name == "STATUS_LOST":
        path = tmp_path / "status_lost.py"
        path.write_text(STATUS_LOST)
        return str(path)
    return str(TESTS / name)


def test_every_op_type_of_these_families_has_a_case() -> None:
    declared = {spec.cls.__name__ for name in ("shutdown", "concurrent", "gc")
                for spec in get_family(name).ops}
    assert declared == set(CASES)
    for name, (program, _, _) in CASES.items():
        assert name in {type(op).__name__ for _, s in program.scripts()
                        for op in walk(s)}, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_plain_file_passes_on_greenlet_and_fails_on_a_broken_implementation(
        name: str, tmp_path: Path) -> None:
    program, mutant, line = CASES[name]
    impl = broken(mutant, tmp_path)
    found = source_of(program, impl)
    assert found.notes == (), found.notes
    for word in ("rec(", "T.", "EXPECTED", "execute("):
        assert word not in found.source, word
    fixed = run_plain(found.source, tmp_path, "greenlet")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr + found.source
    assert "OK" in fixed.stdout
    failed = run_plain(found.source, tmp_path, impl)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    fails = [ln for ln in failed.stdout.splitlines() if ln.startswith("FAIL")]
    assert fails and fails[-1].startswith(line), failed.stdout + failed.stderr


def test_a_crash_at_exit_kills_the_plain_file_with_the_same_signal(tmp_path: Path) -> None:
    """The child dies of SIGSEGV at exit (a thread's greenlets freed there): so does the
    file, as the full reproducer does."""
    impl = str(TESTS / "shutdown_mutants" / "crash_thread_greenlets_at_exit.py")
    found = source_of(Program(main=(Leave("ended_thread"),)), impl)
    assert run_plain(found.source, tmp_path, "greenlet").returncode == 0
    done = run_plain(found.source, tmp_path, impl)
    assert done.returncode == -signal.SIGSEGV, done.stdout + done.stderr
    assert "FAIL the child was killed by signal" in done.stdout


def test_callbacks_exceptions_and_status_are_what_the_model_says(tmp_path: Path) -> None:
    """Callbacks early and late, a GreenletExit thrown into main escaping one (atexit
    reports it), a greenlet started and dropped in one, everything left behind, a
    status: the file prints the model's events at exit, and passes on greenlet.  (Not
    ``daemon_switching``: greenlet 3.5.6 on CPython 3.11 sometimes aborts at exit with it,
    docs/upstream/daemon-greenlets-abort-at-exit.md, and the file rightly says so.)"""
    program = Program(
        main=(Spawn("g1"), Switch("g1"), AtExit(False, (Switch("g1", (5,), catch=True),)),
              Leave("cycle"), AtExit(True, (Throw(MAIN, None, style="none", catch=True),)),
              Leave("nondaemon"), Leave("daemon_idle"),
              Leave("del_global"), AtExit(False, (Spawn("g2"), Switch("g2"), Drop("g1"))),
              Exit(7)),
        greenlets=(("g1", (Switch(MAIN), Switch(MAIN, (9,)))),
                   ("g2", (Current(), Switch(MAIN, (1,))))))
    program.validate()
    found = source_of(program, "greenlet")
    done = run_plain(found.source, tmp_path, "greenlet")
    assert done.returncode == 0, done.stdout + done.stderr + found.source
    events = [ln[6:] for ln in done.stdout.splitlines() if ln.startswith("EVENT ")]
    assert events == ["atexit 10", "atexit_done 10", "atexit 2", "atexit_done 2", "atexit 5",
                      "unraisable GreenletExit", "atexit_end"]
