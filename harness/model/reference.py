"""The reference model: what a correct greenlet implementation does with a program.

Pure Python, no greenlet import.  ``predict(program)`` returns the exact trace the
runner must observe: every ``start``, every value ``switch()``/``throw()`` returns, every
exception caught or fatal, every attribute read, and every ``GreenletExit`` delivered by
reference counting, in order.

Each rule cites greenlet's documentation (https://greenlet.readthedocs.io, pages
``switching``, ``creating_executing_greenlets``, ``greenlet_gc``, ``api``); where the
documentation is silent or wrong, the rule says what greenlet 3.x does and the
differential test (``tests/test_model_vs_greenlet.py``) keeps it honest.

Reference counting is modelled because collection is part of the semantics ("If all the
references to a greenlet object go away ... a GreenletExit exception is generated into
the greenlet", greenlet_gc).  A greenlet's count is the sum of: the program's registry
entry, the ``parent`` link of every greenlet object that still exists, the pending
``switch``/``throw`` call of a suspended greenlet (its frame holds the bound method, so
the greenlet it called stays alive), and being current.  The runner keeps the cyclic
collector off so that only reference counting frees greenlets, as here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from greenfuzz.harness.program.ir import (
    MAIN,
    Bogus,
    CtxCopy,
    CtxGet,
    CtxSet,
    Current,
    Drop,
    Exc,
    ExcInfo,
    Finalize,
    Finally,
    Frames,
    Handle,
    Inspect,
    InThread,
    Op,
    Orphan,
    Program,
    Raise,
    Recurse,
    Resurrect,
    Return,
    SetParent,
    Spawn,
    Switch,
    ThreadParent,
    Throw,
    Trace,
    flatten,
    span,
)
from greenfuzz.harness.target.runtime import VIA_FRAMES, ExcValue

Event = Tuple[str, int, str, object]

UNSTARTED, RUNNING, SUSPENDED, DEAD = "unstarted", "running", "suspended", "dead"

#: Exception types a script's ``except Exception`` catches; GreenletExit derives from
#: BaseException ("GreenletExit ... does not inherit from Exception", api docs).
CATCHABLE = {"ValueError", "KeyError", "RuntimeError", "FuzzError", "TypeError",
             "AttributeError", "greenlet.error"}

#: A model that takes more steps than this has a bug (programs are finite by construction).
STEP_LIMIT = 1_000_000


class ModelError(RuntimeError):
    """The model met a situation it does not cover; never a verdict on an implementation."""


class Unsupported(ModelError):
    """A program whose outcome the model does not predict on purpose (a finalizer that
    would run in the middle of a switch, say); strategies leave such programs out."""


@dataclass
class Args:
    """A delivery of switch arguments (or a return value, as a 1-tuple).

    ``exit_value`` marks a GreenletExit turned into a value (``g_handle_exit``): a
    suspended receiver gets the exception object, but an unstarted one is started with
    no arguments at all (verified on greenlet 3.5.6).
    """

    args: Tuple
    kwargs: Dict
    exit_value: bool = False


class Flying:
    """An exception object as it travels (family ``exceptions``): its ``__cause__`` and the
    ``run_*`` functions its ``__traceback__`` holds, outermost first.  Python adds a
    frame's entry each time the object is raised in or propagates into that frame, so a
    greenlet's ``run`` is added when the exception reaches its ``run`` frame (never
    twice for one pass: a bare re-raise adds nothing), and an object thrown on with
    ``throw(*sys.exc_info())`` keeps what it had (test_throw; verified on 3.5.6)."""

    __slots__ = ("cause", "exc", "tb")

    def __init__(self, exc: ExcValue, cause: Optional[ExcValue] = None) -> None:
        self.exc = exc
        self.cause = cause
        self.tb: List[str] = []

    def record(self) -> Tuple[ExcValue, Optional[ExcValue], Tuple[str, ...]]:
        """What ``runtime.in_flight`` records of it."""
        return (self.exc, self.cause, tuple(self.tb))


@dataclass
class Throwing:
    """A delivery of an exception, raised where the receiver is suspended (``obj``: the
    object itself, when it already has a history; None for a fresh one)."""

    exc: ExcValue
    obj: Optional[Flying] = None


Delivery = Union[Args, Throwing]


class MG:
    """A model greenlet object."""

    __slots__ = ("bounced", "context", "finals", "foreign", "gone", "handled", "handling",
                 "hold", "in_thread", "is_main", "killing", "levels", "name", "parent", "pc",
                 "rc", "script", "state")

    def __init__(self, name: str, script: Tuple[Op, ...], parent: Optional[MG]) -> None:
        self.name = name
        self.script = flatten(script)  # event op indexes are indexes here
        #: The blocks (``Recurse``, ``Handle``) being performed: (op index, index past its
        #: ops), outermost first.
        self.levels: List[Tuple[int, int]] = []
        #: The exceptions its open ``Handle`` blocks handle, with their ``__context__``.
        self.handling: List[Tuple[ExcValue, Optional[ExcValue]]] = []
        #: Its contextvars context: a greenlet starts with an empty one.
        self.context: Dict[str, object] = {}
        #: Performing an ``InThread`` block: its ops run in another thread.
        self.in_thread = False
        self.parent = parent
        self.state = UNSTARTED
        self.pc = 0
        self.rc = 0
        self.hold: Optional[MG] = None
        self.is_main = False
        #: Freed: its reference count reached zero (the liveness check's "gone").
        self.gone = False
        #: The exception objects of its open ``Handle`` blocks (as ``handling``).
        self.handled: List[Flying] = []
        #: Its ``Finally`` blocks whose finally part runs, by op index: the exception
        #: that will go on once it is done (None: the try part ended normally).
        self.finals: Dict[int, Optional[Flying]] = {}
        #: Running its finally parts because it is being killed (``kill``).
        self.killing = False
        #: The main greenlet of a program's other thread (``ThreadParent``).
        self.foreign = False
        #: Suspended inside the ``bounce`` tracer: the delivery of the switch it was
        #: entering, and the origin the callback switched back to.
        self.bounced: Optional[Tuple[Args, MG]] = None

    def __repr__(self) -> str:
        return f"<MG {self.name} {self.state} pc={self.pc} rc={self.rc}>"


def pack(args: Tuple, kwargs: Dict) -> object:
    """What a resumed ``switch()`` returns.

    switching docs: "If the greenlet *was* running, multiple arguments will be a tuple,
    and keyword arguments will be a dict; any number of positional arguments with
    keyword arguments will have the entire set in a tuple, with positional arguments in
    their own nested tuple, and keyword arguments as a dict in the last element".  One
    argument is delivered as itself.  With no arguments greenlet delivers ``()``, not the
    ``None`` its docstring claims (verified on 1.1.2 to 3.5.6).
    """
    if kwargs:
        return (tuple(args), dict(kwargs)) if args else dict(kwargs)
    if len(args) == 1:
        return args[0]
    return tuple(args)


def exc_value(exc: Exc) -> ExcValue:
    return ExcValue(exc.type, tuple(exc.args))


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


def harness_error(type_name: str) -> ExcValue:
    """An error raised by the implementation: messages vary by release, so args are free."""
    return ExcValue(type_name, None)


class Model:
    """Executes a program on model greenlets and records the trace it predicts."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.scripts = dict(program.greenlets)
        self.events: List[Event] = []
        self.registry: Dict[str, MG] = {}
        #: Every greenlet spawned so far, in spawn order (registered or not).
        self.spawned: List[MG] = []
        self.main = MG(MAIN, program.main, None)
        self.main.is_main = True
        self.main.state = RUNNING
        self.main.rc = 1 << 40  # the thread holds its main greenlet for ever
        self.current = self.main
        self.pending: Optional[Tuple[MG, Delivery, MG]] = None
        self.finished = False
        self.steps = 0
        #: The mode of the program's tracer installed (``greenlet.settrace``), or None.
        self.tracing: Optional[str] = None
        #: Family ``finalizers``: each spawned name's (``Spawn.kind``, ``Spawn.subclass``).
        self.kinds: Dict[str, Tuple[str, bool]] = {}
        #: The finalizers attached to each greenlet: (owner, op index, op), in order.
        self.finalizers: Dict[MG, List[Tuple[str, int, Finalize]]] = {}
        #: The greenlet whose op is releasing a reference right now, when a finalizer
        #: this frees may run in it (``safely``); None elsewhere.
        self.safe: Optional[MG] = None
        #: Work that ``collect`` deferred during a ``safely`` release.
        self.deferred: List = []
        #: What remains of each greenlet's interrupted op, to do once its finalizers ran.
        self.work: Dict[MG, List] = {}
        #: Greenlets running a finalizer: their saved (script, pc, levels), and the
        #: finalizer's (owner, op index, index past its ops).
        self.bodies: Dict[MG, Tuple] = {}
        #: Who a greenlet running a finalizer records its op events as (the owner).
        self.speaking: Dict[str, str] = {}
        #: Greenlets waiting, in a drop, for the kill of a greenlet that resurrects: the
        #: greenlet killed and its parent to restore.
        self.waiting: Dict[MG, Tuple[MG, Optional[MG]]] = {}
        #: Greenlets whose pending switch is a ``Resurrect`` handler's: its op index.
        self.handler_at: Dict[MG, int] = {}
        #: Family ``threads``: suspended greenlets freed in another thread, which greenlet
        #: kills when this thread next calls it (its "deleteme" list), in that order.
        self.deleteme: List[MG] = []
        #: ``Drop`` ops performed in the running ``InThread`` block.
        self.thread_drops = 0
        #: The main greenlet of the thread an ``InThread`` block runs in (made at need).
        self.thread_main: Optional[MG] = None
        #: The ``bounce`` tracer has switched from its callback (it does so once).
        self.bounce_used = False

    # -- public ----------------------------------------------------------------------

    def run(self) -> List[Event]:
        self.rec(MAIN, -1, "start", ((), {}))
        while not self.finished:
            self.advance()
        self.teardown()
        return self.events

    # -- recording and naming ----------------------------------------------------------

    def rec(self, who: str, pc: int, kind: str, payload: object = None) -> None:
        if pc >= 0 and who in self.speaking:
            who = self.speaking[who]  # a finalizer's op: rendered in its owner's script
        self.events.append((who, pc, kind, payload))

    def lookup(self, name: str) -> Optional[MG]:
        return self.main if name == MAIN else self.registry.get(name)

    @staticmethod
    def label(g: Optional[MG]) -> Optional[str]:
        return None if g is None else g.name

    # -- reference counting ------------------------------------------------------------

    def incref(self, g: Optional[MG]) -> None:
        if g is not None:
            g.rc += 1

    def release(self, g: Optional[MG]) -> None:
        """Drop one reference; at zero the greenlet is collected right away."""
        if g is None:
            return
        g.rc -= 1
        if g.rc == 0:
            self.collect(g)

    def collect(self, g: MG) -> None:
        """greenlet_gc: "If all the references to a greenlet object go away (including the
        references from the parent attribute of other greenlets), then there is no way to
        ever switch back to this greenlet. In this case, a GreenletExit exception is
        generated into the greenlet."  Unstarted and dead greenlets run nothing; freeing
        any greenlet releases its parent.

        Freed in another thread (an ``InThread`` block), a suspended greenlet is put on
        its thread's list of greenlets to kill "the next time that thread calls a
        greenlet API" (greenlet_gc, test_dealloc_other_thread): the end of the block
        (``end_thread``).  Unstarted and dead ones are freed there and then."""
        if self.current.in_thread and (g.state == SUSPENDED or g in self.finalizers):
            if g in self.finalizers:
                raise Unsupported(f"{g.name}'s finalizer would run in another thread")
            self.deleteme.append(g)
            return
        if g.state == SUSPENDED and self.resurrects(g):
            self.defer_resurrection(g)
            return
        g.gone = True
        if g.state == SUSPENDED:
            self.kill(g)
        parent, g.parent = g.parent, None
        finalizers = self.finalizers.pop(g, [])
        if finalizers:
            self.defer_finalizers(g, finalizers, parent)
            return
        self.release(parent)

    def kill(self, g: MG) -> None:
        """Deliver GreenletExit to a suspended greenlet nobody references.

        greenlet 3.x (``_green_dealloc_kill_started_non_main_greenlet``): the dying
        greenlet is resurrected for the duration, its parent is temporarily the current
        greenlet (so control comes back to whoever dropped it) and restored afterwards.
        Scripts never catch GreenletExit, so it unwinds and the greenlet dies; its
        pending call releases the greenlet it was switching to as it unwinds.
        """
        if g in self.bodies:
            # CPython swallows the GreenletExit as unraisable where it leaves the
            # finalizer, so the greenlet lives on ("GreenletExit did not kill"): avoided.
            raise Unsupported(f"{g.name} killed while running a finalizer")
        if g in self.waiting or self.resurrects(g):
            raise Unsupported(f"{g.name} killed while waiting for a kill, or resurrecting "
                              "where its dropper cannot wait")
        safe, self.safe = self.safe, None  # a finalizer freed inside a kill: not modelled
        self.handler_at.pop(g, None)  # killed in a Resurrect handler's switch: it dies
        dropper = self.current
        saved_parent = g.parent
        g.parent = dropper
        g.rc += 1  # resurrected while it dies
        self.current = g
        g.state = RUNNING
        self.trace("throw", dropper, g)
        hold, g.hold = g.hold, None
        self.release(hold)
        # greenlet gives this GreenletExit a message ("Killing the greenlet because all
        # references have vanished.") that other implementations need not copy.
        if any(isinstance(g.script[start], Finally) for start, _ in g.levels):
            self.run_finally_parts(g)
        else:
            self.rec(g.name, -1, "died", harness_error("GreenletExit"))
        g.state = DEAD
        self.trace("switch", g, dropper)  # the GreenletExit comes back as a value
        self.current = dropper
        g.parent = saved_parent
        g.rc -= 1
        self.safe = safe

    def set_current(self, g: MG) -> MG:
        """Make ``g`` current; the previous current greenlet loses that reference.

        A greenlet that is only referenced by being current (a script dropped its own
        registry entry) is collected as soon as control leaves it, before the greenlet
        switched to sees its value (verified on greenlet 3.5.6).
        """
        old = self.current
        g.rc += 1
        self.current = g
        old.rc -= 1
        if old.rc == 0:
            self.collect(old)
        return old

    # -- switching ---------------------------------------------------------------------

    def resolve(self, g: MG) -> MG:
        """switching docs: "any attempt to switch to a dead greenlet actually goes to the
        dead greenlet's parent, or its parent's parent, and so on. (The final parent is
        the "main" greenlet, which is never dead.)" """
        while g.state == DEAD:
            assert g.parent is not None, "a dead greenlet always has a parent"
            g = g.parent
        return g

    def transfer(self, target: MG, delivery: Delivery) -> None:
        """The current greenlet calls ``target.switch(...)`` or ``target.throw(...)``.

        The C docstring of ``switch``: "If the greenlet is dead, or is the current
        greenlet then this function will simply return the arguments".  Otherwise the
        caller is suspended, its pending call keeping ``target`` alive.
        """
        me = self.current
        dest = self.resolve(target)
        if dest is me:
            # Not a switch at all, but greenlet still calls the tracer (origin is target).
            raised = self.trace("throw" if isinstance(delivery, Throwing) else "switch", me, me)
            self.receive(me, raised or delivery)
            return
        me.state = SUSPENDED
        me.hold = target
        self.incref(target)
        self.enter(dest, delivery, me)

    def enter(self, dest: MG, delivery: Delivery, origin: MG) -> None:
        """Control arrives at ``dest`` (suspended or unstarted) from ``origin``.

        switching docs: "if g did not start yet, then it will start to run now; args
        and kwargs are passed to the greenlet's run() function as its arguments".
        Throwing into an unstarted greenlet is undocumented: greenlet 3.x starts it
        without calling ``run`` (``inner_bootstrap``), so it dies at once and the
        exception goes on to its parent.
        """
        raised = self.trace("throw" if isinstance(delivery, Throwing) else "switch", origin, dest)
        delivery = raised or delivery
        if raised is None and self.bounces(delivery, origin, dest):
            return self.bounce(dest, delivery, origin)
        self.set_current(dest)
        if dest.state == UNSTARTED:
            if isinstance(delivery, Args):
                dest.state = RUNNING
                dest.pc = 0
                start = ((), {}) if delivery.exit_value else (delivery.args, delivery.kwargs)
                self.rec(dest.name, -1, "start", (tuple(start[0]), dict(start[1])))
            else:
                dest.state = RUNNING
                self.finish(dest, delivery.exc, record=False, obj=delivery.obj)
            return
        assert dest.state == SUSPENDED, dest
        dest.state = RUNNING
        if dest.bounced is not None:
            delivery = self.unbounce(dest, delivery)
        hold, dest.hold = dest.hold, None
        self.release(hold)
        self.receive(dest, delivery)

    def bounces(self, delivery: Delivery, origin: MG, dest: MG) -> bool:
        """The ``bounce`` tracer switches from inside its callback (once per program): on a
        switch from a suspended greenlet to a suspended one, both held by the program."""
        return (self.tracing == "bounce" and not self.bounce_used
                and isinstance(delivery, Args) and origin is not dest
                and origin.state == SUSPENDED and dest.state == SUSPENDED
                and self.held(origin) and self.held(dest))

    def bounce(self, dest: MG, delivery: Args, origin: MG) -> None:
        """tracing docs: the callback "is running in the context of the target greenlet";
        greenlet lets it switch (greenlet's fail_switch_three_greenlets2 checks the
        outcome): the target becomes current, its callback switches back to the origin,
        whose pending call returns ``'bounce'``.  The target stays suspended inside the
        callback, the original delivery pending (``unbounce``), and the callback's
        ``(origin, target)`` arguments keep both alive meanwhile (verified on 3.5.6)."""
        self.bounce_used = True
        self.set_current(dest)
        dest.bounced = (delivery, origin)
        self.incref(origin)
        self.incref(dest)
        raised = self.trace("switch", dest, origin)
        self.set_current(origin)
        origin.state = RUNNING
        hold, origin.hold = origin.hold, None
        self.release(hold)
        self.receive(origin, raised or Args(("bounce",), {}))

    def unbounce(self, g: MG, delivery: Delivery) -> Delivery:
        """A greenlet suspended in the ``bounce`` callback is switched to: the callback's
        switch returns and it returns, and the original switch completes with what it
        carried (this delivery's value is the callback's, unused); thrown to, the callback
        raises, so greenlet uninstalls it and the exception replaces the switch (as for
        any callback that raises).  Then the callback's arguments are released."""
        original, origin = g.bounced
        g.bounced = None
        if isinstance(delivery, Throwing):
            self.tracing = None
        else:
            delivery = original
        self.release(origin)
        self.release(g)
        return delivery

    def receive(self, g: MG, delivery: Delivery) -> None:
        """The running greenlet's pending ``switch()``/``throw()`` call completes."""
        if g in self.waiting:
            return self.kill_returned(g, delivery)
        if g in self.handler_at:
            return self.handler_returned(g, delivery)
        if isinstance(delivery, Args):
            self.rec(g.name, g.pc, "value", pack(delivery.args, delivery.kwargs))
            g.pc += 1
        else:
            self.fail(g, g.script[g.pc], delivery.exc, delivery.obj)

    def finish(self, g: MG, outcome: Union[ExcValue, Return, None], record: bool = True,
               obj: Optional[Flying] = None) -> None:
        """``g``'s run ends: return value or exception goes to its parent.

        switching docs: "If a greenlet's run() finishes, its return value is the object
        sent to its parent. If run() terminates with an exception, the exception is
        propagated to its parent (unless it is a greenlet.GreenletExit exception, in
        which case the exception object is caught and *returned* to the parent)."
        """
        if isinstance(outcome, ExcValue):
            if record:
                self.rec(g.name, -1, "died", outcome)
            if outcome.type == "GreenletExit":
                delivery: Delivery = Args((outcome,), {}, exit_value=True)
            else:
                delivery = Throwing(outcome, obj)
        else:
            value = outcome.value if isinstance(outcome, Return) else None
            self.rec(g.name, g.pc, "return", value)
            delivery = Args((value,), {})
        if g.is_main:
            self.finished = True
            self.tracing = None  # the program removes its tracer when main's script ends
            return
        g.state = DEAD
        if g.killing:
            return  # the kill switches back to whoever dropped it (``kill``)
        assert g.parent is not None
        dest = self.resolve(g.parent)
        if self.foreign_root(dest):
            # greenlet aborts the process: "ran out of parent greenlets while
            # propagating exception" (the parent cannot be switched to from here).
            raise Unsupported(f"{g.name} ends into {dest.name}, whose thread has ended")
        self.pending = (dest, delivery, g)

    # -- operations ----------------------------------------------------------------------

    def step(self, g: MG) -> None:
        """Perform the next op of the running greenlet ``g``."""
        if g in self.bodies and g.pc == self.bodies[g][5]:
            self.end_body(g)  # a finalizer's ops are done
            return
        if g.levels:
            start, _ = g.levels[-1]
            op = g.script[start]
            if isinstance(op, Finally) and start not in g.finals \
                    and g.pc == self.finally_part(start, op):
                # The try part ended normally: the finally part runs, nothing in flight.
                g.finals[start] = None
                self.rec(g.name, start, "finally", None)
                return
        if g.levels and g.pc == g.levels[-1][1]:
            # A recursion's nested ops are done: it unwinds and records that (a correct
            # implementation never fails a canary or C-result check, so nothing else).
            start, _ = g.levels[-1]
            flying = g.finals.get(start)
            self.pop_level(g)
            if flying is not None:
                # A finally part done while an exception was in flight: it goes on.
                self.unwind(g, flying)
                return
            if isinstance(g.script[start], InThread):
                self.end_thread(g, start)
                return
            self.rec(g.name, start, "done", None)
            return
        if g.pc >= len(g.script):
            self.finish(g, None)
            return
        op = g.script[g.pc]
        if isinstance(op, Return):
            self.finish(g, op)
            return
        if isinstance(op, Raise):
            # ``raise X from sys.exc_info()[1]``: the handled exception, or None.
            cause = g.handling[-1][0] if op.cause and g.handling else None
            flying = Flying(exc_value(op.exc), cause)
            self.raised(g, flying)
            self.unwind(g, flying)
            return
        if isinstance(op, (Recurse, Handle, InThread, Finally, Resurrect)):
            if isinstance(op, InThread):
                g.in_thread = True
                self.thread_main = None
                self.thread_drops = 0
            if isinstance(op, Handle):
                # Python chains an exception raised while another is handled: its
                # __context__ is the one this greenlet was handling.
                context = g.handling[-1][0] if g.handling else None
                g.handling.append((exc_value(op.exc), context))
                handled = Flying(exc_value(op.exc))
                self.raised(g, handled)  # raised and caught in the same frame
                g.handled.append(handled)
            g.levels.append((g.pc, g.pc + span(op)))
            g.pc += 1
            return
        missing = self.unbound_name(op)
        if missing is not None:
            self.rec(g.name, g.pc, "unbound", missing)
            g.pc += span(op)
            return
        handler = getattr(self, "op_" + type(op).__name__)
        handler(g, op)

    def unbound_name(self, op: Op) -> Optional[str]:
        """The first name an op needs that the registry does not hold, in evaluation order."""
        if isinstance(op, SetParent):
            # ``ref(target).parent = ref(parent)``: Python evaluates the right side first.
            names = ([] if isinstance(op.parent, Bogus) else [op.parent]) + [op.target]
        elif isinstance(op, Spawn):
            names = [op.parent] if op.parent else []
        elif isinstance(op, Drop):
            names = [op.target]
        else:
            names = [getattr(op, "target", None)]
        for name in names:
            if name is not None and self.lookup(name) is None:
                return name
        return None

    def op_Switch(self, g: MG, op: Switch) -> None:
        target = self.lookup(op.target)
        assert target is not None
        if g.in_thread or self.foreign_root(self.resolve(target)):
            return self.fail(g, op, harness_error("greenlet.error"))
        if g.killing and self.resolve(target) is not g:
            # greenlet_gc: a killed greenlet "is expected to either die or be
            # resurrected"; one that switches away from its finally block instead is
            # leaked with "GreenletExit did not kill" on stderr: not modelled.
            raise Unsupported(f"{g.name} switches away while it is killed")
        self.transfer(target, Args(tuple(op.args), dict(op.kwargs)))

    def op_Throw(self, g: MG, op: Throw) -> None:
        """``throw()`` into a dead greenlet: greenlet 3.x (``throw_greenlet``) turns a
        GreenletExit into a plain return value ("dead greenlet: turn GreenletExit into a
        regular return"); any other exception goes up the parent chain."""
        target = self.lookup(op.target)
        assert target is not None
        if g.in_thread:
            # python_threads docs: "It is not possible to mix or switch between greenlets
            # belonging to different threads" (greenlet.error).
            return self.fail(g, op, harness_error("greenlet.error"))
        if self.foreign_root(self.resolve(target)):
            # An unstarted greenlet whose parent chain ends in another thread.
            return self.fail(g, op, harness_error("greenlet.error"))
        if g.killing:
            raise Unsupported(f"{g.name} throws while it is killed")
        obj = None
        if op.style == "exc_info":
            # ``g.throw(*sys.exc_info())``: the exception this greenlet handles (each
            # greenlet has its own, test_exc_state); with none, ``throw(None, None,
            # None)`` is a TypeError in the caller.
            if not g.handling:
                return self.fail(g, op, harness_error("TypeError"))
            exc, obj = g.handling[-1][0], g.handled[-1]
        else:
            exc = thrown(op)
        if target.state == DEAD and exc.type == "GreenletExit":
            self.transfer(target, Args((exc,), {}, exit_value=True))
        else:
            self.transfer(target, Throwing(exc, obj))

    def op_Spawn(self, g: MG, op: Spawn) -> None:
        """api docs: ``greenlet(run=None, parent=None)``; a None parent is the current
        greenlet."""
        parent = self.lookup(op.parent) if op.parent else self.current
        child = MG(op.name, self.scripts[op.name], parent)
        self.incref(parent)
        child.rc = 1
        self.kinds[op.name] = (op.kind, op.subclass)
        self.spawned.append(child)
        old = self.registry.get(op.name)
        self.registry[op.name] = child
        self.release(old)
        self.done(g)

    def op_Drop(self, g: MG, op: Drop) -> None:
        victim = self.registry.pop(op.target)
        if g.in_thread:
            self.thread_drops += 1  # the runtime records ``alive`` again after the join
        self.safely(g, lambda: self.release(victim))
        self.after(g, lambda: (self.check_alive(), self.done(g)))

    def op_SetParent(self, g: MG, op: SetParent) -> None:
        """api docs: "parent: ... This is writable, but it is not allowed to create cycles
        of parents. A greenlet without a parent is the main greenlet of its thread.
        Cannot be set to anything except a greenlet."  greenlet 3.x checks for a main
        greenlet first (AttributeError), then the type (TypeError, also for None), then
        cycles (ValueError('cyclic parent chain'))."""
        target = self.lookup(op.target)
        assert target is not None
        if target.is_main:
            return self.fail(g, op, harness_error("AttributeError"))
        if isinstance(op.parent, Bogus):
            return self.fail(g, op, harness_error("TypeError"))
        new = self.lookup(op.parent)
        assert new is not None
        walk: Optional[MG] = new
        while walk is not None:
            if walk is target:
                return self.fail(g, op, harness_error("ValueError"))
            walk = walk.parent
        if target.state != UNSTARTED and self.foreign_root(new):
            # "parent cannot be on a different thread" (green_setparent): a started
            # greenlet stays in its thread; an unstarted one may move (verified, 3.5.6).
            return self.fail(g, op, harness_error("ValueError"))
        old = target.parent
        target.parent = new
        self.incref(new)
        self.safely(g, lambda: self.release(old))
        self.after(g, lambda: self.done(g))

    def op_Current(self, g: MG, op: Current) -> None:
        # In another thread, its own (unnamed) main greenlet is current.
        self.rec(g.name, g.pc, "current", "?" if g.in_thread else self.label(self.current))
        g.pc += 1

    # -- threads (family ``threads``) ----------------------------------------------------

    def end_thread(self, g: MG, start: int) -> None:
        """An ``InThread`` block's thread has ended and been joined.

        The runtime then calls ``getcurrent()``, where greenlet kills what was freed over
        there (``deleteme``, in order; greenlet_gc: "the next time that thread calls a
        greenlet API"), and records ``alive`` if anything was dropped there.  The main
        greenlet of a thread that has exited reports dead (python_threads docs, greenlet
        >= 2.0).  Orphans (``Orphan``) are dead, ran no ``finally`` (no GreenletExit for
        the greenlets of a thread that has ended: greenlet_gc; test_leaks'
        ``_check_untracked_memory_thread``) and are freed with the last reference."""
        deleteme, self.deleteme = self.deleteme, []
        for victim in deleteme:
            self.collect(victim)
        if self.thread_drops:
            self.check_alive()
        self.rec(g.name, start, "thread", True)
        block = g.script[start]
        assert isinstance(block, InThread)
        orphans = sum(isinstance(o, Orphan) for o in block.then)
        if orphans:
            self.rec(g.name, start, "orphans", (orphans, 0, 0))

    @staticmethod
    def foreign_root(g: MG) -> bool:
        """``g`` is unstarted and its parent chain ends at another thread's main greenlet
        (``ThreadParent``): switching or throwing to it is a ``greenlet.error``
        (verified on 3.5.6: "cannot switch to a different thread")."""
        if g.state != UNSTARTED:
            return False
        walk: Optional[MG] = g
        while walk.parent is not None:
            walk = walk.parent
        return walk.foreign

    def op_ThreadParent(self, g: MG, op: ThreadParent) -> None:
        """``target.parent = getcurrent()`` in another thread: main greenlets have no
        parent to set (AttributeError); a started greenlet refuses a parent of another
        thread (ValueError "parent cannot be on a different thread", greenlet's
        test_threaded_reparent); an unstarted one accepts it (verified on 3.5.6)."""
        target = self.lookup(op.target)
        assert target is not None
        if target.is_main:
            return self.fail(g, op, harness_error("AttributeError"))
        if target.state != UNSTARTED:
            return self.fail(g, op, harness_error("ValueError"))
        if self.thread_main is None:
            self.thread_main = MG("?", (), None)
            self.thread_main.is_main = self.thread_main.foreign = True
            self.thread_main.rc = 1 << 40
            self.thread_main.state = RUNNING
        old = target.parent
        target.parent = self.thread_main
        self.safely(g, lambda: self.release(old))
        self.after(g, lambda: self.done(g))

    def op_Orphan(self, g: MG, op: Orphan) -> None:
        """The orphan starts and parks in its thread: nothing this thread sees."""
        self.done(g)

    def op_Inspect(self, g: MG, op: Inspect) -> None:
        """api docs: "bool(g) is true if g is active and false if it is dead or not yet
        started"; "dead: True if this greenlet is dead"; "gr_frame ... is non-None only
        for suspended greenlets"; "run ... After it is started, this attribute no longer
        exists"."""
        t = self.lookup(op.target)
        assert t is not None
        kind, subclass = self.kinds.get(t.name, ("plain", False))
        value = {
            "dead": t.state == DEAD,
            "bool": t.state in (RUNNING, SUSPENDED),
            "parent": self.label(t.parent),
            "gr_frame": t.state != SUSPENDED,
            # "Subclasses can define this as a method on the type" (api docs): only the
            # instance's run is deleted at the start, the class's stays.
            "run": t.state == UNSTARTED or kind == "method",
            # The extra attribute of a subclass: the trivial one's class attribute, the
            # tag an overridden __init__ stored (the greenlet's name).
            "tag": t.name if kind == "init" else ("sub" if subclass else None),
        }[op.attr]
        self.rec(g.name, g.pc, "attr", value)
        g.pc += 1

    def op_Frames(self, g: MG, op: Frames) -> None:
        """api docs: "gr_frame: The frame that was active in this greenlet when it most
        recently called some_other_greenlet.switch() ... The remainder of the greenlet's
        stack can be accessed by following the frame object's f_back attributes.
        gr_frame is non-None only for suspended greenlets".  A suspended greenlet is
        always inside a switch()/throw() op: at the bottom level of each recursion it
        is in, below its ``run``."""
        t = self.lookup(op.target)
        assert t is not None
        if t in self.bodies:
            raise Unsupported(f"the stack of {t.name}, suspended in a finalizer")
        if t is self.main and self.finished:
            # Its script is over: suspended in the runner's teardown, whose frames below
            # run_main's caller differ between runners (in-process, worker, reproducer).
            raise Unsupported("the stack of main, suspended in the teardown")
        self.rec(g.name, g.pc, "frames", self.stack_of(t) if t.state == SUSPENDED else None)
        g.pc += 1

    def trace(self, event: str, origin: MG, target: MG) -> Optional[Throwing]:
        """tracing docs: the callback gets ``('switch', (origin, target))`` or ``('throw',
        (origin, target))`` and "is running in the context of the target greenlet and any
        exceptions will be passed as if target.throw() was used instead of a switch" (for
        a throw: "will replace the original").  A tracer that raises is uninstalled
        (greenlet's test_tracing); returns what the target then receives."""
        if self.tracing is None:
            return None
        self.rec(target.name, -1, "trace", (event, origin.name, target.name))
        if self.tracing != "raise" or not (self.held(origin) and self.held(target)):
            return None
        self.tracing = None
        return Throwing(ExcValue("FuzzError", ("trace",)))

    def held(self, g: MG) -> bool:
        """Main, or a greenlet the program's registry holds (``runtime.tracers_for``)."""
        return self.lookup(g.name) is g

    def op_Trace(self, g: MG, op: Trace) -> None:
        """api docs: settrace "Sets a new tracing function and returns the previous one"."""
        if self.finished:
            # Run at teardown (a finalizer or resurrected greenlet switched to it): the
            # tracer would stay installed for the next program run in the same thread.
            raise Unsupported("a tracer installed after main's script ended")
        self.rec(g.name, g.pc, "tracer", self.tracing)
        self.tracing = None if op.mode == "off" else op.mode
        g.pc += 1

    def op_CtxSet(self, g: MG, op: CtxSet) -> None:
        """contextvars docs (greenlet): "each greenlet has its own context"; a value set in
        one is not seen in another.  The program's variables are fresh every run, so main
        starts with none set too."""
        g.context[op.var] = op.value
        self.done(g)

    def op_CtxGet(self, g: MG, op: CtxGet) -> None:
        self.rec(g.name, g.pc, "context", g.context.get(op.var, "<unset>"))
        g.pc += 1

    def op_CtxCopy(self, g: MG, op: CtxCopy) -> None:
        """api docs: ``gr_context`` is "the contextvars.Context in which g will run"; it is
        writable, and a greenlet (suspended ones included, greenlet 3.x) then runs with
        the assigned context: here a snapshot of the current one."""
        target = self.lookup(op.target)
        assert target is not None
        target.context = dict(g.context)
        self.done(g)

    def op_ExcInfo(self, g: MG, op: ExcInfo) -> None:
        """``sys.exc_info()`` is per greenlet: saved when it switches away and restored
        when it resumes (greenlet's test_exc_state); a new greenlet starts with none."""
        self.rec(g.name, g.pc, "exc_info", g.handling[-1] if g.handling else None)
        g.pc += 1

    @staticmethod
    def stack_of(g: MG) -> Tuple[str, ...]:
        """The program functions on a suspended greenlet's stack, innermost first."""
        names = [f"run_{g.name}"]
        for start, _ in g.levels:
            op = g.script[start]
            if not isinstance(op, Recurse):
                continue  # a Handle runs inline
            level = f"recurse_{g.name}_{start}"
            names.append(level)
            for _ in range(op.depth):
                names += [*reversed(VIA_FRAMES[op.via]), level]
        return tuple(reversed(names))

    def done(self, g: MG) -> None:
        self.rec(g.name, g.pc, "done", None)
        g.pc += 1

    def fail(self, g: MG, op: Op, exc: ExcValue, obj: Optional[Flying] = None) -> None:
        """An op raised in the running greenlet: caught by ``except Exception`` when
        the op catches, else it propagates (``unwind``), fatal to the greenlet."""
        obj = obj or Flying(exc)
        self.raised(g, obj)
        if getattr(op, "catch", False) and exc.type in CATCHABLE:
            self.rec(g.name, g.pc, "caught", exc)
            g.pc += 1
        elif g in self.bodies:
            # Out of a finalizer: CPython reports it to sys.unraisablehook (in the
            # greenlet running it) and the interrupted op goes on.
            self.rec(g.name, -1, "unraisable", exc)
            self.end_body(g, record=False)
        else:
            self.unwind(g, obj)

    # -- exceptions in flight (family ``exceptions``) --------------------------------------

    @staticmethod
    def at_run(g: MG) -> bool:
        """``g`` is in its ``run`` frame: no recursion level is open (blocks other than
        ``Recurse`` run inline)."""
        return not any(isinstance(g.script[start], Recurse) for start, _ in g.levels)

    def raised(self, g: MG, obj: Flying) -> None:
        """``obj`` is raised in ``g``'s innermost frame: its traceback gets that frame."""
        if self.at_run(g):
            obj.tb.insert(0, f"run_{g.name}")

    @staticmethod
    def finally_part(start: int, op: Finally) -> int:
        """The flat index where the finally part of the ``Finally`` at ``start`` begins."""
        return start + 1 + sum(span(o) for o in op.then[:op.split])

    def pop_level(self, g: MG) -> None:
        """Leave ``g``'s innermost block."""
        start, _ = g.levels.pop()
        op = g.script[start]
        if isinstance(op, Handle):
            g.handling.pop()
            g.handled.pop()
        elif isinstance(op, Finally):
            g.finals.pop(start, None)
        elif isinstance(op, InThread):
            g.in_thread = False

    def unwind(self, g: MG, obj: Flying) -> None:
        """An uncaught exception propagates out of ``g``'s blocks: a ``Finally`` whose try
        part it leaves runs its finally part first (recording it), and the exception goes
        on when that is done; out of ``run`` it ends the greenlet (``finish``)."""
        while g.levels:
            start, _ = g.levels[-1]
            op = g.script[start]
            if isinstance(op, Finally) and start not in g.finals:
                g.finals[start] = obj
                g.pc = self.finally_part(start, op)
                self.rec(g.name, start, "finally", obj.record())
                return
            if isinstance(op, Resurrect) and obj.exc.type == "GreenletExit":
                self.resurrect(g, start)
                return
            self.pop_level(g)
            if isinstance(op, Recurse) and self.at_run(g):
                obj.tb.insert(0, f"run_{g.name}")
        self.finish(g, obj.exc, obj=obj)

    def run_finally_parts(self, g: MG) -> None:
        """A kill's GreenletExit unwinds ``g`` through its ``Finally`` blocks, whose finally
        parts run in ``g`` before control goes back to the dropper (greenlet_gc: "This
        gives try/finally blocks a chance to clean up resources held by the greenlet")."""
        obj = Flying(harness_error("GreenletExit"))
        dropper = g.parent  # the kill made it the parent for the duration
        assert dropper is not None
        was = dropper.state
        if was == RUNNING:
            dropper.state = SUSPENDED  # it waits in its ``del`` meanwhile (has a gr_frame)
        g.killing = True
        self.raised(g, obj)
        self.unwind(g, obj)
        while g.state != DEAD:  # ``finish`` ends it (no delivery: the kill switches back)
            self.steps += 1
            if self.steps > STEP_LIMIT:
                raise ModelError("step limit exceeded")
            self.step(g)
        g.killing = False
        dropper.state = was

    # -- finalizers (family ``finalizers``) ---------------------------------------------

    def defer_finalizers(self, g: MG, finalizers: List[Tuple[str, int, Finalize]],
                         parent: Optional[MG]) -> None:
        """``g`` is freed and has finalizers: they run in the greenlet whose op freed it,
        after the kill, before ``g``'s parent link is released (greenlet's dealloc kills,
        then clears weak references, then its ``__dict__``, then drops the parent).

        Weak reference callbacks run newest first (CPython's ``PyObject_ClearWeakRefs``),
        then the held objects' ``__del__`` in the order they were stored (the dict's).
        A finalizer that may switch is only modelled where nothing else of the
        interrupted step is left but releasing references (``safely``): anywhere else
        (in the middle of a switch or a kill) it is ``Unsupported``.
        """
        if self.safe is None:
            raise Unsupported(f"{g.name}'s finalizer would run in the middle of a switch")
        weak = [f for f in finalizers if f[2].kind == "weakref"]
        held = [f for f in finalizers if f[2].kind == "held"]
        dropper = self.safe
        for owner, pc, op in (*reversed(weak), *held):
            self.deferred.append(
                lambda o=owner, i=pc, op=op: self.start_body(dropper, o, i, op))
        self.deferred.append(lambda: self.safely(dropper, lambda: self.release(parent)))

    def safely(self, g: MG, release) -> None:
        """Perform ``release`` (which drops references) for ``g``'s op: finalizers it frees
        run in ``g`` before the rest of the op (what ``after`` queues)."""
        self.safe, self.deferred = g, []
        release()
        self.safe = None
        self.work.setdefault(g, [])[:0] = self.deferred
        self.deferred = []

    def after(self, g: MG, thunk) -> None:
        """Do ``thunk`` in ``g`` once the finalizers its op started have run."""
        self.work.setdefault(g, []).append(thunk)
        self.drain(g)

    def drain(self, g: MG) -> None:
        while g not in self.bodies and g not in self.waiting and self.work.get(g):
            self.work[g].pop(0)()

    def start_body(self, g: MG, owner: str, pc: int, op: Finalize) -> None:
        """``g`` starts performing a finalizer's ops: the owner's ops, recorded as the
        owner's (``speaking``), with ``g``'s own place in its script saved."""
        self.events.append((owner, pc, "finalizer", g.name))
        self.bodies[g] = (g.script, g.pc, g.levels, owner, pc, pc + span(op))
        g.script = flatten(self.program.script(owner))
        g.pc, g.levels = pc + 1, []
        self.speaking[g.name] = owner

    def end_body(self, g: MG, record: bool = True) -> None:
        script, pc, levels, owner, start, _ = self.bodies.pop(g)
        del self.speaking[g.name]
        if record:
            self.events.append((owner, start, "finalized", None))
        g.script, g.pc, g.levels = script, pc, levels
        self.drain(g)

    def settle(self, g: MG) -> None:
        """Run the program while ``g`` (main, at teardown) performs finalizers or waits for
        a kill."""
        while g in self.bodies or g in self.waiting:
            self.advance(at_teardown=True)

    def advance(self, at_teardown: bool = False) -> None:
        """One step: deliver the pending switch, else let the current greenlet act."""
        self.steps += 1
        if self.steps > STEP_LIMIT:
            raise ModelError("step limit exceeded")
        if self.pending is None:
            self.step(self.current)
            return
        dest, delivery, origin = self.pending
        self.pending = None
        if at_teardown and dest.state not in (UNSTARTED, SUSPENDED):
            # Another thread's main greenlet (family threads), reached at teardown.
            raise Unsupported(f"{origin.name} ends into {dest.name} at teardown")
        self.enter(dest, delivery, origin)

    def op_Finalize(self, g: MG, op: Finalize) -> None:
        """Attach the finalizer; its ops are skipped here (they run when the target is
        freed, see ``defer_finalizers``)."""
        target = self.lookup(op.target)
        assert target is not None
        self.finalizers.setdefault(target, []).append((g.name, g.pc, op))
        self.rec(g.name, g.pc, "done", None)
        g.pc += span(op)

    def resurrects(self, g: MG) -> bool:
        """``g`` is suspended in a ``Resurrect`` block (and not in a finalizer)."""
        return g not in self.bodies and \
            any(isinstance(g.script[start], Resurrect) for start, _ in g.levels)

    def defer_resurrection(self, g: MG) -> None:
        """``g`` is freed while it is in a ``Resurrect`` block: its kill is a real switch
        that may not come back at once (the handler switches away), so, like finalizers,
        it is only modelled where the rest of the op can wait (``safely``)."""
        if self.safe is None:
            raise Unsupported(f"{g.name} would resurrect in the middle of a switch")
        dropper = self.safe
        self.deferred.append(lambda: self.start_kill(dropper, g))

    def start_kill(self, dropper: MG, g: MG) -> None:
        """greenlet 3.x kills ``g`` from its dealloc: GreenletExit is thrown into it with
        its parent temporarily ``dropper`` (which waits in the dealloc until something
        switches back to it, ``kill_returned``), holding one reference meanwhile."""
        self.waiting[dropper] = (g, g.parent)
        g.parent = dropper
        g.rc += 1
        dropper.state = SUSPENDED
        self.enter(g, Throwing(harness_error("GreenletExit")), dropper)

    def kill_returned(self, dropper: MG, delivery: Delivery) -> None:
        """Control is back in the dealloc: the value is dropped, an exception is
        unraisable (verified on greenlet 3.5.6), ``g``'s parent is restored and, since
        it resurrected, nothing is freed; the interrupted op goes on."""
        g, parent = self.waiting.pop(dropper)
        if isinstance(delivery, Throwing):
            self.rec(dropper.name, -1, "unraisable", delivery.exc)
        g.parent = parent
        g.rc -= 1
        if g.rc == 0:
            # Dropped again before the dealloc returned: greenlet frees it or reports
            # "GreenletExit did not kill" depending on its state; not modelled.
            raise Unsupported(f"{g.name} dropped again while its kill was pending")
        self.drain(dropper)

    def resurrect(self, g: MG, start: int) -> None:
        """A GreenletExit reaches the ``Resurrect`` block at ``start``: its handler
        registers ``g`` again, records ``g``'s parent (during a kill: the greenlet that
        dropped it, greenlet's test_parent_restored_on_kill) and switches."""
        self.pop_level(g)
        op = g.script[start]
        assert isinstance(op, Resurrect)
        if self.registry.get(g.name) is not g:
            self.registry[g.name] = g
            g.rc += 1
        self.rec(g.name, start, "resurrected", self.label(g.parent))
        g.pc = start
        target = self.lookup(op.target)
        if target is None:
            self.rec(g.name, start, "unbound", op.target)
            self.rec(g.name, start, "done", None)
            g.pc = start + span(op)
            return
        self.handler_at[g] = start
        self.transfer(target, Args((), {}))

    def handler_returned(self, g: MG, delivery: Delivery) -> None:
        """The handler's switch returns (or raises: caught like a catching op's, else it
        propagates from the handler); the block is done."""
        start = self.handler_at.pop(g)
        if isinstance(delivery, Throwing) and delivery.exc.type not in CATCHABLE:
            return self.fail(g, None, delivery.exc, delivery.obj)
        if isinstance(delivery, Args):
            self.rec(g.name, start, "value", pack(delivery.args, delivery.kwargs))
        else:
            self.rec(g.name, start, "caught", delivery.exc)
        self.rec(g.name, start, "done", None)
        g.pc = start + span(g.script[start])

    # -- liveness ----------------------------------------------------------------------

    def alive(self) -> Tuple[str, ...]:
        """Names of the spawned greenlets that still exist, sorted."""
        return tuple(sorted(g.name for g in self.spawned if not g.gone))

    def check_alive(self) -> None:
        """The runtime's ``alive`` event after a drop: reference counting frees exactly
        the greenlets whose count reached zero, and nothing else ("If all the references
        to a greenlet object go away ...", greenlet_gc)."""
        # In an ``InThread`` block the thread's own (unnamed) main greenlet is current.
        who = "?" if self.current.in_thread else self.current.name
        self.rec(who, -1, "alive", self.alive())

    def holders(self, name: str) -> List[str]:
        """What keeps greenlet ``name`` alive now, in words (for leak reports)."""
        g = next((m for m in self.spawned if m.name == name), None)
        if g is None or g.gone:
            return []
        out = []
        if self.registry.get(name) is g:
            out.append("the program's registry")
        for other in self.spawned:
            if other.gone:
                continue
            if other.parent is g:
                out.append(f"{other.name}'s parent link")
            if other.hold is g:
                out.append(f"{other.name}'s pending switch")
        if self.current is g:
            out.append("being the current greenlet")
        return out

    # -- the end -----------------------------------------------------------------------

    def teardown(self) -> None:
        """The runner drops every greenlet the registry still holds, in name order, and
        again while it holds any (resurrected or spawned meanwhile)."""
        while self.registry:
            for name in sorted(self.registry):
                victim = self.registry.pop(name, None)
                if victim is None:
                    continue
                self.safely(self.main, lambda v=victim: self.release(v))
                self.after(self.main, lambda n=name: self.rec(MAIN, -1, "teardown", n))
                self.settle(self.main)
        self.check_alive()


def predict(program: Program) -> List[Event]:
    """The trace a correct implementation produces for ``program``."""
    return Model(program).run()


def explain_alive(program: Program, index: int) -> Dict[str, List[str]]:
    """For the ``alive`` event at ``index`` of the predicted trace: what the model counts
    as holding each greenlet it says still exists (registry, parent links, pending
    switches, being current)."""
    found: Dict[str, List[str]] = {}

    class Explaining(Model):
        def check_alive(self) -> None:
            if len(self.events) == index:
                found.update({name: self.holders(name) for name in self.alive()})
            super().check_alive()

    Explaining(program).run()
    return found
