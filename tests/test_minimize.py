"""Post-shrinking simplification: removals keep the failure, names end up g1, g2, ..."""

from __future__ import annotations

from greenfuzz.harness import model
from greenfuzz.harness.program.ir import (
    MAIN,
    Current,
    Drop,
    Finally,
    Inspect,
    Program,
    Spawn,
    Switch,
)
from greenfuzz.harness.search.minimize import renamed, simplify, without_greenlet


def padded() -> Program:
    return Program(
        main=(Spawn("g1"), Spawn("g2"), Spawn("g3"), Inspect("g1", "dead"), Switch("g3", (1, 2)),
              Current(), Drop("g1")),
        greenlets=(("g1", (Switch(MAIN),)), ("g2", ()), ("g3", (Switch(MAIN, (7, 8)),))),
    )


def has_pair_switch(program: Program) -> bool:
    """Stands in for 'the implementation still fails': a switch with two arguments."""
    return any(isinstance(op, Switch) and len(op.args) == 2
               for _, script in program.scripts() for op in script)


def test_simplify_keeps_only_what_the_failure_needs() -> None:
    smaller = simplify(padded(), has_pair_switch)
    assert has_pair_switch(smaller)
    assert smaller.size() < padded().size()
    assert smaller.names == ("g1",)
    smaller.validate()


def test_without_greenlet_removes_every_reference() -> None:
    program = without_greenlet(padded(), "g1")
    assert program is not None
    assert "g1" not in program.names
    assert not any("g1" in repr(op) for _, script in program.scripts() for op in script)


def test_renamed_is_consistent() -> None:
    program = without_greenlet(padded(), "g1")
    assert program is not None
    again = renamed(program)
    assert again.names == ("g1", "g2")
    assert Switch("g2", (1, 2)) in again.main
    again.validate()


def test_simplify_never_returns_a_passing_program() -> None:
    calls = []

    def never(program: Program) -> bool:
        calls.append(program)
        return False

    assert simplify(padded(), never) == padded()
    assert calls


def test_candidates_the_model_leaves_out_are_not_smaller() -> None:
    """Without main's second switch, g1 is killed inside its try part, and its finally
    block would switch away (``model.Unsupported``): that candidate is skipped, not an
    error; every other removal is taken."""
    p = Program(main=(Spawn("g1"), Switch("g1"), Switch("g1"), Drop("g1")),
                greenlets=(("g1", (Finally((Switch(MAIN), Switch(MAIN)), 1),)),))
    without = Program(main=p.main[:2] + p.main[3:], greenlets=p.greenlets)
    try:
        model.predict(without)
        raise AssertionError("the model should leave this program out")
    except model.Unsupported:
        pass

    def g1_starts_intact(q: Program) -> bool:
        return ("g1", -1, "start", ((), {})) in model.predict(q) and \
            q.script("g1") == p.script("g1")

    assert simplify(p, g1_starts_intact).main == p.main[:3]

