"""Program IR: a switch graph as plain immutable data.

A :class:`Program` names a set of greenlets; each has a script of operations that its
``run`` function performs in order.  ``main`` is the thread's main greenlet and runs the
``main`` script.  Programs are what strategies draw, what the model predicts, what the
runner executes (after :mod:`greenfuzz.harness.execution.render` turns them into Python
source) and what a finding saves as JSON, so everything here is frozen, comparable and
serialisable.  The op types are declared by their families
(:mod:`greenfuzz.harness.families`); validation and the JSON codec ask the registry, and
the built-in ones are re-exported here.

Names are plain strings (``"main"``, ``"g1"``, ...).  A script refers to greenlets by
name; the program's registry holds the one reference that ``Drop`` releases.  Each
non-main greenlet is created by exactly one ``Spawn`` in exactly one script, and only a
script of a greenlet created earlier (or main's) may spawn it: every script then runs at
most once and every program terminates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Tuple

from greenfuzz.harness import families as registry
from greenfuzz.harness.families import (
    MAIN,
    Bogus,
    Exc,
    Op,
    ProgramError,
    Value,
    family_of,
    flatten,
    greenlet_names,
    nested,
    span,
    spec,
    walk,
)
from greenfuzz.harness.families.base import EXCEPTION_TYPES
from greenfuzz.harness.families.contextvars import CONTEXT_VARS, CtxCopy, CtxGet, CtxSet
from greenfuzz.harness.families.core import (
    INSPECT_ATTRS,
    SPAWN_KINDS,
    SUBCLASS_ATTRS,
    THROW_STYLES,
    Current,
    Drop,
    Inspect,
    Raise,
    Return,
    SetParent,
    Spawn,
    Switch,
    Throw,
)
from greenfuzz.harness.families.exceptions import FINALLY_OPS, ExcInfo, Finally, Handle
from greenfuzz.harness.families.finalizers import FINALIZER_KINDS, Finalize, Resurrect
from greenfuzz.harness.families.frames import Frames
from greenfuzz.harness.families.stack import FRAME_BUDGET, LEVEL_FRAMES, MAX_DEPTH, VIAS, Recurse
from greenfuzz.harness.families.threads import InThread, Orphan, ThreadParent
from greenfuzz.harness.families.tracing import TRACE_MODES, Trace
from greenfuzz.harness.target import runtime

__all__ = [
    "BLOCKS",
    "CONTEXT_VARS",
    "EXCEPTION_TYPES",
    "FAMILIES",
    "FAMILY_NEEDS",
    "FINALIZER_KINDS",
    "FINALLY_OPS",
    "FRAME_BUDGET",
    "INSPECT_ATTRS",
    "LEVEL_FRAMES",
    "MAIN",
    "MAX_DEPTH",
    "OP_TYPES",
    "REFERENCING_FIELDS",
    "SPAWN_KINDS",
    "SUBCLASS_ATTRS",
    "THROW_STYLES",
    "TRACE_MODES",
    "VIAS",
    "Bogus",
    "CtxCopy",
    "CtxGet",
    "CtxSet",
    "Current",
    "Drop",
    "Exc",
    "ExcInfo",
    "Finalize",
    "Finally",
    "Frames",
    "Handle",
    "InThread",
    "Inspect",
    "Op",
    "Orphan",
    "Program",
    "ProgramError",
    "Raise",
    "Recurse",
    "Resurrect",
    "Return",
    "SetParent",
    "Spawn",
    "Switch",
    "ThreadParent",
    "Throw",
    "Trace",
    "Value",
    "decode_value",
    "encode_value",
    "family",
    "flatten",
    "frames_used",
    "nested",
    "op_from_json",
    "op_to_json",
    "program_families",
    "span",
    "walk",
]

# The op types live with their families (``greenfuzz.harness.families``); the names
# below are the registry's, at import, for code that names the built-in ones.

#: Every registered op type, by name.
OP_TYPES: Dict[str, type] = registry.op_types()
#: Ops that hold a block of nested ops (``then``).
BLOCKS = tuple(s.cls for f in registry.registered() for s in f.ops if s.block)
#: Ops that name another greenlet, and the field(s) that do.
REFERENCING_FIELDS = {s.cls: s.names for f in registry.registered() for s in f.ops if s.names}
#: Families of operations (``greenfuzz.strategies.programs(families=...)``, ``--families``):
#: the core switch graph is what every program is made of; the others add ops to it.
FAMILIES = registry.names()
#: The optional parts of the API (``greenfuzz.harness.execution.implementations.OPTIONAL``)
#: a family needs: without them its programs are not drawn.
FAMILY_NEEDS = {f.name: f.needs for f in registry.registered() if f.needs}

family = family_of


def frames_used(program: Program) -> int:
    """Python frames all recursions of ``program`` take together (see ``FRAME_BUDGET``)."""
    from greenfuzz.harness.families.stack import frames_used as used
    return used(program.scripts())


def program_families(program: Program) -> Tuple[str, ...]:
    """The families whose ops ``program`` contains (always ``core``)."""
    found = {family_of(op) for _, script in program.scripts() for op in walk(script)}
    return tuple(f for f in registry.names() if f == "core" or f in found)


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
            _validate_script(owner, script, known, None)
            for op in walk(script):
                if isinstance(op, Spawn):
                    if op.name in spawned_by:
                        raise ProgramError(f"{op.name} is spawned twice")
                    spawned_by[op.name] = owner
        order = {MAIN: -1, **{name: i for i, name in enumerate(names)}}
        for child, owner in spawned_by.items():
            if order[owner] >= order[child]:
                raise ProgramError(f"{child} must be spawned by main or an earlier greenlet")
        for family_ in registry.registered():
            if family_.check is not None:
                family_.check(self.scripts())

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


def _validate_script(owner: str, script: Any, known: set, block: Any) -> None:
    """Validate each op of ``script`` (directly in ``block``, None at the top) and the
    ops nested in it: the names it uses, its exception, its family's own rule, where it
    may appear, and no ``return`` inside a block (it would leave a level function, not
    ``run``; and one in an except block is no different from one outside)."""
    for op in script:
        rule = spec(op)
        for ref in greenlet_names(op):
            if ref not in known:
                raise ProgramError(f"{owner}: {type(op).__name__} names unknown greenlet "
                                   f"{ref!r}")
        exc = getattr(op, "exc", None)
        if isinstance(exc, Exc) and exc.type not in EXCEPTION_TYPES:
            raise ProgramError(f"{owner}: unknown exception type {exc.type!r}")
        if rule.only_in is not None and not isinstance(block, rule.only_in):
            raise ProgramError(f"{owner}: {type(op).__name__} only directly in "
                               f"{rule.only_in.__name__} blocks")
        if rule.validate is not None:
            rule.validate(owner, op)
        if rule.block:
            if any(isinstance(o, Return) for o in op.then):
                raise ProgramError(f"{owner}: no return inside a recursion or handler")
            _validate_script(owner, op.then, known, op)


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
    cls = registry.op_types().get(data["op"])
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
