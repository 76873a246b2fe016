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

from harness.ir import (
    MAIN,
    Bogus,
    CtxCopy,
    CtxGet,
    CtxSet,
    Current,
    Drop,
    Exc,
    ExcInfo,
    Frames,
    Handle,
    Inspect,
    InThread,
    Op,
    Program,
    Raise,
    Recurse,
    Return,
    SetParent,
    Spawn,
    Switch,
    Throw,
    Trace,
    flatten,
    span,
)
from harness.runtime import VIA_FRAMES, ExcValue

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


@dataclass
class Throwing:
    """A delivery of an exception, raised where the receiver is suspended."""

    exc: ExcValue


Delivery = Union[Args, Throwing]


class MG:
    """A model greenlet object."""

    __slots__ = ("context", "gone", "handling", "hold", "in_thread", "is_main", "levels",
                 "name", "parent", "pc", "rc", "script", "state")

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

    # -- public ----------------------------------------------------------------------

    def run(self) -> List[Event]:
        self.rec(MAIN, -1, "start", ((), {}))
        while not self.finished:
            self.steps += 1
            if self.steps > STEP_LIMIT:
                raise ModelError("step limit exceeded")
            if self.pending is not None:
                dest, delivery, origin = self.pending
                self.pending = None
                self.enter(dest, delivery, origin)
            else:
                self.step(self.current)
        self.teardown()
        return self.events

    # -- recording and naming ----------------------------------------------------------

    def rec(self, who: str, pc: int, kind: str, payload: object = None) -> None:
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
        any greenlet releases its parent."""
        g.gone = True
        if g.state == SUSPENDED:
            self.kill(g)
        parent, g.parent = g.parent, None
        self.release(parent)

    def kill(self, g: MG) -> None:
        """Deliver GreenletExit to a suspended greenlet nobody references.

        greenlet 3.x (``_green_dealloc_kill_started_non_main_greenlet``): the dying
        greenlet is resurrected for the duration, its parent is temporarily the current
        greenlet (so control comes back to whoever dropped it) and restored afterwards.
        Scripts never catch GreenletExit, so it unwinds and the greenlet dies; its
        pending call releases the greenlet it was switching to as it unwinds.
        """
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
        self.rec(g.name, -1, "died", harness_error("GreenletExit"))
        g.state = DEAD
        self.trace("switch", g, dropper)  # the GreenletExit comes back as a value
        self.current = dropper
        g.parent = saved_parent
        g.rc -= 1

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
        self.set_current(dest)
        if dest.state == UNSTARTED:
            if isinstance(delivery, Args):
                dest.state = RUNNING
                dest.pc = 0
                start = ((), {}) if delivery.exit_value else (delivery.args, delivery.kwargs)
                self.rec(dest.name, -1, "start", (tuple(start[0]), dict(start[1])))
            else:
                dest.state = RUNNING
                self.finish(dest, delivery.exc, record=False)
            return
        assert dest.state == SUSPENDED, dest
        dest.state = RUNNING
        hold, dest.hold = dest.hold, None
        self.release(hold)
        self.receive(dest, delivery)

    def receive(self, g: MG, delivery: Delivery) -> None:
        """The running greenlet's pending ``switch()``/``throw()`` call completes."""
        if isinstance(delivery, Args):
            self.rec(g.name, g.pc, "value", pack(delivery.args, delivery.kwargs))
            g.pc += 1
        else:
            self.fail(g, g.script[g.pc], delivery.exc)

    def finish(self, g: MG, outcome: Union[ExcValue, Return, None], record: bool = True) -> None:
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
                delivery = Throwing(outcome)
        else:
            value = outcome.value if isinstance(outcome, Return) else None
            self.rec(g.name, g.pc, "return", value)
            delivery = Args((value,), {})
        if g.is_main:
            self.finished = True
            self.tracing = None  # the program removes its tracer when main's script ends
            return
        g.state = DEAD
        assert g.parent is not None
        self.pending = (self.resolve(g.parent), delivery, g)

    # -- operations ----------------------------------------------------------------------

    def step(self, g: MG) -> None:
        """Perform the next op of the running greenlet ``g``."""
        if g.levels and g.pc == g.levels[-1][1]:
            # A recursion's nested ops are done: it unwinds and records that (a correct
            # implementation never fails a canary or C-result check, so nothing else).
            start, _ = g.levels.pop()
            if isinstance(g.script[start], Handle):
                g.handling.pop()
            if isinstance(g.script[start], InThread):
                # python_threads docs; the main greenlet of a thread that has exited
                # reports dead (greenlet >= 2.0).
                g.in_thread = False
                self.rec(g.name, start, "thread", True)
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
            self.finish(g, exc_value(op.exc))
            return
        if isinstance(op, (Recurse, Handle, InThread)):
            g.in_thread = g.in_thread or isinstance(op, InThread)
            if isinstance(op, Handle):
                # Python chains an exception raised while another is handled: its
                # __context__ is the one this greenlet was handling.
                context = g.handling[-1][0] if g.handling else None
                g.handling.append((exc_value(op.exc), context))
            g.levels.append((g.pc, g.pc + span(op)))
            g.pc += 1
            return
        missing = self.unbound_name(op)
        if missing is not None:
            self.rec(g.name, g.pc, "unbound", missing)
            g.pc += 1
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
        if g.in_thread:
            return self.fail(g, op, harness_error("greenlet.error"))
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
        if op.style == "exc_info":
            # ``g.throw(*sys.exc_info())``: the exception this greenlet handles (each
            # greenlet has its own, test_exc_state); with none, ``throw(None, None,
            # None)`` is a TypeError in the caller.
            if not g.handling:
                return self.fail(g, op, harness_error("TypeError"))
            exc = g.handling[-1][0]
        else:
            exc = thrown(op)
        if target.state == DEAD and exc.type == "GreenletExit":
            self.transfer(target, Args((exc,), {}, exit_value=True))
        else:
            self.transfer(target, Throwing(exc))

    def op_Spawn(self, g: MG, op: Spawn) -> None:
        """api docs: ``greenlet(run=None, parent=None)``; a None parent is the current
        greenlet."""
        parent = self.lookup(op.parent) if op.parent else self.current
        child = MG(op.name, self.scripts[op.name], parent)
        self.incref(parent)
        child.rc = 1
        self.spawned.append(child)
        old = self.registry.get(op.name)
        self.registry[op.name] = child
        self.release(old)
        self.done(g)

    def op_Drop(self, g: MG, op: Drop) -> None:
        victim = self.registry.pop(op.target)
        self.release(victim)
        self.check_alive()
        self.done(g)

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
        old = target.parent
        target.parent = new
        self.incref(new)
        self.release(old)
        self.done(g)

    def op_Current(self, g: MG, op: Current) -> None:
        # In another thread, its own (unnamed) main greenlet is current.
        self.rec(g.name, g.pc, "current", "?" if g.in_thread else self.label(self.current))
        g.pc += 1

    def op_Inspect(self, g: MG, op: Inspect) -> None:
        """api docs: "bool(g) is true if g is active and false if it is dead or not yet
        started"; "dead: True if this greenlet is dead"; "gr_frame ... is non-None only
        for suspended greenlets"; "run ... After it is started, this attribute no longer
        exists"."""
        t = self.lookup(op.target)
        assert t is not None
        value = {
            "dead": t.state == DEAD,
            "bool": t.state in (RUNNING, SUSPENDED),
            "parent": self.label(t.parent),
            "gr_frame": t.state != SUSPENDED,
            "run": t.state == UNSTARTED,
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

    def fail(self, g: MG, op: Op, exc: ExcValue) -> None:
        """An op raised in the running greenlet: caught by ``except Exception`` when
        the op catches, else fatal to the greenlet."""
        if getattr(op, "catch", False) and exc.type in CATCHABLE:
            self.rec(g.name, g.pc, "caught", exc)
            g.pc += 1
        else:
            self.finish(g, exc)

    # -- liveness ----------------------------------------------------------------------

    def alive(self) -> Tuple[str, ...]:
        """Names of the spawned greenlets that still exist, sorted."""
        return tuple(sorted(g.name for g in self.spawned if not g.gone))

    def check_alive(self) -> None:
        """The runtime's ``alive`` event after a drop: reference counting frees exactly
        the greenlets whose count reached zero, and nothing else ("If all the references
        to a greenlet object go away ...", greenlet_gc)."""
        self.rec(self.current.name, -1, "alive", self.alive())

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
        """The runner drops every greenlet the registry still holds, in name order."""
        for name in sorted(self.registry):
            victim = self.registry.pop(name, None)
            if victim is None:
                continue
            self.release(victim)
            self.rec(MAIN, -1, "teardown", name)
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
