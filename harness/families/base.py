"""What every family builds on: plain values, the op registry, nested-index layout, and
the helpers that render ops as source.

An op type is declared once, by an :class:`OpSpec` in its family's module: which fields
name greenlets, how it is validated, described (``op_comment``), rendered and performed
by the model, and whether it holds a block of nested ops (``then``).  Everything that
walks programs (validation, the codec, the renderer, the model, the strategies, the
minimizer) asks the registry, so no other module lists op types.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from greenfuzz.harness.families.genes import SearchStrategy

if TYPE_CHECKING:  # type-only: the model sits above the families

    from greenfuzz.harness.families.deliveries import Delivery, Flying, Throwing
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG

#: Plain data passed through switches: None, bool, int, str, tuples and str-keyed dicts.
Value = Any
#: Any op: an instance of a type some family registered.
Op = Any
Script = Tuple[Op, ...]
#: A program's scripts, main's first: ``((name, script), ...)``.
Scripts = Sequence[Tuple[str, Script]]

MAIN = "main"

#: Exception types a program may raise or throw. ``FuzzError`` is defined by the runtime;
#: ``GreenletExit`` is the implementation's own.
EXCEPTION_TYPES = ("ValueError", "KeyError", "RuntimeError", "FuzzError", "GreenletExit")


class ProgramError(ValueError):
    """A program (or its JSON) is malformed; the message says how."""


@dataclass(frozen=True)
class Exc:
    """An exception to raise or throw: a type name from ``EXCEPTION_TYPES`` and its args."""

    type: str
    args: Tuple[Value, ...] = ()


@dataclass(frozen=True)
class Bogus:
    """A non-greenlet value used as a parent (must raise ``TypeError``)."""

    value: Value = None


# -- the registry ----------------------------------------------------------------------

#: ``validate(owner, op)``: raise ``ProgramError`` unless ``op`` is well formed in
#: ``owner``'s script (names are checked by the registry, from ``OpSpec.names``).
Validate = Callable[[str, Op], None]
#: ``render(emitter, who, pc, op)``: the source lines that perform ``op`` at flat index
#: ``pc`` of ``who``'s script (``Emitter.nested`` renders its block).
Render = Callable[["Emitter", str, int, Op], List[str]]
#: ``perform(model, g, op)``: the model rule of a non-block op, in running greenlet ``g``.
Perform = Callable[["Model", "MG", Op], None]


@dataclass(frozen=True)
class PlainSpec:
    """How an op is written in a plain reproducer (``plainwriter``, assembled by
    ``harness/reporting/plain.py``): ``render(writer, who, pc, op)`` gives the lines
    and whether the script goes on after them.

    ``binds(op, who)``: the greenlet globals the op binds or deletes in the function of
    ``who`` (which declares them ``global``); ``inline``: a block whose ops are written
    in that same function (not in a function of their own); ``suspends``: control may
    stop at the op without an event for it (a switch, a return); ``needs(op)``: helpers
    the file must have before any op is written (names a spawn registers, say)."""

    render: Callable[[Any, str, int, Op], Tuple[List[str], bool]]
    binds: Optional[Callable[[Op, str], Tuple[str, ...]]] = None
    inline: bool = False
    suspends: bool = False
    needs: Optional[Callable[[Op], Tuple[str, ...]]] = None


@dataclass(frozen=True)
class OpSpec:
    """Everything about one op type, declared once.

    ``statement`` and ``result`` render the common shape (one statement whose outcome is
    recorded as ``result``, see ``statement_lines``); ``render`` replaces it for ops
    with their own shape (blocks, ``Return``).  Block ops (``then``) may hook into the
    model's step loop: ``enter`` when the block starts, ``before`` ahead of each of its
    steps (True: that step was taken), ``ended`` when its ops are done (True: recorded
    its own end), ``unwinding`` when an exception leaves it (True: intercepted),
    ``leave`` whenever it is left; ``frame`` says it runs in a Python frame of its own.
    ``only_in``: the block type it may only appear (directly) in; ``ends_script``: no op
    after it at the top level of a script runs (``return``, ``raise``); ``plain``: how a
    plain reproducer writes it (``PlainSpec``).
    """

    cls: type
    comment: Callable[[Op], str]
    names: Tuple[str, ...] = ()
    validate: Optional[Validate] = None
    statement: Optional[Callable[[Op], str]] = None
    result: str = "done"
    render: Optional[Render] = None
    perform: Optional[Perform] = None
    only_in: Optional[type] = None
    ends_script: bool = False
    frame: bool = False
    enter: Optional[Callable[[Model, MG, Op], None]] = None
    before: Optional[Callable[[Model, MG, int, Op], bool]] = None
    ended: Optional[Callable[[Model, MG, int, Op], bool]] = None
    unwinding: Optional[Callable[[Model, MG, int, Op, Flying], bool]] = None
    leave: Optional[Callable[[Model, MG, int, Op], None]] = None
    #: ``remap(op, f)``: the block with ``f`` applied to each part of its ``then``
    #: (default: to the whole of it; ``Finally`` maps its two parts apart).
    remap: Optional[Callable[[Op, Callable[[Script], Script]], Op]] = None
    #: How a plain reproducer writes the op (None: its file stops before it).
    plain: Optional[PlainSpec] = None

    @property
    def block(self) -> bool:
        return "then" in getattr(self.cls, "__dataclass_fields__", {})


@dataclass
class Drawing:
    """What ``greenfuzz.strategies.programs`` is drawing, for a family's decorations:
    Hypothesis's ``draw``, the program's greenlet names (main first), the families
    drawn, and the ``ops`` strategy function (for nested ops)."""

    draw: Callable[[SearchStrategy], Any]
    targets: Tuple[str, ...]
    families: Tuple[str, ...]
    ops: Callable[..., SearchStrategy]


@dataclass(frozen=True)
class Decorations:
    """A family's hooks into ``programs()``, beyond the ops it adds to scripts.

    For each spawned greenlet ``name``: ``spawn(d, op)`` may change its ``Spawn``;
    ``after_spawn(d, name)`` gives ops to put right after it; if main kicks it off,
    ``kick(d, op)`` may wrap the kick-off switch and ``after_kick(d, name, main, at,
    own)`` may insert ops in main's script (the kick-off is at ``at``) or its own
    (``own``).  Wrapping and inserting run last family first, so that an earlier
    family's wrapper or insertion ends up outermost or nearest the kick-off.  Once the
    scripts are drawn, ``adjust(scripts)`` may change them (before the program is
    built); ``finish(d, program, predict)`` may change the program.  ``tame(owner,
    script)`` removes what makes the model give up (``Unsupported``); programs the
    model cannot predict are tamed family by family, and rejected if that is not
    enough."""

    spawn: Optional[Callable[[Drawing, Op], Op]] = None
    after_spawn: Optional[Callable[[Drawing, str], List[Op]]] = None
    kick: Optional[Callable[[Drawing, Op], Op]] = None
    after_kick: Optional[Callable[[Drawing, str, List[Op], int, List[Op]], None]] = None
    adjust: Optional[Callable[[List[Tuple[str, Script]]], List[Tuple[str, Script]]]] = None
    finish: Optional[Callable[[Drawing, Any, Callable[[Any], Any]], Any]] = None
    tame: Optional[Callable[[str, Script], Script]] = None


@dataclass(frozen=True)
class Family:
    """A family of ops: its op types, its strategy fragment and its hooks into the model
    and the program.  Only ``name`` and ``ops`` are required.

    Strategies: ``draw(targets, families, terminal)`` returns the op strategies this
    family adds to ``ops()`` (repeat one to weigh it); ``claims(op)`` marks ops of another
    family's type that belong to this one (``Throw`` in style ``exc_info``, say);
    ``decorate`` hooks into ``programs()`` (see ``greenfuzz.strategies``).

    Model (``greenfuzz.harness.model``): ``state()`` makes the family's per-program state
    (``model.ext[name]``); the other hooks are called by the model core where the
    family may change what happens (each says whether it took over, see ``Model``).
    Program: ``check(scripts)`` validates a whole program; ``main_context(scripts)``
    asks for main to run in a copy of the context; ``cleanup(scripts)`` gives lines to
    run when main's script ends.  ``needs``: optional API parts the family requires.
    """

    name: str
    ops: Tuple[OpSpec, ...] = ()
    draw: Optional[Callable[..., List[SearchStrategy]]] = None
    claims: Optional[Callable[[Op], bool]] = None
    decorate: Decorations = Decorations()
    needs: Tuple[str, ...] = ()
    check: Optional[Callable[[Scripts], None]] = None
    main_context: Optional[Callable[[Scripts], bool]] = None
    cleanup: Optional[Callable[[Scripts], List[str]]] = None
    state: Optional[Callable[[], object]] = None
    collecting: Optional[Callable[[Model, MG], bool]] = None
    freeing: Optional[Callable[[Model, MG, Optional[MG]], bool]] = None
    killing: Optional[Callable[[Model, MG], None]] = None
    dying: Optional[Callable[[Model, MG], bool]] = None
    switching: Optional[Callable[[Model, str, MG, MG], Optional[Throwing]]] = None
    entering: Optional[Callable[[Model, MG, Delivery, MG], bool]] = None
    resuming: Optional[Callable[[Model, MG, Delivery], Delivery]] = None
    receiving: Optional[Callable[[Model, MG, Delivery], bool]] = None
    stepping: Optional[Callable[[Model, MG], bool]] = None
    uncaught: Optional[Callable[[Model, MG, Any], bool]] = None
    main_finished: Optional[Callable[[Model], None]] = None
    busy: Optional[Callable[[Model, MG], bool]] = None


_FAMILIES: Dict[str, Family] = {}
_SPECS: Dict[type, OpSpec] = {}
_OWNER: Dict[type, str] = {}
#: ``hooks(name)`` results, computed once per registration (the model asks on every step).
_HOOKS: Dict[str, List[Callable[..., Any]]] = {}
_BLOCKS: set = set()


def register(family: Family) -> Family:
    """Add a family (its op types must be new); families are kept in registration order."""
    if _FAMILIES.get(family.name) is family:
        return family  # registered already (a package import retried after a failure)
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    for spec in family.ops:
        if spec.cls in _SPECS or spec.cls.__name__ in {c.__name__ for c in _SPECS}:
            raise ValueError(f"op type {spec.cls.__name__} is already registered")
    _FAMILIES[family.name] = family
    for spec in family.ops:
        _SPECS[spec.cls] = spec
        _OWNER[spec.cls] = family.name
        if spec.block:
            _BLOCKS.add(spec.cls)
    _HOOKS.clear()
    return family


def unregister(name: str) -> None:
    """Remove a family and its op types (for tests that register one of their own)."""
    family = _FAMILIES.pop(name)
    for spec in family.ops:
        del _SPECS[spec.cls]
        del _OWNER[spec.cls]
        _BLOCKS.discard(spec.cls)
    _HOOKS.clear()


def families() -> Tuple[Family, ...]:
    return tuple(_FAMILIES.values())


def family_names() -> Tuple[str, ...]:
    return tuple(_FAMILIES)


def get_family(name: str) -> Family:
    return _FAMILIES[name]


def op_types() -> Dict[str, type]:
    """Every registered op type, by name (what the JSON codec reads)."""
    return {cls.__name__: cls for cls in _SPECS}


def spec(op: Op) -> OpSpec:
    """The spec of ``op``'s type; ``ProgramError`` when no family registered it."""
    try:
        return _SPECS[type(op)]
    except KeyError:
        raise ProgramError(f"not an operation: {op!r}") from None


def spec_of(cls: type) -> OpSpec:
    """The spec of op type ``cls`` (``KeyError`` when no family registered it)."""
    return _SPECS[cls]


def is_block(op: Op) -> bool:
    return type(op) in _BLOCKS


def family_of(op: Op) -> str:
    """The family an op belongs to: one that claims it, else its type's."""
    for family in _FAMILIES.values():
        if family.claims is not None and family.claims(op):
            return family.name
    return _OWNER[type(op)]


def hooks(name: str) -> List[Callable[..., Any]]:
    """The model hooks called ``name`` of every registered family, in order."""
    found = _HOOKS.get(name)
    if found is None:
        found = _HOOKS[name] = [h for f in _FAMILIES.values()
                                if (h := getattr(f, name)) is not None]
    return found


def greenlet_names(op: Op) -> List[str]:
    """The greenlets ``op`` itself names (its ``OpSpec.names`` fields that hold one)."""
    return [ref for f in spec(op).names
            if isinstance(ref := getattr(op, f), str)]


# -- nested ops: one layout ---------------------------------------------------------------

def walk(script: Sequence[Op]) -> Iterator[Op]:
    """Every op of a script in execution order, nested ones included."""
    for op in script:
        yield op
        if is_block(op):
            yield from walk(op.then)


def flatten(script: Sequence[Op]) -> Script:
    """The script as the runtime numbers it: op index ``pc`` in events is an index here."""
    return tuple(walk(script))


def span(op: Op) -> int:
    """How many entries ``op`` takes in ``flatten``: itself and everything nested in it."""
    return 1 + sum(span(o) for o in op.then) if is_block(op) else 1


def remap(op: Op, f: Callable[[Script], Script]) -> Op:
    """``op`` with ``f`` applied to its nested ops (each part of them, see
    ``OpSpec.remap``); ``op`` itself when it holds none."""
    if not is_block(op):
        return op
    rule = spec(op)
    if rule.remap is not None:
        return rule.remap(op, f)
    return dataclasses.replace(op, then=f(op.then))


def nested(pc: int, op: Op) -> List[Tuple[int, Op]]:
    """``(flat index, op)`` of each op directly in the block of the op at ``pc``: the one
    place nested indexes are computed."""
    out, at = [], pc + 1
    for child in op.then:
        out.append((at, child))
        at += span(child)
    return out


def positions(script: Sequence[Op]) -> List[Tuple[int, Op]]:
    """``(flat index, op)`` of each top-level op of a script."""
    out, at = [], 0
    for op in script:
        out.append((at, op))
        at += span(op)
    return out


# -- rendering helpers ----------------------------------------------------------------

#: What a name pasted into source as code (not as a literal) may look like: greenlet
#: names (``run_<name>``), keyword-argument keys, exception types.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def python_docstring(lines: Sequence[str]) -> str:
    """``lines`` as a module docstring.  They may hold text from a finding (versions,
    names, titles), which is data: no backslash escape or closing quotes gets through."""
    return '"""' + "\n".join(line.replace("\\", "\\\\").replace('"""', "'''")
                              for line in lines).rstrip() + '\n"""'


def identifier(name: object) -> str:
    """``name`` when it is a plain identifier, else ``ProgramError``: a program read from a
    file is data, and nothing in it may become code (defence in depth: the schema,
    ``greenfuzz.harness.program.schema``, refuses such programs before they are built)."""
    if not (isinstance(name, str) and IDENTIFIER.fullmatch(name)
            and not keyword.iskeyword(name)):
        raise ProgramError(f"not an identifier: {str(name)[:40]!r}")
    return name


def args_source(args: Sequence[Value], kwargs: Sequence[tuple] = ()) -> str:
    return ", ".join([repr(a) for a in args]
                     + [f"{identifier(k)}={v!r}" for k, v in kwargs])


def ref(name: str) -> str:
    """The expression for the greenlet the registry holds under ``name``."""
    return f"ref({name!r})"


def exc_class(exc: Exc) -> str:
    """The expression for an exception type (``FuzzError``, ``GreenletExit`` are names
    bound in the program function)."""
    return identifier(exc.type)


def statement_lines(who: str, pc: int, op: Op, stmt: str, result: str) -> List[str]:
    """Lines that perform ``stmt`` and record its outcome: ``unbound`` when it names a
    greenlet the registry lacks, ``caught`` for an exception when the op catches, else
    ``result`` with ``r`` (``done``: nothing)."""
    value = "r" if result != "done" else "None"
    lines = [f"# {pc}: {op_comment(op)}", "try:", f"    {stmt}", "except Unbound as e:",
             f"    rec({who!r}, {pc}, 'unbound', e.args[0])"]
    if getattr(op, "catch", False):
        lines += ["except Exception as e:", f"    rec({who!r}, {pc}, 'caught', e)"]
    return [*lines, "else:", f"    rec({who!r}, {pc}, {result!r}, {value})"]


def op_comment(op: Op) -> str:
    """A one-line description of an op, for comments and reports."""
    return spec(op).comment(op)


class Emitter:
    """Renders ops as source lines; helper functions (a recursion's level function)
    collect in ``helpers`` and go after the ``run_*`` functions."""

    def __init__(self) -> None:
        self.helpers: List[List[str]] = []
        #: The whole program's scripts, for ops rendered from other scripts (``concurrent``).
        self.scripts: Scripts = ()

    def op(self, who: str, pc: int, op: Op) -> List[str]:
        found = spec(op)
        if found.render is not None:
            return found.render(self, who, pc, op)
        assert found.statement is not None, op
        return statement_lines(who, pc, op, found.statement(op), found.result)

    @staticmethod
    def comment(op: Op) -> str:
        return op_comment(op)

    def nested(self, who: str, pc: int, op: Op) -> List[List[str]]:
        """The lines of each op in the block of ``op`` (at flat index ``pc``)."""
        return [self.op(who, at, child) for at, child in nested(pc, op)]


def indent(lines: Sequence[str], by: int = 4, empty: str = "pass") -> List[str]:
    """``lines`` indented; a block that would be empty gets ``empty``."""
    pad = " " * by
    return [pad + line for line in (lines or ([empty] if empty else []))]
