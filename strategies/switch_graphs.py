"""Strategies for operations, scripts and whole programs (switch graphs).

``programs()`` draws the number of greenlets first, then every script, then where each
greenlet is spawned: by main or by a greenlet spawned before it, so every script runs at
most once and programs always terminate (``Program.validate``).  Everything is drawn
from lists and ``sampled_from``, which Hypothesis shrinks towards fewer greenlets,
shorter scripts, switches to ``main`` and empty arguments: small, readable programs.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

from hypothesis import strategies as st

from harness.ir import (
    CONTEXT_VARS,
    FAMILIES,
    FRAME_BUDGET,
    INSPECT_ATTRS,
    LEVEL_FRAMES,
    MAIN,
    MAX_DEPTH,
    TRACE_MODES,
    VIAS,
    Bogus,
    CtxCopy,
    CtxGet,
    CtxSet,
    Current,
    Drop,
    Exc,
    ExcInfo,
    Frames,
    Handle,
    Inspect,
    InThread,
    Op,
    Program,
    Raise,
    Recurse,
    Return,
    SetParent,
    Spawn,
    Switch,
    Throw,
    Trace,
)
from strategies.data import CATCHABLE_TYPES, arguments, exceptions, scalars, values

#: Exceptions a program may throw or raise: the catchable ones and GreenletExit.
THROWABLE_TYPES = (*CATCHABLE_TYPES, "GreenletExit")


@lru_cache(maxsize=256)
def switches(targets: Tuple[str, ...]) -> st.SearchStrategy[Switch]:
    return st.builds(
        lambda target, a, catch: Switch(target, a[0], a[1], catch),
        st.sampled_from(targets),
        arguments(),
        st.booleans().map(lambda b: not b),  # shrinks towards catch=True
    )


@lru_cache(maxsize=256)
def throws(targets: Tuple[str, ...]) -> st.SearchStrategy[Throw]:
    """Every way of spelling ``throw()``: no args, a class, a class and one value, an
    instance; GreenletExit among the types."""

    def build(target: str, style: str, exc: Exc, catch: bool) -> Throw:
        if style == "none":
            return Throw(target, None, "none", catch)
        if style == "class_args":
            exc = Exc(exc.type, exc.args[:1] or (0,))
        return Throw(target, exc, style, catch)

    return st.builds(
        build,
        st.sampled_from(targets),
        st.sampled_from(("class", "none", "class_args", "instance")),
        exceptions(THROWABLE_TYPES, max_args=1),
        st.booleans().map(lambda b: not b),
    )


@lru_cache(maxsize=256)
def set_parents(targets: Tuple[str, ...]) -> st.SearchStrategy[SetParent]:
    """Re-parenting, including the ones that must fail: cycles (any target whose new
    parent descends from it), main as target, and non-greenlet parents."""
    parent = st.one_of(
        st.sampled_from(targets),
        st.builds(Bogus, st.one_of(st.none(), scalars())),
    )
    children = [t for t in targets if t != MAIN] or [MAIN]
    target = st.sampled_from([*children, MAIN])
    return st.builds(SetParent, target, parent, st.just(True))


@st.composite
def _depths(draw: st.DrawFn, via: str) -> int:
    """Mostly shallow, sometimes down to the via's limit (shrinks towards 0)."""
    return draw(st.one_of(st.integers(min_value=0, max_value=4),
                          st.integers(min_value=0, max_value=MAX_DEPTH[via])))


@lru_cache(maxsize=256)
def recursions(targets: Tuple[str, ...], families: Tuple[str, ...] = FAMILIES,
               inner: Tuple[Op, ...] = ()) -> st.SearchStrategy[Recurse]:
    """A ``Recurse`` whose nested ops are ``inner`` when given, else a few drawn ops
    (switches, throws, a raise: whatever suspends or unwinds the deep stack)."""
    if inner:
        then: st.SearchStrategy = st.just(inner)
    else:
        nested = st.one_of(ops(targets, terminal=False,
                               families=tuple(f for f in families if f != "stack")),
                           st.builds(Raise, exceptions(THROWABLE_TYPES)))
        then = st.lists(nested, max_size=3).map(tuple)
    return st.sampled_from(VIAS).flatmap(lambda via: st.builds(
        Recurse, _depths(via), st.just(via), st.integers(min_value=0, max_value=999), then))


@lru_cache(maxsize=256)
def handlers(targets: Tuple[str, ...], families: Tuple[str, ...] = FAMILIES,
             nest: int = 2) -> st.SearchStrategy[Handle]:
    """A ``Handle`` whose except block reads ``sys.exc_info()``, switches, throws the
    handled exception on (``throw(*sys.exc_info())``), raises (chaining it) or handles
    another one inside (``nest`` deep)."""
    inner_families = tuple(f for f in families if f != "exceptions")
    nested: List[st.SearchStrategy[Op]] = [
        ops(targets, terminal=False, families=inner_families),
        st.just(ExcInfo()),
        st.builds(Throw, st.sampled_from(targets), st.none(), st.just("exc_info"),
                  st.booleans().map(lambda b: not b)),
        st.builds(Raise, exceptions(THROWABLE_TYPES)),
    ]
    if nest > 1:
        nested.append(handlers(targets, families, nest - 1))
    return st.builds(Handle, exceptions(CATCHABLE_TYPES),
                     st.lists(st.one_of(nested), max_size=4).map(tuple))


@lru_cache(maxsize=256)
def threads(targets: Tuple[str, ...]) -> st.SearchStrategy[InThread]:
    """An ``InThread`` whose ops reach for this thread's greenlets from another thread."""
    in_thread = st.one_of(
        switches(targets).map(lambda op: replace(op, catch=True)),
        throws(targets).map(lambda op: replace(op, catch=True)),
        st.builds(Inspect, st.sampled_from(targets), st.sampled_from(INSPECT_ATTRS)),
        st.just(Current()),
    )
    return st.builds(InThread, st.lists(in_thread, max_size=3).map(tuple))


@lru_cache(maxsize=256)
def ops(targets: Tuple[str, ...], *, terminal: bool = True,
        families: Tuple[str, ...] = FAMILIES) -> st.SearchStrategy[Op]:
    """One operation naming greenlets from ``targets``; ``terminal`` allows return/raise;
    ``families`` (see ``harness.ir.FAMILIES``) adds the ops of each family beyond core."""
    # one_of picks a branch uniformly: switching is what programs are about, so it
    # gets more branches; drop and re-parenting strand names and are rarer.
    choices: List[st.SearchStrategy[Op]] = [
        switches(targets),
        switches(targets),
        switches(targets),
        throws(targets),
        throws(targets),
        st.builds(Inspect, st.sampled_from(targets), st.sampled_from(INSPECT_ATTRS)),
        set_parents(targets),
        st.builds(Drop, st.sampled_from([t for t in targets if t != MAIN] or [MAIN])),
        st.just(Current()),
    ]
    if terminal:
        choices += [
            st.builds(Return, values()),
            st.builds(Raise, exceptions(THROWABLE_TYPES)),
        ]
    if "stack" in families:
        choices += [recursions(targets, families), recursions(targets, families)]
    if "frames" in families:
        choices += [st.builds(Frames, st.sampled_from(targets))] * 2
    if "exceptions" in families:
        choices += [handlers(targets, families), handlers(targets, families),
                    st.just(ExcInfo())]
    if "tracing" in families:
        choices += [st.builds(Trace, st.sampled_from(TRACE_MODES))] * 2
    if "threads" in families:
        choices.append(threads(targets))
    if "contextvars" in families:
        var = st.sampled_from(CONTEXT_VARS)
        choices += [st.builds(CtxSet, var, scalars()), st.builds(CtxGet, var),
                    st.builds(CtxGet, var)]
    return st.one_of(choices)


@lru_cache(maxsize=256)
def scripts(targets: Tuple[str, ...], *, max_ops: int = 6, terminal: bool = True,
            families: Tuple[str, ...] = FAMILIES) -> st.SearchStrategy[List[Op]]:
    return st.lists(ops(targets, terminal=terminal, families=families), max_size=max_ops)


def _fit(script: Sequence[Op], budget: List[int]) -> Tuple[Op, ...]:
    """``script`` with recursions made shallower where the program's frame budget
    (``harness.ir.FRAME_BUDGET``, shared through ``budget``) would run out."""
    out: List[Op] = []
    for op in script:
        if isinstance(op, Recurse):
            cost = LEVEL_FRAMES[op.via]
            if budget[0] < cost:  # not even one level left: do the nested ops in place
                out += _fit(op.then, budget)
                continue
            depth = min(op.depth, budget[0] // cost - 1)
            budget[0] -= (depth + 1) * cost
            op = replace(op, depth=depth, then=_fit(op.then, budget))
        elif isinstance(op, Handle):
            op = replace(op, then=_fit(op.then, budget))
        out.append(op)
    return tuple(out)


@lru_cache(maxsize=256)
def _parents(targets: Tuple[str, ...]) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(targets))


_subclass = st.integers(min_value=0, max_value=4).map(lambda n: n == 4)
_kick_off = st.integers(min_value=0, max_value=3).map(bool)
_deep_start = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_copy_context = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_frames_after = st.integers(min_value=0, max_value=2).map(lambda n: n == 2)


#: Shapes of switch graph ``programs`` can draw.  ``random``: any greenlet may spawn,
#: switch to or re-parent any other; ``chain``: each greenlet is spawned by the one
#: before it (a deep parent chain) and talks to its neighbours; ``fanout``: main spawns
#: every greenlet and they talk to main and each other; ``ring``: each greenlet passes
#: control on to the next one, round a ring.
SHAPES = ("random", "chain", "fanout", "ring")


def _neighbours(shape: str, names: List[str], i: int) -> Tuple[str, ...]:
    """The greenlets that greenlet ``i`` (or main, for -1) mostly addresses."""
    everyone = (MAIN, *names)
    if shape == "random" or i < 0:
        return everyone
    n = len(names)
    if shape == "chain":
        return tuple(dict.fromkeys([MAIN, names[i - 1] if i else MAIN,
                                    names[min(i + 1, n - 1)], names[i]]))
    if shape == "ring":
        return tuple(dict.fromkeys([names[(i + 1) % n], MAIN, names[i]]))
    return everyone  # fanout


def programs(min_greenlets: int = 1, max_greenlets: int = 6, max_ops: int = 6,
             shapes: Tuple[str, ...] = SHAPES,
             families: Sequence[str] = FAMILIES) -> st.SearchStrategy[Program]:
    """A switch graph of ``min_greenlets`` to ``max_greenlets`` greenlets, in one of
    ``shapes`` (see ``SHAPES``; shrinks towards ``random``), drawing the ops of
    ``families`` (``harness.ir.FAMILIES``; core is always drawn, every family builds
    on its switches).  ``ValueError`` names unknown families.

    Main's script is twice as long as the others, since it drives the program; spawns
    are placed after the scripts are drawn, so shrinking a script never strands one.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    fams = tuple(f for f in FAMILIES if f in families or f == "core")
    return _programs(min_greenlets, max_greenlets, max_ops, shapes, fams)


@st.composite
def _programs(draw: st.DrawFn, min_greenlets: int, max_greenlets: int, max_ops: int,
              shapes: Tuple[str, ...], fams: Tuple[str, ...]) -> Program:
    shape = draw(st.sampled_from(shapes))
    n = draw(st.integers(min_value=min_greenlets, max_value=max_greenlets))
    names = [f"g{i}" for i in range(1, n + 1)]
    targets = (MAIN, *names)
    main_script = draw(scripts(targets, max_ops=2 * max_ops, terminal=False, families=fams))
    bodies: Dict[str, List[Op]] = {MAIN: main_script}
    for i, name in enumerate(names):
        bodies[name] = draw(scripts(_neighbours(shape, names, i), max_ops=max_ops,
                                    families=fams))
    for i, name in enumerate(names):
        if shape == "chain":
            spawner = MAIN if i == 0 else names[i - 1]
        elif shape == "fanout":
            spawner = MAIN
        else:
            spawner = draw(st.sampled_from([MAIN, *names[:i]]))
        body = bodies[spawner]
        limit = len(body)
        while limit and isinstance(body[limit - 1], (Return, Raise)):
            limit -= 1  # a spawn after return/raise would never run
        # Mostly spawn up front, so that later ops find the name bound.
        at = draw(st.one_of(st.just(0), st.integers(min_value=0, max_value=limit)))
        parent = None if shape == "chain" else draw(_parents(targets))
        body.insert(at, Spawn(name, parent, draw(_subclass)))
        after = at + 1
        if "contextvars" in fams and draw(_copy_context):
            # Only right after the spawn: the greenlet is certainly unstarted then.
            body.insert(after, CtxCopy(name))
            after += 1
        # Most greenlets get a kick-off switch from main (after their spawn, when main
        # spawns them); otherwise few would ever start.  Shrinks towards no kick-off.
        if draw(_kick_off):
            first = after if spawner == MAIN else 0
            kick: Op = Switch(name)
            if "stack" in fams and draw(_deep_start):
                # Started from deep in main's stack: its stack region overlaps main's.
                kick = draw(recursions(targets, fams, (kick,)))
            at_kick = draw(st.integers(min_value=first, max_value=len(main_script)))
            main_script.insert(at_kick, kick)
            if "frames" in fams and draw(_frames_after):
                # Park it (switching back to main, maybe from deep down), then look at
                # its stack while it is suspended there.
                park: Op = Switch(MAIN)
                if "stack" in fams and draw(_deep_start):
                    park = draw(recursions(targets, fams, (park,)))
                own = bodies[name]
                end = len(own)
                while end and isinstance(own[end - 1], (Return, Raise)):
                    end -= 1
                own.insert(draw(st.integers(min_value=0, max_value=end)), park)
                main_script.insert(at_kick + 1, Frames(name))
    budget = [FRAME_BUDGET]
    program = Program(
        main=_fit(bodies[MAIN], budget),
        greenlets=tuple((name, _fit(bodies[name], budget)) for name in names),
        meta=(("shape", shape),),
    )
    program.validate()
    return program
