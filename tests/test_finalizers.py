"""Family ``finalizers``: code that runs while a greenlet is collected, and subclasses.

Each rule is checked against the real greenlet (``agreed``), with small explicit
programs; the family's differential test over drawn programs is
``tests/test_families.py::test_model_agrees_with_greenlet_on_each_family``.
"""

from __future__ import annotations

from typing import List, Tuple

import pytest
from hypothesis import given, settings

from greenfuzz.harness import model
from greenfuzz.harness.program.ir import (
    MAIN,
    Current,
    Drop,
    Exc,
    Finalize,
    Finally,
    Inspect,
    InThread,
    Program,
    ProgramError,
    Raise,
    Recurse,
    Resurrect,
    SetParent,
    Spawn,
    Switch,
    ThreadParent,
    Throw,
    flatten,
    walk,
)
from greenfuzz.harness.target.runtime import ExcValue
from greenfuzz.strategies import programs
from tests.helpers import agreed, prog

KILLED = ExcValue("GreenletExit", None)


def events(trace: List[Tuple], *kinds: str) -> List[Tuple]:
    return [e for e in trace if e[2] in kinds]


def test_a_weakref_finalizer_runs_in_the_dropper_after_the_kill_and_may_switch() -> None:
    """Dropping g1 kills it first; then its finalizer runs in main (which dropped it),
    switches to g2 and back, and only then does the drop return (``alive``, ``done``)."""
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g1"), Switch("g2"),
              Finalize("g1", "weakref", (Switch("g2", (5,)), Current())), Drop("g1"),
              Switch("g2")],
             g1=[Switch(MAIN)], g2=[Switch(MAIN), Switch(MAIN, ("x",)), Current()])
    trace = agreed(p)
    at = trace.index(("g1", -1, "died", KILLED))
    assert trace[at + 1:at + 7] == [
        (MAIN, 4, "finalizer", MAIN), ("g2", 0, "value", 5), (MAIN, 5, "value", "x"),
        (MAIN, 6, "current", MAIN), (MAIN, 4, "finalized", None), (MAIN, -1, "alive", ("g2",))]


def test_finalizers_run_newest_weakref_first_then_held_objects_in_order() -> None:
    p = prog([Spawn("g1"), Finalize("g1", "held"), Finalize("g1", "weakref"),
              Finalize("g1", "held"), Finalize("g1", "weakref"), Drop("g1")], g1=[])
    order = [pc for _, pc, kind, _ in agreed(p) if kind == "finalizer"]
    assert order == [4, 2, 1, 3]


def test_a_finalizer_runs_before_the_parent_link_is_released() -> None:
    """g2's parent g1 is only kept by that link: freeing g2 runs g2's finalizer (which
    still sees g1 suspended, not killed) before g1 is released and killed."""
    p = prog([Spawn("g1"), Switch("g1"), Spawn("g2", "g1"), Switch("g2"), Drop("g1"),
              Finalize("g2", "held", (Inspect("g1", "bool"),)), Drop("g2")],
             g1=[Switch(MAIN)], g2=[Switch(MAIN)])
    trace = agreed(p)
    kinds = [(who, kind) for who, _, kind, _ in trace[trace.index((MAIN, 5, "done", None)):]]
    assert kinds[:5] == [(MAIN, "done"), ("g2", "died"), (MAIN, "finalizer"), (MAIN, "unbound"),
                         (MAIN, "finalized")]
    assert ("g1", "died") in kinds[5:]


def test_finalizers_run_when_reparenting_frees_the_old_parent() -> None:
    p = prog([Spawn("g1"), Spawn("g2", "g1"), Finalize("g1", "weakref", (Current(),)),
              Drop("g1"), SetParent("g2", MAIN)], g1=[], g2=[])
    trace = agreed(p)
    assert trace.index((MAIN, 2, "finalizer", MAIN)) < trace.index((MAIN, 5, "done", None))


def test_a_finalizer_may_run_in_any_greenlet_and_at_teardown_in_main() -> None:
    p = prog([Spawn("g1"), Spawn("g2"), Finalize("g1", "weakref", (Current(),)),
              Finalize("g2", "held", (Current(),)), Switch("g2")],
             g2=[Drop("g1"), Switch(MAIN)], g1=[])
    trace = agreed(p)
    assert (MAIN, 2, "finalizer", "g2") in trace and (MAIN, 3, "current", "g2") in trace
    assert (MAIN, 4, "finalizer", MAIN) in trace and (MAIN, 5, "current", MAIN) in trace
    assert trace.index((MAIN, 4, "finalized", None)) < trace.index((MAIN, -1, "teardown", "g2"))


def test_an_exception_leaving_a_finalizer_is_unraisable_and_the_drop_goes_on() -> None:
    """A GreenletExit thrown into main while main is suspended in g1's finalizer leaves
    the finalizer (a weakref callback): CPython reports it as unraisable, in main, and
    main's ``del`` completes."""
    p = prog([Spawn("g1"), Spawn("g2"), Finalize("g1", "weakref", (Switch("g2"), Current())),
              Drop("g1"), Current()],
             g1=[], g2=[Throw(MAIN, Exc("GreenletExit", ("out",)), "instance")])
    trace = agreed(p)
    at = trace.index((MAIN, -1, "unraisable", ExcValue("GreenletExit", ("out",))))
    assert trace[at + 1:at + 3] == [(MAIN, -1, "alive", ("g2",)), (MAIN, 5, "done", None)]
    assert not events(trace, "finalized")


def test_a_finalizer_inside_a_recursion_skips_its_ops_there() -> None:
    p = prog([Spawn("g1"), Recurse(3, "map", 0, (Finalize("g1", "weakref", (Current(),)),
                                                  Drop("g1")))], g1=[])
    trace = agreed(p)
    assert [e[1] for e in events(trace, "finalizer", "current", "finalized")] == [2, 3, 2]


def test_greenlet_subclasses_run_method_overridden_init_and_extra_attribute() -> None:
    """``run`` defined on the class stays after the start (only an instance's is
    deleted); an overridden ``__init__`` with its own signature keeps the default parent
    and stores the tag; killing either on collection delivers GreenletExit."""
    p = prog([Spawn("g1", kind="method"), Spawn("g2", kind="init"), Spawn("g3", subclass=True),
              Inspect("g1", "run"), Switch("g1", (1,), (("k", 2),)), Inspect("g1", "run"),
              Inspect("g2", "tag"), Inspect("g3", "tag"), Inspect("g1", "tag"), Switch("g2"),
              Inspect("g2", "parent"), Drop("g1"), Drop("g2")],
             g1=[Switch(MAIN)], g2=[Switch(MAIN)], g3=[])
    attrs = [v for _, _, kind, v in agreed(p) if kind == "attr"]
    assert attrs == [True, True, "g2", "sub", None, MAIN]
    assert [who for who, _, kind, v in agreed(p) if kind == "died"] == ["g1", "g2"]


def test_a_greenlet_resurrects_from_its_kill_and_is_switched_to_later() -> None:
    """Dropped while parked in a ``Resurrect`` block, g1 gets GreenletExit with main (the
    dropper) as its parent, stores itself again and switches to main: the drop returns,
    g1 is alive with its parent restored, and a later switch resumes its handler."""
    p = prog([Spawn("g2"), Spawn("g1", "g2"), Switch("g1"), Drop("g1"), Inspect("g1", "parent"),
              Switch("g1", (7,)), Inspect("g1", "dead")],
             g1=[Resurrect(MAIN, (Switch(MAIN),)), Current()], g2=[])
    trace = agreed(p)
    at = trace.index(("g1", 0, "resurrected", MAIN))
    assert trace[at + 1:at + 4] == [(MAIN, -1, "alive", ("g1", "g2")), (MAIN, 3, "done", None),
                                    (MAIN, 4, "attr", "g2")]
    assert trace[at + 4:at + 7] == [("g1", 0, "value", 7), ("g1", 0, "done", None),
                                    ("g1", 2, "current", "g1")]
    assert not any(kind == "died" for _, _, kind, _ in trace)


def test_a_dropper_waits_in_the_drop_until_switched_back_to() -> None:
    """g2 drops g1, whose handler switches to g3: g2 stays inside its drop until g3
    switches to it (that value is lost); an exception thrown into a waiting dropper is
    unraisable."""
    p = prog([Spawn("g1"), Spawn("g2"), Spawn("g3"), Switch("g1"), Switch("g3"), Switch("g2"),
              Switch("g1")],
             g1=[Resurrect("g3", (Switch(MAIN),))], g2=[Drop("g1"), Current()],
             g3=[Switch(MAIN), Throw("g2", Exc("KeyError", (1,)), "instance")])
    trace = agreed(p)
    at = trace.index(("g1", 0, "resurrected", "g2"))
    assert trace[at + 1:at + 5] == [
        ("g3", 0, "value", ()), ("g2", -1, "unraisable", ExcValue("KeyError", (1,))),
        ("g2", -1, "alive", ("g1", "g2", "g3")), ("g2", 0, "done", None)]


def test_a_thrown_greenletexit_is_handled_the_same_and_teardown_kills_resurrect() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Throw("g1", None, "none"), Switch("g1", (3,))],
             g1=[Resurrect(MAIN, (Switch(MAIN),)), Resurrect(MAIN, (Switch(MAIN),))])
    trace = agreed(p)
    assert [v for who, _, kind, v in trace if kind == "resurrected"] == [MAIN, MAIN]
    # At teardown main drops g1 and waits until g1's handler switches back to it; g1 is
    # held again, so the teardown drops it again (now it dies) and nothing outlives it.
    assert trace[-5:] == [("g1", 2, "resurrected", MAIN), (MAIN, -1, "teardown", "g1"),
                          ("g1", -1, "died", KILLED), (MAIN, -1, "teardown", "g1"),
                          (MAIN, -1, "alive", ())]


def test_programs_never_need_what_the_model_leaves_out() -> None:
    """A finalizer freed in the middle of a switch is ``Unsupported``; drawn programs
    never are (their finalizers are dropped), nor leave greenlets alive, and many run
    finalizers that switch."""
    # main's pending switch keeps g1 (which dropped itself) until main resumes.
    kept = prog([Spawn("g1"), Spawn("g2"), Finalize("g1", "weakref"), Switch("g1")],
                g1=[Drop("g1"), Switch("g2")], g2=[Switch(MAIN)])
    with pytest.raises(model.Unsupported, match="middle of a switch"):
        model.predict(kept)
    switching = []

    @settings(max_examples=300, database=None)
    @given(programs(max_greenlets=4, families=("finalizers",)))
    def draw(program: Program) -> None:
        trace = model.predict(program)
        # Nothing outlives a program with finalizers or resurrections: collected later, in
        # a later program run in the same process, it would switch there.
        if any(isinstance(op, (Finalize, Resurrect))
               for _, s in program.scripts() for op in walk(s)):
            assert trace[-1][2:] == ("alive", ())
        ran = {(who, pc) for who, pc, kind, _ in trace if kind == "finalizer"}
        # A switch or throw made by a finalizer that ran returned (or raised) there.
        def in_body(who: str, pc: int) -> bool:
            flat = flatten(program.script(who))
            return any((who, pc - 1 - i) in ran and isinstance(flat[pc - 1 - i], Finalize)
                       and i < len(flat[pc - 1 - i].then) for i in range(min(3, pc)))

        switching.append(any(kind in ("value", "caught") and in_body(who, pc)
                             for who, pc, kind, _ in trace))

    draw()
    assert sum(switching) >= 10, sum(switching)  # 43 to 46 of 300, measured


def test_finalizers_and_subclass_kinds_are_validated() -> None:
    with pytest.raises(ProgramError, match="no finalizer on main"):
        prog([Finalize(MAIN)])
    with pytest.raises(ProgramError, match="cannot run in a finalizer"):
        prog([Spawn("g1"), Finalize("g1", "weakref", (Drop("g1"),))], g1=[])
    with pytest.raises(ProgramError, match="must catch"):
        prog([Spawn("g1"), Finalize("g1", "weakref", (Switch(MAIN, catch=False),))], g1=[])
    with pytest.raises(ProgramError, match="unknown finalizer kind"):
        prog([Spawn("g1"), Finalize("g1", "gc")], g1=[])
    with pytest.raises(ProgramError, match="main cannot resurrect"):
        prog([Resurrect(MAIN)])
    with pytest.raises(ProgramError, match="raise of GreenletExit"):
        prog([Spawn("g1")], g1=[Resurrect(MAIN, (Recurse(1, "call", 0, (
            Raise(Exc("GreenletExit")),)),))])
    with pytest.raises(ProgramError, match="its own subclass"):
        prog([Spawn("g1", subclass=True, kind="init")], g1=[])
    p = prog([Spawn("g1", kind="init"), Finalize("g1", "held", (Throw("g1", Exc("KeyError")),))],
             g1=[])
    assert Program.loads(p.dumps()) == p


def test_a_resurrected_greenlet_switching_to_a_greenlet_of_an_ended_thread_gets_an_error(
        ) -> None:
    """Regression (a 30-minute campaign's false finding, issue 15): g1, killed at teardown,
    resurrects and switches to the unstarted g2, whose parent is the main greenlet of a
    thread that has ended (``ThreadParent``).  greenlet raises greenlet.error in the
    handler ("cannot switch to a different thread"), as for any switch; the model
    expected g2 to start."""
    program = prog(
        [Spawn("g2"), Spawn("g1"), Switch("g1"),
         Finally((Switch("main"), Switch("main"),
                  Recurse(0, "call", 0, (InThread((ThreadParent("g2"),)),))), 3)],
        g1=[Resurrect("g2", (Switch("main"),))], g2=[Switch("main")])
    caught = [e for e in agreed(program) if e[0] == "g1" and e[2] == "caught"]
    assert [e[3].type for e in caught] == ["greenlet.error"]
