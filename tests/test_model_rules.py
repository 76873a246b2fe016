"""One test per semantic rule of the model, each checked against the real greenlet.

Every test builds the smallest program that exercises its rule, asserts the event the
rule predicts, and asserts that greenlet itself produces the same trace — so a rule
can be wrong neither in the model nor in our reading of greenlet.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Tuple

import pytest

from greenfuzz.harness.model import predict
from greenfuzz.harness.program.ir import (
    MAIN,
    Bogus,
    Current,
    Drop,
    Exc,
    Inspect,
    Op,
    Program,
    Raise,
    Return,
    SetParent,
    Spawn,
    Switch,
    Throw,
)
from greenfuzz.harness.target.runtime import ExcValue
from tests.helpers import agreed, prog

trace = agreed


def events(program: Program, who: str) -> Dict[Tuple[int, str], object]:
    return {(pc, kind): payload for w, pc, kind, payload in trace(program) if w == who}


@pytest.mark.parametrize(
    ("args", "kwargs", "packed"),
    [
        ((), (), ()),
        ((1,), (), 1),
        ((1, 2), (), (1, 2)),
        (((1,),), (), (1,)),
        ((), (("a", 1),), {"a": 1}),
        ((1,), (("a", 2),), ((1,), {"a": 2})),
        ((1, 2), (("a", 3),), ((1, 2), {"a": 3})),
    ],
)
def test_switch_packs_arguments(args, kwargs, packed) -> None:
    p = prog([Spawn("g1"), Switch("g1"), Switch("g1", args, kwargs)],
             g1=[Switch(MAIN), Switch(MAIN)])
    assert events(p, "g1")[(0, "value")] == packed


def test_start_passes_arguments_to_run() -> None:
    p = prog([Spawn("g1"), Switch("g1", (1, 2), (("a", 3),))], g1=[])
    assert ("g1", -1, "start", ((1, 2), {"a": 3})) in trace(p)


def test_return_value_goes_to_parent() -> None:
    p = prog([Spawn("g1"), Switch("g1")], g1=[Return((1, 2))])
    assert events(p, MAIN)[(1, "value")] == (1, 2)


def test_exception_propagates_to_parent() -> None:
    p = prog([Spawn("g1"), Switch("g1")], g1=[Raise(Exc("KeyError", (7,)))])
    assert events(p, MAIN)[(1, "caught")] == ExcValue("KeyError", (7,))


def test_uncaught_greenletexit_is_returned() -> None:
    p = prog([Spawn("g1"), Switch("g1")], g1=[Raise(Exc("GreenletExit", (1,)))])
    assert events(p, MAIN)[(1, "value")] == ExcValue("GreenletExit", (1,))


def test_switch_to_dead_goes_to_parent() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Switch("g1", (5,))], g1=[])
    assert events(p, MAIN)[(2, "value")] == 5


def test_switch_to_dead_starts_unstarted_parent() -> None:
    p = prog([Spawn("g2"), Spawn("g1"), Switch("g1"), SetParent("g1", "g2"),
              Switch("g1", (4, 2))], g1=[], g2=[])
    assert ("g2", -1, "start", ((4, 2), {})) in trace(p)


def test_throw_into_unstarted_kills_without_running() -> None:
    p = prog([Spawn("g1"), Throw("g1", Exc("ValueError", (1,)), "instance"),
              Inspect("g1", "dead")], g1=[Switch(MAIN)])
    t = trace(p)
    assert ("g1", -1, "start", ((), {})) not in t
    assert events(p, MAIN)[(1, "caught")] == ExcValue("ValueError", (1,))
    assert events(p, MAIN)[(2, "attr")] is True


def test_throw_without_args_kills_and_returns_greenletexit() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Throw("g1", None, "none")], g1=[Switch(MAIN)])
    assert events(p, MAIN)[(2, "value")] == ExcValue("GreenletExit", ())


def test_throw_greenletexit_into_dead_is_returned_immediately() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Throw("g1", None, "none")], g1=[])
    assert events(p, MAIN)[(2, "value")] == ExcValue("GreenletExit", ())


def test_greenletexit_value_starts_unstarted_parent_without_args() -> None:
    p = prog([Spawn("g2"), Spawn("g1"), Switch("g1"), SetParent("g1", "g2"),
              Throw("g1", None, "none")], g1=[], g2=[])
    assert ("g2", -1, "start", ((), {})) in trace(p)


@pytest.mark.parametrize(("style", "args"), [("class", ()), ("class_args", (3,)),
                                             ("instance", (3, 4))])
def test_throw_styles(style: str, args: tuple) -> None:
    p = prog([Spawn("g1"), Switch("g1"), Throw("g1", Exc("FuzzError", args), style)],
             g1=[Switch(MAIN)])
    assert events(p, "g1")[(0, "caught")] == ExcValue("FuzzError", args)


def test_drop_delivers_greenletexit_to_suspended() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Drop("g1"), Current()], g1=[Switch(MAIN)])
    t = trace(p)
    died = t.index(("g1", -1, "died", ExcValue("GreenletExit", None)))
    assert died < t.index((MAIN, 2, "done", None))


def test_drop_of_unstarted_runs_nothing() -> None:
    p = prog([Spawn("g1"), Drop("g1")], g1=[Switch(MAIN)])
    assert all(who == MAIN for who, *_ in trace(p))


def test_pending_switch_keeps_its_target_alive() -> None:
    # g2 is suspended inside g1.switch(): dropping g1 kills nothing until g2 dies.
    p = prog([Spawn("g1"), Spawn("g2"), Switch("g2"), Drop("g1"), Drop("g2")],
             g1=[Switch(MAIN)], g2=[Switch("g1")])
    t = trace(p)
    drop_g1 = t.index((MAIN, 3, "done", None))
    assert t[drop_g1 - 1][2] != "died"
    deaths = [who for who, _, kind, _ in t if kind == "died"]
    assert sorted(deaths) == ["g1", "g2"]


def test_parent_keeps_greenlet_alive() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Spawn("g2", "g1"), Drop("g1"), Inspect("g2", "parent")],
             g1=[Switch(MAIN)], g2=[])
    assert events(p, MAIN)[(4, "attr")] == "g1"


def test_cyclic_parent_raises_valueerror() -> None:
    p = prog([Spawn("g1"), Spawn("g2", "g1"), SetParent("g1", "g2")], g1=[], g2=[])
    assert events(p, MAIN)[(2, "caught")] == ExcValue("ValueError", None)


def test_self_parent_raises_valueerror() -> None:
    p = prog([Spawn("g1"), SetParent("g1", "g1")], g1=[])
    assert events(p, MAIN)[(1, "caught")] == ExcValue("ValueError", None)


@pytest.mark.parametrize("bogus", [None, 1, "42"])
def test_non_greenlet_parent_raises_typeerror(bogus) -> None:
    p = prog([Spawn("g1"), SetParent("g1", Bogus(bogus))], g1=[])
    assert events(p, MAIN)[(1, "caught")] == ExcValue("TypeError", None)


def test_main_parent_cannot_be_set() -> None:
    p = prog([Spawn("g1"), SetParent(MAIN, "g1")], g1=[])
    assert events(p, MAIN)[(1, "caught")] == ExcValue("AttributeError", None)


@pytest.mark.parametrize(
    ("ops", "state"),
    [
        ([], {"dead": False, "bool": False, "gr_frame": True, "run": True}),
        ([Switch("g1")], {"dead": False, "bool": True, "gr_frame": False, "run": False}),
        ([Switch("g1"), Switch("g1")],
         {"dead": True, "bool": False, "gr_frame": True, "run": False}),
    ],
    ids=["unstarted", "suspended", "dead"],
)
def test_attributes_by_state(ops: List[Op], state: Dict[str, bool]) -> None:
    attrs = list(state)
    p = prog([Spawn("g1"), *ops, *(Inspect("g1", a) for a in attrs)], g1=[Switch(MAIN)])
    got = events(p, MAIN)
    assert {a: got[(2 + len(ops) - 1 + i, "attr")] for i, a in enumerate(attrs)} == state


def test_running_greenlet_has_no_frame_and_is_current() -> None:
    p = prog([Spawn("g1"), Switch("g1")],
             g1=[Inspect("g1", "gr_frame"), Inspect("g1", "bool"), Current()])
    got = events(p, "g1")
    assert got[(0, "attr")] is True and got[(1, "attr")] is True
    assert got[(2, "current")] == "g1"


def test_default_parent_is_current_greenlet() -> None:
    p = prog([Spawn("g1"), Switch("g1")], g1=[Spawn("g2"), Inspect("g2", "parent")], g2=[])
    assert events(p, "g1")[(1, "attr")] == "g1"


def test_unbound_name_is_recorded() -> None:
    p = prog([Switch("g1"), Spawn("g1")], g1=[])
    assert events(p, MAIN)[(0, "unbound")] == "g1"


def test_greenlet_dropped_by_itself_dies_when_it_leaves() -> None:
    p = prog([Spawn("g1"), Switch("g1"), Current()], g1=[Drop("g1"), Switch(MAIN, (1,))])
    t = trace(p)
    assert t.index(("g1", -1, "died", ExcValue("GreenletExit", None))) < t.index(
        (MAIN, 1, "value", 1))


def test_a_program_predicted_again_gets_the_same_trace_and_rules() -> None:
    """``predict`` keeps the last programs' traces (generation and judging predict the
    same object): the trace and the rules it fired come back as the first time, and a
    program that is merely equal (``1`` and ``True`` compare equal) is predicted anew."""
    def returning(value: object) -> Program:
        return prog([Spawn("g1"), Switch("g1")], g1=[Return(value)])

    one, true = returning(1), returning(True)
    assert one == true
    first, again = Counter(), Counter()
    assert predict(one, first) == predict(one, again)
    assert first == again and first
    got = [e[3] for e in predict(true) if e[2] == "value"]
    assert got == [True] and type(got[0]) is bool
    assert [type(e[3]) for e in predict(one) if e[2] == "value"] == [int]
