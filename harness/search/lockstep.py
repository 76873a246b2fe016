"""The reference model in lockstep with a random scale run.

The model that judges small programs (``greenfuzz.harness.model.Model``) runs the same
stream (``harness/target/scale_random.py``'s ``Stream``, seeded alike) one step at a time:
each greenlet's script is produced as the greenlet reaches it (``LazyScript``), so
nothing proportional to the number of operations is kept, and a greenlet the model frees
is forgotten (no ``spawned`` list; the ``alive`` event lists the greenlets freed since
the previous one, as the target records it).  ``Checker.feed`` takes the target's
events batch by batch and compares each with the model's as the model produces it; the
first that differs is a ``Divergence``.

The stream's operations (plain tuples) become ordinary IR ops here, which is also how a
small failing stream becomes an ordinary program (``to_program``).
"""

from __future__ import annotations

import gc
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from greenfuzz.harness.families import MAIN, Bogus, Exc, Op, flatten
from greenfuzz.harness.families.core import (
    Drop,
    Inspect,
    Raise,
    Return,
    SetParent,
    Spawn,
    Switch,
    Throw,
)
from greenfuzz.harness.families.stack import Recurse
from greenfuzz.harness.model.core import Model
from greenfuzz.harness.model.state import MG, Event
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import scale_random as sr
from greenfuzz.harness.target.runtime import ExcValue, Opaque

#: Far past any script's end: a lazy script has no length until the stream is spent.
ENDLESS = 1 << 62


def ir_op(op: Tuple) -> Op:
    """The IR op of a stream operation (``scale_random.SWITCH`` ...)."""
    kind = op[0]
    if kind == sr.SWITCH:
        return Switch(op[1], op[2], op[3], True)
    if kind == sr.THROW:
        style = op[2]
        return Throw(op[1], None if style == "none" else Exc(op[3], op[4]), style, True)
    if kind == sr.RETURN:
        return Return(op[1])
    if kind == sr.RAISE:
        return Raise(Exc(op[1], op[2]))
    if kind == sr.SPAWN:
        return Spawn(op[1], op[2])
    if kind == sr.PARENT:
        return SetParent(op[1], Bogus(op[2]) if op[3] else op[2], True)
    if kind == sr.DROP:
        return Drop(op[1])
    if kind == sr.RECURSE:
        return Recurse(op[1], op[2], op[3], tuple(ir_op(o) for o in op[4]))
    if kind == sr.INSPECT:
        return Inspect(op[1], op[2])
    raise ValueError(f"unknown stream operation {op!r}")


class LazyScript:
    """A greenlet's script as the stream hands it out: only the op it is at (with the
    ops nested in it) is kept."""

    __slots__ = ("end", "model", "ops", "start", "who")

    def __init__(self, model: StreamModel, who: str) -> None:
        self.model, self.who = model, who
        self.start = self.end = 0
        self.ops: Tuple[Op, ...] = ()

    def __len__(self) -> int:
        return self.end if self.model.stream.exhausted else ENDLESS

    def __getitem__(self, pc: int) -> Op:
        if self.start <= pc < self.end:
            return self.ops[pc - self.start]
        if pc != self.end:
            raise IndexError(f"{self.who}: op {pc} asked after op {self.end - 1}")
        raw = self.model.stream.next(self.who)
        if raw is None:
            raise IndexError(f"{self.who}: the stream is spent")
        op = ir_op(raw)
        self.model.performed(self.who, pc, op)
        self.ops = flatten((op,)) if raw[0] == sr.RECURSE else (op,)
        self.start, self.end = pc, pc + len(self.ops)
        return self.ops[0]


class _Forgotten(list):
    """``Model.spawned`` for a stream: nothing is kept (the list would grow with every
    greenlet ever spawned)."""

    def append(self, item: Any) -> None:
        pass


class StreamModel(Model):
    """The reference model stepping through a random stream (see the module docstring)."""

    def __init__(self, recipe: Dict[str, Any]) -> None:
        super().__init__(Program())
        self.stream = sr.stream_of(recipe)
        self.main.script = LazyScript(self, MAIN)  # type: ignore[assignment]
        self.spawned = _Forgotten()
        self.freed: List[str] = []
        #: ``(who, pc, op)`` of every top-level op handed out, when recording them
        #: (``to_program``); None otherwise.
        self.log: Optional[List[Tuple[str, int, Op]]] = None

    def new_greenlet(self, name: str, parent: Optional[MG], script: Optional[Tuple] = None,
                     **fields: Any) -> MG:
        return MG(name, LazyScript(self, name), parent, **fields)  # type: ignore[arg-type]

    def performed(self, who: str, pc: int, op: Op) -> None:
        if self.log is not None:
            self.log.append((who, pc, op))

    def collect(self, g: MG) -> None:
        super().collect(g)
        if g.gone:
            self.freed.append(g.name)

    def check_alive(self) -> None:
        """The greenlets freed since the previous ``alive`` event (what the target
        records: listing all that exist would cost the live set at every drop)."""
        freed, self.freed = self.freed, []
        self.rec(self.current.name, -1, "alive", tuple(sorted(freed)))

    def unbound_name(self, op: Op) -> Optional[str]:
        """None: the stream names only greenlets the registry holds (its window)."""
        return None

    def count_step(self) -> None:
        self.steps += 1  # the stream's budget bounds the run, not ``STEP_LIMIT``

    def begin(self) -> None:
        self.rec(MAIN, -1, "start", ((), {}))

    def more(self) -> bool:
        """Step until the model has recorded another event; False once it has recorded
        them all (the teardown's included)."""
        mark = len(self.events)
        while len(self.events) == mark:
            if self.finished:
                if self.torn:
                    return False
                self.torn = True
                self.teardown()
            else:
                self.advance()
        return True

    torn = False

    def fill(self, count: int) -> None:
        """Step until ``count`` events are recorded, or all of them are."""
        events = self.events
        advance = self.advance
        while len(events) < count:
            if self.finished:
                if self.torn:
                    return
                self.torn = True
                self.teardown()
            else:
                advance()


_PLAIN = {int, str, bool, float, type(None)}


def decode(value: Any) -> Any:
    """A payload as the target sent it (``scale_random.canon``) as the model writes it."""
    t = type(value)
    if t is tuple:
        return tuple(decode(v) for v in value)
    if t is list:
        if value and value[0] == "exc":
            return ExcValue(value[1], decode(value[2]))
        return Opaque(value[1])
    if t is dict:
        return {k: decode(v) for k, v in value.items()}
    return value


def collection_death(event: Event) -> bool:
    payload = event[3]
    return event[2] == "died" and isinstance(payload, ExcValue) and payload.args is None \
        and payload.type == "GreenletExit"


class Divergence(Exception):
    """The target's event ``index`` differs from the model's."""

    def __init__(self, index: int, expected: Optional[Event], observed: Optional[Event],
                 operations: int) -> None:
        super().__init__(f"event {index}: expected {expected!r}, observed {observed!r}")
        self.index, self.expected, self.observed = index, expected, observed
        #: Top-level operations the stream had handed out to the model by then.
        self.operations = operations

    def record(self) -> Dict[str, Any]:
        return {"kind": "divergence", "phase": "random", "greenlet": (self.expected or
                                                                      self.observed or "?")[0],
                "expected": repr(self.expected), "observed": repr(self.observed),
                "detail": f"event {self.index}, after {self.operations} operations",
                "event": self.index, "operations": self.operations,
                # Python literals of the events as the target records them, for the
                # standalone reproducer (``scale.reproducer``).
                "expected_event": repr(None if self.expected is None else
                                       _encode(self.expected)),
                "observed_event": repr(None if self.observed is None else
                                       _encode(self.observed))}


class Checker:
    """Compares the target's events, batch by batch, with the model's as it makes them."""

    def __init__(self, recipe: Dict[str, Any]) -> None:
        self.recipe = recipe
        self.model = StreamModel(recipe)
        self.model.begin()
        self.taken = 0  # model events compared (and dropped from ``model.events``)
        self.seen = 0  # target events compared

    def _expected(self, k: int) -> Optional[Event]:
        """Model event ``k`` (counting from ``taken``), stepping the model as needed."""
        events = self.model.events
        while len(events) <= k:
            if not self.model.more():
                return None
        return events[k]

    def fail(self, k: int, observed: Optional[Event]) -> None:
        index = self.taken + k
        raise Divergence(index, self._expected(k), observed,
                         operations_before(self.recipe, index))

    def feed(self, batch: Sequence[Sequence[Any]]) -> None:
        """Check a batch of target events (``scale_random`` form)."""
        events = self.model.events
        observed = [e if type(e[3]) in _PLAIN else (e[0], e[1], e[2], decode(e[3]))
                    for e in batch]
        self.model.fill(len(observed))
        if events[:len(observed)] == observed:  # the usual case, compared in C
            del events[:len(observed)]
            self.taken += len(observed)
            self.seen += len(observed)
            self.pending = []
            return
        i = 0
        k = 0  # index into model.events
        while i < len(observed):
            want = self._expected(k)
            if want is None:
                self.fail(k, observed[i])
            got = observed[i]
            if want == got:
                i += 1
                k += 1
                continue
            if not collection_death(want):
                self.fail(k, got)
            # Greenlets freed by one drop die in an order greenlet does not document
            # (``runtime.first_divergence``): within a run of them, any order agrees.
            j = k
            while (nxt := self._expected(j)) is not None and collection_death(nxt):
                j += 1
            run = events[k:j]
            if i + len(run) > len(observed):
                # The run goes on in the next batch: keep it for then.
                break
            if Counter(map(_key, run)) != Counter(map(_key, observed[i:i + len(run)])):
                self.fail(k, got)
            i += len(run)
            k = j
        self.seen += i
        del events[:k]
        self.taken += k
        self.pending = observed[i:]

    pending: List[Event] = []

    def take(self, batch: Sequence[Sequence[Any]]) -> None:
        """``feed``, after what the previous batch left (a run of deaths in any order
        that went on past its end)."""
        if self.pending:
            batch = [(e[0], e[1], e[2], _encode(e[3])) for e in self.pending] + list(batch)
        self.feed(batch)

    def finish(self) -> None:
        """The target is done: it must have recorded exactly what the model predicts."""
        if self.pending:
            rest, self.pending = self.pending, []
            self.feed([(e[0], e[1], e[2], _encode(e[3])) for e in rest])
            if self.pending:
                self.fail(0, self.pending[0])
        extra = self._expected(0)
        if extra is not None:
            raise Divergence(self.taken, extra, None,
                             operations_before(self.recipe, self.taken))


def operations_before(recipe: Dict[str, Any], index: int) -> int:
    """How many operations the stream had handed out when the model recorded event
    ``index`` (the checker steps ahead of the target's batch; this steps a fresh model
    only that far): a budget of that many reproduces everything up to the event."""
    model = StreamModel(recipe)
    model.begin()
    with no_cyclic_collector():
        model.fill(index + 1)
    return model.stream.done


def _key(event: Event) -> Tuple:
    return (event[0], event[1], event[2])


def _encode(value: Any) -> Any:
    if isinstance(value, ExcValue):
        return ["exc", value.type, value.args]
    if isinstance(value, Opaque):
        return ["repr", value.text]
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@contextmanager
def no_cyclic_collector() -> Iterator[None]:
    """The cyclic collector off while the model runs: with a live set of 10^5 model
    greenlets each full collection walks them all, which cost a third of the model's
    time; the model frees what it forgets by reference counting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def check_batches(recipe: Dict[str, Any], batches: Iterable[Sequence[Any]]) -> Checker:
    """Check every batch, then the end; ``Divergence`` at the first difference."""
    with no_cyclic_collector():
        checker = Checker(recipe)
        for batch in batches:
            checker.take(batch)
        checker.finish()
    return checker


# -- small streams as ordinary programs ---------------------------------------------------

def to_program(recipe: Dict[str, Any]) -> Program:
    """The stream of ``recipe`` as an ordinary IR program: each greenlet's script is the
    ops the stream handed it while the model ran the stream to its end.  The model
    predicts the same trace for it, so the usual minimizer and reproducer apply (only for
    small streams: the program holds every op)."""
    model = StreamModel(recipe)
    model.log = []
    model.begin()
    while model.more():
        model.events.clear()
    scripts: Dict[str, List[Op]] = {MAIN: []}
    order = [MAIN]
    for who, _pc, op in model.log:
        if who not in scripts:
            scripts[who] = []
            order.append(who)
        scripts[who].append(op)
        if isinstance(op, Spawn) and op.name not in scripts:
            scripts[op.name] = []
            order.append(op.name)
    spawned = sorted((n for n in order if n != MAIN), key=lambda n: int(n[1:]))
    return Program(main=tuple(scripts[MAIN]),
                   greenlets=tuple((n, tuple(scripts[n])) for n in spawned))
