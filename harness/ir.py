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
from typing import Any, Dict, Tuple, Union

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

#: How a ``Throw`` spells its exception: ``g.throw()``, ``g.throw(T)``, ``g.throw(T, *args)``
#: or ``g.throw(T(*args))``.
THROW_STYLES = ("none", "class", "class_args", "instance")


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


Op = Union[Switch, Throw, Return, Raise, Spawn, SetParent, Drop, Current, Inspect]
OP_TYPES: Dict[str, type] = {
    cls.__name__: cls
    for cls in (Switch, Throw, Return, Raise, Spawn, SetParent, Drop, Current, Inspect)
}

#: Ops that name another greenlet, and the field(s) that do.
REFERENCING_FIELDS = {
    Switch: ("target",),
    Throw: ("target",),
    Spawn: ("parent",),
    SetParent: ("target", "parent"),
    Drop: ("target",),
    Inspect: ("target",),
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
        """Total number of operations: what shrinking minimises."""
        return sum(len(script) for _, script in self.scripts())

    def validate(self) -> None:
        """Raise ``ProgramError`` unless the program is well formed (see module docstring)."""
        names = self.names
        if len(set(names)) != len(names) or MAIN in names:
            raise ProgramError("greenlet names must be unique and not 'main'")
        known = {MAIN, *names}
        spawned_by: Dict[str, str] = {}
        for owner, script in self.scripts():
            for op in script:
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
        if (op.style == "none") != (op.exc is None):
            raise ProgramError(f"{owner}: throw style 'none' goes with no exception")
    for exc in (getattr(op, "exc", None),):
        if exc is not None and exc.type not in EXCEPTION_TYPES:
            raise ProgramError(f"{owner}: unknown exception type {exc.type!r}")
    if isinstance(op, Spawn) and op.name in (MAIN, owner):
        raise ProgramError(f"{owner}: cannot spawn {op.name!r}")


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
        else:
            kwargs[f.name] = decode_value(raw)
    unknown = set(data) - {"op"} - {f.name for f in fields(cls)}
    if unknown:
        raise ProgramError(f"{data['op']}: unknown field(s) {sorted(unknown)}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ProgramError(f"{data['op']}: {e}") from None
