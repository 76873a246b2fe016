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

from hypothesis import reject
from hypothesis import strategies as st

from greenfuzz.harness import families as registry
from greenfuzz.harness.families.contextvars import CtxCopy
from greenfuzz.harness.families.core import (
    SPAWN_KINDS,
    Current,
    Drop,
    Raise,
    Return,
    Spawn,
    Switch,
    Throw,
)
from greenfuzz.harness.families.exceptions import Finally, Handle
from greenfuzz.harness.families.finalizers import Finalize, Resurrect, finalizers
from greenfuzz.harness.families.frames import Frames
from greenfuzz.harness.families.stack import FRAME_BUDGET, LEVEL_FRAMES, Recurse
from greenfuzz.harness.families.stack import recursions as _recursions
from greenfuzz.harness.families.threads import InThread, ThreadParent
from greenfuzz.harness.families.tracing import Trace
from greenfuzz.harness.model import Unsupported, predict
from greenfuzz.harness.program.ir import MAIN, Op, Program, walk


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


def _fit(script: Sequence[Op], budget: List[int]) -> Tuple[Op, ...]:
    """``script`` with recursions made shallower where the program's frame budget
    (``greenfuzz.harness.program.ir.FRAME_BUDGET``, shared through ``budget``) would run out."""
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
        elif isinstance(op, Finally):
            # Fitted part by part: a recursion done in place changes the parts' lengths.
            body = _fit(op.then[:op.split], budget)
            op = Finally((*body, *_fit(op.then[op.split:], budget)), len(body))
        out.append(op)
    return tuple(out)


@lru_cache(maxsize=256)
def _parents(targets: Tuple[str, ...]) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(targets))


_subclass = st.integers(min_value=0, max_value=4).map(lambda n: n == 4)
#: Mostly plain (shrinks towards it), else one of the customised subclasses.
_spawn_kind = st.integers(min_value=0, max_value=7).map(
    lambda n: SPAWN_KINDS[max(0, n - 5)])
_kick_off = st.integers(min_value=0, max_value=3).map(bool)
_deep_start = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_copy_context = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_finalize_after = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_frames_after = st.integers(min_value=0, max_value=2).map(lambda n: n == 2)
_in_finally = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_drop_in_thread = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_bounce_after = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


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
             families: Sequence[str] = ()) -> st.SearchStrategy[Program]:
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
        kind = draw(_spawn_kind) if "finalizers" in fams else "plain"
        body.insert(at, Spawn(name, parent, kind == "plain" and draw(_subclass), kind))
        after = at + 1
        if "contextvars" in fams and draw(_copy_context):
            # Only right after the spawn: the greenlet is certainly unstarted then.
            body.insert(after, CtxCopy(name))
            after += 1
        if "finalizers" in fams and draw(_finalize_after):
            # Right after the spawn, so that the name is bound: freed later by a drop,
            # re-parenting or the teardown, it runs (and its ops most likely switch).
            body.insert(after, draw(finalizers(targets, name)))
            after += 1
        # Most greenlets get a kick-off switch from main (after their spawn, when main
        # spawns them); otherwise few would ever start.  Shrinks towards no kick-off.
        if draw(_kick_off):
            first = after if spawner == MAIN else 0
            kick: Op = Switch(name)
            if "exceptions" in fams and draw(_in_finally):
                # Whatever it dies of (or throws at main) reaches main's finally block,
                # with the traceback and cause it gathered on the way.
                kick = Finally((Switch(name, catch=False), Current()), 1)
            if "stack" in fams and draw(_deep_start):
                # Started from deep in main's stack: its stack region overlaps main's.
                kick = draw(recursions(targets, fams, (kick,)))
            at_kick = draw(st.integers(min_value=first, max_value=len(main_script)))
            main_script.insert(at_kick, kick)
            if "tracing" in fams and draw(_bounce_after):
                # Once it has parked, switch to it again under the tracer that switches
                # from its callback (which needs two suspended greenlets).
                main_script[at_kick + 1:at_kick + 1] = [Trace("bounce"), Switch(name)]
            if "threads" in fams and draw(_drop_in_thread):
                # Later on, started, given a parent of another thread (refused), or its
                # last reference (often) dropped there while it is suspended (killed when
                # main next calls greenlet).
                at = draw(st.integers(min_value=at_kick + 1, max_value=len(main_script)))
                main_script.insert(at, InThread((draw(st.sampled_from(
                    (ThreadParent(name), Drop(name)))),)))
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
    if "finalizers" in fams:
        program = _supported(_resurrecting(draw, program, targets))
    if "exceptions" in fams or "threads" in fams:
        program = _determined(program)
    return program


def _tame(script: Sequence[Op], stage: int, owner: str) -> Tuple[Op, ...]:
    """``script`` without what ``_determined`` gives up at ``stage``: 0, the switches and
    throws of the finally parts of greenlets that may be killed (not main's); 1, also
    every ``ThreadParent``."""
    out: List[Op] = []
    for op in script:
        if isinstance(op, ThreadParent) and stage >= 1:
            continue
        if isinstance(op, Finally) and owner != MAIN:
            kept = [o for o in op.then[op.split:] if not isinstance(o, (Switch, Throw))]
            op = Finally((*_tame(op.then[:op.split], stage, owner), *kept), op.split)
        elif hasattr(op, "then"):
            op = replace(op, then=_tame(op.then, stage, owner))
        out.append(op)
    return tuple(out)


def _determined(program: Program) -> Program:
    """``program``, made deterministic where the model says it is not
    (``greenfuzz.harness.model.Unsupported``): a greenlet whose finally block switches away while it
    is killed is leaked by greenlet ("GreenletExit did not kill"), and one that ends into
    an unstarted parent whose thread has ended aborts the process.  Those parts are
    removed, least first, until the model predicts the program."""
    if not any(isinstance(op, (Finally, ThreadParent))
               for _, s in program.scripts() for op in walk(s)):
        return program
    for stage in (0, 1, None):
        try:
            predict(program)
            return program
        except Unsupported:
            if stage is None:
                reject()  # something else the model leaves out (never seen so far)
        program = replace(program, main=_tame(program.main, stage, MAIN),
                          greenlets=tuple((n, _tame(s, stage, n)) for n, s in program.greenlets))
        program.validate()
    return program


_resurrects = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _resurrecting(draw: st.DrawFn, program: Program, targets: Tuple[str, ...]) -> Program:
    """Some greenlets get a ``Resurrect`` block round a run of their top-level ops (up to
    their first return, raise or block that a ``Resurrect`` may not hold, after their
    spawns), ending with a
    switch to main: parked there, a drop or the teardown kills them in it."""
    greenlets = []
    for name, script in program.greenlets:
        limit = 0
        while limit < len(script) and not isinstance(script[limit], (Return, Raise)) and \
                not any(isinstance(o, (Finally, Raise)) for o in walk(script[limit:limit + 1])):
            limit += 1
        # After its spawns, which stay at the top level of scripts.
        first = max((i + 1 for i, op in enumerate(script[:limit]) if isinstance(op, Spawn)),
                    default=0)
        if draw(_resurrects):
            start = draw(st.integers(min_value=first, max_value=limit))
            end = draw(st.integers(min_value=start, max_value=limit))
            block = Resurrect(draw(st.sampled_from(targets)), (*script[start:end], Switch(MAIN)))
            script = (*script[:start], block, *script[end:])
        greenlets.append((name, script))
    program = replace(program, greenlets=tuple(greenlets))
    program.validate()
    return program


def _without_finalizers(script: Sequence[Op]) -> Tuple[Op, ...]:
    """``script`` without ``Finalize`` ops, and with ``Resurrect`` blocks' ops in place."""
    out: List[Op] = []
    for op in script:
        if isinstance(op, Resurrect):
            out += _without_finalizers(op.then)
        elif isinstance(op, Finally):
            head = _without_finalizers(op.then[:op.split])
            out.append(Finally((*head, *_without_finalizers(op.then[op.split:])), len(head)))
        elif not isinstance(op, Finalize):
            out.append(replace(op, then=_without_finalizers(op.then))
                       if hasattr(op, "then") else op)
    return tuple(out)


def _supported(program: Program) -> Program:
    """``program``, or without its finalizers and resurrections when one would run where
    the model does not predict it (``greenfuzz.harness.model.Unsupported``: in the middle of a
    switch or a kill, where greenlet's dealloc has no documented behaviour for code that
    switches away, e.g. "GreenletExit did not kill" leaks the greenlet)."""
    if not any(isinstance(op, (Finalize, Resurrect))
               for _, s in program.scripts() for op in walk(s)):
        return program
    try:
        outlive = predict(program)[-1][3]
    except Unsupported:
        outlive = True
    if outlive:
        # Unsupported, or a greenlet outlives the program, whose kill (when the process
        # collects it) would run its handler during a later program.
        program = replace(program, main=_without_finalizers(program.main),
                          greenlets=tuple((n, _without_finalizers(s))
                                          for n, s in program.greenlets))
        program.validate()
    return program
