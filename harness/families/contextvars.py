"""Family ``contextvars``: each greenlet runs in its own ``contextvars`` context, and
``gr_context`` can give one a copy of another's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    Decorations,
    Drawing,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Scripts,
    Value,
    ref,
    walk,
)
from greenfuzz.harness.families.values import scalars

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG

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


def _validate(owner: str, op: object) -> None:
    if op.var not in CONTEXT_VARS:  # type: ignore[attr-defined]
        raise ProgramError(f"{owner}: unknown context variable {op.var!r}")  # type: ignore


def context(g: MG) -> Dict[str, object]:
    """``g``'s context: a greenlet starts with an empty one."""
    return g.ext.setdefault("context", {})


def _set(m: Model, g: MG, op: CtxSet) -> None:
    """contextvars docs (greenlet): "each greenlet has its own context"; a value set in
    one is not seen in another.  The program's variables are fresh every run, so main
    starts with none set too."""
    context(g)[op.var] = op.value
    m.done(g)


def _get(m: Model, g: MG, op: CtxGet) -> None:
    m.rec(g.name, g.pc, "context", context(g).get(op.var, "<unset>"))
    g.pc += 1


def _copy(m: Model, g: MG, op: CtxCopy) -> None:
    """api docs: ``gr_context`` is "the contextvars.Context in which g will run"; it is
    writable, and a greenlet (suspended ones included, greenlet 3.x) then runs with
    the assigned context: here a snapshot of the current one."""
    target = m.lookup(op.target)
    assert target is not None
    target.ext["context"] = dict(context(g))
    m.done(g)


def _main_context(scripts: Scripts) -> bool:
    """Main sets context variables in a copy of the thread's context, dropped afterwards:
    in the thread's own, each run's fresh variables would stay for ever (a growth the
    raw-memory checks would blame on the implementation)."""
    return any(isinstance(op, CtxSet) for op in walk(scripts[0][1]))


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    var = st.sampled_from(CONTEXT_VARS)
    return [st.builds(CtxSet, var, scalars()), st.builds(CtxGet, var), st.builds(CtxGet, var)]


_copy_context = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _after_spawn(d: Drawing, name: str) -> List[Op]:
    """Only right after the spawn: the greenlet is certainly unstarted then."""
    return [CtxCopy(name)] if d.draw(_copy_context) else []



# -- plain reproducers (``plainwriter``) -------------------------------------------

pw.define_helper('ctx', '''
a, b = contextvars.ContextVar("a"), contextvars.ContextVar("b")
contextvars.copy_context()  # the thread's context exists from here on (made on first use)
''', imports=('contextvars',))


def _plain_ctx_set(w: pw.Writer, who: str, pc: int, op: CtxSet) -> pw.Rendered:
    w.need("ctx")
    statement = f"{op.var}.set({w.literal(op.value)})"
    return w.outcome(who, pc, statement, statement)


def _plain_ctx_get(w: pw.Writer, who: str, pc: int, op: CtxGet) -> pw.Rendered:
    w.need("ctx")
    return pw.recorded(w, who, pc, "context", f"{op.var}.get()", f"{op.var}.get('<unset>')")


def _plain_ctx_copy(w: pw.Writer, who: str, pc: int, op: CtxCopy) -> pw.Rendered:
    w.need("ctx")
    statement = f"{w.ref(op.target)}.gr_context = contextvars.copy_context()"
    return w.outcome(who, pc, statement, statement)



FAMILY = Family(
    name="contextvars",
    ops=(
        OpSpec(CtxSet, plain=PlainSpec(_plain_ctx_set),
               validate=_validate, perform=_set,
               comment=lambda op: f"set context variable {op.var} to {op.value!r}",
               statement=lambda op: f"r = ctx[{op.var!r}].set({op.value!r})"),
        OpSpec(CtxGet, plain=PlainSpec(_plain_ctx_get),
               validate=_validate, perform=_get, result="context",
               comment=lambda op: f"read context variable {op.var}",
               statement=lambda op: f"r = ctx[{op.var!r}].get('<unset>')"),
        OpSpec(CtxCopy, plain=PlainSpec(_plain_ctx_copy),
               names=("target",), perform=_copy,
               comment=lambda op: f"give {op.target} a copy of the current context",
               statement=lambda op: f"{ref(op.target)}.gr_context = T.copy_context()"),
    ),
    draw=_draw,
    main_context=_main_context,
    decorate=Decorations(after_spawn=_after_spawn),
)
