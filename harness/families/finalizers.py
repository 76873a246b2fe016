"""Family ``finalizers``: code that runs when a greenlet is freed — weak-reference
callbacks and ``__del__`` of objects it holds, greenlet subclasses that customise
``run`` or ``__init__``, and greenlets that resurrect themselves when killed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Decorations,
    Drawing,
    Emitter,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Script,
    flatten,
    indent,
    ref,
    remap,
    span,
    walk,
)
from greenfuzz.harness.families.core import (
    SPAWN_KINDS,
    Current,
    Inspect,
    Raise,
    Return,
    Spawn,
    Switch,
    Throw,
    inspects,
    switches,
    throws,
    validate_callback,
)
from greenfuzz.harness.families.deliveries import (
    CATCHABLE,
    Args,
    Delivery,
    State,
    Throwing,
    Unsupported,
    harness_error,
    pack,
)
from greenfuzz.harness.families.exceptions import Finally

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG, Level

#: How a ``Finalize`` attaches its finalizer: a callback of a weak reference to the
#: greenlet, or ``__del__`` of an object stored as an attribute of the greenlet.
FINALIZER_KINDS = ("weakref", "held")


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


def _claims(op: Op) -> bool:
    return (isinstance(op, Spawn) and op.kind != "plain") or \
        (isinstance(op, Inspect) and op.attr == "tag")


def _validate_finalize(owner: str, op: Finalize) -> None:
    if op.kind not in FINALIZER_KINDS:
        raise ProgramError(f"{owner}: unknown finalizer kind {op.kind!r}")
    if op.target == MAIN:
        # The main greenlet outlives the program: its finalizer would run in a later one.
        raise ProgramError(f"{owner}: no finalizer on main")
    validate_callback(owner, op.then, (Switch, Throw, Inspect, Current), "a finalizer")


def _validate_resurrect(owner: str, op: Resurrect) -> None:
    if owner == MAIN:
        raise ProgramError(f"{owner}: main cannot resurrect (it is never collected)")
    for o in walk(op.then):
        # A GreenletExit raised in the block would be caught too; a finally part
        # running inside the handler's try is not modelled.
        if isinstance(o, Finally) or (isinstance(o, Raise) and o.exc.type == "GreenletExit"):
            raise ProgramError(f"{owner}: no finally block or raise of GreenletExit "
                               "in a Resurrect")


def _render_finalize(e: Emitter, who: str, pc: int, op: Finalize) -> List[str]:
    """A ``Finalize`` op: its ops in a function the finalizer calls when the target is
    freed (what escapes it is unraisable: ``sys.unraisablehook`` records it)."""
    body = [line for lines in e.nested(who, pc, op) for line in lines]
    fn = f"finalizer_{who}_{pc}"
    return [f"# {pc}: {e.comment(op)}", f"def {fn}():",
            f"    rec({who!r}, {pc}, 'finalizer', label(getcurrent()))",
            *indent(body, empty=""), f"    rec({who!r}, {pc}, 'finalized', None)",
            "try:", f"    T.finalize({ref(op.target)}, {op.kind!r}, {fn})",
            "except Unbound as e:", f"    rec({who!r}, {pc}, 'unbound', e.args[0])",
            "else:", f"    rec({who!r}, {pc}, 'done', None)"]


def _render_resurrect(e: Emitter, who: str, pc: int, op: Resurrect) -> List[str]:
    """A ``Resurrect`` op: its ops inline in a ``try`` whose ``except GreenletExit``
    registers the greenlet again and switches."""
    body = [line for lines in e.nested(who, pc, op) for line in lines]
    return [f"# {pc}: {e.comment(op)}", "try:", *indent(body), "except GreenletExit:",
            f"    rec({who!r}, {pc}, 'resurrected', T.resurrect({who!r}))",
            "    try:", f"        r = {ref(op.target)}.switch()",
            "    except Unbound as e:", f"        rec({who!r}, {pc}, 'unbound', e.args[0])",
            "    except Exception as e:", f"        rec({who!r}, {pc}, 'caught', e)",
            "    else:", f"        rec({who!r}, {pc}, 'value', r)",
            f"rec({who!r}, {pc}, 'done', None)"]


# -- model rules -----------------------------------------------------------------------

@dataclass
class Attached:
    """A finalizer attached to a greenlet: the ``Finalize`` op, in ``owner``'s script at
    op index ``pc``."""

    owner: str
    pc: int
    op: Finalize


@dataclass
class Body:
    """A greenlet performing a finalizer's ops: its own place in its script, saved, and
    the finalizer's owner and op index range."""

    script: Tuple[Op, ...]
    pc: int
    levels: List[Level]
    owner: str
    start: int
    end: int


@dataclass
class Waiting:
    """A greenlet waiting, in a drop, for the kill of one that resurrects: the greenlet
    killed and its parent to restore."""

    killed: MG
    parent: Optional[MG]


@dataclass
class Finalizers:
    """The model's state of this family."""

    #: The finalizers attached to each greenlet, in order.
    attached: Dict[MG, List[Attached]] = field(default_factory=dict)
    #: Greenlets running a finalizer.
    bodies: Dict[MG, Body] = field(default_factory=dict)
    #: Greenlets waiting for a kill (``start_kill``).
    waiting: Dict[MG, Waiting] = field(default_factory=dict)
    #: Greenlets whose pending switch is a ``Resurrect`` handler's: its op index.
    handler_at: Dict[MG, int] = field(default_factory=dict)


def _state(m: Model) -> Finalizers:
    return m.ext["finalizers"]


def _finalize(m: Model, g: MG, op: Finalize) -> None:
    """Attach the finalizer; its ops are skipped here (they run when the target is
    freed, see ``_freeing``)."""
    target = m.lookup(op.target)
    assert target is not None
    _state(m).attached.setdefault(target, []).append(Attached(g.name, g.pc, op))
    m.rec(g.name, g.pc, "done", None)
    g.pc += span(op)


def resurrects(m: Model, g: MG) -> bool:
    """``g`` is suspended in a ``Resurrect`` block (and not in a finalizer)."""
    return g not in _state(m).bodies and \
        any(isinstance(g.script[level.start], Resurrect) for level in g.levels)


def _collecting(m: Model, g: MG) -> bool:
    """``g`` is freed while it is in a ``Resurrect`` block: its kill is a real switch
    that may not come back at once (the handler switches away), so, like finalizers,
    it is only modelled where the rest of the op can wait (``Model.safely``)."""
    if m.current.in_thread and g in _state(m).attached:
        raise Unsupported(f"{g.name}'s finalizer would run in another thread")
    if g.state is not State.SUSPENDED or not resurrects(m, g):
        return False
    if m.safe is None:
        raise Unsupported(f"{g.name} would resurrect in the middle of a switch")
    dropper = m.safe
    m.deferred.append(lambda: _start_kill(m, dropper, g))
    return True


def _freeing(m: Model, g: MG, parent: Optional[MG]) -> bool:
    """``g`` is freed and has finalizers: they run in the greenlet whose op freed it,
    after the kill, before ``g``'s parent link is released (greenlet's dealloc kills,
    then clears weak references, then its ``__dict__``, then drops the parent).

    Weak reference callbacks run newest first (CPython's ``PyObject_ClearWeakRefs``),
    then the held objects' ``__del__`` in the order they were stored (the dict's).
    A finalizer that may switch is only modelled where nothing else of the
    interrupted step is left but releasing references (``safely``): anywhere else
    (in the middle of a switch or a kill) it is ``Unsupported``.
    """
    attached = _state(m).attached.pop(g, [])
    if not attached:
        return False
    if m.safe is None:
        raise Unsupported(f"{g.name}'s finalizer would run in the middle of a switch")
    weak = [a for a in attached if a.op.kind == "weakref"]
    held = [a for a in attached if a.op.kind == "held"]
    dropper = m.safe
    for one in (*reversed(weak), *held):
        m.deferred.append(lambda a=one: _start_body(m, dropper, a))
    m.deferred.append(lambda: m.safely(dropper, lambda: m.release(parent)))
    return True


def _start_body(m: Model, g: MG, attached: Attached) -> None:
    """``g`` starts performing a finalizer's ops: the owner's ops, recorded as the
    owner's (``Model.speaking``), with ``g``'s own place in its script saved."""
    owner, pc = attached.owner, attached.pc
    m.events.append((owner, pc, "finalizer", g.name))
    _state(m).bodies[g] = Body(g.script, g.pc, g.levels, owner, pc, pc + span(attached.op))
    g.script = flatten(m.program.script(owner))
    g.pc, g.levels = pc + 1, []
    m.speaking[g.name] = owner


def _end_body(m: Model, g: MG, record: bool = True) -> None:
    body = _state(m).bodies.pop(g)
    del m.speaking[g.name]
    if record:
        m.events.append((body.owner, body.start, "finalized", None))
    g.script, g.pc, g.levels = body.script, body.pc, body.levels
    m.drain(g)


def _stepping(m: Model, g: MG) -> bool:
    body = _state(m).bodies.get(g)
    if body is not None and g.pc == body.end:
        _end_body(m, g)  # a finalizer's ops are done
        return True
    return False


def _uncaught(m: Model, g: MG, exc: object) -> bool:
    """Out of a finalizer: CPython reports it to sys.unraisablehook (in the greenlet
    running it) and the interrupted op goes on."""
    if g not in _state(m).bodies:
        return False
    m.rec(g.name, -1, "unraisable", exc)
    _end_body(m, g, record=False)
    return True


def _killing(m: Model, g: MG) -> None:
    state = _state(m)
    if g in state.bodies:
        # CPython swallows the GreenletExit as unraisable where it leaves the
        # finalizer, so the greenlet lives on ("GreenletExit did not kill"): avoided.
        raise Unsupported(f"{g.name} killed while running a finalizer")
    if g in state.waiting or resurrects(m, g):
        raise Unsupported(f"{g.name} killed while waiting for a kill, or resurrecting "
                          "where its dropper cannot wait")
    state.handler_at.pop(g, None)  # killed in a Resurrect handler's switch: it dies


def _busy(m: Model, g: MG) -> bool:
    return g in _state(m).bodies or g in _state(m).waiting


def _start_kill(m: Model, dropper: MG, g: MG) -> None:
    """greenlet 3.x kills ``g`` from its dealloc: GreenletExit is thrown into it with
    its parent temporarily ``dropper`` (which waits in the dealloc until something
    switches back to it, ``_kill_returned``), holding one reference meanwhile."""
    _state(m).waiting[dropper] = Waiting(g, g.parent)
    g.parent = dropper
    g.rc += 1
    dropper.state = State.SUSPENDED
    m.enter(g, Throwing(harness_error("GreenletExit")), dropper)


def _receiving(m: Model, g: MG, delivery: Delivery) -> bool:
    state = _state(m)
    if g in state.waiting:
        _kill_returned(m, g, delivery)
        return True
    if g in state.handler_at:
        _handler_returned(m, g, delivery)
        return True
    return False


def _kill_returned(m: Model, dropper: MG, delivery: Delivery) -> None:
    """Control is back in the dealloc: the value is dropped, an exception is
    unraisable (verified on greenlet 3.5.6), ``g``'s parent is restored and, since
    it resurrected, nothing is freed; the interrupted op goes on."""
    waiting = _state(m).waiting.pop(dropper)
    g = waiting.killed
    if isinstance(delivery, Throwing):
        m.rec(dropper.name, -1, "unraisable", delivery.exc)
    g.parent = waiting.parent
    g.rc -= 1
    if g.rc == 0:
        # Dropped again before the dealloc returned: greenlet frees it or reports
        # "GreenletExit did not kill" depending on its state; not modelled.
        raise Unsupported(f"{g.name} dropped again while its kill was pending")
    m.drain(dropper)


def _unwinding(m: Model, g: MG, start: int, op: Resurrect, obj: object) -> bool:
    """A GreenletExit reaches the ``Resurrect`` block at ``start``: its handler
    registers ``g`` again, records ``g``'s parent (during a kill: the greenlet that
    dropped it, greenlet's test_parent_restored_on_kill) and switches."""
    if obj.exc.type != "GreenletExit":  # type: ignore[attr-defined]
        return False
    m.pop_level(g)
    if m.registry.get(g.name) is not g:
        m.registry[g.name] = g
        g.rc += 1
    m.rec(g.name, start, "resurrected", m.label(g.parent))
    g.pc = start
    target = m.lookup(op.target)
    if target is None:
        m.rec(g.name, start, "unbound", op.target)
        m.rec(g.name, start, "done", None)
        g.pc = start + span(op)
        return True
    _state(m).handler_at[g] = start
    if m.foreign_root(m.resolve(target)):
        # An unstarted target whose parent chain ends at another thread's main greenlet
        # (``ThreadParent``): the handler's switch raises greenlet.error there, as any
        # switch does (python_threads docs: "It is not possible to mix or switch between
        # greenlets belonging to different threads").
        _handler_returned(m, g, Throwing(harness_error("greenlet.error")))
        return True
    m.transfer(target, Args((), {}))
    return True


def _handler_returned(m: Model, g: MG, delivery: Delivery) -> None:
    """The handler's switch returns (or raises: caught like a catching op's, else it
    propagates from the handler); the block is done."""
    start = _state(m).handler_at.pop(g)
    if isinstance(delivery, Throwing) and delivery.exc.type not in CATCHABLE:
        return m.fail(g, None, delivery.exc, delivery.obj)
    if isinstance(delivery, Args):
        m.rec(g.name, start, "value", pack(delivery.args, delivery.kwargs))
    else:
        m.rec(g.name, start, "caught", delivery.exc)
    m.rec(g.name, start, "done", None)
    g.pc = start + span(g.script[start])


# -- strategies ------------------------------------------------------------------------

@lru_cache(maxsize=256)
def finalizers(targets: Tuple[str, ...], on: str = "") -> st.SearchStrategy[Finalize]:
    """A ``Finalize`` on a greenlet (never main; ``on`` when given, with at least one op)
    whose ops switch, throw (catching) or look around, in whichever greenlet frees it."""
    candidates = [on] if on else [t for t in targets if t != MAIN]
    if not candidates:
        return st.nothing()
    inside = st.one_of(
        switches(targets).map(lambda op: replace(op, catch=True)),
        throws(targets).map(lambda op: replace(op, catch=True)),
        inspects(targets, ("dead", "bool", "parent", "tag")),
        st.just(Current()),
    )
    return st.builds(Finalize, st.sampled_from(candidates), st.sampled_from(FINALIZER_KINDS),
                     st.lists(inside, min_size=1 if on else 0, max_size=3).map(tuple))


#: Mostly plain (shrinks towards it), else one of the customised subclasses.
_spawn_kind = st.integers(min_value=0, max_value=7).map(lambda n: SPAWN_KINDS[max(0, n - 5)])
_finalize_after = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)
_resurrects = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _spawn(d: Drawing, op: Spawn) -> Spawn:
    kind = d.draw(_spawn_kind)
    return replace(op, kind=kind, subclass=op.subclass and kind == "plain")


def _after_spawn(d: Drawing, name: str) -> List[Op]:
    """Right after the spawn, so that the name is bound: freed later by a drop,
    re-parenting or the teardown, it runs (and its ops most likely switch)."""
    return [d.draw(finalizers(d.targets, name))] if d.draw(_finalize_after) else []


def _resurrecting(d: Drawing, script: Script) -> Script:
    """Maybe a ``Resurrect`` block round a run of the script's top-level ops (up to its
    first return, raise or block that a ``Resurrect`` may not hold, after its spawns),
    ending with a switch to main: parked there, a drop or the teardown kills it in it."""
    limit = 0
    while limit < len(script) and not isinstance(script[limit], (Return, Raise)) and \
            not any(isinstance(o, (Finally, Raise)) for o in walk(script[limit:limit + 1])):
        limit += 1
    # After its spawns, which stay at the top level of scripts.
    first = max((i + 1 for i, op in enumerate(script[:limit]) if isinstance(op, Spawn)),
                default=0)
    if not d.draw(_resurrects):
        return script
    start = d.draw(st.integers(min_value=first, max_value=limit))
    end = d.draw(st.integers(min_value=start, max_value=limit))
    block = Resurrect(d.draw(st.sampled_from(d.targets)), (*script[start:end], Switch(MAIN)))
    return (*script[:start], block, *script[end:])


def without_finalizers(script: Script) -> Script:
    """``script`` without ``Finalize`` ops, and with ``Resurrect`` blocks' ops in place."""
    out: List[Op] = []
    for op in script:
        if isinstance(op, Resurrect):
            out += without_finalizers(op.then)
        elif not isinstance(op, Finalize):
            out.append(remap(op, without_finalizers))
    return tuple(out)


def _finish(d: Drawing, program: Any, predict: Callable[[Any], Any]) -> Any:
    """Some greenlets resurrect; then the program goes without its finalizers and
    resurrections when one would run where the model does not predict it (``Unsupported``:
    in the middle of a switch or a kill, where greenlet's dealloc has no documented
    behaviour for code that switches away, e.g. "GreenletExit did not kill" leaks the
    greenlet), or when a greenlet outlives the program, whose kill (when the process
    collects it) would run its handler during a later program."""
    program = replace(program, greenlets=tuple((name, _resurrecting(d, script))
                                               for name, script in program.greenlets))
    program.validate()
    if not any(isinstance(op, (Finalize, Resurrect))
               for _, s in program.scripts() for op in walk(s)):
        return program
    try:
        outlive = predict(program)[-1][3]
    except Unsupported:
        outlive = True
    if outlive:
        program = replace(program, main=without_finalizers(program.main),
                          greenlets=tuple((n, without_finalizers(s))
                                          for n, s in program.greenlets))
        program.validate()
    return program


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    if len(targets) <= 1:
        return []
    return [finalizers(targets), finalizers(targets), inspects(targets, ("tag",))]



# -- plain reproducers (``plainwriter``) -------------------------------------------

pw.define_helper("finalizers", """
finalizers = []  # weak references whose callbacks finalize
""", imports=("weakref",))

pw.define_helper('Held', '''
class Held:
    """Stored on a greenlet: its __del__ runs a finalizer when the greenlet is freed."""

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()
''')


def _plain_finalize(w: pw.Writer, who: str, pc: int, op: Finalize) -> pw.Rendered:
    events = w.events(who, pc)
    for i, kind, _ in events:
        if kind == "unbound":
            return [f"# finalizer on {op.target}: skipped, {op.target} is not bound here",
                    *w.sync(i, f"finalizer on {op.target}")], True
    w.need("seen")
    w.need("label")
    fn = f"finalizer_{w.ref(who)}_{pc}"
    w.finalizing = True
    body, _ = pw.nested(w, who, pc, op.then)
    w.finalizing = False
    w.functions.append([
        f"def {fn}(*_):", f"    \"\"\"Runs when {op.target} is freed.\"\"\"",
        f"    seen.append(f\"finalizer {who} {pc} runs in {{label(greenlet.getcurrent())}}\")",
        *("    " + line for line in body),
        f"    seen.append('finalizer {who} {pc} done')"])
    target = w.ref(op.target)
    if op.kind == "weakref":
        w.need("finalizers")
        attach = f"finalizers.append(weakref.ref({target}, {fn}))"
    else:
        w.need("Held")
        w.counter += 1
        attach = f"{target}.fuzz_held_{w.counter} = Held({fn})"
    done = pw.done(w, who, pc)
    return [attach, *(w.sync(done, f"{who}: finalizer attached") if done is not None else [])
            ], True


def _plain_resurrect(w: pw.Writer, who: str, pc: int, op: Resurrect) -> pw.Rendered:
    w.need("label")
    w.resurrecting, was = True, w.resurrecting
    body, goes_on = pw.nested(w, who, pc, op.then)
    w.resurrecting = was
    me = w.ref(who)
    events = w.events(who, pc)
    handler: List[str] = []
    for i, kind, payload in events:
        if kind == "resurrected":
            handler = [f"{me} = greenlet.getcurrent()  # registered again: resurrected",
                       f"names[id({me})] = (weakref.ref({me}), {who!r})",
                       *w.sync(i, f"{who} resurrects"),
                       f"check('{who}.parent when resurrected', label({me}.parent), "
                       f"{payload!r})"]
    if not handler:
        return ["try:", *("    " + line for line in pw.block_body(body)),
                "except greenlet.GreenletExit:",
                f"    fail('{who} got GreenletExit: expected it not to')"], goes_on
    switch = f"{w.ref(op.target)}.switch()"
    done = pw.done(w, who, pc)
    w.at[(who, pc)] = [e for e in events if e[1] in ("value", "caught", "unbound")]
    after, _ = w.outcome(who, pc, switch, switch, switch)
    w.at[(who, pc)] = events
    handler += after
    lines = ["try:", *("    " + line for line in pw.block_body(body)),
             "except greenlet.GreenletExit:", *("    " + line for line in handler)]
    if done is not None:
        lines += w.sync(done, f"{who}: after resurrecting")
    return lines, done is not None



FAMILY = Family(
    name="finalizers",
    ops=(
        OpSpec(Finalize, plain=PlainSpec(_plain_finalize, needs=lambda op: ("label",)),
               names=("target",), validate=_validate_finalize,
               render=_render_finalize, perform=_finalize,
               comment=lambda op: f"attach a {op.kind} finalizer to {op.target}: when it is "
               f"freed, do {len(op.then)} op(s)"),
        OpSpec(Resurrect, plain=PlainSpec(_plain_resurrect, inline=True, binds=lambda op, me: (me,),
                                         needs=lambda op: ("label",)),
               names=("target",), validate=_validate_resurrect, render=_render_resurrect,
               unwinding=_unwinding,
               comment=lambda op: f"on GreenletExit in the next {len(op.then)} op(s): "
               f"register itself again (resurrect) and switch to {op.target}"),
    ),
    draw=_draw,
    claims=_claims,
    state=Finalizers,
    collecting=_collecting,
    freeing=_freeing,
    killing=_killing,
    receiving=_receiving,
    stepping=_stepping,
    uncaught=_uncaught,
    busy=_busy,
    decorate=Decorations(spawn=_spawn, after_spawn=_after_spawn, finish=_finish),
)
