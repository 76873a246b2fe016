"""Program IR: a switch graph as plain immutable data.

A :class:`Program` names a set of greenlets; each has a script of operations that its
``run`` function performs in order.  ``main`` is the thread's main greenlet and runs the
``main`` script.  Programs are what strategies draw, what the model predicts, what the
runner executes (after :mod:`greenfuzz.harness.execution.render` turns them into Python source) and
what a
finding saves as JSON, so everything here is frozen, comparable and serialisable.

Names are plain strings (``"main"``, ``"g1"``, ...).  A script refers to greenlets by
name; the program's registry holds the one reference that ``Drop`` releases.  Each
non-main greenlet is created by exactly one ``Spawn`` in exactly one script, and only a
script of a greenlet created earlier (or main's) may spawn it: every script then runs at
most once and every program terminates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterator, Sequence, Tuple, Union

from greenfuzz.harness.target import runtime

#: Plain data passed through switches: None, bool, int, str, tuples and str-keyed dicts.
Value = Any

MAIN = "main"

#: Exception types a program may raise or throw. ``FuzzError`` is defined by the runtime;
#: ``GreenletExit`` is the implementation's own.
EXCEPTION_TYPES = ("ValueError", "KeyError", "RuntimeError", "FuzzError", "GreenletExit")

#: Attributes an ``Inspect`` may read (``bool`` is ``bool(g)``, ``gr_frame`` is
#: ``g.gr_frame is None``, ``run`` is ``hasattr(g, "run")``).
INSPECT_ATTRS = ("dead", "bool", "parent", "gr_frame", "run")
#: ``Inspect`` attributes of the ``finalizers`` family: ``tag`` is ``getattr(g,
#: "fuzz_tag", None)``, the extra attribute greenlet subclasses set.
SUBCLASS_ATTRS = ("tag",)

#: How a ``Spawn`` makes its greenlet (family ``finalizers`` beyond ``plain``): ``method``
#: from a subclass whose class defines ``run``, ``init`` from a subclass whose
#: ``__init__(tag, run, parent=None)`` sets ``fuzz_tag`` and calls greenlet's.
SPAWN_KINDS = ("plain", "method", "init")

#: How a ``Finalize`` attaches its finalizer: a callback of a weak reference to the
#: greenlet, or ``__del__`` of an object stored as an attribute of the greenlet.
FINALIZER_KINDS = ("weakref", "held")

#: How a ``Throw`` spells its exception: ``g.throw()``, ``g.throw(T)``, ``g.throw(T, *args)``,
#: ``g.throw(T(*args))``, or ``g.throw(*sys.exc_info())`` (the exception being handled).
THROW_STYLES = ("none", "class", "class_args", "instance", "exc_info")


@dataclass(frozen=True)
class Exc:
    """An exception to raise or throw: a type name from ``EXCEPTION_TYPES`` and its args."""

    type: str
    args: Tuple[Value, ...] = ()


@dataclass(frozen=True)
class Switch:
    """``target.switch(*args, **kwargs)``; ``catch`` wraps it in ``except Exception``."""

    target: str
    args: Tuple[Value, ...] = ()
    kwargs: Tuple[Tuple[str, Value], ...] = ()
    catch: bool = True


@dataclass(frozen=True)
class Throw:
    """``target.throw(...)`` in one of ``THROW_STYLES``; ``exc`` is None for style ``none``."""

    target: str
    exc: Union[Exc, None] = None
    style: str = "class"
    catch: bool = True


@dataclass(frozen=True)
class Return:
    """``return value`` from ``run``: the value goes to the parent."""

    value: Value = None


@dataclass(frozen=True)
class Raise:
    """``raise exc`` out of ``run``: the exception goes to the parent.  ``cause`` (family
    ``exceptions``) chains it explicitly: ``raise exc from <the exception this greenlet
    handles>`` (``from None`` when it handles none)."""

    exc: Exc
    cause: bool = False


@dataclass(frozen=True)
class Spawn:
    """``registry[name] = greenlet(run_<name>, parent=registry[parent])``.

    ``parent`` None means the constructor's default, the current greenlet; ``subclass``
    creates it from a trivial subclass of the implementation's greenlet class, which
    must behave the same.  ``kind`` (``SPAWN_KINDS``, family ``finalizers``) makes it
    from a subclass that customises more: ``method`` defines ``run`` on the class,
    ``init`` overrides ``__init__`` (taking a tag first) and sets an extra attribute.
    """

    name: str
    parent: Union[str, None] = None
    subclass: bool = False
    kind: str = "plain"


@dataclass(frozen=True)
class Bogus:
    """A non-greenlet value used as a parent (must raise ``TypeError``)."""

    value: Value = None


@dataclass(frozen=True)
class SetParent:
    """``registry[target].parent = registry[parent]`` (or a ``Bogus`` value)."""

    target: str
    parent: Union[str, Bogus]
    catch: bool = True


@dataclass(frozen=True)
class Drop:
    """``del registry[target]``: release the program's reference."""

    target: str


@dataclass(frozen=True)
class Current:
    """Record which greenlet ``getcurrent()`` returns."""


@dataclass(frozen=True)
class Inspect:
    """Record one attribute of a greenlet (see ``INSPECT_ATTRS``)."""

    target: str
    attr: str


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


@dataclass(frozen=True)
class Handle:
    """``try: raise exc`` / ``except <type>:`` and perform ``then`` in the except block.

    While ``then`` runs, ``sys.exc_info()`` is ``exc`` in this greenlet only, whatever
    other greenlets do in between; ``exc``'s ``__context__`` is the exception this
    greenlet was already handling (or None).
    """

    exc: Exc
    then: Tuple[Op, ...] = ()


@dataclass(frozen=True)
class ExcInfo:
    """Record ``sys.exc_info()[1]`` and its ``__context__`` (None when nothing is handled)."""


#: The context variables a program has (fresh ``ContextVar`` objects every run).
CONTEXT_VARS = ("a", "b")


@dataclass(frozen=True)
class CtxSet:
    """``var.set(value)`` in the current greenlet's context."""

    var: str
    value: Value = None


@dataclass(frozen=True)
class CtxGet:
    """Record ``var.get('<unset>')`` as the current greenlet's context has it."""

    var: str


@dataclass(frozen=True)
class CtxCopy:
    """``registry[target].gr_context = contextvars.copy_context()``: the target runs with
    a copy of the current greenlet's context (strategies only do this to a greenlet just
    spawned; re-assigning a started one is a greenlet feature the threaded reference
    implementation cannot offer)."""

    target: str


#: ``Trace`` modes: a tracer that records, one that records and raises, or none; and
#: ``bounce``, one that records and, once per program, switches from inside the callback:
#: on the first switch between two suspended greenlets the program holds, the target
#: (in whose context the callback runs) switches straight back to the origin.
TRACE_MODES = ("record", "raise", "off", "bounce")


@dataclass(frozen=True)
class Trace:
    """``greenlet.settrace(...)`` with the program's tracer for ``mode``; records which
    mode the previous tracer had.  The tracer records every ``switch``/``throw`` event it
    is called with, in the greenlet it runs in (the target)."""

    mode: str = "record"


@dataclass(frozen=True)
class InThread:
    """Start a thread, perform ``then`` in it (its own main greenlet is current there),
    join it; records whether the thread's main greenlet is dead once the thread ended.

    Only ops that need no greenlet of this thread to run are allowed in ``then``:
    switches and throws (into this thread's greenlets: ``greenlet.error``, caught),
    ``Inspect``, ``Current``, ``Drop`` (a suspended greenlet freed there is killed when
    this thread next calls greenlet: the runtime calls ``getcurrent()`` right after the
    join, and records ``alive`` then), ``ThreadParent`` and ``Orphan``.  With orphans,
    an ``orphans`` event follows the ``thread`` one.
    """

    then: Tuple[Op, ...] = ()


@dataclass(frozen=True)
class ThreadParent:
    """In an ``InThread`` block: ``registry[target].parent = getcurrent()``, a greenlet of
    another thread (the thread's main).  A started greenlet refuses (``ValueError``,
    greenlet's test_threaded_reparent), main has no parent to set; an unstarted one takes
    it, and from then on cannot be switched to (``greenlet.error``).  No switch or throw
    may follow it in its block (the greenlet would start in that thread)."""

    target: str
    catch: bool = True


@dataclass(frozen=True)
class Orphan:
    """In an ``InThread`` block: start a greenlet of that thread that parks (switches back
    to the thread's main) in ``try/finally``, kept by the runtime so that it outlives the
    thread.  Once the thread's main greenlet reports dead, the ``orphans`` event records
    (how many are dead, how many ran ``finally``, how many outlive the runtime dropping
    them): greenlet kills nothing of a dead thread and frees it all."""


@dataclass(frozen=True)
class Finally:
    """``try: then[:split]`` / ``finally: then[split:]``.  The finally block first records
    a ``finally`` event: None when the try part ended normally, else the exception
    leaving it, its ``__cause__`` and the ``run_*`` functions its traceback passes
    through, outermost first (``runtime.in_flight``), including when that is the
    ``GreenletExit`` of a kill.  The finally part may only switch, throw, inspect and ask
    for the current greenlet (``FINALLY_OPS``)."""

    then: Tuple[Op, ...] = ()
    split: int = 0


@dataclass(frozen=True)
class Frames:
    """Record the functions on ``target``'s stack: ``gr_frame`` and its ``f_back`` chain,
    innermost first, down to ``run_<target>`` (None when ``gr_frame`` is None).

    Only the program's own functions are listed (``runtime.frame_names``), so that an
    implementation's Python-level ``switch`` or bootstrap frames do not count.
    """

    target: str


@dataclass(frozen=True)
class Finalize:
    """Attach a finalizer (``FINALIZER_KINDS``) to greenlet ``target`` that performs
    ``then`` when the greenlet is freed: in whichever greenlet dropped the last
    reference, after the ``GreenletExit`` a suspended one gets, before its parent link
    is released.  Records ``finalizer`` (who runs it) first and ``finalized`` last.

    Only switches and throws that catch, ``Inspect`` and ``Current`` may be nested: a
    finalizer cannot return, and what it raises is unraisable.
    """

    target: str
    kind: str = "weakref"
    then: Tuple[Op, ...] = ()


@dataclass(frozen=True)
class Resurrect:
    """``try: then`` / ``except GreenletExit:`` register this greenlet in the registry
    again (resurrecting it when the GreenletExit is a kill: greenlet_gc, "The greenlet is
    expected to either die or be resurrected by having a new reference to it stored
    somewhere"), record its parent then (``resurrected``), ``target.switch()`` and go on
    after the block once switched back to.  Only in a spawned greenlet's script.
    """

    target: str = MAIN
    then: Tuple[Op, ...] = ()


Op = Union[Switch, Throw, Return, Raise, Spawn, SetParent, Drop, Current, Inspect, Recurse,
           Frames, Handle, ExcInfo, CtxSet, CtxGet, CtxCopy, Trace, InThread, Finalize,
           ThreadParent, Orphan, Finally, Resurrect]
OP_TYPES: Dict[str, type] = {
    cls.__name__: cls
    for cls in (Switch, Throw, Return, Raise, Spawn, SetParent, Drop, Current, Inspect,
                Recurse, Frames, Handle, ExcInfo, CtxSet, CtxGet, CtxCopy, Trace, InThread,
                Finalize, ThreadParent, Orphan, Finally, Resurrect)
}
#: Ops that hold a block of nested ops (``then``).
BLOCKS = (Recurse, Handle, InThread, Finalize, Finally, Resurrect)
#: What the finally part of a ``Finally`` may do: it runs while an exception is in
#: flight too (a kill's GreenletExit), where ``sys.exc_info()`` and raising differ
#: between interpreters, so no handlers, raises or exception reads.
FINALLY_OPS = (Switch, Throw, Inspect, Current)

#: Families of operations (``greenfuzz.strategies.programs(families=...)``, ``--families``): the
#: core switch graph is what every program is made of; the others add ops to it.
FAMILIES = ("core", "stack", "frames", "exceptions", "contextvars", "tracing", "threads",
            "finalizers")
_FAMILY_OF = {Recurse: "stack", Frames: "frames", Handle: "exceptions", ExcInfo: "exceptions",
              CtxSet: "contextvars", CtxGet: "contextvars", CtxCopy: "contextvars",
              Trace: "tracing", InThread: "threads", Finalize: "finalizers",
              Resurrect: "finalizers", ThreadParent: "threads", Orphan: "threads",
              Finally: "exceptions"}
#: The optional parts of the API (``greenfuzz.harness.execution.implementations.OPTIONAL``) a
#: family needs:
#: without them its programs are not drawn.
FAMILY_NEEDS = {"tracing": ("settrace", "gettrace")}


def family(op: Op) -> str:
    """The family an op belongs to."""
    if (isinstance(op, Throw) and op.style == "exc_info") or \
            (isinstance(op, Raise) and op.cause):
        return "exceptions"
    if (isinstance(op, Spawn) and op.kind != "plain") or \
            (isinstance(op, Inspect) and op.attr in SUBCLASS_ATTRS):
        return "finalizers"
    return _FAMILY_OF.get(type(op), "core")


def walk(script: Sequence[Op]) -> Iterator[Op]:
    """Every op of a script in execution order, nested ones (``then`` of ``BLOCKS``)
    included."""
    for op in script:
        yield op
        if isinstance(op, BLOCKS):
            yield from walk(op.then)


def flatten(script: Sequence[Op]) -> Tuple[Op, ...]:
    """The script as the runtime numbers it: op index ``pc`` in events is an index here."""
    return tuple(walk(script))


def span(op: Op) -> int:
    """How many entries ``op`` takes in ``flatten``: itself and everything nested in it."""
    return 1 + sum(span(o) for o in op.then) if isinstance(op, BLOCKS) else 1


def frames_used(program: Program) -> int:
    """Python frames all recursions of ``program`` take together (see ``FRAME_BUDGET``)."""
    return sum((op.depth + 1) * LEVEL_FRAMES[op.via]
               for _, script in program.scripts() for op in walk(script)
               if isinstance(op, Recurse))


def program_families(program: Program) -> Tuple[str, ...]:
    """The families whose ops ``program`` contains (always ``core``)."""
    found = {family(op) for _, script in program.scripts() for op in walk(script)}
    return tuple(f for f in FAMILIES if f == "core" or f in found)

#: Ops that name another greenlet, and the field(s) that do.
REFERENCING_FIELDS = {
    Switch: ("target",),
    Throw: ("target",),
    Spawn: ("parent",),
    SetParent: ("target", "parent"),
    Drop: ("target",),
    Inspect: ("target",),
    Frames: ("target",),
    CtxCopy: ("target",),
    Finalize: ("target",),
    Resurrect: ("target",),
    ThreadParent: ("target",),
}


@dataclass(frozen=True)
class Program:
    """A switch graph: main's script and each spawned greenlet's script, by name."""

    main: Tuple[Op, ...] = ()
    greenlets: Tuple[Tuple[str, Tuple[Op, ...]], ...] = ()
    meta: Tuple[Tuple[str, Value], ...] = field(default=(), compare=False)

    def script(self, name: str) -> Tuple[Op, ...]:
        if name == MAIN:
            return self.main
        for gname, script in self.greenlets:
            if gname == name:
                return script
        raise KeyError(name)

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(name for name, _ in self.greenlets)

    def scripts(self) -> Tuple[Tuple[str, Tuple[Op, ...]], ...]:
        return ((MAIN, self.main), *self.greenlets)

    def size(self) -> int:
        """Total number of operations, nested ones included: what shrinking minimises."""
        return sum(len(flatten(script)) for _, script in self.scripts())

    def validate(self) -> None:
        """Raise ``ProgramError`` unless the program is well formed (see module docstring)."""
        names = self.names
        if len(set(names)) != len(names) or MAIN in names:
            raise ProgramError("greenlet names must be unique and not 'main'")
        known = {MAIN, *names}
        spawned_by: Dict[str, str] = {}
        for owner, script in self.scripts():
            for op in walk(script):
                if type(op) not in OP_TYPES.values():
                    raise ProgramError(f"{owner}: not an operation: {op!r}")
                _validate_op(owner, op, known)
                if isinstance(op, Spawn):
                    if op.name in spawned_by:
                        raise ProgramError(f"{op.name} is spawned twice")
                    spawned_by[op.name] = owner
        order = {MAIN: -1, **{name: i for i, name in enumerate(names)}}
        for child, owner in spawned_by.items():
            if order[owner] >= order[child]:
                raise ProgramError(f"{child} must be spawned by main or an earlier greenlet")
        for owner, script in self.scripts():
            _check_thread_only(owner, script)
        if frames_used(self) > FRAME_BUDGET:
            raise ProgramError(f"recursions take {frames_used(self)} frames, more than "
                               f"{FRAME_BUDGET}")

    # -- serialisation -------------------------------------------------------------

    def to_json(self) -> Dict[str, Any]:
        return {
            "format": "greenfuzz-program/1",
            "main": [op_to_json(op) for op in self.main],
            "greenlets": {name: [op_to_json(op) for op in s] for name, s in self.greenlets},
            "meta": {k: encode_value(v) for k, v in self.meta},
        }

    @classmethod
    def from_json(cls, data: Any) -> Program:
        """Build a program from ``to_json`` output; ``ProgramError`` on anything else."""
        if not isinstance(data, dict) or data.get("format") != "greenfuzz-program/1":
            raise ProgramError("not a greenfuzz program (missing format 'greenfuzz-program/1')")
        try:
            main = tuple(op_from_json(op) for op in data["main"])
            greenlets = tuple(
                (str(name), tuple(op_from_json(op) for op in script))
                for name, script in data["greenlets"].items()
            )
            meta = tuple((str(k), decode_value(v)) for k, v in data.get("meta", {}).items())
        except ProgramError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ProgramError(f"malformed program: {type(e).__name__}: {e}") from None
        program = cls(main=main, greenlets=greenlets, meta=meta)
        program.validate()
        return program

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def loads(cls, text: str) -> Program:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProgramError(f"not valid JSON: {e}") from None
        return cls.from_json(data)


class ProgramError(ValueError):
    """A program (or its JSON) is malformed; the message says how."""


def _check_thread_only(owner: str, script: Sequence[Op]) -> None:
    """``ThreadParent`` and ``Orphan`` only make sense directly in an ``InThread`` block."""
    for op in script:
        if isinstance(op, (ThreadParent, Orphan)):
            raise ProgramError(f"{owner}: {type(op).__name__} only in a thread")
        if isinstance(op, BLOCKS) and not isinstance(op, InThread):
            _check_thread_only(owner, op.then)


def _validate_op(owner: str, op: Op, known: set) -> None:
    for fname in REFERENCING_FIELDS.get(type(op), ()):
        ref = getattr(op, fname)
        if ref is None or isinstance(ref, Bogus):
            continue
        if ref not in known:
            raise ProgramError(f"{owner}: {type(op).__name__} names unknown greenlet {ref!r}")
    if isinstance(op, Inspect) and op.attr not in INSPECT_ATTRS + SUBCLASS_ATTRS:
        raise ProgramError(f"{owner}: unknown attribute {op.attr!r}")
    if isinstance(op, Throw):
        if op.style not in THROW_STYLES:
            raise ProgramError(f"{owner}: unknown throw style {op.style!r}")
        if (op.style in ("none", "exc_info")) != (op.exc is None):
            raise ProgramError(f"{owner}: throw styles 'none' and 'exc_info' (only they) "
                               "go with no exception")
    for exc in (getattr(op, "exc", None),):
        if exc is not None and exc.type not in EXCEPTION_TYPES:
            raise ProgramError(f"{owner}: unknown exception type {exc.type!r}")
    if isinstance(op, Spawn) and op.name in (MAIN, owner):
        raise ProgramError(f"{owner}: cannot spawn {op.name!r}")
    if isinstance(op, Recurse):
        if op.via not in VIAS:
            raise ProgramError(f"{owner}: unknown via {op.via!r}")
        if not (isinstance(op.depth, int) and 0 <= op.depth <= MAX_DEPTH[op.via]):
            raise ProgramError(f"{owner}: depth via {op.via} must be 0 to "
                               f"{MAX_DEPTH[op.via]}, not {op.depth!r}")
        if not isinstance(op.salt, int):
            raise ProgramError(f"{owner}: salt must be an int")
    if isinstance(op, BLOCKS) and any(isinstance(o, Return) for o in op.then):
        # ``return`` would leave a level function, not run(), and a return inside an
        # except block is no different from one outside: kept out of blocks.
        raise ProgramError(f"{owner}: no return inside a recursion or handler")
    if isinstance(op, InThread):
        reparented = False
        for o in op.then:
            if not isinstance(o, (Switch, Throw, Inspect, Current, Drop, ThreadParent, Orphan)):
                raise ProgramError(f"{owner}: {type(o).__name__} cannot run in a thread")
            if isinstance(o, (Switch, Throw)) and not o.catch:
                raise ProgramError(f"{owner}: switches in a thread must catch")
            if isinstance(o, Throw) and o.style == "exc_info":
                raise ProgramError(f"{owner}: no throw(*sys.exc_info()) in a thread")
            if isinstance(o, (Switch, Throw)) and reparented:
                # An unstarted greenlet given this thread's main as parent would start
                # here, in the other thread: not what the op is about.
                raise ProgramError(f"{owner}: no switch or throw after a ThreadParent")
            reparented = reparented or isinstance(o, ThreadParent)
    if isinstance(op, ThreadParent) and not op.catch:
        raise ProgramError(f"{owner}: a ThreadParent must catch")
    if isinstance(op, Finally):
        if not (isinstance(op.split, int) and 0 <= op.split <= len(op.then)):
            raise ProgramError(f"{owner}: Finally split must be 0 to {len(op.then)}")
        for o in op.then[op.split:]:
            if not isinstance(o, FINALLY_OPS) or \
                    (isinstance(o, Throw) and o.style == "exc_info"):
                raise ProgramError(f"{owner}: {type(o).__name__} cannot be in a finally block")
    if isinstance(op, Trace) and op.mode not in TRACE_MODES:
        raise ProgramError(f"{owner}: unknown trace mode {op.mode!r}")
    if isinstance(op, (CtxSet, CtxGet)) and op.var not in CONTEXT_VARS:
        raise ProgramError(f"{owner}: unknown context variable {op.var!r}")
    if isinstance(op, Spawn):
        if op.kind not in SPAWN_KINDS:
            raise ProgramError(f"{owner}: unknown spawn kind {op.kind!r}")
        if op.subclass and op.kind != "plain":
            raise ProgramError(f"{owner}: spawn kind {op.kind!r} is its own subclass")
    if isinstance(op, Finalize):
        if op.kind not in FINALIZER_KINDS:
            raise ProgramError(f"{owner}: unknown finalizer kind {op.kind!r}")
        if op.target == MAIN:
            # The main greenlet outlives the program: its finalizer would run in a later one.
            raise ProgramError(f"{owner}: no finalizer on main")
        for o in op.then:
            if not isinstance(o, (Switch, Throw, Inspect, Current)):
                raise ProgramError(f"{owner}: {type(o).__name__} cannot run in a finalizer")
            if isinstance(o, (Switch, Throw)) and not o.catch:
                raise ProgramError(f"{owner}: switches in a finalizer must catch")
            if isinstance(o, Throw) and o.style == "exc_info":
                raise ProgramError(f"{owner}: no throw(*sys.exc_info()) in a finalizer")
    if isinstance(op, Resurrect):
        if owner == MAIN:
            raise ProgramError(f"{owner}: main cannot resurrect (it is never collected)")
        for o in walk(op.then):
            # A GreenletExit raised in the block would be caught too; a finally part
            # running inside the handler's try is not modelled.
            if isinstance(o, Finally) or \
                    (isinstance(o, Raise) and o.exc.type == "GreenletExit"):
                raise ProgramError(f"{owner}: no finally block or raise of GreenletExit "
                                   "in a Resurrect")
    if isinstance(op, Handle) and op.exc.type == "GreenletExit":
        raise ProgramError(f"{owner}: a handler cannot handle GreenletExit")


# -- JSON codec for values and ops -------------------------------------------------------
#
# JSON has no tuples and no non-string keys, and the trace must keep tuple/list/dict
# apart (switch() packing is all about them), so values are tagged where JSON is
# ambiguous.  The codec is the runtime's, which reproducers carry with them.

encode_value = runtime.encode


def decode_value(data: Any) -> Value:
    try:
        return runtime.decode(data)
    except (ValueError, TypeError, AttributeError, IndexError) as e:
        raise ProgramError(f"cannot decode value {data!r}: {e}") from None


def op_to_json(op: Op) -> Dict[str, Any]:
    out: Dict[str, Any] = {"op": type(op).__name__}
    for f in fields(op):
        value = getattr(op, f.name)
        if isinstance(value, Exc):
            value = {"type": value.type, "args": encode_value(value.args)}
        elif isinstance(value, Bogus):
            value = {"bogus": encode_value(value.value)}
        elif f.name == "kwargs":
            value = {k: encode_value(v) for k, v in value}
        elif f.name == "then":
            value = [op_to_json(o) for o in value]
        else:
            value = encode_value(value)
        out[f.name] = value
    return out


def op_from_json(data: Any) -> Op:
    if not isinstance(data, dict) or "op" not in data:
        raise ProgramError(f"not an operation: {data!r}")
    cls = OP_TYPES.get(data["op"])
    if cls is None:
        raise ProgramError(f"unknown operation {data['op']!r}")
    kwargs: Dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.name == "exc" and raw is not None:
            kwargs[f.name] = Exc(str(raw["type"]), tuple(decode_value(raw["args"])))
        elif f.name == "parent" and isinstance(raw, dict) and "bogus" in raw:
            kwargs[f.name] = Bogus(decode_value(raw["bogus"]))
        elif f.name == "kwargs":
            kwargs[f.name] = tuple((str(k), decode_value(v)) for k, v in raw.items())
        elif f.name == "then":
            kwargs[f.name] = tuple(op_from_json(o) for o in raw)
        else:
            kwargs[f.name] = decode_value(raw)
    unknown = set(data) - {"op"} - {f.name for f in fields(cls)}
    if unknown:
        raise ProgramError(f"{data['op']}: unknown field(s) {sorted(unknown)}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ProgramError(f"{data['op']}: {e}") from None
