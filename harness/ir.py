"""Program IR: a switch graph as plain immutable data.

A :class:`Program` names a set of greenlets; each has a script of operations that its
``run`` function performs in order.  ``main`` is the thread's main greenlet and runs the
``main`` script.  Programs are what strategies draw, what the model predicts, what the
runner executes (after :mod:`harness.render` turns them into Python source) and what a
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

from harness import runtime

#: Plain data passed through switches: None, bool, int, str, tuples and str-keyed dicts.
Value = Any

MAIN = "main"

#: Exception types a program may raise or throw. ``FuzzError`` is defined by the runtime;
#: ``GreenletExit`` is the implementation's own.
EXCEPTION_TYPES = ("ValueError", "KeyError", "RuntimeError", "FuzzError", "GreenletExit")

#: Attributes an ``Inspect`` may read (``bool`` is ``bool(g)``, ``gr_frame`` is
#: ``g.gr_frame is None``, ``run`` is ``hasattr(g, "run")``).
INSPECT_ATTRS = ("dead", "bool", "parent", "gr_frame", "run")

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
    """``raise exc`` out of ``run``: the exception goes to the parent."""

    exc: Exc


@dataclass(frozen=True)
class Spawn:
    """``registry[name] = greenlet(run_<name>, parent=registry[parent])``.

    ``parent`` None means the constructor's default, the current greenlet; ``subclass``
    creates it from a trivial subclass of the implementation's greenlet class, which
    must behave the same.
    """

    name: str
    parent: Union[str, None] = None
    subclass: bool = False


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


#: ``Trace`` modes: a tracer that records, one that records and raises, or none.
TRACE_MODES = ("record", "raise", "off")


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

    Only ops that need no greenlet of that thread are allowed in ``then``: switches and
    throws (into this thread's greenlets: ``greenlet.error``, caught), ``Inspect`` and
    ``Current``.
    """

    then: Tuple[Op, ...] = ()


@dataclass(frozen=True)
class Frames:
    """Record the functions on ``target``'s stack: ``gr_frame`` and its ``f_back`` chain,
    innermost first, down to ``run_<target>`` (None when ``gr_frame`` is None).

    Only the program's own functions are listed (``runtime.frame_names``), so that an
    implementation's Python-level ``switch`` or bootstrap frames do not count.
    """

    target: str


Op = Union[Switch, Throw, Return, Raise, Spawn, SetParent, Drop, Current, Inspect, Recurse,
           Frames, Handle, ExcInfo, CtxSet, CtxGet, CtxCopy, Trace, InThread]
OP_TYPES: Dict[str, type] = {
    cls.__name__: cls
    for cls in (Switch, Throw, Return, Raise, Spawn, SetParent, Drop, Current, Inspect,
                Recurse, Frames, Handle, ExcInfo, CtxSet, CtxGet, CtxCopy, Trace, InThread)
}
#: Ops that hold a block of nested ops (``then``).
BLOCKS = (Recurse, Handle, InThread)

#: Families of operations (``strategies.programs(families=...)``, ``--families``): the
#: core switch graph is what every program is made of; the others add ops to it.
FAMILIES = ("core", "stack", "frames", "exceptions", "contextvars", "tracing", "threads")
_FAMILY_OF = {Recurse: "stack", Frames: "frames", Handle: "exceptions", ExcInfo: "exceptions",
              CtxSet: "contextvars", CtxGet: "contextvars", CtxCopy: "contextvars",
              Trace: "tracing", InThread: "threads"}
#: The optional parts of the API (``harness.implementations.OPTIONAL``) a family needs:
#: without them its programs are not drawn.
FAMILY_NEEDS = {"tracing": ("settrace", "gettrace")}


def family(op: Op) -> str:
    """The family an op belongs to."""
    if isinstance(op, Throw) and op.style == "exc_info":
        return "exceptions"
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


def _validate_op(owner: str, op: Op, known: set) -> None:
    for fname in REFERENCING_FIELDS.get(type(op), ()):
        ref = getattr(op, fname)
        if ref is None or isinstance(ref, Bogus):
            continue
        if ref not in known:
            raise ProgramError(f"{owner}: {type(op).__name__} names unknown greenlet {ref!r}")
    if isinstance(op, Inspect) and op.attr not in INSPECT_ATTRS:
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
        for o in op.then:
            if not isinstance(o, (Switch, Throw, Inspect, Current)):
                raise ProgramError(f"{owner}: {type(o).__name__} cannot run in a thread")
            if isinstance(o, (Switch, Throw)) and not o.catch:
                raise ProgramError(f"{owner}: switches in a thread must catch")
            if isinstance(o, Throw) and o.style == "exc_info":
                raise ProgramError(f"{owner}: no throw(*sys.exc_info()) in a thread")
    if isinstance(op, Trace) and op.mode not in TRACE_MODES:
        raise ProgramError(f"{owner}: unknown trace mode {op.mode!r}")
    if isinstance(op, (CtxSet, CtxGet)) and op.var not in CONTEXT_VARS:
        raise ProgramError(f"{owner}: unknown context variable {op.var!r}")
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
