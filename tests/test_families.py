"""The op families beyond the core switch graph: their rules, checks and selection.

Each rule is checked against the real greenlet (as in ``test_model_rules``); each check
is shown to fire on a broken observation, so that none of them can pass vacuously.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

from greenfuzz.harness import model
from greenfuzz.harness.cli import main
from greenfuzz.harness.execution import implementations, render, runner
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import (
    FAMILIES,
    FRAME_BUDGET,
    MAIN,
    CtxCopy,
    CtxGet,
    CtxSet,
    Current,
    Drop,
    Exc,
    ExcInfo,
    Finally,
    Frames,
    Handle,
    Inspect,
    InThread,
    Orphan,
    Program,
    ProgramError,
    Raise,
    Recurse,
    Return,
    SetParent,
    Spawn,
    Switch,
    ThreadParent,
    Throw,
    Trace,
    flatten,
    frames_used,
    program_families,
)
from greenfuzz.harness.reporting import plain
from greenfuzz.harness.target import runtime
from greenfuzz.strategies import programs
from tests.helpers import GREENLET, agreed, prog

# -- deep stacks ------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["call", "sorted", "map", "reduce", "sort_cmp", "qsort"])
def test_greenlets_suspended_inside_c_frames_resume_intact(via: str) -> None:
    """Two greenlets suspend deep inside the same kind of C call (their stacks overlap),
    main recurses in between; both resume, finish their sorts and unwind."""
    deep = [Recurse(6, via, 1, (Switch(MAIN, (1,)), Switch(MAIN, (2,))))]
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"), Recurse(4, via, 2, (Switch("g2"),)),
              Switch("g1"), Switch("g2"), Switch("g1"), Switch("g2")], g1=deep, g2=deep)
    trace = agreed(p)
    done = [(who, pc) for who, pc, kind, _ in trace if kind == "done"]
    assert ("g1", 0) in done and ("g2", 0) in done and ("main", 3) in done


def test_recursion_numbers_nested_ops_in_flat_order() -> None:
    """Events name nested ops by their index in ``flatten``: the recursion itself, then
    its ops; its own ``done`` comes once they are all done, before the next op's."""
    p = prog([Spawn("g1"), Recurse(2, "map", 0, (Switch("g1", (7,)), Switch("g1"))),
              Switch("g1")], g1=[Switch(MAIN, ("a",)), Return("r")])
    assert [type(op).__name__ for op in flatten(p.main)] == [
        "Spawn", "Recurse", "Switch", "Switch", "Switch"]
    main_events = [(pc, kind) for who, pc, kind, _ in agreed(p) if who == MAIN and pc >= 0]
    assert main_events == [(0, "done"), (2, "value"), (3, "value"), (1, "done"),
                           (4, "value"), (5, "return")]


def test_exceptions_unwind_through_qsort_and_kill_greenlets_suspended_in_it() -> None:
    """A raise at the bottom propagates out through every level (a ctypes callback keeps
    it until qsort returns); a greenlet suspended inside qsort and then dropped gets its
    GreenletExit there and dies."""
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"), Switch("g2"), Switch("g1")],
             g1=[Recurse(3, "qsort", 5, (Switch(MAIN), Raise(Exc("KeyError", (1,)))))],
             g2=[Recurse(2, "qsort", 6, (Switch(MAIN),))])
    trace = agreed(p)
    assert ("g1", -1, "died", runtime.ExcValue("KeyError", (1,))) in trace
    assert ("g2", -1, "died", runtime.ExcValue("GreenletExit", None)) in trace


def test_greenlets_started_deep_near_the_frame_budget() -> None:
    """A greenlet started from deep in main's stack inherits its recursion depth; the
    program's whole budget of frames still stays clear of the recursion limit."""
    p = prog([Spawn("g1"), Recurse(250, "call", 0, (Switch("g1"),)), Switch("g1")],
             g1=[Recurse(60, "sorted", 0, (Switch(MAIN), Throw(MAIN, Exc("ValueError"))))])
    assert frames_used(p) > FRAME_BUDGET - 20
    trace = agreed(p)
    assert (MAIN, 3, "caught", runtime.ExcValue("ValueError", ())) in trace
    assert (MAIN, 1, "done", None) in trace


def test_recursions_are_validated() -> None:
    with pytest.raises(ProgramError, match="unknown via"):
        prog([Recurse(1, "goto")])
    with pytest.raises(ProgramError, match="depth via qsort"):
        prog([Recurse(1000, "qsort")])
    with pytest.raises(ProgramError, match="no return inside"):
        prog([Recurse(1, "call", 0, (Return(1),))])
    with pytest.raises(ProgramError, match=f"more than {FRAME_BUDGET}"):
        prog([Recurse(300, "call"), Recurse(300, "call")])
    nested = prog([Spawn("g1"), Recurse(1, "map", 3, (Switch("g1", ((1,), {"a": 2})),))],
                  g1=[])
    assert Program.loads(nested.dumps()) == nested


@pytest.mark.parametrize("check", ["canary", "returned", "result"])
def test_stack_checks_fire_on_corruption(check: str) -> None:
    """The rendered checks record ``stack`` events when what they check is wrong, and
    such an event makes a ``stack`` verdict (corruption is forced by editing the code)."""
    p = prog([Spawn("g1"), Recurse(3, "sorted", 0, (Switch("g1"),))], g1=[])
    source = render.program_source(p)
    level_value = f"return {2 * render.canary_base(MAIN, 1, 0)} + k"
    broken = {
        "canary": ("    b = (", "    b = 1 + ("),
        "returned": (level_value, level_value + " + 1"),
        "result": ("via['sorted']", "(lambda f, a: (f(a), 'wrong'))"),
    }[check]
    assert broken[0] in source
    namespace = {"FuzzError": runtime.FuzzError, "Unbound": runtime.Unbound}
    exec(compile(source.replace(*broken), "<broken>", "exec"), namespace)
    trace = runtime.execute(namespace["program"], GREENLET.module)
    verdict = checks.compare(p, model.predict(p), runner.Observation(trace))
    assert verdict.kind == checks.STACK, verdict.summary
    assert verdict.signature == f"stack:{check}"


# -- family selection --------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_programs_draw_only_the_chosen_families(family: str) -> None:
    seen = set()

    @settings(max_examples=60, database=None)
    @given(programs(families=(family,)))
    def draw(program: Program) -> None:
        found = program_families(program)
        assert set(found) <= {"core", family}
        seen.update(found)

    draw()
    assert family in seen


def test_unknown_families_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown families"):
        programs(families=("stack", "teleport"))


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "core"])
def test_model_agrees_with_greenlet_on_each_family(family: str) -> None:
    @settings(max_examples=settings.default.max_examples)
    @given(programs(max_greenlets=4, families=(family,)))
    def check(program: Program) -> None:
        agreed(program)

    check()


@pytest.mark.parametrize("value", ["stack,teleport", "", " , ", "stack,-frames", "-tele"])
def test_cli_refuses_unknown_families(capsys: pytest.CaptureFixture, value: str) -> None:
    assert main(["fuzz", f"--families={value}", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--families" in err, err


def test_cli_reports_how_often_each_family_ran(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    argv = ["fuzz", "--families", "stack", "--max-examples", "40", "--seed", "3",
            "--in-process", "--no-memory", "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    found = re.search(r"core (\d+), stack (\d+)", out)
    assert found, out
    core, stack = int(found.group(1)), int(found.group(2))
    run = int(re.search(r"programs run\D+(\d+)", out).group(1))
    again = re.search(r"drawn again, not run\D+(\d+)", out)
    assert run + (int(again.group(1)) if again else 0) == 40  # drawn: run, or run before
    assert core == run and 0 < stack <= core  # every program draws core


def test_cli_switches_families_off(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    off = ",".join(f"-{f}" for f in FAMILIES if f not in ("core", "frames"))
    argv = ["fuzz", f"--families={off}", "--max-examples", "30", "--seed", "3",
            "--in-process", "--no-memory", "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"core \d+, frames \d+", out), out
    assert not any(f"{f} " in out for f in ("stack", "tracing", "contextvars")), out


# -- frames ------------------------------------------------------------------------------


def test_frame_chain_lists_every_level_and_c_callback_down_to_run() -> None:
    """A greenlet suspended two recursions deep (qsort, then sorted) shows each level,
    each via's helper and callback, and its run function, innermost first; main walks
    it after main's own stack has been swapped in (the chain must survive that)."""
    p = prog([Spawn("g1"), Switch("g1"), Recurse(3, "map", 0, (Frames("g1"),)),
              Switch("g1"), Frames("g1")],
             g1=[Recurse(2, "qsort", 0, (Recurse(1, "sorted", 0, (Frames(MAIN),
                                                                    Switch(MAIN))),))])
    frames = {(who, pc): value for who, pc, kind, value in agreed(p) if kind == "frames"}
    assert frames[("g1", 2)] == ("run_main",)
    assert frames[(MAIN, 3)] == (
        "recurse_g1_1", "sorted_key", "via_sorted", "recurse_g1_1",
        "recurse_g1_0", "qsort_cmp", "via_qsort", "recurse_g1_0", "qsort_cmp", "via_qsort",
        "recurse_g1_0", "run_g1")
    assert frames[(MAIN, 5)] is None  # dead


def test_gr_frame_is_none_unless_suspended() -> None:
    p = prog([Spawn("g1"), Frames("g1"), Switch("g1"), Switch("g1"), Frames("g1")],
             g1=[Frames("g1"), Switch(MAIN)])
    frames = [(who, pc, value) for who, pc, kind, value in agreed(p) if kind == "frames"]
    assert frames == [(MAIN, 1, None), ("g1", 0, None), (MAIN, 4, None)]


# -- exceptions across switches ----------------------------------------------------------


def test_exc_info_is_per_greenlet_and_survives_switches() -> None:
    """Main handles a KeyError and g1 a RuntimeError; each sees only its own across
    switches, a new greenlet starts with none, a nested one chains to the outer one,
    and ``throw(*sys.exc_info())`` throws the handled exception itself."""
    p = prog([Spawn("g1"),
              Handle(Exc("KeyError", (1,)), (
                  Switch("g1"), ExcInfo(),
                  Handle(Exc("ValueError"), (Switch("g1"), Throw("g1", None, "exc_info"),
                                             ExcInfo()))))],
             g1=[ExcInfo(), Handle(Exc("RuntimeError", (2,)), (Switch(MAIN), ExcInfo(),
                                                                Switch(MAIN), ExcInfo()))])
    seen = {(who, pc): value for who, pc, kind, value in agreed(p) if kind in
            ("exc_info", "caught")}
    key, value_error = runtime.ExcValue("KeyError", (1,)), runtime.ExcValue("ValueError", ())
    runtime_error = runtime.ExcValue("RuntimeError", (2,))
    assert seen[("g1", 0)] is None
    assert seen[(MAIN, 3)] == (key, None)
    assert seen[("g1", 3)] == (runtime_error, None)
    assert seen[("g1", 4)] == value_error  # thrown by main, caught at g1's switch
    assert seen[("g1", 5)] == (runtime_error, None)
    assert seen[(MAIN, 7)] == (value_error, key)


def test_throwing_exc_info_with_nothing_handled_is_a_type_error() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Throw("g1", None, "exc_info")], g1=[Switch(MAIN)])
    assert (MAIN, 2, "caught", runtime.ExcValue("TypeError", None)) in agreed(p)


def test_a_handler_suspended_deep_in_c_frames_keeps_its_exception() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Handle(Exc("FuzzError"), (ExcInfo(),)),
              Switch("g1")],
             g1=[Handle(Exc("KeyError"), (Recurse(3, "qsort", 0, (Switch(MAIN), ExcInfo())),))])
    seen = [value for who, _, kind, value in agreed(p) if kind == "exc_info"]
    assert seen == [(runtime.ExcValue("FuzzError", ()), None),
                    (runtime.ExcValue("KeyError", ()), None)]


# -- contextvars -------------------------------------------------------------------------


def test_each_greenlet_has_its_own_context() -> None:
    """A value set in main is not seen in a new greenlet, nor the greenlet's in main;
    each keeps its own across switches; a greenlet given a copy of main's context at
    spawn sees main's values as they were then."""
    p = prog([Spawn("g1"), CtxSet("a", 1), Spawn("g2"), CtxCopy("g2"), CtxSet("a", 2),
              Switch("g1"), CtxGet("a"), Switch("g2"), Switch("g1"), CtxGet("b")],
             g1=[CtxGet("a"), CtxSet("a", "g1"), CtxSet("b", "g1"), Switch(MAIN),
                 CtxGet("a")],
             g2=[CtxGet("a"), CtxSet("a", "g2"), Switch(MAIN)])
    reads = [(who, value) for who, _, kind, value in agreed(p) if kind == "context"]
    assert reads == [("g1", "<unset>"), (MAIN, 2), ("g2", 1), ("g1", "g1"),
                     (MAIN, "<unset>")]


# -- tracing -----------------------------------------------------------------------------


def test_tracer_sees_every_switch_and_throw_in_the_target() -> None:
    """Starts, returns, throws, a death by exception, a kill by dropping and a switch to
    the current greenlet itself are all traced; settrace returns the previous tracer."""
    p = prog([Spawn("g1"), Spawn("g2"), Trace(), Switch("g1"), Throw("g1", Exc("KeyError")),
              Switch("g2"), Drop("g2"), Switch(MAIN), Trace("off"), Switch("g1")],
             g1=[Switch(MAIN), Raise(Exc("ValueError"))], g2=[Switch(MAIN)])
    trace = agreed(p)
    traced = [value for _, _, kind, value in trace if kind == "trace"]
    assert traced == [
        ("switch", MAIN, "g1"), ("switch", "g1", MAIN),
        ("throw", MAIN, "g1"), ("throw", "g1", MAIN),  # g1 catches it, dies of ValueError
        ("switch", MAIN, "g2"), ("switch", "g2", MAIN),
        ("throw", MAIN, "g2"), ("switch", "g2", MAIN),  # dropped: killed, back to main
        ("switch", MAIN, MAIN)]
    assert [v for _, _, kind, v in trace if kind == "tracer"] == [None, "record"]


def test_a_tracer_that_raises_is_removed_and_its_exception_delivered() -> None:
    """The exception replaces the switch: an unstarted greenlet never runs and its parent
    gets it; a suspended one gets it where it is suspended.  Kills are never disturbed."""
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g2"), Trace("raise"), Switch("g1"),
              Trace("raise"), Switch("g2"), Trace("raise"), Drop("g2"), Trace("off")],
             g1=[Current()], g2=[Switch(MAIN), Switch(MAIN)])
    trace = agreed(p)
    fuzz = runtime.ExcValue("FuzzError", ("trace",))
    assert (MAIN, 4, "caught", fuzz) in trace  # g1 died unstarted, its parent got it
    assert not any(who == "g1" and kind != "trace" for who, _, kind, _ in trace)
    assert ("g2", 0, "caught", fuzz) in trace
    assert [v for _, _, kind, v in trace if kind == "tracer"] == [None, None, None, "raise"]


def test_a_greenlet_suspended_with_the_tracers_exception_in_flight_is_collected() -> None:
    """Found by a 30-minute campaign (seed 2027): g1 suspends in a ``finally`` block while
    the tracer's exception is in flight.  Dropped, g1 must be killed at once: the
    traceback keeps the tracer's frame, which must not keep the greenlets (as it did, a
    false finding), and the plain reproducer's tracer neither."""
    p = prog([Spawn("g1"), Switch("g1")],
             g1=[Finally((Trace("raise"), Switch("g1", catch=False), Switch(MAIN)), split=2)])
    trace = agreed(p)
    assert ("g1", -1, "died", runtime.ExcValue("GreenletExit", None)) in trace
    source = plain.render(p, model.predict(p), impl="greenlet").source
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("resume", ["switch", "throw"])
def test_a_tracer_that_switches_from_its_callback(resume: str) -> None:
    """The ``bounce`` tracer, in g2's context, switches back to g1 (whose switch returns
    'bounce'); g2 stays suspended in the callback (its gr_frame, above run_g2).  Switched
    to, the original switch completes (g2 gets 'to g2', the resuming value goes to the
    callback); thrown to, the callback raises, is uninstalled, and g2 gets the exception."""
    again = Switch("g2", ("resume",)) if resume == "switch" else Throw("g2", Exc("KeyError"))
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"), Switch("g2"), Switch("g1", ("go",)),
              Frames("g2"), Inspect("g2", "gr_frame"), again, Trace("off")],
             g1=[Switch(MAIN), Trace("bounce"), Switch("g2", ("to g2",)),
                 Switch(MAIN, ("g1 back",))],
             g2=[Switch(MAIN), Switch(MAIN, ("g2 done",))])
    trace = agreed(p)
    assert ("g1", 2, "value", "bounce") in trace and (MAIN, 4, "value", "g1 back") in trace
    assert (MAIN, 5, "frames", ("run_g2",)) in trace and (MAIN, 6, "attr", False) in trace
    if resume == "switch":
        assert ("g2", 0, "value", "to g2") in trace and (MAIN, 7, "value", "g2 done") in trace
        assert (MAIN, 8, "tracer", "bounce") in trace
    else:
        assert ("g2", 0, "caught", runtime.ExcValue("KeyError", ())) in trace
        assert (MAIN, 8, "tracer", None) in trace  # uninstalled when it raised


def test_a_greenlet_suspended_in_the_tracer_keeps_itself_alive() -> None:
    """Suspended in the callback, g1 holds the callback's (origin, target) arguments, so
    dropping it frees nothing (and it is never killed): greenlet keeps it, as predicted."""
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"), Switch("g2"), Trace("bounce"),
              Switch("g1"), Drop("g2"), Drop("g1"), Trace("off")],
             g1=[Switch(MAIN), Switch("g2"), Switch(MAIN)], g2=[Switch(MAIN), Switch(MAIN)])
    trace = agreed(p)
    assert (MAIN, 5, "value", "bounce") in trace
    assert [v for _, _, kind, v in trace if kind == "alive"] == [("g1",)] * 3
    assert ("g2", -1, "died", runtime.ExcValue("GreenletExit", None)) in trace


def test_a_greenlet_thrown_out_of_the_tracer_is_let_go() -> None:
    """Main, bounced in the callback, is thrown to by g1 with an exception instance g1's
    pending throw still holds: the callback's frame stays on that exception's traceback
    but keeps neither greenlet alive, so g1 is killed at teardown (found by fuzzing:
    the callback's locals did keep them)."""
    p = prog([Spawn("g1"), Switch("g1")],
             g1=[Trace("bounce"), Switch(MAIN), Throw(MAIN, Exc("ValueError"), "instance")])
    trace = agreed(p)
    assert ("g1", 1, "value", "bounce") in trace
    assert trace[-3:] == [("g1", -1, "died", runtime.ExcValue("GreenletExit", None)),
                          (MAIN, -1, "teardown", "g1"), (MAIN, -1, "alive", ())]


def test_tracing_family_is_skipped_without_settrace(tmp_path: Path) -> None:
    from greenfuzz.harness.search.campaign import CampaignConfig, drawable_families

    lacking = implementations.Implementation("x", missing_optional=("settrace", "gettrace"))
    config = CampaignConfig(impl=lacking, out=tmp_path)
    assert "tracing" not in drawable_families(config)
    assert drawable_families(CampaignConfig(impl=GREENLET, out=tmp_path)) == FAMILIES


def test_simplify_removes_ops_nested_in_blocks() -> None:
    """Findings shrink inside recursions and handlers too: only what the failure needs
    stays, and the size counts nested ops."""
    from greenfuzz.harness.search.minimize import simplify

    needed = Switch(MAIN, (2,))
    p = prog([Switch(MAIN), Recurse(3, "map", 0, (
        Switch(MAIN, (1,)), Handle(Exc("KeyError"), (ExcInfo(), needed)), Switch(MAIN, (3,)))),
        Switch(MAIN, (4,))])
    assert p.size() == 8
    smaller = simplify(p, lambda q: any(op == needed for op in flatten(q.main)))
    assert smaller.main == (Recurse(3, "map", 0, (Handle(Exc("KeyError"), (needed,)),)),)


# -- threads -----------------------------------------------------------------------------


def test_another_threads_greenlets_cannot_be_switched_to() -> None:
    """From another thread every switch or throw into this thread's greenlets (started,
    unstarted, main) is a greenlet.error; their attributes read as here; that thread's
    own main greenlet is current there and reports dead once the thread has ended."""
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"),
              InThread((Switch("g1"), Throw(MAIN, Exc("KeyError")), Switch("g2"), Current(),
                        Inspect("g1", "gr_frame"), Inspect(MAIN, "bool"))),
              Switch("g1")],
             g1=[Switch(MAIN), InThread((Current(),))], g2=[])
    trace = agreed(p)
    error = runtime.ExcValue("greenlet.error", None)
    assert [pc for who, pc, kind, v in trace if kind == "caught" and v == error] == [4, 5, 6]
    assert (MAIN, 7, "current", "?") in trace and ("g1", 2, "current", "?") in trace
    assert (MAIN, 8, "attr", False) in trace and (MAIN, 9, "attr", True) in trace
    assert (MAIN, 3, "thread", True) in trace and ("g1", 1, "thread", True) in trace


def test_threads_allow_only_ops_that_need_no_greenlet_of_theirs() -> None:
    with pytest.raises(ProgramError, match="cannot run in a thread"):
        prog([InThread((Spawn("g1"),))], g1=[])
    with pytest.raises(ProgramError, match="must catch"):
        prog([InThread((Switch(MAIN, catch=False),))])


def test_another_threads_main_greenlet_is_a_parent_only_for_unstarted_greenlets() -> None:
    """In another thread, a started greenlet (suspended or dead) refuses that thread's main
    greenlet as parent (ValueError), main has none to set; an unstarted one takes it, and
    then neither it nor a child of it can be switched or thrown to (greenlet.error), a
    started greenlet cannot be given it as parent, and moving it back makes it usable."""
    p = prog([Spawn("g1"), Spawn("g2"), Spawn("g3"), Switch("g1"), Switch("g3"),
              InThread((ThreadParent("g1"), ThreadParent(MAIN), ThreadParent("g2"),
                        ThreadParent("g3"), Inspect("g2", "parent"))),
              Switch("g2"), Throw("g2", Exc("KeyError")), Spawn("g4", "g2"), Switch("g4"),
              SetParent("g1", "g2"), SetParent("g2", MAIN), Switch("g2", (5,))],
             g1=[Switch(MAIN)], g2=[Current()], g3=[], g4=[])
    trace = agreed(p)
    outcome = {pc: (kind, v) for who, pc, kind, v in trace if who == MAIN and pc > 5}
    value_error, error = runtime.ExcValue("ValueError", None), runtime.ExcValue("greenlet.error",
                                                                               None)
    assert outcome[6] == ("caught", value_error)  # g1 suspended
    assert outcome[7] == ("caught", runtime.ExcValue("AttributeError", None))
    assert outcome[8] == ("done", None)  # g2 unstarted
    assert outcome[9] == ("caught", value_error)  # g3 dead
    assert outcome[10] == ("attr", "?")
    assert outcome[11] == outcome[12] == outcome[14] == ("caught", error)
    assert outcome[15] == ("caught", value_error)
    assert ("g2", -1, "start", ((5,), {})) in trace


def test_an_unstarted_greenlet_under_a_started_one_stays_in_this_thread() -> None:
    """greenlet finds an unstarted greenlet's thread at the first started greenlet up its
    parent chain: g3's parent g1 is suspended here, so g3 runs, although g1's parent g4
    was moved to a thread that has ended.  The model said greenlet.error (it walked to
    the top of the chain) until a campaign on CPython 3.13 found it (12 ops)."""
    p = prog([Spawn("g4"), Spawn("g1", "g4"), Switch("g1"), InThread((ThreadParent("g4"),)),
              Spawn("g3", "g1"), Switch("g3", (7,)), Switch("g4")],
             g1=[Switch(MAIN), Switch(MAIN, (8,))], g3=[Return(9)], g4=[])
    trace = agreed(p)
    assert ("g3", -1, "start", ((7,), {})) in trace
    assert ("g1", 0, "value", 9) in trace and ("main", 6, "value", 8) in trace
    assert ("main", 7, "caught", runtime.ExcValue("greenlet.error", None)) in trace


def test_a_dead_greenlet_up_the_chain_also_keeps_an_unstarted_one_here() -> None:
    """Dead counts as started: g3 runs under the dead g1, then ends into g1's parent g4,
    which belongs to the ended thread (greenlet aborts there: the known
    parent-chain-into-ended-thread, which ``agreed`` accepts)."""
    p = prog([Spawn("g4"), Spawn("g1"), Switch("g1"), SetParent("g1", "g4"),
              InThread((ThreadParent("g4"),)), Spawn("g3", "g1"), Switch("g3")],
             g1=[], g3=[], g4=[])
    trace = agreed(p)
    assert ("g3", -1, "start", ((), {})) in trace
    assert trace[-1][2] == "undecided" and "g3 ends into g4" in trace[-1][3], trace[-1]


def test_a_greenlet_dropped_in_another_thread_dies_when_this_thread_calls_greenlet() -> None:
    """The last reference to a suspended greenlet dropped in another thread: it stays alive
    there and gets its GreenletExit in its own thread, from the greenlet that ran the
    thread, once that thread has ended and this one calls greenlet again (in the order
    dropped); an unstarted one is freed over there at once."""
    p = prog([Spawn("g1"), Spawn("g2"), Spawn("g3"), Switch("g1"), Switch("g2"), Trace(),
              InThread((Drop("g2"), Drop("g3"), Drop("g1"))), Current()],
             g1=[Switch(MAIN)], g2=[Finally((Switch(MAIN),), 1)], g3=[])
    trace = agreed(p)
    assert [v for who, _, kind, v in trace if kind == "alive"][:3] == [
        ("g1", "g2", "g3"), ("g1", "g2"), ("g1", "g2")]
    assert [who for who, _, kind, _ in trace if kind == "alive"][:3] == ["?"] * 3
    after = trace[trace.index((MAIN, 9, "done", None)) + 1:]
    assert [(who, kind) for who, _, kind, _ in after][:8] == [
        ("g2", "trace"), ("g2", "finally"), ("g2", "died"), (MAIN, "trace"),
        ("g1", "trace"), ("g1", "died"), (MAIN, "trace"), (MAIN, "alive")]
    assert (MAIN, -1, "alive", ()) in after and (MAIN, 6, "thread", True) in after


def test_greenlets_of_a_thread_that_ended_get_no_greenletexit_and_are_freed() -> None:
    """Greenlets left suspended in a thread that ends: dead once the thread's main is, no
    finally ran in them, and nothing of them is left once dropped."""
    p = prog([InThread((Orphan(), Current(), Orphan())), InThread(())])
    trace = agreed(p)
    assert (MAIN, 0, "orphans", (2, 0, 0)) in trace
    assert not any(kind == "orphans" and pc == 4 for _, pc, kind, _ in trace)


def test_thread_only_ops_are_validated() -> None:
    with pytest.raises(ProgramError, match="only directly in InThread blocks"):
        prog([Spawn("g1"), ThreadParent("g1")], g1=[])
    with pytest.raises(ProgramError, match="only directly in InThread blocks"):
        prog([Handle(Exc("KeyError"), (Orphan(),))])
    with pytest.raises(ProgramError, match="no switch or throw after a ThreadParent"):
        prog([Spawn("g1"), InThread((ThreadParent("g1"), Switch("g1")))], g1=[])
    p = prog([Spawn("g1"), InThread((Drop("g1"), ThreadParent(MAIN), Orphan()))], g1=[])
    assert Program.loads(p.dumps()) == p


def test_a_greenlet_ending_into_a_parent_of_a_thread_that_ended_stays_in_the_program(
        ) -> None:
    """greenlet aborts the process ("ran out of parent greenlets") when a greenlet ends
    into an unstarted parent moved to a thread that has ended.  Its docs allow no abort,
    so such programs are drawn, not tamed away: the model predicts up to that point
    (``undecided``) and the strategy keeps the re-parenting (tests/test_known_bugs.py:
    the crash is a finding, known for greenlet)."""
    from greenfuzz.strategies.switch_graphs import _determined

    p = prog([Spawn("g1"), Spawn("g2", "g1"), Switch("g2"),
              InThread((ThreadParent("g1"),)), Switch("g2")], g1=[], g2=[Switch(MAIN)])
    events = model.predict(p)
    assert events[-1][2] == "undecided" and "thread has ended" in events[-1][3]
    assert _determined(p) == p


def test_a_kill_whose_finally_raises_is_unraisable() -> None:
    """A greenlet killed by a drop whose finally part raises (here: a switch to a greenlet
    given an ended thread's parent) dies of that exception, which the dealloc reports
    to ``sys.unraisablehook`` as the dropper.  The deep campaign of the sixth session
    found the model predicting no ``unraisable`` event (a false finding)."""
    p = prog([Spawn("g1"), Switch("g1"), InThread((ThreadParent("g2"),))],
             g1=[Spawn("g2"), Finally((Switch(MAIN), Switch("g2", catch=False)), split=1)],
             g2=[])
    events = agreed(p)
    died = [i for i, e in enumerate(events) if e[:3] == ("g1", -1, "died")]
    assert died and events[died[0]][3].type == "greenlet.error"
    assert events[died[0] + 1][:3] == (MAIN, -1, "unraisable")
    assert events[died[0] + 1][3].type == "greenlet.error"


def test_a_kill_inside_a_kill_sees_the_first_dropper_suspended() -> None:
    """Found by the sixth session's deep campaign (seed 2026): at teardown main drops g2,
    whose unwinding releases g1 (g2 was switching to it), so g1 is killed inside g2's
    kill, and g1's finally part inspects ``main.gr_frame``.  greenlet: main waits in its
    ``del``, suspended, with a frame; the model kept main running (no frame)."""
    agreed(prog(
        [Spawn("g1", MAIN), Spawn("g2"), Switch("g1"), Trace("bounce"), Switch("g1"),
         Switch("g2"), Switch("g2")],
        g1=[Switch(MAIN), Finally((Handle(Exc("ValueError", (None,)), (Switch(MAIN),)),
                                   Inspect(MAIN, "gr_frame")), split=1)],
        g2=[Throw(MAIN, Exc("ValueError", (None,)), "class"), Switch("g1")]))


def test_a_thread_check_fires_on_a_greenlet_that_takes_another_threads_parent() -> None:
    mutant = implementations.load(str(Path(__file__).parent / "mutants" /
                                      "thread_reparent_allowed.py"))
    p = prog([Spawn("g1"), Switch("g1"), InThread((ThreadParent("g1"),))], g1=[Switch(MAIN)])
    agreed(p)
    verdict = checks.compare(p, model.predict(p), runner.run_inprocess(p, mutant))
    assert verdict.kind == checks.MISMATCH, verdict.summary


# -- exceptions: finally blocks, tracebacks and causes -------------------------------------


def test_finally_blocks_run_on_normal_exit_on_exceptions_and_on_kill() -> None:
    """A finally block records what leaves its try part: nothing, an exception raised
    there, one from a child that died of it (chained to the exception the child handled),
    or a kill's GreenletExit (while the dropper waits, suspended); it may switch while
    the exception waits (which then goes on), and inside a recursion it runs in the
    level's frame (no ``run`` in the traceback yet)."""
    p = prog([Spawn("g1"), Spawn("g2"), Spawn("g3"),
              Finally((Switch("g1"), Current()), 1),
              Switch("g2"), Switch("g3"), Drop("g3"),
              Finally((Switch("g2", catch=False), Switch("g2"), Inspect("g2", "dead")), 1)],
             g1=[Finally((Raise(Exc("KeyError", (1,))), Switch(MAIN, ("in finally",))), 1)],
             g2=[Handle(Exc("ValueError"), (Switch(MAIN),
                                            Raise(Exc("RuntimeError", (2,)), cause=True)))],
             g3=[Recurse(2, "map", 0, (Finally((Switch(MAIN), Current(),
                                                 Inspect(MAIN, "gr_frame")), 1),))])
    trace = agreed(p)
    finals = [(who, pc, v) for who, pc, kind, v in trace if kind == "finally"]
    exc = runtime.ExcValue
    assert finals == [
        ("g1", 0, (exc("KeyError", (1,)), None, ("run_g1",))),
        (MAIN, 3, None),
        ("g3", 1, (exc("GreenletExit", None), None, ())),
        (MAIN, 9, (exc("RuntimeError", (2,)), exc("ValueError", ()), ("run_main", "run_g2")))]
    assert (MAIN, 4, "value", "in finally") in trace and ("g3", 3, "current", "g3") in trace
    assert ("g3", 4, "attr", False) in trace  # main waits in its del: it has a gr_frame
    assert (MAIN, 12, "attr", True) in trace
    assert (MAIN, -1, "died", exc("RuntimeError", (2,))) in trace


def test_a_traceback_keeps_every_greenlet_an_exception_was_thrown_through() -> None:
    """``throw(*sys.exc_info())`` sends the exception object itself: its traceback grows by
    each greenlet's ``run`` it is raised in, across throws and deaths."""
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"), Switch("g2"),
              Handle(Exc("KeyError", (7,)), (Throw("g1", None, "exc_info"),
                                             Throw("g2", None, "exc_info")))],
             g1=[Switch(MAIN, catch=False)], g2=[Finally((Switch(MAIN, catch=False),), 1)])
    trace = agreed(p)
    key = runtime.ExcValue("KeyError", (7,))
    assert (MAIN, 5, "caught", key) in trace  # g1 died of it, back to main
    assert ("g2", 0, "finally", (key, None, ("run_g2", "run_main", "run_g1", "run_main"))) \
        in trace


def test_a_finally_block_that_switches_away_while_killed_is_left_out() -> None:
    """greenlet leaks a killed greenlet whose finally block switches away ("GreenletExit
    did not kill"): not modelled; the strategy keeps such finally blocks to main's
    script (never killed) and to ops that stay put."""
    from greenfuzz.strategies.switch_graphs import _determined

    p = prog([Spawn("g1"), Switch("g1"), Drop("g1")],
             g1=[Finally((Switch(MAIN), Switch(MAIN), Current()), 1)])
    with pytest.raises(model.Unsupported, match="switches away while it is killed"):
        model.predict(p)
    fixed = _determined(p)
    assert fixed.script("g1") == (Finally((Switch(MAIN), Current()), 1),)
    agreed(fixed)


def test_finally_blocks_are_validated() -> None:
    with pytest.raises(ProgramError, match="split must be 0 to 1"):
        prog([Finally((Current(),), 2)])
    with pytest.raises(ProgramError, match="Raise cannot be in a finally block"):
        prog([Finally((Current(), Raise(Exc("KeyError"))), 1)])
    with pytest.raises(ProgramError, match="no return inside"):
        prog([Finally((Return(1),), 1)])
    p = prog([Finally((Raise(Exc("KeyError"), cause=True), Current()), 1)])
    assert Program.loads(p.dumps()) == p and program_families(p) == ("core", "exceptions")


def test_the_traceback_check_fires_on_an_implementation_that_loses_it() -> None:
    mutant = implementations.load(str(Path(__file__).parent / "mutants" /
                                      "traceback_lost_in_switch.py"))
    p = prog([Spawn("g1"), Finally((Switch("g1", catch=False),), 1)],
             g1=[Raise(Exc("KeyError"))])
    agreed(p)
    observation = runner.run_inprocess(p, mutant)
    verdict = checks.compare(p, model.predict(p), observation)
    assert verdict.kind == checks.MISMATCH, verdict.summary
    assert observation.trace[verdict.index][2] == "finally"
