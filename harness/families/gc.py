"""Family ``gc``: the cyclic collector on, with a threshold of 1, while the program
switches; garbage whose finalizers switch, throw and kill at whatever point the
collector happens to run them, in the middle of a switch included.

Where and in which greenlet a collection runs cannot be predicted, so finalizers here
are *transparent*: each one starts a greenlet of its own (parent: whichever greenlet the
finalizer runs in), switches to it and back, throws into it or drops it suspended, and
records nothing in the trace.  The program's own trace is predicted as usual (reference
counting frees greenlets when the model says, collection or not).  What the finalizers
saw is checked against invariants that hold under every order (``runtime.Collector``):
each value a greenlet receives was sent to it, once, in order; a greenlet reported dead
never runs again; ``GreenletExit`` reaches a dropped greenlet exactly once; the
finalizer's own locals survive its switches; ``getcurrent()`` is the greenlet it was
before; no exception (``SystemError`` included) escapes greenlet's API; and after a full
collection every finalizer made has run.  At the end of main's script the runtime
records those violations (``collector``, the model predicts none) and which greenlets
are alive after a full collection (``alive``, as the model says).

Rules cited: greenlet_gc ("If all the references to a greenlet object go away ... a
GreenletExit exception is generated into the greenlet"), switching ("any attempt to
switch to a dead greenlet actually goes to the dead greenlet's parent"), and greenlet
3.0.0rc2's changelog: "Fix a potential crash ... when a garbage collection is triggered
in the middle of a switch and __del__ methods or weakref callbacks switch greenlets"
(gevent issue 1985), 2.0.0rc1: switches during the trashcan's deferred deallocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, List, Tuple

from greenfuzz.harness import target
from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Family,
    OpSpec,
    PlainSpec,
    ProgramError,
    Scripts,
    walk,
)
from greenfuzz.harness.target import gcmode

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import MG, Model

#: What holds a finalizer: ``del``, an object in a reference cycle with ``__del__``;
#: ``weakref``, the callback of a weak reference to an object in a cycle; ``nested``, a
#: cycle holding a chain of nested lists deeper than CPython's trashcan limit whose
#: items have ``__del__`` (freed through the trashcan when the cycle is collected).
GARBAGE_KINDS = ("del", "weakref", "nested")
#: What a finalizer does with a greenlet of its own: ``switch``, start it and let it end
#: (away and back); ``park``, start it, it switches back, switch to it again and it
#: ends; ``throw``, start it, it switches back, throw into it (caught, it ends);
#: ``kill``, start it, it switches back, drop it (GreenletExit, exactly once).
ACTIONS = ("switch", "park", "throw", "kill")
#: Generations garbage is moved to before it is let go (``Garbage.age``).
AGES = (0, 1, 2)


@dataclass(frozen=True)
class Garbage:
    """Make ``count`` pieces of cyclic garbage of ``kind`` whose finalizers perform
    ``action``; the first one in a program switches the cyclic collector on with
    thresholds (1, 2, 2) (off again, after a full collection, when main's script ends).
    ``age`` 0: the garbage is collected at the next allocation (right here); 1 or 2:
    it is moved to that generation while still held, then let go, so that a later
    collection of that generation frees it at whatever allocation triggers it, the
    program's switches included."""

    kind: str = "del"
    action: str = "switch"
    count: int = 1
    age: int = 0


def _validate(owner: str, op: Garbage) -> None:
    if op.kind not in GARBAGE_KINDS:
        raise ProgramError(f"{owner}: unknown garbage kind {op.kind!r}")
    if op.action not in ACTIONS:
        raise ProgramError(f"{owner}: unknown finalizer action {op.action!r}")
    if not 1 <= op.count <= 8:
        raise ProgramError(f"{owner}: garbage count must be 1 to 8")
    if op.age not in AGES:
        raise ProgramError(f"{owner}: garbage age must be one of {AGES}")


def uses(scripts: Scripts) -> bool:
    return any(isinstance(op, Garbage) for _, script in scripts for op in walk(script))


def _cleanup(scripts: Scripts) -> List[str]:
    """When main's script ends: a full collection, the collector off, the report."""
    return ["T.collector_report(T)"] if uses(scripts) else []


# -- model rules -----------------------------------------------------------------------

def _perform(m: Model, g: MG, op: Garbage) -> None:
    """Transparent: the finalizers switch away and back, so nothing the program sees
    changes."""
    m.done(g)


def _main_finished(m: Model) -> None:
    """The report: no invariant broken (``collector`` ``()``), and after a full
    collection the greenlets alive are those reference counting keeps (the registry
    still holds what was not dropped; teardown comes after)."""
    if uses(m.program.scripts()):
        m.rec(MAIN, -1, "collector", ())
        m.check_alive()


# -- strategies ------------------------------------------------------------------------

@lru_cache(maxsize=1)
def garbage() -> st.SearchStrategy[Garbage]:
    # Mostly age 0: collected at once, and the finalizers' new garbage then waits for
    # the next collection, which the program's own switches often trigger.
    return st.builds(Garbage, st.sampled_from(GARBAGE_KINDS), st.sampled_from(ACTIONS),
                     st.integers(min_value=1, max_value=3), st.sampled_from((*AGES, 0, 0)))


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    return [garbage(), garbage()]



# -- plain reproducers (``plainwriter``) -------------------------------------------------

pw.define_helper("collector", """
collector = {"on": False, "off": False, "made": 0, "ran": 0, "rearm": 0, "tokens": 0}
broken = []  # what finalizers saw that greenlet's rules exclude, checked at the end
weak = set()  # weak references whose callbacks finalize


class Cycle:
    \"\"\"In a reference cycle with itself: only the cyclic collector frees it.\"\"\"

    def __init__(self, action):
        self.action, self.me = action, self


class Finalized(Cycle):
    def __del__(self):
        finalizer("del", self.action)


class Link:
    \"\"\"A link of a chain deeper than CPython's trashcan limit: freed through it.\"\"\"

    def __init__(self, action, rest):
        self.action, self.rest = action, rest

    def __del__(self):
        finalizer("nested", self.action)


def make_garbage(kind, action, count, age):
    \"\"\"count pieces of cyclic garbage whose finalizers do ``action`` with a greenlet of
    their own; the collector goes on first.  age 1 or 2: moved to that generation while
    held, freed by a later collection, at whatever allocation triggers it.\"\"\"
    if not collector["on"]:
        collector["on"] = True
        collector["saved"] = gc.isenabled(), gc.get_threshold()
        gc.collect()
        gc.set_threshold(1, 2, 2)
        gc.enable()
    if collector["off"]:
        return
    collector["rearm"] = min(collector["rearm"] + 200, 600)
    held = [one_garbage(kind, action) for _ in range(count)]
    if age:
        gc.collect(age - 1)
    del held


def one_garbage(kind, action):
    if kind == "del":
        collector["made"] += 1
        return Finalized(action)
    if kind == "weakref":
        node = Cycle(action)

        def callback(r):
            weak.discard(r)
            finalizer("weakref", action)

        weak.add(weakref.ref(node, callback))
        collector["made"] += 1
        return node
    head, chain = Cycle(action), None
    for _ in range(120):
        chain = Link(action, chain)
    head.chain = chain
    collector["made"] += 120
    return head


def finalizer(kind, action):
    \"\"\"Runs wherever the collector runs it, in the middle of a switch included: first
    makes garbage like its own (so that some always waits for the next collection),
    then switches a greenlet of its own (``own_greenlet``, greenfuzz's own check), tracing
    off.\"\"\"
    collector["ran"] += 1
    if collector["off"]:
        return
    if collector["rearm"] > 0:
        collector["rearm"] -= 1
        one_garbage("weakref" if kind == "weakref" else "del", action)
    settrace = getattr(greenlet, "settrace", None)
    tracer = settrace(None) if settrace is not None else None
    try:
        own_greenlet(greenlet, action, token, broken.append)
    except BaseException as e:
        broken.append(f"{type(e).__name__} escaped a finalizer's {action}: {e}")
    finally:
        if settrace is not None:
            settrace(tracer)


def token():
    collector["tokens"] += 1
    return 1000 + collector["tokens"]


""" + target.function_source("gcmode", "own_greenlet") + """

""" + target.function_source("gcmode", "collect_until") + """

def collector_report():
    \"\"\"A full collection (every finalizer made runs), then the collector as it was;
    the first things finalizers saw that greenlet's rules exclude.\"\"\"
    collector["rearm"] = 0
    collect_until(lambda: collector["ran"] == collector["made"], wait=""" + (
    repr(gcmode.FINISH_WAIT)) + """)
    collector["off"] = True
    if collector["ran"] != collector["made"]:
        broken.append(f"{collector['made']} finalizer(s) made, {collector['ran']} ran "
                      "after a full collection")
    enabled, threshold = collector["saved"]
    gc.set_threshold(*threshold)
    if not enabled:
        gc.disable()
    return broken[:10]  # the first ten say enough
""", imports=("gc", "time", "weakref"), needs=("FuzzError",))


def _plain_report(w: pw.Writer) -> List[str]:
    """When main's script ends: what the finalizers saw, after a full collection."""
    for i, (who, _, kind, payload) in enumerate(w.expected):
        if who == MAIN and kind == "collector":
            return [f"check('what finalizers saw that greenlet rules out', "
                    f"collector_report(), {w.literal(list(payload or ()))})",
                    *w.sync(i, "after the full collection")]
    return []


def _plain_garbage(w: pw.Writer, who: str, pc: int, op: Garbage) -> pw.Rendered:
    w.need("collector")
    w.after_main["gc"] = _plain_report
    call = f"make_garbage({op.kind!r}, {op.action!r}, {op.count}, {op.age})"
    return w.outcome(who, pc, call, call)


FAMILY = Family(
    name="gc",
    ops=(
        OpSpec(Garbage, validate=_validate, perform=_perform, plain=PlainSpec(_plain_garbage),
               comment=lambda op: f"make {op.count} cyclic garbage ({op.kind}) whose "
               f"finalizers {op.action} a greenlet of their own, aged {op.age}; collector on",
               statement=lambda op: f"T.garbage(T, {op.kind!r}, {op.action!r}, {op.count}, "
               f"{op.age})"),
    ),
    draw=_draw,
    cleanup=_cleanup,
    main_finished=_main_finished,
)
