"""Family ``stack``: recursions, plain and through C code, with canaries checked on every
resume — a greenlet's stack must come back exactly as it left it."""

from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, List, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    Decorations,
    Drawing,
    Emitter,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Script,
    Scripts,
    remap,
    walk,
)
from greenfuzz.harness.families.base import nested as nested_ops
from greenfuzz.harness.families.values import THROWABLE_TYPES, exceptions
from greenfuzz.harness.target import runtime

#: How a ``Recurse`` goes one level down: a plain Python call, or through C code that
#: calls back into Python (``sorted`` key, ``map``, ``functools.reduce``, ``list.sort``
#: with ``cmp_to_key``, and a ``ctypes`` comparator called by libc ``qsort``).
VIAS = ("call", "sorted", "map", "reduce", "sort_cmp", "qsort")
#: The deepest each via may go (C recursion is costlier, and ctypes callbacks most).
MAX_DEPTH = {"call": 300, "sorted": 60, "map": 60, "reduce": 60, "sort_cmp": 60, "qsort": 12}
#: Python frames one level costs: the level function, plus the via's helper and callback.
LEVEL_FRAMES = {"call": 1, "sorted": 3, "map": 3, "reduce": 3, "sort_cmp": 3, "qsort": 3}
#: Frames all of a program's recursions may take together.  A greenlet started from deep
#: in another one's stack inherits its recursion depth, so the sum over the whole
#: program bounds every stack and keeps it below the default recursion limit (1000)
#: with room for the harness, pytest, and a chain of ~100 greenlets each started by the
#: one before (two frames each).
FRAME_BUDGET = 450


@dataclass(frozen=True)
class Recurse:
    """Descend ``depth`` levels (through ``via``), perform ``then`` there, unwind.

    Every level keeps canary locals derived from (greenlet, op, level, ``salt``) and
    checks them after every resume and on the way back; each C level checks the result
    of the C call it went through.  Any difference is recorded as a ``stack`` event,
    which no correct implementation produces.
    """

    depth: int
    via: str = "call"
    salt: int = 0
    then: Tuple[Op, ...] = ()


def frames_used(scripts: Scripts) -> int:
    """Python frames all recursions of a program take together (see ``FRAME_BUDGET``)."""
    return sum((op.depth + 1) * LEVEL_FRAMES[op.via]
               for _, script in scripts for op in walk(script) if isinstance(op, Recurse))


def _check(scripts: Scripts) -> None:
    if frames_used(scripts) > FRAME_BUDGET:
        raise ProgramError(f"recursions take {frames_used(scripts)} frames, more than "
                           f"{FRAME_BUDGET}")


def _validate(owner: str, op: Recurse) -> None:
    if op.via not in VIAS:
        raise ProgramError(f"{owner}: unknown via {op.via!r}")
    if not (isinstance(op.depth, int) and 0 <= op.depth <= MAX_DEPTH[op.via]):
        raise ProgramError(f"{owner}: depth via {op.via} must be 0 to "
                           f"{MAX_DEPTH[op.via]}, not {op.depth!r}")
    if not isinstance(op.salt, int):
        raise ProgramError(f"{owner}: salt must be an int")


def recurse_function(who: str, pc: int) -> str:
    """The name of the level function a ``Recurse`` op at flat index ``pc`` calls."""
    return f"recurse_{who}_{pc}"


def canary_base(who: str, pc: int, salt: int) -> int:
    """The canaries' seed: differs between greenlets, ops and salts, so that a frame
    restored into the wrong greenlet or level is noticed too."""
    return zlib.crc32(f"{who}:{pc}:{salt}".encode()) & 0xFFFFFF


def _render(e: Emitter, who: str, pc: int, op: Recurse) -> List[str]:
    """The call that performs a ``Recurse`` op, and (in ``e.helpers``) its level function.

    Level ``k`` holds canaries ``a`` and ``b`` (functions of the seed and ``k``), calls
    level ``k + 1`` through the via (a C function calling back), checks the C result and
    the value the level below returned, and at the bottom performs the nested ops,
    checking its canaries after each; every level checks its canaries as it unwinds,
    normally or by an exception.  Only a failed check records anything (``stack``).
    """
    from greenfuzz.harness.families.core import Raise

    fn, base = recurse_function(who, pc), canary_base(who, pc, op.salt)
    at = f"{who!r}, {pc}"
    check = [f"if a != {base} + k or b != ({base} ^ k) * 31 + 7:",
             f"    rec({at}, 'stack', ('canary', k))"]
    bottom: List[str] = []
    for index, nested in nested_ops(pc, op):
        bottom += e.op(who, index, nested)
        if isinstance(nested, Raise):
            break
        bottom += check
    if op.via == "call":
        down = f"v, problem = {fn}(k + 1), None"
    else:
        down = f"v, problem = via[{op.via!r}]({fn}, k + 1)"
    e.helpers.append([
        f"def {fn}(k):",
        f"    # level k of op {pc} of {who}: {e.comment(op)}",
        f"    a = {base} + k",
        f"    b = ({base} ^ k) * 31 + 7",
        "    try:",
        f"        if k < {op.depth}:",
        f"            {down}",
        "            if problem is not None:",
        f"                rec({at}, 'stack', ('result', {op.via!r}, k, problem))",
        f"            if v != {2 * base} + k + 1:",
        f"                rec({at}, 'stack', ('returned', k, v))",
        "        else:",
        *("            " + line for line in bottom or ["pass"]),
        "    finally:",
        *("        " + line for line in check),
        f"    return {2 * base} + k",
    ])
    return [f"# {pc}: {e.comment(op)}", f"{fn}(0)", f"rec({at}, 'done', None)"]


# -- strategies ------------------------------------------------------------------------

@st.composite
def _depths(draw: st.DrawFn, via: str) -> int:
    """Mostly shallow, sometimes down to the via's limit (shrinks towards 0)."""
    return draw(st.one_of(st.integers(min_value=0, max_value=4),
                          st.integers(min_value=0, max_value=MAX_DEPTH[via])))


@lru_cache(maxsize=256)
def recursions(targets: Tuple[str, ...], families: Tuple[str, ...], ops: Callable,
               inner: Tuple[Op, ...] = ()) -> st.SearchStrategy[Recurse]:
    """A ``Recurse`` whose nested ops are ``inner`` when given, else a few drawn ops
    (``ops`` of the other families, a raise: whatever suspends or unwinds the deep
    stack)."""
    from greenfuzz.harness.families.core import Raise

    if inner:
        then: st.SearchStrategy = st.just(inner)
    else:
        nested = st.one_of(ops(targets, terminal=False,
                               families=tuple(f for f in families if f != "stack")),
                           st.builds(Raise, exceptions(THROWABLE_TYPES)))
        then = st.lists(nested, max_size=3).map(tuple)
    return st.sampled_from(VIAS).flatmap(lambda via: st.builds(
        Recurse, _depths(via), st.just(via), st.integers(min_value=0, max_value=999), then))


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    return [recursions(targets, families, ops)] * 2


#: Kick-offs (and parking switches, family ``frames``) made from deep in a stack.
deep_start = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _kick(d: Drawing, kick: Op) -> Op:
    """Started from deep in main's stack: its stack region overlaps main's."""
    if d.draw(deep_start):
        return d.draw(recursions(d.targets, d.families, d.ops, (kick,)))
    return kick


def fit(script: Script, budget: List[int]) -> Script:
    """``script`` with recursions made shallower where the program's frame budget
    (``FRAME_BUDGET``, shared through ``budget``) would run out."""
    out: List[Op] = []
    for op in script:
        if isinstance(op, Recurse):
            cost = LEVEL_FRAMES[op.via]
            if budget[0] < cost:  # not even one level left: do the nested ops in place
                out += fit(op.then, budget)
                continue
            depth = min(op.depth, budget[0] // cost - 1)
            budget[0] -= (depth + 1) * cost
            op = Recurse(depth, op.via, op.salt, fit(op.then, budget))
        else:
            # Each part apart: a recursion done in place changes the parts' lengths.
            op = remap(op, lambda part: fit(part, budget))
        out.append(op)
    return tuple(out)


def _adjust(scripts: List[Tuple[str, Script]]) -> List[Tuple[str, Script]]:
    budget = [FRAME_BUDGET]
    return [(name, fit(script, budget)) for name, script in scripts]



# -- plain reproducers (``plainwriter``) -------------------------------------------


def _plain_via(w: pw.Writer, via: str) -> None:
    """The runtime's helper for recursing through C (``VIA``), written out in the file:
    our own standard-library code, the same the full reproducer pastes."""
    name = f"via_{via}"
    if name in w.sources:
        return
    parts = [inspect.getsource(runtime.VIA[via])]
    if via == "qsort":
        parts = ["_QSORT = []\n\n", inspect.getsource(runtime._qsort), "\n\n", *parts]
    w.sources[name] = "".join(parts)
    w.imports.add("sys")
    if via in ("reduce", "sort_cmp"):
        w.imports.add("functools")


def _plain_recurse(w: pw.Writer, who: str, pc: int, op: Recurse) -> pw.Rendered:
    fn = f"recurse_{w.ref(who)}_{pc}"
    base = 1000 + 7 * pc + op.salt % 1000
    body, goes_on = pw.nested(w, who, pc, op.then)
    if op.via == "call":
        down = [f"v = {fn}(k + 1)"]
    else:
        _plain_via(w, op.via)
        down = [f"v, problem = via_{op.via}({fn}, k + 1)",
                f"check('the result of {op.via} at level %d' % k, problem, None)"]
    canaries = f"check('the locals of level %d' % k, (x, y), ({base} + k, {base} * 31 - k))"
    w.functions.append([
        f"def {fn}(k):",
        f"    \"\"\"Level k of {op.depth} of {who}'s recursion: its locals must survive "
        "the switches below.\"\"\"",
        *("    " + line for line in w.declare(op.then, who)),
        f"    x, y = {base} + k, {base} * 31 - k",
        f"    if k < {op.depth}:",
        *("        " + line for line in down),
        f"        check('the value level %d got' % k, v, {2 * base} + k + 1)",
        "    else:",
        *("        " + line for line in pw.block_body(body)),
        "    " + canaries,
        f"    return {2 * base} + k",
    ])
    done = pw.done(w, who, pc)
    lines = [f"{fn}(0)"]
    if done is None:
        return [*lines, "fail('the recursion returned: expected it not to')"], False
    return [*lines, *w.sync(done, f"{who}: after the recursion")], goes_on



FAMILY = Family(
    name="stack",
    ops=(OpSpec(Recurse, plain=PlainSpec(_plain_recurse),
               validate=_validate, render=_render, frame=True,
                comment=lambda op: f"recurse {op.depth} level(s) via {op.via} (salt {op.salt}), "
                f"there do {len(op.then)} op(s)"),),
    draw=_draw,
    check=_check,
    decorate=Decorations(kick=_kick, adjust=_adjust),
)
