"""Crashes of greenlet reached through its public API are findings, and the ones written
up in docs/upstream/ are bundled data (``harness/judging/documented/greenlet-*.json``):
reported as ``known`` with the write-up, never left out of the programs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List, NamedTuple, Optional

import greenlet
import pytest

from greenfuzz.harness import model
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.judging import differences
from greenfuzz.harness.program.ir import (
    InThread,
    Program,
    SetParent,
    Spawn,
    Switch,
    ThreadParent,
)
from tests.test_crash_scripts import (
    ABORTS_IN,
    CRASHES,
    KILL_FINALIZER,
    KILL_RESURRECT,
    SELF_SWITCH_KILL,
    release,
)

ROOT = Path(__file__).resolve().parent.parent


def chain_into_ended_thread() -> Program:
    """g1 (suspended) gets the unstarted g2 as parent; g2 gets another thread's main
    greenlet as parent there; the thread ends; g1 finishes into g2."""
    program = Program(
        main=(Spawn("g1"), Switch("g1"), Spawn("g2"), SetParent("g1", "g2"),
              InThread((ThreadParent("g2"),)), Switch("g1")),
        greenlets=(("g1", (Switch("main"),)), ("g2", ())))
    program.validate()
    return program


def replay(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "program.json"
    path.write_text(json.dumps(chain_into_ended_thread().to_json()))
    return subprocess.run([sys.executable, "-m", "greenfuzz", "replay", str(path), *extra],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_the_model_predicts_up_to_the_state_greenlet_leaves_open() -> None:
    """Not ``Unsupported`` (which strategies leave out): an ``undecided`` event ends the
    prediction."""
    events = model.predict(chain_into_ended_thread())
    assert events[-1][2] == "undecided"
    assert ("g1", 1, "return", None) in events


def test_the_abort_is_a_known_crash_on_greenlet(tmp_path: Path) -> None:
    if not ABORTS_IN[0] <= release(greenlet.__version__) <= ABORTS_IN[1]:
        pytest.skip(f"greenlet {greenlet.__version__} was not measured")
    done = replay(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "KNOWN" in done.stdout and "parent-chain-into-ended-thread" in done.stdout
    assert "SIGABRT" in done.stdout


def test_without_the_bundled_data_the_abort_is_a_finding(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The data is what makes it known: an implementation that is not greenlet gets no
    such entry, and a crash there is a finding (here: a wrapper around greenlet)."""
    if not ABORTS_IN[0] <= release(greenlet.__version__) <= ABORTS_IN[1]:
        pytest.skip(f"greenlet {greenlet.__version__} was not measured")
    wrapper = tmp_path / "wrapped.py"
    wrapper.write_text("from greenlet import *  # noqa\nfrom greenlet import "
                       "greenlet, getcurrent, GreenletExit, error, settrace, gettrace\n")
    done = replay(tmp_path, "--impl", str(wrapper))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "crash" in done.stdout and "KNOWN" not in done.stdout


def test_an_implementation_that_raises_instead_agrees(tmp_path: Path) -> None:
    """After ``undecided`` any completed run agrees: the thread-based reference raises
    greenlet.error and carries on."""
    done = replay(tmp_path, "--impl", str(ROOT / "harness" / "envs" / "threaded_greenlet.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_bundled_release_data_applies_by_release_and_interpreter() -> None:
    on_311 = differences.for_greenlet("3.5.6", "3.11.7")
    on_312 = differences.for_greenlet("3.5.6", "3.12.1")
    assert on_311 is not None and on_312 is not None
    ids_311 = {d.id for d in on_311.differences}
    ids_312 = {d.id for d in on_312.differences}
    assert {"parent-chain-into-ended-thread", "daemon-greenlets-abort-at-exit"} <= ids_311
    assert "daemon-greenlets-abort-at-exit" not in ids_312
    assert differences.for_greenlet("1.1.2", "3.10.13").differences[0].id == \
        "thread-main-not-dead"


def test_the_self_switch_bug_is_drawn_and_known_on_greenlet_3() -> None:
    """Thread programs keep switches to oneself (strategies draw the default); where the
    race goes the bug's way, greenlet's bundled data names it with its write-up."""
    from greenfuzz.harness.execution import runner
    from greenfuzz.harness.families.concurrent import Concurrent, CrossDrop, Yield
    from greenfuzz.harness.judging import checks
    from tests.helpers import GREENLET, prog

    if not (3, 0, 0) <= release(greenlet.__version__) <= (3, 5, 6):
        pytest.skip(f"greenlet {greenlet.__version__} was not measured")
    assert Concurrent(("g1",)).self_switches
    p = prog([Spawn("g1"), Spawn("g2"), Concurrent(("g1", "g2"))],
             g1=[Yield("sleep")] * 8 + [Switch("main", (1, 2))], g2=[CrossDrop(1)])
    expected = model.predict(p)
    data = differences.for_greenlet(greenlet.__version__, "3.11")
    assert data is not None
    for _ in range(300):  # until the drop comes first (a race)
        observation = runner.run_inprocess(p, GREENLET)
        verdict = checks.compare(p, expected, observation)
        if not verdict.ok:
            break
    assert not verdict.ok, "the race never went the bug's way in 300 runs"
    known = data.known(p, verdict.kind, expected, observation.trace, verdict.index,
                       f"{verdict.summary}\n{observation.detail}")
    assert known is not None and known.id == "self-switch-after-foreign-drop", verdict.summary


def test_the_foreign_kill_value_is_known_where_late_events_come_first(tmp_path: Path) -> None:
    """A run at exit is judged without its ``late`` events, so the divergence's index
    counts in that trace: the bundled data must be matched against the same events (a
    confirmed GreenletExit-as-value of a shutdown program was missed, the index pointing
    at another event of the whole trace)."""
    from greenfuzz.harness.execution.runner import Observation
    from greenfuzz.harness.families.shutdown import Leave, expected_status
    from greenfuzz.harness.judging import checks
    from greenfuzz.harness.search.campaign import CampaignConfig, judge
    from greenfuzz.harness.target.codec import ExcValue

    p = Program(main=(Spawn("g1"), Switch("g1"), Leave("cycle")), greenlets=(("g1", ()),))
    expected = model.predict(p)
    at = next(i for i, e in enumerate(expected) if e[:3] == ("main", 1, "value"))
    killed = ExcValue("GreenletExit",
                      ("Killing the greenlet because all references have vanished.",))
    trace = [("late", -1, "del-getcurrent", ("greenlet", "main")), *expected[:at],
             (*expected[at][:3], killed), *expected[at + 1:]]
    observed = Observation(trace=trace, extra={"at_exit": True,
                                               "status": expected_status(p, expected)})

    class Ran:  # the executor: this run, whatever it is asked
        def run(self, *args: object, **kwargs: object) -> Observation:
            return observed

    assert checks.compare(p, expected, observed).index == at
    assert checks.judged_trace(observed)[at][3] == killed and trace[at][3] != killed
    config = CampaignConfig(impl=implementations.load("greenlet"), out=tmp_path,
                            profile=differences.for_greenlet("3.5.6", "3.11.7"))
    finding = judge(p, config, Ran())  # type: ignore[arg-type]
    assert finding.verdict.signature == "known:foreign-kill-value-at-greenlet-end", \
        finding.verdict.summary


def on_3_11() -> differences.Profile:
    """The bundled data for greenlet 3.5.6 under CPython 3.11.7 (the campaigns' pair)."""
    data = differences.for_greenlet("3.5.6", "3.11.7")
    assert data is not None
    return data


#: What faulthandler printed for ``KILL_RESURRECT`` (``docs/upstream/
#: gc-self-switch-stale-frame.md``'s second program) on greenlet 3.5.6 under CPython
#: 3.11.7: it dies printing the stale frame.
CUT_DUMP = ("killed by SIGSEGV (11)\nFatal Python error: Segmentation fault\n\nCurrent "
            "thread 0x00007f1d97ea4b80 (most recent call first):\n  File ")


def test_the_stale_frame_segfault_is_known_by_its_cut_dump() -> None:
    """Only a segfault whose dump stops at the first frame is this bug: one with a whole
    dump (a crash of another kind in the same programs) stays a finding."""
    data = on_3_11()
    p = Program.from_json(json.loads(KILL_RESURRECT.read_text())["program"])
    expected = model.predict(p)

    def known(detail: str) -> object:
        found = data.known(p, "crash", expected, [], 0, "crash: killed by SIGSEGV (11)\n"
                           + detail)
        return found and found.id

    assert known(CUT_DUMP) == "stale-frame-switch-segfault"
    whole = CUT_DUMP + '"/tmp/program.py", line 12 in run_g1\n  File "x.py", line 3 in <module>\n'
    assert known(whole) is None
    assert known(CUT_DUMP.replace("Segmentation fault", "Aborted")) is None
    assert "stale-frame-switch-segfault" not in {
        d.id for d in differences.for_greenlet("3.5.6", "3.12.1").differences}
    assert differences.for_greenlet("2.0.2", "3.11.7") is None or \
        "stale-frame-switch-segfault" not in {
            d.id for d in differences.for_greenlet("2.0.2", "3.11.7").differences}
    assert "stale-frame-switch-segfault" in {
        d.id for d in differences.for_greenlet("3.0.0rc2", "3.11.7").differences}


def test_a_dump_cut_at_its_first_frame_is_the_stale_frame_only_with_garbage() -> None:
    """A dump that stops at its ``Current thread`` line, or inside the line after it, is
    the stale frame in a program with garbage whose finalizers switch; in any other
    program it stays a finding (a thread with no Python frame dies so too).
    ``SELF_SWITCH_KILL``, the same page's fourth program: on greenlet 3.5.6 faulthandler
    dies before it prints any frame."""
    from greenfuzz.harness.families.gc import Garbage

    data = on_3_11()
    found = json.loads(SELF_SWITCH_KILL.read_text())
    p = Program.from_json(found["program"])
    detail = found["observed"]["detail"]
    assert detail.endswith("(most recent call first):\n")

    def known(program: Program, dump: str) -> object:
        hit = data.known(program, "crash", model.predict(program), [], 0, dump)
        return hit and hit.id

    assert known(p, detail) == "stale-frame-switch-segfault-no-frame"
    # gc_self_switch_stale_frame.py on greenlet 3.4.0: faulthandler dies inside that line.
    for cut in ("  File ???", '  File "???", line 0 in '):
        assert known(p, detail + cut) == "stale-frame-switch-segfault-no-frame", cut
    assert known(without(p, Garbage), detail) is None
    assert known(p, detail + '  File "x.py", line 3 in <module>\n') is None
    assert known(p, detail.replace("Segmentation fault", "Aborted")) is None


def without(p: Program, kind: type) -> Program:
    """``p`` with every script's ops of type ``kind`` left out (their nested ops too)."""
    def keep(script: tuple) -> tuple:
        return tuple(op for op in script if not isinstance(op, kind))
    return Program(main=keep(p.main), greenlets=tuple((n, keep(s)) for n, s in p.greenlets))


def frames_divergence(p: Program) -> tuple:
    """``p``'s model trace and the same trace with its first ``frames`` event observed
    as None (what greenlet gave), and that event's index."""
    expected = model.predict(p)
    at = next(i for i, e in enumerate(expected) if e[2] == "frames")
    return expected, [*expected[:at], (*expected[at][:3], None), *expected[at + 1:]], at


def test_the_wrong_frame_after_a_kill_beside_a_finalizer_is_known_only_with_both() -> None:
    """Known only in a program that makes switching garbage and drops a greenlet: a
    wrong ``gr_frame`` elsewhere stays a finding."""
    from greenfuzz.harness.families.frames import Frames
    from greenfuzz.harness.families.gc import Garbage
    from greenfuzz.harness.families.stack import Recurse
    from greenfuzz.harness.program.ir import Drop, walk

    data = on_3_11()
    found = Program.from_json(json.loads(KILL_FINALIZER.read_text())["program"])
    expected, observed, at = frames_divergence(found)
    known = data.known(found, "mismatch", expected, observed, at)
    assert known is not None and known.id == "kill-beside-finalizer-frame"
    assert differences.for_greenlet("3.5.6", "3.12.1").known(
        found, "mismatch", expected, observed, at) is None

    # g2's Garbage sits inside a Recurse: without the Recurse, without the garbage.
    for other, gone in ((without(found, Drop), Drop), (without(found, Recurse), Garbage)):
        assert not any(isinstance(op, gone) for _, s in other.scripts() for op in walk(s))
        expected, observed, at = frames_divergence(other)
        assert data.known(other, "mismatch", expected, observed, at) is None
    # The op the divergence is at is matched where events number it: nested ops count.
    nested = Program(main=(Spawn("g2"), Spawn("g1"), Switch("g1"), Drop("g2"),
                           Recurse(0, "call", 0, (Garbage("del", "switch", 1, 0),
                                                  Frames("g1")))),
                     greenlets=(("g1", (Switch("main"),)), ("g2", ())))
    nested.validate()
    expected, observed, at = frames_divergence(nested)
    assert expected[at][1] == 6 > len(nested.main)  # op 6 of main, flattened
    known = data.known(nested, "mismatch", expected, observed, at)
    assert known is not None and known.id == "kill-beside-finalizer-frame"


@pytest.mark.parametrize(("finding", "difference", "since"), [
    (KILL_RESURRECT, "stale-frame-switch-segfault", (3, 4, 0)),
    (SELF_SWITCH_KILL, "stale-frame-switch-segfault", (3, 0, 3)),
    (KILL_FINALIZER, "kill-beside-finalizer-frame", (2, 0, 2))])
def test_the_frame_bugs_of_cpython_3_11_replay_as_known(tmp_path: Path, finding: Path,
                                                        difference: str,
                                                        since: tuple) -> None:
    """The deep campaigns' findings, replayed where greenlet has the bug: known, with
    the write-up."""
    if sys.version_info[:2] != (3, 11) or release(greenlet.__version__) < since:
        pytest.skip(f"measured on CPython 3.11 with greenlet {since} and later")
    done = subprocess.run([sys.executable, "-m", "greenfuzz", "replay", str(finding)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "KNOWN" in done.stdout and difference in done.stdout
    assert "gc-self-switch-stale-frame.md" in done.stdout


def test_bad_bytecode_after_a_kill_beside_a_finalizer_is_known_only_with_both() -> None:
    """The deep campaign's ``crash-938cf10235`` (5 ops: main drops g1 beside switching
    garbage, then starts a thread): the child exited 3 after CPython printed unknown
    opcodes.  Known on CPython 3.11 in programs with both ``Garbage`` and ``Drop``."""
    from greenfuzz.harness.families.gc import Garbage
    from greenfuzz.harness.program.ir import Drop

    p = Program(main=(Spawn("g1"), Switch("g1"), Garbage("del", "switch", 1, 0), Drop("g1"),
                      InThread(())), greenlets=(("g1", (Switch("main"),)),))
    p.validate()
    expected = model.predict(p)
    detail = ("crash: exit status 3\nexit status 3\nXXX lineno: 271, opcode: 151\n"
              "XXX lineno: 106, opcode: 150\n")
    data = on_3_11()
    known = data.known(p, "crash", expected, [], 0, detail)
    assert known is not None and known.id == "kill-beside-finalizer-bad-bytecode"
    for kind in (Drop, Garbage):
        other = without(p, kind)
        assert data.known(other, "crash", model.predict(other), [], 0, detail) is None
    assert data.known(p, "crash", expected, [], 0, "crash: exit status 3\n") is None
    assert differences.for_greenlet("3.5.6", "3.12.1").known(
        p, "crash", expected, [], 0, detail) is None


#: The deep campaign's ``mismatch-1b5d23e6f0`` (confirmed: its reproducer diverged in the
#: 3rd of up to 10 runs, the race going the bug's way): a finalizer's own greenlet ends while a kill
#: from another thread's drop is queued.
FOREIGN_KILL_IN_FINALIZER = CRASHES / "foreign_kill_value_in_finalizer.json"


def test_the_foreign_kill_value_seen_by_a_finalizer_is_known_with_a_foreign_drop() -> None:
    from greenfuzz.harness.families.concurrent import CrossDrop
    from greenfuzz.harness.target.codec import decode_trace

    data = json.loads(FOREIGN_KILL_IN_FINALIZER.read_text())
    p = Program.from_json(data["program"])
    expected = model.predict(p)
    observed = decode_trace(data["observed"]["trace"])
    at = next(i for i, (want, got) in enumerate(zip(expected, observed)) if want != got)
    assert expected[at][2] == observed[at][2] == "collector"
    detail = data["summary"]
    profile = on_3_11()
    known = profile.known(p, "mismatch", expected, observed, at, detail)
    assert known is not None and known.id == "foreign-kill-value-in-finalizer"

    local = without(p, CrossDrop)
    assert profile.known(local, "mismatch", expected, observed, at, detail) is None


#: A confirmed finding of a 30-minute campaign on greenlet 3.5.6 under CPython 3.13.0
#: (seed 2040), shrunk to three ops: ``Spawn(g1)``, ``CtxCopy(g1)`` (not needed: without
#: it 3 of 6 replays crashed too), ``Leave(daemon_switching, 4)``.  Its replays died of
#: SIGSEGV at exit in 7 of 12 runs.
DAEMON_3_13 = CRASHES / "daemon_switching_exit_segfault_3_13.json"


class Recorded(NamedTuple):
    """A kept finding's program and its recorded run, judged again as a campaign judges
    it (``campaign.judge``): what the bundled data is matched against."""

    program: Program
    verdict: Any
    expected: List[tuple]
    trace: List[tuple]
    detail: str

    def known(self, python: str, program: Optional[Program] = None,
              detail: Optional[str] = None) -> Optional[str]:
        """The id of the difference greenlet 3.5.6's data under ``python`` names (the
        program or the run's text replaced when given), or None."""
        data = differences.for_greenlet("3.5.6", python)
        assert data is not None
        found = data.known(program or self.program, self.verdict.kind, self.expected,
                           self.trace, self.verdict.index,
                           self.detail if detail is None else detail)
        return found and found.id


def recorded(path: Path, **extra: Any) -> Recorded:
    """``path``'s program and recorded run (``extra``: what the run's observation adds,
    such as a run at exit's status)."""
    from greenfuzz.harness.execution.runner import Observation
    from greenfuzz.harness.judging import checks
    from greenfuzz.harness.target import codec

    record = json.loads(path.read_text())
    program = Program.from_json(record["program"])
    observed = record["observed"]
    run = Observation(trace=codec.decode_trace(observed["trace"]),
                      outcome=observed["outcome"], detail=observed["detail"], extra=extra)
    expected = model.predict(program)
    verdict = checks.compare(program, expected, run)
    return Recorded(program, verdict, expected, checks.judged_trace(run),
                    f"{verdict.summary}\n{run.detail}")


def test_the_daemon_segfault_at_exit_is_known_on_cpython_3_13_only() -> None:
    from greenfuzz.harness.families.shutdown import Leave

    run = recorded(DAEMON_3_13, at_exit=True, status=-11, signum=11, signal="SIGSEGV")
    assert run.verdict.kind == "crash"
    assert run.known("3.13.0") == "daemon-greenlets-segfault-at-exit"
    assert run.known("3.12.1") is None and run.known("3.11.7") is None
    # The other two forms the same campaign met (each replayed as SIGSEGV).
    for other in ("crash at exit: killed by SIGBUS\nkilled by SIGBUS (7) at exit\n",
                  "crash at exit: Fatal Python error:\n"):
        assert run.known("3.13.0", detail=other) == "daemon-greenlets-segfault-at-exit"
    # Daemon threads that do not switch greenlets: not this bug.
    idle = Program(main=(Spawn("g1"), Leave("daemon_idle", 4)), greenlets=(("g1", ()),))
    assert run.known("3.13.0", idle) is None


@pytest.mark.network
@pytest.mark.slow
def test_replaying_the_daemon_finding_on_3_13_says_known() -> None:
    """Whether it crashes is a race: every replay exits 0, and within ten at least one
    crashed and was named."""
    from tests.test_crash_scripts import release_python

    python = release_python("3.5.6", "3.13")
    outputs = []
    for _ in range(10):
        done = subprocess.run([sys.executable, "-m", "greenfuzz", "replay", str(DAEMON_3_13),
                               "--python", python], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
        if "KNOWN" in done.stdout:
            break
    assert "daemon-greenlets-segfault-at-exit" in outputs[-1], outputs


#: A confirmed finding of the tenth session's campaign on greenlet 3.5.6 / CPython 3.10.13
#: (seed 2044): main throws the exception it handles into itself twice.
THROW_TO_SELF_3_10 = CRASHES / "throw_to_self_traceback_3_10.json"


def test_the_shorter_traceback_on_3_10_is_known_there_only() -> None:
    run = recorded(THROW_TO_SELF_3_10)
    assert not run.verdict.ok and run.verdict.kind == "mismatch", run.verdict.summary
    assert run.known("3.10.13") == "throw-to-self-traceback-entry"
    assert run.known("3.11.7") is None and run.known("3.12.1") is None


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize(("cpython", "says"), [("3.10", "KNOWN"), ("3.11", "OK")])
def test_replaying_the_throw_to_self_finding(cpython: str, says: str) -> None:
    """3.10 records the shorter traceback every run (and the data names it); 3.11 agrees."""
    from tests.test_crash_scripts import release_python

    python = release_python("3.5.6", cpython)
    done = subprocess.run([sys.executable, "-m", "greenfuzz", "replay",
                           str(THROW_TO_SELF_3_10), "--python", python],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(says), done.stdout
