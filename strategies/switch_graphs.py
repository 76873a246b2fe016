"""Strategies for operations, scripts and whole programs (switch graphs).

``programs()`` draws the number of greenlets first, then every script, then where each
greenlet is spawned: by main or by a greenlet spawned before it, so every script runs at
most once and programs always terminate (``Program.validate``).  Everything is drawn
from lists and ``sampled_from``, which Hypothesis shrinks towards fewer greenlets,
shorter scripts, switches to ``main`` and empty arguments: small, readable programs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Tuple

from hypothesis import strategies as st

from harness.ir import (
    INSPECT_ATTRS,
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


@lru_cache(maxsize=256)
def ops(targets: Tuple[str, ...], *, terminal: bool = True) -> st.SearchStrategy[Op]:
    """One operation naming greenlets from ``targets``; ``terminal`` allows return/raise."""
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
    return st.one_of(choices)


@lru_cache(maxsize=256)
def scripts(targets: Tuple[str, ...], *, max_ops: int = 6,
            terminal: bool = True) -> st.SearchStrategy[List[Op]]:
    return st.lists(ops(targets, terminal=terminal), max_size=max_ops)


@lru_cache(maxsize=256)
def _parents(targets: Tuple[str, ...]) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(targets))


_subclass = st.integers(min_value=0, max_value=4).map(lambda n: n == 4)
_kick_off = st.integers(min_value=0, max_value=3).map(bool)


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


@st.composite
def programs(draw: st.DrawFn, min_greenlets: int = 1, max_greenlets: int = 6,
             max_ops: int = 6, shapes: Tuple[str, ...] = SHAPES) -> Program:
    """A switch graph of ``min_greenlets`` to ``max_greenlets`` greenlets, in one of
    ``shapes`` (see ``SHAPES``; shrinks towards ``random``).

    Main's script is twice as long as the others, since it drives the program; spawns
    are placed after the scripts are drawn, so shrinking a script never strands one.
    """
    shape = draw(st.sampled_from(shapes))
    n = draw(st.integers(min_value=min_greenlets, max_value=max_greenlets))
    names = [f"g{i}" for i in range(1, n + 1)]
    targets = (MAIN, *names)
    main_script = draw(scripts(targets, max_ops=2 * max_ops, terminal=False))
    bodies: Dict[str, List[Op]] = {MAIN: main_script}
    for i, name in enumerate(names):
        bodies[name] = draw(scripts(_neighbours(shape, names, i), max_ops=max_ops))
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
        # Most greenlets get a kick-off switch from main (after their spawn, when main
        # spawns them); otherwise few would ever start.  Shrinks towards no kick-off.
        if draw(_kick_off):
            first = at + 1 if spawner == MAIN else 0
            main_script.insert(
                draw(st.integers(min_value=first, max_value=len(main_script))), Switch(name)
            )
    program = Program(
        main=tuple(bodies[MAIN]),
        greenlets=tuple((name, tuple(bodies[name])) for name in names),
        meta=(("shape", shape),),
    )
    program.validate()
    return program
