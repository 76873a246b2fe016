"""Strategies for operations, scripts and whole programs (switch graphs).

``programs()`` draws the number of greenlets first, then every script, then where each
greenlet is spawned: by main or by a greenlet spawned before it, so every script runs at
most once and programs always terminate (``Program.validate``).  Everything is drawn
from lists and ``sampled_from``, which Hypothesis shrinks towards fewer greenlets,
shorter scripts, switches to ``main`` and empty arguments: small, readable programs.

The ops each family adds (``Family.draw``) and the way it decorates programs (extra ops
after a spawn or a kick-off, fitting, taming: ``Family.decorate``) are in the family's
module (``greenfuzz.harness.families``); this module places spawns and kick-offs.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache, lru_cache
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from hypothesis import reject
from hypothesis import strategies as hst
from hypothesis.control import currently_in_test_context
from hypothesis.errors import UnsatisfiedAssumption

from greenfuzz.harness import families as registry
from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families.base import Drawing
from greenfuzz.harness.families.core import Spawn, Switch
from greenfuzz.harness.families.stack import Recurse
from greenfuzz.harness.families.stack import recursions as _recursions
from greenfuzz.harness.model import Unsupported, predict
from greenfuzz.harness.program.ir import MAIN, Op, Program


@lru_cache(maxsize=256)
def ops(targets: Tuple[str, ...], *, terminal: bool = True,
        families: Tuple[str, ...] = ()) -> st.SearchStrategy[Op]:
    """One operation naming greenlets from ``targets``; ``terminal`` allows return/raise;
    ``families`` (default: every registered one) adds the ops of each family beyond core
    (each family's ``Family.draw``, which may draw nested ops with this function)."""
    wanted = families or registry.names()
    choices: List[st.SearchStrategy[Op]] = []
    for family in registry.registered():
        if family.draw is not None and (family.name == "core" or family.name in wanted):
            choices += family.draw(targets, wanted, terminal, ops)
    return st.one_of(choices)


def recursions(targets: Tuple[str, ...], families: Tuple[str, ...] = (),
               inner: Tuple[Op, ...] = ()) -> st.SearchStrategy[Recurse]:
    """A ``Recurse`` (family ``stack``) round ``inner``, or round drawn ops."""
    return _recursions(targets, families or registry.names(), ops, inner)


@lru_cache(maxsize=256)
def scripts(targets: Tuple[str, ...], *, max_ops: int = 6, terminal: bool = True,
            families: Tuple[str, ...] = ()) -> st.SearchStrategy[List[Op]]:
    return st.lists(ops(targets, terminal=terminal, families=families), max_size=max_ops)


@lru_cache(maxsize=256)
def _parents(targets: Tuple[str, ...]) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(targets))


@cache
def _spawners(earlier: Tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from([MAIN, *earlier])


@cache
def _places(limit: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.integers(min_value=0, max_value=limit))


@cache
def _range(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=low, max_value=high)


@cache
def _shapes(shapes: Tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(shapes)


@cache
def _counts(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=low, max_value=high)


_subclass = st.integers(min_value=0, max_value=4).map(lambda n: n == 4)
_kick_off = st.integers(min_value=0, max_value=3).map(bool)


#: Shapes of switch graph (not ``greenfuzz.harness.program.recipes.SHAPES``, the shapes
#: of scale runs) ``programs`` can draw.  ``random``: any greenlet may spawn,
#: switch to or re-parent any other; ``chain``: each greenlet is spawned by the one
#: before it (a deep parent chain) and talks to its neighbours; ``fanout``: main spawns
#: every greenlet and they talk to main and each other; ``ring``: each greenlet passes
#: control on to the next one, round a ring.
GRAPH_SHAPES = ("random", "chain", "fanout", "ring")


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
             shapes: Tuple[str, ...] = GRAPH_SHAPES,
             families: Sequence[str] = ()) -> hst.SearchStrategy[Program]:
    """A switch graph of ``min_greenlets`` to ``max_greenlets`` greenlets, in one of
    ``shapes`` (see ``GRAPH_SHAPES``; shrinks towards ``random``), drawing the ops of
    ``families`` (the registered ones, ``greenfuzz.harness.families``, all by default;
    core is always drawn, every family builds on its switches).  ``ValueError`` names
    unknown families.

    Main's script is twice as long as the others, since it drives the program; spawns
    are placed after the scripts are drawn, so shrinking a script never strands one.
    """
    known = registry.names()
    families = families or known
    unknown = set(families) - set(known)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {', '.join(known)}")
    fams = tuple(f for f in known if f in families or f == "core")
    return _decoded((min_greenlets, max_greenlets, max_ops, shapes, fams))


def programs_per_draw(min_greenlets: int = 1, max_greenlets: int = 6, max_ops: int = 6,
                      shapes: Tuple[str, ...] = GRAPH_SHAPES,
                      families: Sequence[str] = ()) -> hst.SearchStrategy[Program]:
    """The same programs as ``programs`` drawn choice by choice through Hypothesis
    strategies (``Gene.hyp``): how programs were drawn before genomes, kept for the
    generation bench (``bench/bench_generation.py``)."""
    known = registry.names()
    families = families or known
    fams = tuple(f for f in known if f in families or f == "core")
    return _programs(min_greenlets, max_greenlets, max_ops, shapes, fams)


#: The genome is drawn in chunks of ``GENOME_CHUNK`` bytes, as the decoder reads them,
#: in streams: one for each script (main's, each greenlet's) and one for the rest (the
#: skeleton: shape, greenlets, spawns, kick-offs, decorations), at most
#: ``GENOME_CHUNKS`` chunks each; past that every byte reads as 0, the simplest choice.
#: Fixed-size chunks: Hypothesis draws a byte string of variable length byte by byte,
#: several times slower than a whole program's decoding; drawn only when read, so
#: that Hypothesis never shrinks bytes no choice reads; streams, so that a script
#: shrunk or dropped does not shift the bytes every other script is decoded from.
GENOME_CHUNK, GENOME_CHUNKS = 32, 16
#: Bytes enough for ``decode`` to give nearly any program all the bytes it reads (the
#: bench prints how many programs read).
GENOME_BYTES = 2048


@cache
def _chunk() -> hst.SearchStrategy[bytes]:
    return hst.binary(min_size=GENOME_CHUNK, max_size=GENOME_CHUNK)


def _from_chunks(next_chunk: Callable[[], bytes], params: Tuple[Any, ...]) -> Program:
    """The program decoded from chunks that ``next_chunk`` gives, in the order the
    streams ask for them."""

    def stream() -> st.Genome:
        left = [GENOME_CHUNKS]

        def fetch() -> bytes:
            if not left[0]:
                return b""
            left[0] -= 1
            return next_chunk()
        return st.Genome(b"", fetch)

    streams: Dict[int, st.Genome] = {}

    def script_draw(index: int) -> st.DrawFn:
        if index not in streams:
            streams[index] = stream()
        return streams[index].draw

    return _build(stream().draw, *params, script_draw=script_draw)


@hst.composite
def _decoded(draw: hst.DrawFn, params: Tuple[Any, ...]) -> Program:
    """The program a genome encodes (``params``: those of ``programs``), its chunks drawn
    by Hypothesis as the decoder needs them: Hypothesis stores, replays and shrinks
    them (towards fewer chunks and zero bytes: a simpler program)."""
    return _from_chunks(lambda: draw(_chunk()), params)


def decode(genome: bytes, min_greenlets: int = 1, max_greenlets: int = 6, max_ops: int = 6,
           shapes: Tuple[str, ...] = GRAPH_SHAPES, families: Sequence[str] = ()) -> Program:
    """The program ``genome`` encodes, as ``programs(...)`` draws it from the chunks of
    ``genome`` in turn (``reject`` raises Hypothesis's ``UnsatisfiedAssumption`` for a
    program the model cannot predict)."""
    known = registry.names()
    fams = tuple(f for f in known if f in (families or known) or f == "core")
    at = [0]

    def next_chunk() -> bytes:
        chunk = genome[at[0]:at[0] + GENOME_CHUNK]
        at[0] += GENOME_CHUNK
        return chunk.ljust(GENOME_CHUNK, b"\0")
    return _from_chunks(next_chunk, (min_greenlets, max_greenlets, max_ops, shapes, fams))


def _ends(op: Op) -> bool:
    return registry.spec(op).ends_script


@hst.composite
def _programs(draw: hst.DrawFn, min_greenlets: int, max_greenlets: int, max_ops: int,
              shapes: Tuple[str, ...], fams: Tuple[str, ...]) -> Program:
    return _build(lambda gene: draw(gene.hyp()), min_greenlets, max_greenlets, max_ops,
                  shapes, fams)


def _build(draw: st.DrawFn, min_greenlets: int, max_greenlets: int, max_ops: int,
           shapes: Tuple[str, ...], fams: Tuple[str, ...],
           script_draw: Optional[Callable[[int], st.DrawFn]] = None) -> Program:
    """A program, each choice made by ``draw`` (from a genome, or through Hypothesis),
    the scripts' by ``script_draw(i)`` (main's: 0; default: ``draw``)."""
    if script_draw is None:
        def script_draw(index: int) -> st.DrawFn:
            return draw
    shape = draw(_shapes(shapes))
    n = draw(_counts(min_greenlets, max_greenlets))
    names = [f"g{i}" for i in range(1, n + 1)]
    targets = (MAIN, *names)
    main_script = script_draw(0)(scripts(targets, max_ops=2 * max_ops, terminal=False,
                                         families=fams))
    bodies: Dict[str, List[Op]] = {MAIN: main_script}
    for i, name in enumerate(names):
        bodies[name] = script_draw(i + 1)(scripts(_neighbours(shape, names, i), max_ops=max_ops,
                                    families=fams))
    d = Drawing(draw, targets, fams, ops)
    decorations = [f.decorate for f in registry.registered() if f.name in fams]
    last_first = decorations[::-1]
    for i, name in enumerate(names):
        if shape == "chain":
            spawner = MAIN if i == 0 else names[i - 1]
        elif shape == "fanout":
            spawner = MAIN
        else:
            spawner = draw(_spawners(tuple(names[:i])))
        body = bodies[spawner]
        limit = len(body)
        while limit and _ends(body[limit - 1]):
            limit -= 1  # a spawn after return/raise would never run
        # Mostly spawn up front, so that later ops find the name bound.
        at = draw(_places(limit))
        parent = None if shape == "chain" else draw(_parents(targets))
        spawn: Op = Spawn(name, parent, draw(_subclass))
        for dec in decorations:
            if dec.spawn is not None:
                spawn = dec.spawn(d, spawn)
        extra = [op for dec in decorations if dec.after_spawn for op in dec.after_spawn(d, name)]
        body[at:at] = [spawn, *extra]
        after = at + 1 + len(extra)
        # Most greenlets get a kick-off switch from main (after their spawn, when main
        # spawns them); otherwise few would ever start.  Shrinks towards no kick-off.
        if draw(_kick_off):
            first = after if spawner == MAIN else 0
            kick: Op = Switch(name)
            for dec in last_first:
                if dec.kick is not None:
                    kick = dec.kick(d, kick)
            at_kick = draw(_range(first, len(main_script)))
            main_script.insert(at_kick, kick)
            for dec in last_first:
                if dec.after_kick is not None:
                    dec.after_kick(d, name, main_script, at_kick, bodies[name])
    drawn = [(MAIN, tuple(bodies[MAIN])), *((name, tuple(bodies[name])) for name in names)]
    for dec in decorations:
        if dec.adjust is not None:
            drawn = dec.adjust(drawn)
    program = Program(main=drawn[0][1], greenlets=tuple(drawn[1:]), meta=(("shape", shape),))
    program.validate()
    for dec in decorations:
        if dec.finish is not None:
            program = dec.finish(d, program, predict)
    return _determined(program, [dec.tame for dec in decorations if dec.tame is not None])


def _determined(program: Program, steps: Optional[List[Callable]] = None) -> Program:
    """``program``, made deterministic where the model says it is not (``Unsupported``):
    each family's ``tame`` step removes, in turn, what makes the model give up, until the
    model predicts the program (rejected when even all of them are not enough).  A
    program the steps would not change is checked too: a step may not see every place
    an op can be (a finalizer reached from an ``atexit`` callback was missed, so programs
    the model leaves out reached the tests).  ``steps``: by default, every registered
    family's."""
    if steps is None:
        steps = [f.decorate.tame for f in registry.registered() if f.decorate.tame]
    candidates = [program]
    for step in steps:
        last = candidates[-1]
        tamed = replace(last, main=step(MAIN, last.main),
                        greenlets=tuple((n, step(n, s)) for n, s in last.greenlets))
        if tamed != last:
            candidates.append(tamed)
    for candidate in candidates:
        try:
            predict(candidate)
        except Unsupported:
            continue
        if candidate is not program:
            candidate.validate()
        return candidate
    # Something else the model leaves out (rare).  ``decode`` also runs outside any
    # test (the rules bench), where Hypothesis deprecates ``reject``: the same exception.
    if not currently_in_test_context():
        raise UnsatisfiedAssumption("the model cannot predict the program")
    reject()
    raise AssertionError("unreachable")
