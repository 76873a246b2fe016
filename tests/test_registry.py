"""The op registry: a family is one module, and every stage reaches ops through it.

The tiny family ``lineage`` below is defined here and nowhere else: registering it is
enough for programs using its op to be validated, encoded, rendered, drawn, predicted
and run on the real greenlet, which agrees with the prediction.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, find, settings

from greenfuzz.harness import families
from greenfuzz.harness.execution import render
from greenfuzz.harness.families import Family, OpSpec, ProgramError
from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import Drawing, PlainSpec, nested, positions, ref
from greenfuzz.harness.program.ir import (
    MAIN,
    Current,
    Exc,
    Finally,
    Handle,
    InThread,
    Program,
    Recurse,
    Spawn,
    Switch,
    flatten,
    program_families,
    span,
)
from greenfuzz.strategies import programs
from tests.helpers import prog
from tests.test_families import agreed

if TYPE_CHECKING:
    from greenfuzz.harness.model import MG, Model


@dataclass(frozen=True)
class Lineage:
    """Record the names of ``target``'s parent and, with ``depth`` 2, its grandparent."""

    target: str
    depth: int = 2


def _validate(owner: str, op: Lineage) -> None:
    if op.depth not in (1, 2):
        raise ProgramError(f"{owner}: lineage depth must be 1 or 2, not {op.depth!r}")


def _statement(op: Lineage) -> str:
    parent = f"{ref(op.target)}.parent"
    names = [f"label({parent})"]
    if op.depth == 2:
        names.append(f"label(getattr({parent}, 'parent', None))")
    return f"r = ({', '.join(names)},)"


def _perform(m: Model, g: MG, op: Lineage) -> None:
    """api docs: ``parent`` is the greenlet's parent, None for main."""
    target = m.lookup(op.target)
    assert target is not None
    chain = [target.parent, target.parent.parent if target.parent else None]
    m.rec(g.name, g.pc, "lineage", tuple(m.label(p) for p in chain[:op.depth]))
    g.pc += 1


def _plain(w: pw.Writer, who: str, pc: int, op: Lineage) -> pw.Rendered:
    """The plain reproducer's check: the parent's name (and the grandparent's)."""
    parent = f"{w.ref(op.target)}.parent"
    names = [f"label({parent})"]
    if op.depth == 2:
        names.append(f"label(getattr({parent}, 'parent', None))")
    return pw.recorded(w, who, pc, "lineage", f"the ancestors of {op.target}",
                       f"({', '.join(names)},)")


def _draw(targets: Tuple[str, ...], wanted: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    return [st.builds(Lineage, st.sampled_from(targets), st.sampled_from((1, 2)))] * 3


def _after_spawn(d: Drawing, name: str) -> List[object]:
    return [Lineage(name)]


LINEAGE = Family(
    name="lineage",
    ops=(OpSpec(Lineage, names=("target",), validate=_validate, statement=_statement,
                result="lineage", perform=_perform,
                plain=PlainSpec(_plain, needs=lambda op: ("label",)),
                comment=lambda op: f"who are {op.target}'s ancestors?"),),
    draw=_draw,
    decorate=families.base.Decorations(after_spawn=_after_spawn),
)


@pytest.fixture
def lineage() -> Iterator[Family]:
    families.register(LINEAGE)
    try:
        yield LINEAGE
    finally:
        families.unregister("lineage")


def test_a_family_defined_elsewhere_is_validated_encoded_rendered_and_predicted(
        lineage: Family) -> None:
    assert "lineage" in families.names()
    with pytest.raises(ProgramError, match="lineage depth must be 1 or 2"):
        prog([Spawn("g1"), Lineage("g1", 3)], g1=[])
    with pytest.raises(ProgramError, match="Lineage names unknown greenlet 'g9'"):
        prog([Lineage("g9")])
    p = prog([Spawn("g1"), Spawn("g2", "g1"), Lineage("g2"), Switch("g2"), Lineage(MAIN, 1)],
             g1=[], g2=[Lineage("g2"), Switch(MAIN), Lineage("g1", 1)])
    assert Program.loads(p.dumps()) == p
    assert program_families(p) == ("core", "lineage")
    source = render.program_source(p)
    assert "# 2: who are g2's ancestors?" in source
    assert "r = (label(ref('g2').parent), label(getattr(ref('g2').parent, 'parent', " \
        "None)),)" in source
    trace = agreed(p)  # the real greenlet agrees with the family's model rule
    assert (MAIN, 2, "lineage", ("g1", MAIN)) in trace
    assert ("g2", 0, "lineage", ("g1", MAIN)) in trace
    assert (MAIN, 4, "lineage", (None,)) in trace


def test_a_family_defined_elsewhere_is_written_as_plain_code(lineage: Family,
                                                             tmp_path: Path) -> None:
    """Its op's plain rendering (``OpSpec.plain``, declared above) checks the ancestors
    in the plain reproducer: the file passes on greenlet and fails where the default
    parent is wrong (``tests/mutants/default_parent_main.py``)."""
    from greenfuzz.harness import model
    from greenfuzz.harness.reporting import plain

    p = prog([Spawn("g1"), Switch("g1")], g1=[Spawn("g2"), Lineage("g2"), Switch(MAIN)],
             g2=[])
    mutant = str(Path(__file__).parent / "mutants" / "default_parent_main.py")
    found = plain.render(p, model.predict(p), impl=mutant)
    assert found.notes == ()
    assert ("check('g1: the ancestors of g2', (label(g2.parent), label(getattr(g2.parent, "
            "'parent', None)),), ('g1', 'main'))") in found.source
    path = tmp_path / "lineage.plain.py"
    path.write_text(found.source)
    for impl, status in (("greenlet", 0), (mutant, 1)):
        done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, GREENFUZZ_IMPL=impl))
        assert done.returncode == status, done.stdout + done.stderr
    assert "FAIL g1: the ancestors of g2: expected ('g1', 'main'), observed ('main', None)" \
        in done.stdout


def test_a_family_defined_elsewhere_is_drawn(lineage: Family) -> None:
    found = find(programs(max_greenlets=2, families=("core", "lineage")),
                 lambda p: "lineage" in program_families(p) and len(p.names) == 2,
                 settings=settings(database=None, max_examples=200,
                                   suppress_health_check=list(HealthCheck)))
    # Its decoration put a Lineage right after each spawn.
    spawns = [i for i, op in enumerate(found.main) if isinstance(op, Spawn)]
    assert spawns and all(found.main[i + 1] == Lineage(found.main[i].name) for i in spawns)
    agreed(found)


def test_unregistered_ops_are_refused(lineage: Family) -> None:
    families.unregister("lineage")
    try:
        with pytest.raises(ProgramError, match="not an operation"):
            prog([Lineage(MAIN)])
        with pytest.raises(ProgramError, match="unknown operation 'Lineage'"):
            Program.loads('{"format": "greenfuzz-program/1", "main": [{"op": "Lineage", '
                          '"target": "main"}], "greenlets": {}}')
        with pytest.raises(ValueError, match="unknown families"):
            programs(families=("lineage",))
    finally:
        families.register(LINEAGE)


def test_a_family_cannot_take_an_op_type_or_a_name_twice(lineage: Family) -> None:
    with pytest.raises(ValueError, match="already registered"):
        families.register(Family("lineage"))
    with pytest.raises(ValueError, match="op type Lineage is already registered"):
        families.register(Family("other", ops=LINEAGE.ops))
    assert "other" not in families.names()


def test_nested_indexes_are_the_flat_positions() -> None:
    """``nested`` (the one layout of nested ops) gives each op in a block the index it
    has in ``flatten``, which events use, for every kind of block."""
    inner = Finally((Switch(MAIN), Handle(Exc("KeyError"), (Current(),)), Current()), 2)
    script = (Spawn("g1"), Recurse(2, "call", 0, (inner, Switch("g1"))),
              InThread((Switch("g1"), Current())), Current())
    flat = flatten(script)

    def check(pc: int, op: object) -> None:
        assert flat[pc] is op
        if families.is_block(op):
            for at, child in nested(pc, op):
                check(at, child)
            assert pc + span(op) == (nested(pc, op)[-1][0] + span(op.then[-1])
                                     if op.then else pc + 1)

    for pc, op in positions(script):
        check(pc, op)
    assert positions(script)[-1][0] == len(flat) - 1
