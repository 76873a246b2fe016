"""Family ``exceptions``: exception state per greenlet — handlers (``sys.exc_info()``,
implicit chaining), ``try``/``finally`` (what leaves the try part, its traceback and
cause), ``raise ... from`` and ``throw(*sys.exc_info())``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Decorations,
    Drawing,
    Emitter,
    Exc,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Script,
    args_source,
    exc_class,
    indent,
    nested,
    remap,
    span,
)
from greenfuzz.harness.families.core import (
    INSPECT_ATTRS,
    Current,
    Inspect,
    Raise,
    Switch,
    Throw,
    inspects,
    switches,
    throws,
)
from greenfuzz.harness.families.deliveries import Flying, State, exc_value, harness_error
from greenfuzz.harness.families.values import CATCHABLE_TYPES, THROWABLE_TYPES, exceptions

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG


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


#: What the finally part of a ``Finally`` may do: it runs while an exception is in
#: flight too (a kill's GreenletExit), where ``sys.exc_info()`` and raising differ
#: between interpreters, so no handlers, raises or exception reads.
FINALLY_OPS = (Switch, Throw, Inspect, Current)


def _claims(op: Op) -> bool:
    return (isinstance(op, Throw) and op.style == "exc_info") or \
        (isinstance(op, Raise) and op.cause)


def _validate_handle(owner: str, op: Handle) -> None:
    if op.exc.type == "GreenletExit":
        raise ProgramError(f"{owner}: a handler cannot handle GreenletExit")


def _validate_finally(owner: str, op: Finally) -> None:
    if not (isinstance(op.split, int) and 0 <= op.split <= len(op.then)):
        raise ProgramError(f"{owner}: Finally split must be 0 to {len(op.then)}")
    for o in op.then[op.split:]:
        if not isinstance(o, FINALLY_OPS) or (isinstance(o, Throw) and o.style == "exc_info"):
            raise ProgramError(f"{owner}: {type(o).__name__} cannot be in a finally block")


# -- source ----------------------------------------------------------------------------

def _render_handle(e: Emitter, who: str, pc: int, op: Handle) -> List[str]:
    """A ``Handle`` op: its nested ops run inline, inside the except block."""
    cls = exc_class(op.exc)
    body = [line for lines in e.nested(who, pc, op) for line in lines]
    return [f"# {pc}: {e.comment(op)}", "try:", f"    raise {cls}({args_source(op.exc.args)})",
            f"except {cls}:", *indent(body), f"rec({who!r}, {pc}, 'done', None)"]


def _render_finally(e: Emitter, who: str, pc: int, op: Finally) -> List[str]:
    """A ``Finally`` op: ``try``/``finally`` inline; an inner ``except`` notes the
    exception leaving the try part (a bare ``raise`` adds no traceback entry) so that the
    finally block can record it, then forgets it (a frame holding its own traceback
    would be a reference cycle, and the collector is off)."""
    parts: List[List[str]] = [[], []]
    for i, lines in enumerate(e.nested(who, pc, op)):
        parts[i >= op.split] += lines
    var = f"fin_{pc}"
    return [f"# {pc}: {e.comment(op)}", f"{var} = None", "try:", "    try:",
            *indent(parts[0], 8), "    except BaseException as e:", f"        {var} = e",
            "        raise", "finally:",
            f"    rec({who!r}, {pc}, 'finally', T.in_flight(T, {var}))",
            f"    {var} = None", *indent(parts[1], empty=""),
            f"rec({who!r}, {pc}, 'done', None)"]


# -- model rules -----------------------------------------------------------------------

def _enter_handle(m: Model, g: MG, op: Handle) -> None:
    # Python chains an exception raised while another is handled: its __context__ is
    # the one this greenlet was handling.
    context = g.handling[-1].exc if g.handling else None
    handled = Flying(exc_value(op.exc), context=context)
    m.raised(g, handled)  # raised and caught in the same frame
    g.handling.append(handled)


def _leave_handle(m: Model, g: MG, start: int, op: Handle) -> None:
    g.handling.pop()


def _exc_info(m: Model, g: MG, op: ExcInfo) -> None:
    """``sys.exc_info()`` is per greenlet: saved when it switches away and restored
    when it resumes (greenlet's test_exc_state); a new greenlet starts with none."""
    handled = g.handling[-1] if g.handling else None
    m.rec(g.name, g.pc, "exc_info", None if handled is None else (handled.exc, handled.context))
    g.pc += 1


def finals(g: MG) -> Dict[int, Optional[Flying]]:
    """``g``'s ``Finally`` blocks whose finally part runs, by op index: the exception
    that goes on once it is done (None: the try part ended normally)."""
    return g.ext.setdefault("finals", {})


def finally_part(start: int, op: Finally) -> int:
    """The flat index where the finally part of the ``Finally`` at ``start`` begins."""
    parts = nested(start, op)
    return parts[op.split][0] if op.split < len(parts) else start + span(op)


def _before_finally(m: Model, g: MG, start: int, op: Finally) -> bool:
    if start not in finals(g) and g.pc == finally_part(start, op):
        # The try part ended normally: the finally part runs, nothing in flight.
        finals(g)[start] = None
        m.rec(g.name, start, "finally", None)
        return True
    return False


def _ended_finally(m: Model, g: MG, start: int, op: Finally) -> bool:
    flying = finals(g).get(start)
    if flying is None:
        return False
    # A finally part done while an exception was in flight: it goes on.
    m.pop_level(g)
    m.unwind(g, flying)
    return True


def _unwinding_finally(m: Model, g: MG, start: int, op: Finally, obj: Flying) -> bool:
    """An exception leaving the try part: the finally part runs first (recording it),
    and the exception goes on when that is done."""
    if start in finals(g):
        return False
    finals(g)[start] = obj
    g.pc = finally_part(start, op)
    m.rec(g.name, start, "finally", obj.record())
    return True


def _leave_finally(m: Model, g: MG, start: int, op: Finally) -> None:
    finals(g).pop(start, None)


def _dying(m: Model, g: MG) -> bool:
    """A kill's GreenletExit unwinds ``g`` through its ``Finally`` blocks, whose finally
    parts run in ``g`` before control goes back to the dropper (greenlet_gc: "This
    gives try/finally blocks a chance to clean up resources held by the greenlet")."""
    if not any(isinstance(g.script[level.start], Finally) for level in g.levels):
        return False
    obj = Flying(harness_error("GreenletExit"))
    dropper = g.parent  # the kill made it the parent for the duration
    assert dropper is not None
    was = dropper.state
    if was is State.RUNNING:
        dropper.state = State.SUSPENDED  # it waits in its ``del`` meanwhile (has a gr_frame)
    g.killing = True
    m.raised(g, obj)
    m.unwind(g, obj)
    while g.state is not State.DEAD:  # ``finish`` ends it (the kill switches back)
        m.count_step()
        m.step(g)
    g.killing = False
    dropper.state = was
    return True


# -- strategies ------------------------------------------------------------------------

_not = st.booleans().map(lambda b: not b)


@lru_cache(maxsize=256)
def handlers(targets: Tuple[str, ...], families: Tuple[str, ...], ops: Callable,
             nest: int = 2) -> st.SearchStrategy[Handle]:
    """A ``Handle`` whose except block reads ``sys.exc_info()``, switches, throws the
    handled exception on (``throw(*sys.exc_info())``), raises (chaining it) or handles
    another one inside (``nest`` deep)."""
    inner = tuple(f for f in families if f != "exceptions")
    choices: List[st.SearchStrategy] = [
        ops(targets, terminal=False, families=inner),
        st.just(ExcInfo()),
        st.builds(Throw, st.sampled_from(targets), st.none(), st.just("exc_info"), _not),
        st.builds(Raise, exceptions(THROWABLE_TYPES), st.booleans()),
    ]
    if nest > 1:
        choices += [handlers(targets, families, ops, nest - 1),
                    finallies(targets, families, ops, 1)]
    return st.builds(Handle, exceptions(CATCHABLE_TYPES),
                     st.lists(st.one_of(choices), max_size=4).map(tuple))


@lru_cache(maxsize=256)
def finallies(targets: Tuple[str, ...], families: Tuple[str, ...], ops: Callable,
              nest: int = 2) -> st.SearchStrategy[Finally]:
    """A ``Finally`` whose try part switches, throws, raises (maybe ``from`` the handled
    exception) or handles, and whose finally part switches, throws and looks around:
    left normally, by an exception or by the GreenletExit of a kill."""
    inner = tuple(f for f in families if f != "exceptions")
    body: List[st.SearchStrategy] = [
        ops(targets, terminal=False, families=inner),
        st.builds(Raise, exceptions(THROWABLE_TYPES), st.booleans()),
        # Switches that let exceptions through: what a child died of, or was thrown in,
        # then reaches the finally block with the traceback it gathered.
        switches(targets).map(lambda op: replace(op, catch=False)),
    ]
    if nest > 1:
        body.append(handlers(targets, families, ops, 1))
    cleanup = st.one_of(switches(targets), throws(targets), inspects(targets, INSPECT_ATTRS),
                        st.just(Current()))
    return st.builds(lambda b, c: Finally((*b, *c), len(b)),
                     st.lists(st.one_of(body), max_size=3), st.lists(cleanup, max_size=3))


def _remap(op: Finally, f: Callable[[Script], Script]) -> Finally:
    body = f(op.then[:op.split])
    return Finally((*body, *f(op.then[op.split:])), len(body))


_in_finally = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _kick(d: Drawing, kick: Op) -> Op:
    """Whatever the greenlet dies of (or throws at main) reaches main's finally block,
    with the traceback and cause it gathered on the way."""
    if isinstance(kick, Switch) and d.draw(_in_finally):
        return Finally((replace(kick, catch=False), Current()), 1)
    return kick


def _tame(owner: str, script: Script) -> Script:
    """``script`` without the switches and throws of the finally parts of a greenlet
    that may be killed (not main): greenlet leaks one whose finally block switches away
    while it is killed ("GreenletExit did not kill")."""
    out: List[Op] = []
    for op in script:
        if isinstance(op, Finally) and owner != MAIN:
            kept = [o for o in op.then[op.split:] if not isinstance(o, (Switch, Throw))]
            op = Finally((*_tame(owner, op.then[:op.split]), *kept), op.split)
        else:
            op = remap(op, lambda part: _tame(owner, part))
        out.append(op)
    return tuple(out)


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    return [handlers(targets, families, ops), handlers(targets, families, ops),
            st.just(ExcInfo()), finallies(targets, families, ops),
            finallies(targets, families, ops)]



# -- plain reproducers (``plainwriter``) -------------------------------------------

pw.define_helper('handled', '''
def handled():
    """The exception being handled and its __context__, or None."""
    e = sys.exc_info()[1]
    return None if e is None else (e, e.__context__)
''', imports=('sys',))

pw.define_helper('in_flight', '''
def in_flight(e):
    """The exception leaving a try block, its __cause__, and the run_* functions (and the
    module) its traceback passes through."""
    if e is None:
        return None
    tb, runs = e.__traceback__, []
    while tb is not None:
        name = tb.tb_frame.f_code.co_name
        if name.startswith("run_") or name == "<module>":
            runs.append(name)
        tb = tb.tb_next
    return (e, e.__cause__, tuple(runs))
''')


def _plain_exc_info(w: pw.Writer, who: str, pc: int, op: ExcInfo) -> pw.Rendered:
    w.need("handled")
    return pw.recorded(w, who, pc, "exc_info", "sys.exc_info()[1] and its __context__",
                       "handled()")


def _plain_handle(w: pw.Writer, who: str, pc: int, op: Handle) -> pw.Rendered:
    body, goes_on = pw.nested(w, who, pc, op.then)
    cls = w.exc_class(op.exc.type)
    lines = ["try:", f"    raise {w.new_exc(op.exc)}", f"except {cls}:",
             *("    " + line for line in pw.block_body(body))]
    done = pw.done(w, who, pc)
    if goes_on and done is not None:
        lines += w.sync(done, f"{who}: the except block")
    return lines, goes_on and done is not None


def _plain_finally(w: pw.Writer, who: str, pc: int, op: Finally) -> pw.Rendered:
    w.need("in_flight")
    tried, _ = w.block(who, pc + 1, op.then[:op.split])
    at = pc + 1 + sum(span(o) for o in op.then[:op.split])
    final, goes_on = w.block(who, at, op.then[op.split:])
    var = f"leaving_{pc}"
    checked: List[str] = []
    for i, kind, payload in w.events(who, pc):
        if kind == "finally":
            if isinstance(payload, tuple):
                payload = (payload[0], payload[1],
                           tuple("<module>" if n == "run_main" else n for n in payload[2]))
            checked = [*w.sync(i, f"{who}: the finally block"),
                       f"check({'exception leaving the try block of ' + who!r}, "
                       f"in_flight({var}), {w.literal(payload)})"]
    lines = [f"{var} = None", "try:", "    try:", *("        " + x for x in pw.block_body(tried)),
             "    except BaseException as e:", f"        {var} = e", "        raise",
             "finally:", *("    " + x for x in checked), f"    {var} = None",
             *("    " + x for x in final)]
    done = pw.done(w, who, pc)
    if done is None:
        return lines, False
    return lines + w.sync(done, f"{who}: after the finally block"), goes_on



FAMILY = Family(
    name="exceptions",
    ops=(
        OpSpec(Handle, plain=PlainSpec(_plain_handle, inline=True),
               validate=_validate_handle, render=_render_handle, enter=_enter_handle,
               leave=_leave_handle,
               comment=lambda op: f"raise and handle {op.exc.type}{op.exc.args!r}, in the "
               f"except block do {len(op.then)} op(s)"),
        OpSpec(ExcInfo, plain=PlainSpec(_plain_exc_info),
               result="exc_info", perform=_exc_info,
               comment=lambda op: "which exception is being handled? (sys.exc_info())",
               statement=lambda op: "r = T.handled()"),
        OpSpec(Finally, plain=PlainSpec(_plain_finally, inline=True),
               validate=_validate_finally, render=_render_finally,
               before=_before_finally, ended=_ended_finally, unwinding=_unwinding_finally,
               leave=_leave_finally, remap=_remap,
               comment=lambda op: f"try: {op.split} op(s), finally: "
               f"{len(op.then) - op.split} op(s) (record the exception leaving the try part)"),
    ),
    draw=_draw,
    claims=_claims,
    dying=_dying,
    decorate=Decorations(kick=_kick, tame=_tame),
)
