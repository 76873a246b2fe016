"""Family ``core``: the switch graph every program is made of — spawning, switching,
throwing, returning, raising, re-parenting, dropping references, and looking at
greenlets.  Variants of these ops belong to other families (``Family.claims``): a
``Throw`` of ``sys.exc_info()`` and a ``Raise ... from`` to ``exceptions``, a ``Spawn``
of a customised subclass and ``Inspect`` of ``tag`` to ``finalizers``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple, Union

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Bogus,
    Emitter,
    Exc,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Value,
    args_source,
    exc_class,
    identifier,
    ref,
)
from greenfuzz.harness.families.deliveries import (
    Args,
    Flying,
    State,
    Throwing,
    Unsupported,
    exc_value,
    harness_error,
)
from greenfuzz.harness.families.values import (
    THROWABLE_TYPES,
    arguments,
    exceptions,
    scalars,
    values,
)
from greenfuzz.harness.target.runtime import ExcValue

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG

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

#: How a ``Throw`` spells its exception: ``g.throw()``, ``g.throw(T)``, ``g.throw(T, *args)``,
#: ``g.throw(T(*args))``, or ``g.throw(*sys.exc_info())`` (the exception being handled).
THROW_STYLES = ("none", "class", "class_args", "instance", "exc_info")


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


# -- validation --------------------------------------------------------------------------

def _validate_throw(owner: str, op: Throw) -> None:
    if op.style not in THROW_STYLES:
        raise ProgramError(f"{owner}: unknown throw style {op.style!r}")
    if (op.style in ("none", "exc_info")) != (op.exc is None):
        raise ProgramError(f"{owner}: throw styles 'none' and 'exc_info' (only they) "
                           "go with no exception")


def _validate_spawn(owner: str, op: Spawn) -> None:
    if op.name in (MAIN, owner):
        raise ProgramError(f"{owner}: cannot spawn {op.name!r}")
    if op.kind not in SPAWN_KINDS:
        raise ProgramError(f"{owner}: unknown spawn kind {op.kind!r}")
    if op.subclass and op.kind != "plain":
        raise ProgramError(f"{owner}: spawn kind {op.kind!r} is its own subclass")


def _validate_inspect(owner: str, op: Inspect) -> None:
    if op.attr not in INSPECT_ATTRS + SUBCLASS_ATTRS:
        raise ProgramError(f"{owner}: unknown attribute {op.attr!r}")


# -- descriptions and source -------------------------------------------------------------

_PROPAGATE = ", exceptions propagate"


def throw_args(op: Throw, cls: Optional[str] = None,
               args: Callable[[Sequence[Value]], str] = args_source) -> str:
    """The arguments of ``throw()`` for ``op``'s style (``cls``: how the exception type
    is written, ``args``: its arguments; a plain reproducer writes both its own way)."""
    if op.style == "exc_info":
        return "*sys.exc_info()"
    if op.style == "none" or op.exc is None:
        return ""
    cls = cls or exc_class(op.exc)
    if op.style == "class":
        return cls
    if op.style == "class_args":
        return f"{cls}, {args(op.exc.args)}"
    return f"{cls}({args(op.exc.args)})"


def _spawn_comment(op: Spawn) -> str:
    return (f"spawn {op.name}" + (" (a greenlet subclass)" if op.subclass else "")
            + {"plain": "", "method": " (a subclass defining run)",
               "init": " (a subclass overriding __init__)"}[op.kind]
            + (f" with parent {op.parent}" if op.parent else ""))


def _spawn_statement(op: Spawn) -> str:
    parts = [repr(op.name), f"run_{identifier(op.name)}"]
    if op.parent:
        parts.append(ref(op.parent))
    if op.subclass:
        parts.append("subclass=True")
    if op.kind != "plain":
        parts.append(f"kind={op.kind!r}")
    return f"r = spawn({', '.join(parts)})"


def _set_parent_statement(op: SetParent) -> str:
    value = repr(op.parent.value) if isinstance(op.parent, Bogus) else ref(op.parent)
    return f"{ref(op.target)}.parent = {value}"


_INSPECT = {"dead": "r = {t}.dead", "bool": "r = bool({t})", "parent": "r = label({t}.parent)",
            "gr_frame": "r = {t}.gr_frame is None", "run": "r = hasattr({t}, 'run')",
            "tag": "r = getattr({t}, 'fuzz_tag', None)"}


def _render_return(e: Emitter, who: str, pc: int, op: Return) -> List[str]:
    return [f"# {pc}: {e.comment(op)}", f"return ret({who!r}, {pc}, {op.value!r})"]


def _render_raise(e: Emitter, who: str, pc: int, op: Raise) -> List[str]:
    cause = " from sys.exc_info()[1]" if op.cause else ""
    return [f"# {pc}: {e.comment(op)}",
            f"raise {exc_class(op.exc)}({args_source(op.exc.args)}){cause}"]


# -- model rules -----------------------------------------------------------------------

def thrown(op: Throw) -> ExcValue:
    """The exception a ``throw()`` call raises in its target.

    api docs: "If no argument is provided, the exception defaults to
    greenlet.GreenletExit"; ``throw(T)`` instantiates T with no args; ``throw(T, v)``
    with ``v``; ``throw(instance)`` raises that instance.
    """
    if op.style == "none" or op.exc is None:
        return ExcValue("GreenletExit", ())
    if op.style == "class":
        return ExcValue(op.exc.type, ())
    if op.style == "class_args":
        # ``throw(T, v)`` builds T the way ``raise`` normalises a (type, value) pair:
        # a None value means no args, a tuple is the args themselves.
        value = op.exc.args[0] if op.exc.args else None
        if value is None:
            return ExcValue(op.exc.type, ())
        return ExcValue(op.exc.type, value if isinstance(value, tuple) else (value,))
    return exc_value(op.exc)


def _target(m: Model, name: str) -> MG:
    found = m.lookup(name)
    assert found is not None
    return found


def perform_switch(m: Model, g: MG, op: Switch) -> None:
    target = _target(m, op.target)
    if g.in_thread or m.foreign_root(m.resolve(target)):
        return m.fail(g, op, harness_error("greenlet.error"))
    if g.killing and m.resolve(target) is not g:
        # greenlet_gc: a killed greenlet "is expected to either die or be
        # resurrected"; one that switches away from its finally block instead is
        # leaked with "GreenletExit did not kill" on stderr: not modelled.
        raise Unsupported(f"{g.name} switches away while it is killed")
    m.transfer(target, Args(tuple(op.args), dict(op.kwargs)))


def perform_throw(m: Model, g: MG, op: Throw) -> None:
    """``throw()`` into a dead greenlet: greenlet 3.x (``throw_greenlet``) turns a
    GreenletExit into a plain return value ("dead greenlet: turn GreenletExit into a
    regular return"); any other exception goes up the parent chain.  What the call
    raises in the target: ``thrown``."""
    target = _target(m, op.target)
    if g.in_thread:
        # python_threads docs: "It is not possible to mix or switch between greenlets
        # belonging to different threads" (greenlet.error).
        return m.fail(g, op, harness_error("greenlet.error"))
    if m.foreign_root(m.resolve(target)):
        # An unstarted greenlet whose parent chain ends in another thread.
        return m.fail(g, op, harness_error("greenlet.error"))
    if g.killing:
        raise Unsupported(f"{g.name} throws while it is killed")
    obj: Optional[Flying] = None
    if op.style == "exc_info":
        # ``g.throw(*sys.exc_info())``: the exception this greenlet handles (each
        # greenlet has its own, test_exc_state); with none, ``throw(None, None,
        # None)`` is a TypeError in the caller.
        if not g.handling:
            return m.fail(g, op, harness_error("TypeError"))
        obj = g.handling[-1]
        exc = obj.exc
    else:
        exc = thrown(op)
    if target.state is State.DEAD and exc.type == "GreenletExit":
        m.transfer(target, Args((exc,), {}, exit_value=True))
    else:
        m.transfer(target, Throwing(exc, obj))


def perform_return(m: Model, g: MG, op: Return) -> None:
    m.finish(g, op)


def perform_raise(m: Model, g: MG, op: Raise) -> None:
    # ``raise X from sys.exc_info()[1]``: the handled exception, or None.
    cause = g.handling[-1].exc if op.cause and g.handling else None
    flying = Flying(exc_value(op.exc), cause)
    m.raised(g, flying)
    m.unwind(g, flying)


def perform_spawn(m: Model, g: MG, op: Spawn) -> None:
    """api docs: ``greenlet(run=None, parent=None)``; a None parent is the current
    greenlet."""
    parent = m.lookup(op.parent) if op.parent else m.current
    child = m.new_greenlet(op.name, parent, kind=op.kind, subclass=op.subclass)
    m.incref(parent)
    child.rc = 1
    m.spawned.append(child)
    old = m.registry.get(op.name)
    m.registry[op.name] = child
    m.release(old)
    m.done(g)


def perform_drop(m: Model, g: MG, op: Drop) -> None:
    """``del``: the program's reference goes; a greenlet nobody references any more is
    freed at once (``Model.collect``), and killed if it is suspended (``Model.kill``)."""
    victim = m.registry.pop(op.target)
    m.safely(g, lambda: m.release(victim))
    m.after(g, lambda: (m.check_alive(), m.done(g)))


def perform_set_parent(m: Model, g: MG, op: SetParent) -> None:
    """api docs: "parent: ... This is writable, but it is not allowed to create cycles
    of parents. A greenlet without a parent is the main greenlet of its thread.
    Cannot be set to anything except a greenlet."  greenlet 3.x checks for a main
    greenlet first (AttributeError), then the type (TypeError, also for None), then
    cycles (ValueError('cyclic parent chain'))."""
    target = _target(m, op.target)
    if target.is_main:
        return m.fail(g, op, harness_error("AttributeError"))
    if isinstance(op.parent, Bogus):
        return m.fail(g, op, harness_error("TypeError"))
    new = _target(m, op.parent)
    walk: Optional[MG] = new
    while walk is not None:
        if walk is target:
            return m.fail(g, op, harness_error("ValueError"))
        walk = walk.parent
    if target.state is not State.UNSTARTED and m.foreign_root(new):
        # "parent cannot be on a different thread" (green_setparent): a started
        # greenlet stays in its thread; an unstarted one may move (verified, 3.5.6).
        return m.fail(g, op, harness_error("ValueError"))
    old = target.parent
    target.parent = new
    m.incref(new)
    m.safely(g, lambda: m.release(old))
    m.after(g, lambda: m.done(g))


def perform_current(m: Model, g: MG, op: Current) -> None:
    # In another thread, its own (unnamed) main greenlet is current.
    m.rec(g.name, g.pc, "current", "?" if g.in_thread else m.label(m.current))
    g.pc += 1


def perform_inspect(m: Model, g: MG, op: Inspect) -> None:
    """api docs: "bool(g) is true if g is active and false if it is dead or not yet
    started"; "dead: True if this greenlet is dead"; "gr_frame ... is non-None only
    for suspended greenlets"; "run ... After it is started, this attribute no longer
    exists"."""
    t = _target(m, op.target)
    value = {
        "dead": t.state is State.DEAD,
        "bool": t.state in (State.RUNNING, State.SUSPENDED),
        "parent": m.label(t.parent),
        "gr_frame": t.state is not State.SUSPENDED,
        # "Subclasses can define this as a method on the type" (api docs): only the
        # instance's run is deleted at the start, the class's stays.
        "run": t.state is State.UNSTARTED or t.kind == "method",
        # The extra attribute of a subclass: the trivial one's class attribute, the
        # tag an overridden __init__ stored (the greenlet's name).
        "tag": t.name if t.kind == "init" else ("sub" if t.subclass else None),
    }[op.attr]
    m.rec(g.name, g.pc, "attr", value)
    g.pc += 1


# -- strategies ------------------------------------------------------------------------

_catching = st.booleans().map(lambda b: not b)  # shrinks towards catch=True


@lru_cache(maxsize=256)
def switches(targets: Tuple[str, ...]) -> st.SearchStrategy[Switch]:
    return st.builds(lambda target, a, catch: Switch(target, a[0], a[1], catch),
                     st.sampled_from(targets), arguments(), _catching)


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

    return st.builds(build, st.sampled_from(targets),
                     st.sampled_from(("class", "none", "class_args", "instance")),
                     exceptions(THROWABLE_TYPES, max_args=1), _catching)


@lru_cache(maxsize=256)
def set_parents(targets: Tuple[str, ...]) -> st.SearchStrategy[SetParent]:
    """Re-parenting, including the ones that must fail: cycles (any target whose new
    parent descends from it), main as target, and non-greenlet parents."""
    parent = st.one_of(st.sampled_from(targets), st.builds(Bogus, st.one_of(st.none(), scalars())))
    children = [t for t in targets if t != MAIN] or [MAIN]
    return st.builds(SetParent, st.sampled_from([*children, MAIN]), parent, st.just(True))


def validate_callback(owner: str, ops: Sequence[Op], allowed: Tuple[type, ...],
                      where: str) -> None:
    """The ops of code that runs on its own (a finalizer, an atexit callback: ``where``):
    only ``allowed`` types, switches and throws that catch, no ``throw(*sys.exc_info())``
    (no exception is being handled there)."""
    for o in ops:
        if not isinstance(o, allowed):
            raise ProgramError(f"{owner}: {type(o).__name__} cannot run in {where}")
        if isinstance(o, (Switch, Throw)) and not o.catch:
            raise ProgramError(f"{owner}: switches in {where} must catch")
        if isinstance(o, Throw) and o.style == "exc_info":
            raise ProgramError(f"{owner}: no throw(*sys.exc_info()) in {where}")


def inspects(targets: Tuple[str, ...], attrs: Tuple[str, ...] = INSPECT_ATTRS
             ) -> st.SearchStrategy[Inspect]:
    return st.builds(Inspect, st.sampled_from(targets), st.sampled_from(attrs))


def others(targets: Tuple[str, ...]) -> List[str]:
    """The targets other than main (main itself when there are none)."""
    return [t for t in targets if t != MAIN] or [MAIN]


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: object) -> List[st.SearchStrategy]:
    # one_of picks a branch uniformly: switching is what programs are about, so it
    # gets more branches; drop and re-parenting strand names and are rarer.
    choices: List[st.SearchStrategy] = [
        switches(targets), switches(targets), switches(targets),
        throws(targets), throws(targets),
        inspects(targets), set_parents(targets),
        st.builds(Drop, st.sampled_from(others(targets))), st.just(Current()),
    ]
    if terminal:
        choices += [st.builds(Return, values()), st.builds(Raise, exceptions(THROWABLE_TYPES))]
    return choices



# -- plain reproducers (``plainwriter``) -------------------------------------------


def _plain_switch(w: pw.Writer, who: str, pc: int, op: Switch) -> pw.Rendered:
    call = f"{w.ref(op.target)}.switch({w.call_args(op.args, op.kwargs)})"
    return w.outcome(who, pc, call, call, call)


def _plain_throw(w: pw.Writer, who: str, pc: int, op: Throw) -> pw.Rendered:
    if op.style == "exc_info":
        w.imports.add("sys")
    cls = w.exc_class(op.exc.type) if op.exc is not None else None
    call = f"{w.ref(op.target)}.throw({throw_args(op, cls, lambda a: w.call_args(a, ()))})"
    return w.outcome(who, pc, call, call, call)


def _plain_return(w: pw.Writer, who: str, pc: int, op: Return) -> pw.Rendered:
    return [*w.returning(who, pc), f"return {w.literal(op.value)}"], False


def _plain_raise(w: pw.Writer, who: str, pc: int, op: Raise) -> pw.Rendered:
    if op.cause:
        w.imports.add("sys")
    return [f"raise {w.new_exc(op.exc)}" + (" from sys.exc_info()[1]" if op.cause else "")
            ], False


def _plain_spawn(w: pw.Writer, who: str, pc: int, op: Spawn) -> pw.Rendered:
    name = w.ref(op.name)
    parent = [w.ref(op.parent)] if op.parent else []
    if op.kind == "method":
        cls = f"Run{name.capitalize()}"
        w.classes.append(f"class {cls}(greenlet.greenlet):\n    run = staticmethod(run_{name})")
        make = f"{cls}({', '.join(f'parent={p}' for p in parent)})"
    elif op.kind == "init":
        w.classes.append(_PLAIN_INIT_CLASS)
        make = f"InitGreenlet({', '.join([repr(op.name), f'run_{name}', *parent])})"
    else:
        cls = "greenlet.greenlet"
        if op.subclass:
            w.classes.append('class SubGreenlet(greenlet.greenlet):\n    fuzz_tag = "sub"')
            cls = "SubGreenlet"
        make = f"{cls}({', '.join([f'run_{name}', *parent])})"
    lines, goes_on = w.outcome(who, pc, f"{name} = {make}", f"{name} = {make}")
    if lines and not lines[0].startswith("#"):
        if "label" in w.needs:
            lines.append(f"names[id({name})] = (weakref.ref({name}), {op.name!r})")
        if w.liveness:
            w.need("alive")
            lines.append(f"refs[{op.name!r}] = weakref.ref({name})")
    return lines, goes_on


_PLAIN_INIT_CLASS = '''class InitGreenlet(greenlet.greenlet):
    """Takes a tag first and keeps it in an attribute of its own."""

    def __init__(self, tag, run, parent=None):
        self.fuzz_tag = tag
        if parent is None:
            super().__init__(run)
        else:
            super().__init__(run, parent)'''


def _plain_set_parent(w: pw.Writer, who: str, pc: int, op: SetParent) -> pw.Rendered:
    value = w.literal(op.parent.value) if isinstance(op.parent, Bogus) else w.ref(op.parent)
    statement = f"{w.ref(op.target)}.parent = {value}"
    return w.outcome(who, pc, statement, statement)


def _plain_drop(w: pw.Writer, who: str, pc: int, op: Drop) -> pw.Rendered:
    events = w.events(who, pc)
    for i, kind, _ in events:
        if kind == "unbound":
            return [f"# del {op.target}: skipped, {op.target} is not bound here",
                    *w.sync(i, f"del {op.target}")], True
    done = next((i for i, kind, _ in events if kind == "done"), None)
    if done is None:
        return [f"del {w.ref(op.target)}", "fail('the del did not return')"], False
    lines = [f"del {w.ref(op.target)}"]
    alive = max((i for i in range(done) if w.expected[i][2] == "alive"), default=None)
    if alive is not None:
        lines += w.sync(alive, f"del {op.target}", always=True)
        if w.liveness:
            w.need("alive")
            lines.append(f"check_alive('greenlets left after del {op.target}', "
                         f"{list(w.expected[alive][3] or ())!r})")
    lines += w.sync(done, f"del {op.target}")
    return lines, True


def _plain_current(w: pw.Writer, who: str, pc: int, op: Current) -> pw.Rendered:
    w.need("label")
    return pw.recorded(w, who, pc, "current", "greenlet.getcurrent()",
                       "label(greenlet.getcurrent())")


def _plain_inspect(w: pw.Writer, who: str, pc: int, op: Inspect) -> pw.Rendered:
    g = w.ref(op.target)
    if op.attr == "parent":
        w.need("label")
    what, expression = {
        "dead": (f"{g}.dead", f"{g}.dead"),
        "bool": (f"bool({g})", f"bool({g})"),
        "parent": (f"{g}.parent", f"label({g}.parent)"),
        "gr_frame": (f"{g}.gr_frame is None", f"{g}.gr_frame is None"),
        "run": (f"hasattr({g}, 'run')", f"hasattr({g}, 'run')"),
        "tag": (f"{g}.fuzz_tag", f"getattr({g}, 'fuzz_tag', None)"),
    }[op.attr]
    return pw.recorded(w, who, pc, "attr", what, expression)


FAMILY = Family(
    name="core",
    ops=(
        OpSpec(Switch, plain=PlainSpec(_plain_switch, suspends=True),
               names=("target",), result="value", perform=perform_switch,
               comment=lambda op: f"switch to {op.target}({args_source(op.args, op.kwargs)})"
               + ("" if op.catch else _PROPAGATE),
               statement=lambda op: f"r = {ref(op.target)}.switch("
               f"{args_source(op.args, op.kwargs)})"),
        OpSpec(Throw, plain=PlainSpec(_plain_throw, suspends=True),
               names=("target",), result="value", validate=_validate_throw,
               perform=perform_throw,
               comment=lambda op: f"throw into {op.target}: {throw_args(op) or 'GreenletExit'}"
               + ("" if op.catch else _PROPAGATE),
               statement=lambda op: f"r = {ref(op.target)}.throw({throw_args(op)})"),
        OpSpec(Return, plain=PlainSpec(_plain_return, suspends=True),
               comment=lambda op: f"return {op.value!r}", render=_render_return,
               perform=perform_return, ends_script=True),
        OpSpec(Raise, plain=PlainSpec(_plain_raise, suspends=True),
               render=_render_raise, perform=perform_raise, ends_script=True,
               comment=lambda op: f"raise {op.exc.type}{op.exc.args!r}"
               + (" from the exception being handled" if op.cause else "")),
        OpSpec(Spawn, plain=PlainSpec(_plain_spawn, binds=lambda op, me: (op.name,)),
               names=("parent",), validate=_validate_spawn, comment=_spawn_comment,
               statement=_spawn_statement, perform=perform_spawn),
        # ``ref(target).parent = ref(parent)``: Python evaluates the right side first.
        OpSpec(SetParent, plain=PlainSpec(_plain_set_parent),
               names=("parent", "target"), comment=lambda op: f"set {op.target}.parent",
               statement=_set_parent_statement, perform=perform_set_parent),
        OpSpec(Drop, plain=PlainSpec(_plain_drop, binds=lambda op, me: (op.target,)),
               names=("target",), perform=perform_drop,
               comment=lambda op: f"drop the program's reference to {op.target}",
               statement=lambda op: f"r = drop({op.target!r})"),
        OpSpec(Current, plain=PlainSpec(_plain_current, needs=lambda op: ("label",)),
               result="current", perform=perform_current,
               comment=lambda op: "which greenlet is current?",
               statement=lambda op: "r = label(getcurrent())"),
        OpSpec(Inspect, plain=PlainSpec(_plain_inspect,
                                       needs=lambda op: ("label",) if op.attr == "parent" else ()),
               names=("target",), result="attr", validate=_validate_inspect,
               perform=perform_inspect, comment=lambda op: f"inspect {op.target}.{op.attr}",
               statement=lambda op: _INSPECT[op.attr].format(t=ref(op.target))),
    ),
    draw=_draw,
)
