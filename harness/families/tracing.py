"""Family ``tracing``: ``greenlet.settrace`` — a tracer sees every switch and throw, one
that raises replaces what the target receives, and one switches from its callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

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
    walk,
)
from greenfuzz.harness.families.core import Switch
from greenfuzz.harness.families.deliveries import (
    Args,
    Delivery,
    ExcValue,
    State,
    Throwing,
    Unsupported,
)

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG

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


@dataclass
class Tracer:
    """The model's tracing state: the installed tracer's mode (None: none), and whether
    the ``bounce`` tracer has switched from its callback (it does so once)."""

    mode: Optional[str] = None
    bounced: bool = False


@dataclass
class Bounced:
    """A greenlet suspended inside the ``bounce`` callback: the delivery of the switch
    it was entering, and the origin the callback switched back to."""

    delivery: Args
    origin: MG


def _tracer(m: Model) -> Tracer:
    return m.ext["tracing"]


def _validate(owner: str, op: Trace) -> None:
    if op.mode not in TRACE_MODES:
        raise ProgramError(f"{owner}: unknown trace mode {op.mode!r}")


def _perform(m: Model, g: MG, op: Trace) -> None:
    """api docs: settrace "Sets a new tracing function and returns the previous one"."""
    if m.finished:
        # Run at teardown (a finalizer or resurrected greenlet switched to it): the
        # tracer would stay installed for the next program run in the same thread.
        raise Unsupported("a tracer installed after main's script ended")
    m.rec(g.name, g.pc, "tracer", _tracer(m).mode)
    _tracer(m).mode = None if op.mode == "off" else op.mode
    g.pc += 1


def _switching(m: Model, event: str, origin: MG, target: MG) -> Optional[Throwing]:
    """tracing docs: the callback gets ``('switch', (origin, target))`` or ``('throw',
    (origin, target))`` and "is running in the context of the target greenlet and any
    exceptions will be passed as if target.throw() was used instead of a switch" (for
    a throw: "will replace the original").  A tracer that raises is uninstalled
    (greenlet's test_tracing); returns what the target then receives."""
    tracer = _tracer(m)
    if tracer.mode is None:
        return None
    m.rec(target.name, -1, "trace", (event, origin.name, target.name))
    if tracer.mode != "raise" or not (m.held(origin) and m.held(target)):
        return None
    tracer.mode = None
    return Throwing(ExcValue("FuzzError", ("trace",)))


def _entering(m: Model, dest: MG, delivery: Delivery, origin: MG) -> bool:
    """The ``bounce`` tracer switches from inside its callback (once per program): on a
    switch from a suspended greenlet to a suspended one, both held by the program.

    tracing docs: the callback "is running in the context of the target greenlet";
    greenlet lets it switch (greenlet's fail_switch_three_greenlets2 checks the
    outcome): the target becomes current, its callback switches back to the origin,
    whose pending call returns ``'bounce'``.  The target stays suspended inside the
    callback, the original delivery pending (``_resuming``), and the callback's
    ``(origin, target)`` arguments keep both alive meanwhile (verified on 3.5.6)."""
    tracer = _tracer(m)
    if not (tracer.mode == "bounce" and not tracer.bounced and isinstance(delivery, Args)
            and origin is not dest and origin.state is State.SUSPENDED
            and dest.state is State.SUSPENDED and m.held(origin) and m.held(dest)):
        return False
    tracer.bounced = True
    m.set_current(dest)
    dest.ext["bounced"] = Bounced(delivery, origin)
    m.incref(origin)
    m.incref(dest)
    raised = m.trace("switch", dest, origin)
    m.set_current(origin)
    m.resume(origin, raised or Args(("bounce",), {}))
    return True


def _resuming(m: Model, g: MG, delivery: Delivery) -> Delivery:
    """A greenlet suspended in the ``bounce`` callback is switched to: the callback's
    switch returns and it returns, and the original switch completes with what it
    carried (this delivery's value is the callback's, unused); thrown to, the callback
    raises, so greenlet uninstalls it and the exception replaces the switch (as for
    any callback that raises).  Then the callback's arguments are released."""
    bounced = g.ext.pop("bounced", None)
    if bounced is None:
        return delivery
    if isinstance(delivery, Throwing):
        _tracer(m).mode = None
    else:
        delivery = bounced.delivery
    m.release(bounced.origin)
    m.release(g)
    return delivery


def _main_finished(m: Model) -> None:
    _tracer(m).mode = None  # the program removes its tracer when main's script ends


def _cleanup(scripts: Scripts) -> List[str]:
    if any(isinstance(op, Trace) for _, script in scripts for op in walk(script)):
        return ["gl.settrace(None)  # tracing ends with main's script"]
    return []


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    # A tracer that bounces needs two suspended greenlets to act on: drawn more often.
    return [st.builds(Trace, st.sampled_from(TRACE_MODES))] * 2 + [st.just(Trace("bounce"))] * 2


_bounce_after = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _after_kick(d: Drawing, name: str, main: List[Op], at: int, own: List[Op]) -> None:
    """Once it has parked, switch to it again under the tracer that switches from its
    callback (which needs two suspended greenlets)."""
    if d.draw(_bounce_after):
        main[at + 1:at + 1] = [Trace("bounce"), Switch(name)]



# -- plain reproducers (``plainwriter``) -------------------------------------------

pw.define_helper('tracers', '''
def tracer(event, args):
    """Notes every switch and throw, in the greenlet switched to."""
    if event in ("switch", "throw"):
        origin, target = args
        seen.append(f"trace: {event} {label(origin)} -> {label(target)}")


def raising_tracer(event, args):
    """Notes it, then raises, between greenlets this script holds."""
    tracer(event, args)
    if event in ("switch", "throw") and all(
            g is main or globals().get(label(g)) is g for g in args):
        del args  # the traceback keeps this frame: not the greenlets
        raise FuzzError("trace")


def bouncing_tracer(event, args):
    """Notes it; once, on a switch between two suspended greenlets this script holds,
    switches straight back to the origin from inside the callback (in the target)."""
    tracer(event, args)
    if bounced or event != "switch":
        return
    origin, target = args
    if origin is target or origin.dead or label(target) not in ["main", *started] or not all(
            g is main or globals().get(label(g)) is g for g in args):
        return
    bounced.append(True)
    try:
        origin.switch("bounce")
    except BaseException:
        del args, origin, target  # the traceback keeps this frame: not the greenlets
        raise


bounced = []
''', needs=('seen', 'label', 'FuzzError', 'started'))


_PLAIN_TRACERS = {"record": "tracer", "raise": "raising_tracer", "off": "None",
            "bounce": "bouncing_tracer"}


def _plain_trace(w: pw.Writer, who: str, pc: int, op: Trace) -> pw.Rendered:
    w.need("tracers")
    w.needs.add("main")
    w.after_main["tracing"] = lambda w: [
        "greenlet.settrace(None)  # tracing ends with main's script"]
    previous = {None: "None", "record": "tracer", "raise": "raising_tracer",
                "bounce": "bouncing_tracer"}
    for i, kind, payload in w.events(who, pc):
        if kind == "tracer":
            w.at[(who, pc)] = [(i, kind, pw.Source(previous.get(payload, repr(payload))))]
    fn = _PLAIN_TRACERS.get(op.mode, "tracer")
    return pw.recorded(w, who, pc, "tracer", f"greenlet.settrace({fn})",
                       f"greenlet.settrace({fn})")



FAMILY = Family(
    name="tracing",
    ops=(OpSpec(Trace, plain=PlainSpec(_plain_trace, needs=lambda op: ("label",)),
               validate=_validate, perform=_perform, result="tracer",
                comment=lambda op: {"record": "install the tracer",
                                    "raise": "install a tracer that raises",
                                    "off": "remove the tracer",
                                    "bounce": "install a tracer that switches back once"}[op.mode],
                statement=lambda op: f"r = T.tracer_mode(tracers, gl.settrace("
                f"tracers[{op.mode!r}]))"),),
    draw=_draw,
    needs=("settrace", "gettrace"),
    cleanup=_cleanup,
    state=Tracer,
    switching=_switching,
    entering=_entering,
    resuming=_resuming,
    main_finished=_main_finished,
    decorate=Decorations(after_kick=_after_kick),
)
