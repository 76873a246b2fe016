"""The reference model's core: greenlet objects, reference counting, switching and the
step loop.  What each op does, and how each family changes switching or freeing, is in
the family modules (``greenfuzz.harness.families``), reached through the registry.

Reference counting is modelled because collection is part of the semantics ("If all the
references to a greenlet object go away ... a GreenletExit exception is generated into
the greenlet", greenlet_gc).  A greenlet's count is the sum of: the program's registry
entry, the ``parent`` link of every greenlet object that still exists, the pending
``switch``/``throw`` call of a suspended greenlet (its frame holds the bound method, so
the greenlet it called stays alive), and being current.  The runner keeps the cyclic
collector off so that only reference counting frees greenlets, as here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from greenfuzz.harness.families import (
    MAIN,
    Op,
    flatten,
    greenlet_names,
    hooks,
    op_types,
    registered,
    span,
    spec,
)
from greenfuzz.harness.families.deliveries import (
    CATCHABLE,
    Args,
    Delivery,
    Flying,
    ModelError,
    Throwing,
    Undecided,
    harness_error,
    pack,
)
from greenfuzz.harness.model.state import (
    DEAD,
    MG,
    RUNNING,
    SUSPENDED,
    UNSTARTED,
    Event,
    Level,
    Pending,
)
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target.runtime import ExcValue

#: A model that takes more steps than this has a bug (programs are finite by construction).
STEP_LIMIT = 1_000_000

#: The core's rules: every branch here that decides what happens next, by name
#: (``Model.fire``).  With the ops' rules (``op:<type>``, ``rules()``) they are what
#: rule coverage counts: a rule that never fires is a part of the model no program
#: checked.
CORE_RULES = (
    "collect", "collect.taken", "collect.kill", "collect.keep_parent", "kill",
    "kill.dying_taken", "kill.raised", "current.collect_old", "switch.self", "switch.dead",
    "enter.traced",
    "enter.taken", "enter.start", "enter.start_exit_value", "enter.throw_unstarted",
    "enter.resume", "receive.taken", "receive.value", "receive.raise", "finish.died",
    "finish.exit", "finish.raise", "finish.return", "finish.main", "finish.killing",
    "finish.foreign_root", "step.taken", "step.block_before", "step.block_ended",
    "step.block_end", "step.script_end", "step.block_enter", "step.unbound", "fail.caught",
    "fail.uncaught_taken", "fail.unwind", "unwind.intercepted", "unwind.out",
    "advance.foreign_at_teardown", "teardown.drop",
)


def rules() -> Tuple[str, ...]:
    """Every rule of the model: the core's (``core:``) and, for each registered op type,
    its rule (``op:<type>``: its ``perform``, or the block being entered)."""
    return (*(f"core:{r}" for r in CORE_RULES), *(f"op:{name}" for name in op_types()))


class Model:
    """Executes a program on model greenlets and records the trace it predicts."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.scripts = dict(program.greenlets)
        self.events: List[Event] = []
        self.registry: Dict[str, MG] = {}
        #: Every greenlet spawned so far, in spawn order (registered or not).
        self.spawned: List[MG] = []
        self.main = MG(MAIN, flatten(program.main), None, state=RUNNING, is_main=True)
        self.main.rc = 1 << 40  # the thread holds its main greenlet for ever
        self.current = self.main
        self.pending: Optional[Pending] = None
        self.finished = False
        #: The interpreter is exiting: ``atexit`` callbacks run (family ``shutdown``).
        self.exiting = False
        self.steps = 0
        #: Who a greenlet running another script's ops records them as (the owner).
        self.speaking: Dict[str, str] = {}
        #: The greenlet whose op is releasing a reference right now, when code this
        #: frees may run in it (``safely``); None elsewhere.
        self.safe: Optional[MG] = None
        #: Work that freeing deferred during a ``safely`` release.
        self.deferred: List[Callable[[], None]] = []
        #: What remains of each greenlet's interrupted op, to do once that code ran.
        self.work: Dict[MG, List[Callable[[], None]]] = {}
        #: How often each rule fired (``rules()``), for rule coverage.
        self.fired: Counter = Counter()
        #: Each family's state, by name (``Family.state``).
        self.ext: Dict[str, Any] = {f.name: f.state() for f in registered() if f.state}

    # -- public ----------------------------------------------------------------------

    def run(self) -> List[Event]:
        self.rec(MAIN, -1, "start", ((), {}))
        try:
            while not self.finished:
                self.advance()
            self.teardown()
        except Undecided as e:
            self.rec(MAIN, -1, "undecided", str(e))
        return self.events

    def thread_starts(self) -> None:
        """An op starts a thread.  While ``atexit`` callbacks run, CPython 3.12 refuses
        that ("can't create new thread at interpreter shutdown", RuntimeError; What's New
        in 3.12, gh-104690) where 3.11 and 3.13.0 start it (measured with greenlet
        3.5.6): the model, which predicts for any interpreter, leaves the rest open."""
        if self.exiting:
            raise Undecided("a thread starts while atexit callbacks run (CPython 3.12 "
                            "refuses it, 3.11 and 3.13.0 start it)")

    def new_greenlet(self, name: str, parent: Optional[MG], script: Optional[Tuple] = None,
                     **fields: Any) -> MG:
        """A greenlet object running ``script`` (by default, spawned script ``name``'s)."""
        if script is None:
            script = flatten(self.scripts[name])
        return MG(name, script, parent, **fields)

    # -- recording and naming ----------------------------------------------------------

    def fire(self, rule: str) -> None:
        """Count one firing of core rule ``rule`` (one of ``CORE_RULES``)."""
        self.fired["core:" + rule] += 1

    def rec(self, who: str, pc: int, kind: str, payload: object = None) -> None:
        if pc >= 0 and who in self.speaking:
            who = self.speaking[who]  # another script's op: rendered in its owner's script
        self.events.append((who, pc, kind, payload))

    def lookup(self, name: str) -> Optional[MG]:
        return self.main if name == MAIN else self.registry.get(name)

    @staticmethod
    def label(g: Optional[MG]) -> Optional[str]:
        return None if g is None else g.name

    def held(self, g: MG) -> bool:
        """Main, or a greenlet the program's registry holds (``runtime.tracers_for``)."""
        return self.lookup(g.name) is g

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
        any greenlet releases its parent.  A family may take the freeing over
        (``collecting``) or keep the parent link for later (``freeing``)."""
        self.fire("collect")
        if any(hook(self, g) for hook in hooks("collecting")):
            self.fire("collect.taken")
            return
        g.gone = True
        if g.state == SUSPENDED:
            self.fire("collect.kill")
            self.kill(g)
        parent, g.parent = g.parent, None
        if any(hook(self, g, parent) for hook in hooks("freeing")):
            self.fire("collect.keep_parent")
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
        self.fire("kill")
        for hook in hooks("killing"):
            hook(self, g)
        safe, self.safe = self.safe, None  # code freed inside a kill: not modelled
        dropper = self.current
        saved_parent = g.parent
        g.parent = dropper
        g.rc += 1  # resurrected while it dies
        self.current = g
        # The dropper waits in its ``del`` meanwhile: suspended, with a gr_frame, also
        # for kills its unwinding causes in turn (verified on greenlet 3.5.6).
        was, dropper.state = dropper.state, (
            SUSPENDED if dropper.state is RUNNING else dropper.state)
        g.state = RUNNING
        self.trace("throw", dropper, g)
        hold, g.hold = g.hold, None
        self.release(hold)
        # greenlet gives this GreenletExit a message ("Killing the greenlet because all
        # references have vanished.") that other implementations need not copy.
        if not any(hook(self, g) for hook in hooks("dying")):
            self.rec(g.name, -1, "died", harness_error("GreenletExit"))
        else:
            self.fire("kill.dying_taken")
        g.state = DEAD
        raised, g.kill_raised = g.kill_raised, None
        # The GreenletExit comes back as a value; another exception (a finally part
        # raised) comes back as one, and the dealloc reports it to sys.unraisablehook
        # (verified on greenlet 3.5.6: a switch to a greenlet of an ended thread).
        self.trace("throw" if raised is not None else "switch", g, dropper)
        self.current = dropper
        dropper.state = was
        if raised is not None:
            self.fire("kill.raised")
            self.rec(dropper.name, -1, "unraisable", raised)
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
            self.fire("current.collect_old")
            self.collect(old)
        return old

    # -- code that freeing runs (finalizers, resurrecting kills) --------------------------

    def safely(self, g: MG, release: Callable[[], None]) -> None:
        """Perform ``release`` (which drops references) for ``g``'s op: code it frees that
        runs in ``g`` (``deferred`` by the families) goes before the rest of the op (what
        ``after`` queues)."""
        self.safe, self.deferred = g, []
        release()
        self.safe = None
        self.work.setdefault(g, [])[:0] = self.deferred
        self.deferred = []

    def after(self, g: MG, thunk: Callable[[], None]) -> None:
        """Do ``thunk`` in ``g`` once the code its op started has run."""
        self.work.setdefault(g, []).append(thunk)
        self.drain(g)

    def busy(self, g: MG) -> bool:
        """``g`` performs code that freeing started, or waits for it (family hooks)."""
        return any(hook(self, g) for hook in hooks("busy"))

    def drain(self, g: MG) -> None:
        while not self.busy(g) and self.work.get(g):
            self.work[g].pop(0)()
        if not self.work.get(g, True):
            del self.work[g]  # no entry per greenlet that ever acted: memory of the live set

    def settle(self, g: MG) -> None:
        """Run the program while ``g`` (main, at teardown) is busy."""
        while self.busy(g):
            self.advance(at_teardown=True)

    # -- switching ---------------------------------------------------------------------

    def resolve(self, g: MG) -> MG:
        """switching docs: "any attempt to switch to a dead greenlet actually goes to the
        dead greenlet's parent, or its parent's parent, and so on. (The final parent is
        the "main" greenlet, which is never dead.)" """
        while g.state == DEAD:
            assert g.parent is not None, "a dead greenlet always has a parent"
            self.fire("switch.dead")
            g = g.parent
        return g

    @staticmethod
    def foreign_root(g: MG) -> bool:
        """``g`` is unstarted and belongs to another thread: the first started greenlet
        up its parent chain is another thread's main greenlet (``ThreadParent``).
        Switching or throwing to it is a ``greenlet.error`` (verified on 3.5.6: "cannot
        switch to a different thread").  The walk stops at the first started greenlet,
        dead ones included, as greenlet's ``find_main_greenlet_in_lineage`` does: an
        unstarted greenlet whose parent is a started one of this thread belongs to this
        thread, whatever is further up (verified on 3.5.6 with CPython 3.10-3.13; a
        campaign on 3.13 found the model wrong there)."""
        if g.state != UNSTARTED:
            return False
        walk: MG = g
        while walk.state == UNSTARTED and walk.parent is not None:
            walk = walk.parent
        return walk.foreign

    def trace(self, event: str, origin: MG, target: MG) -> Optional[Throwing]:
        """Families that watch switches (``switching``: the tracer) may replace what the
        target receives with an exception."""
        for hook in hooks("switching"):
            raised = hook(self, event, origin, target)
            if raised is not None:
                return raised
        return None

    def transfer(self, target: MG, delivery: Delivery) -> None:
        """The current greenlet calls ``target.switch(...)`` or ``target.throw(...)``.

        The C docstring of ``switch``: "If the greenlet is dead, or is the current
        greenlet then this function will simply return the arguments".  Otherwise the
        caller is suspended, its pending call keeping ``target`` alive.
        """
        me = self.current
        dest = self.resolve(target)
        if dest is me:
            self.fire("switch.self")
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
        if raised is not None:
            self.fire("enter.traced")
        delivery = raised or delivery
        if raised is None and any(h(self, dest, delivery, origin) for h in hooks("entering")):
            self.fire("enter.taken")
            return
        self.set_current(dest)
        if dest.state == UNSTARTED:
            dest.state = RUNNING
            if isinstance(delivery, Args):
                self.fire("enter.start_exit_value" if delivery.exit_value else "enter.start")
                dest.pc = 0
                start = ((), {}) if delivery.exit_value else (delivery.args, delivery.kwargs)
                self.rec(dest.name, -1, "start", (tuple(start[0]), dict(start[1])))
            else:
                self.fire("enter.throw_unstarted")
                self.finish(dest, delivery.exc, record=False, obj=delivery.obj)
            return
        assert dest.state == SUSPENDED, dest
        self.fire("enter.resume")
        dest.state = RUNNING
        for hook in hooks("resuming"):
            delivery = hook(self, dest, delivery)
        hold, dest.hold = dest.hold, None
        self.release(hold)
        self.receive(dest, delivery)

    def resume(self, g: MG, delivery: Delivery) -> None:
        """``g``, made current by a family, resumes: its pending call completes."""
        g.state = RUNNING
        hold, g.hold = g.hold, None
        self.release(hold)
        self.receive(g, delivery)

    def receive(self, g: MG, delivery: Delivery) -> None:
        """The running greenlet's pending ``switch()``/``throw()`` call completes."""
        if any(hook(self, g, delivery) for hook in hooks("receiving")):
            self.fire("receive.taken")
            return
        if isinstance(delivery, Args):
            self.fire("receive.value")
            self.rec(g.name, g.pc, "value", pack(delivery.args, delivery.kwargs))
            g.pc += 1
        else:
            self.fire("receive.raise")
            self.fail(g, g.script[g.pc], delivery.exc, delivery.obj)

    def finish(self, g: MG, outcome: Union[ExcValue, Op, None], record: bool = True,
               obj: Optional[Flying] = None) -> None:
        """``g``'s run ends: return value (``outcome`` a ``Return``) or exception goes to
        its parent.

        switching docs: "If a greenlet's run() finishes, its return value is the object
        sent to its parent. If run() terminates with an exception, the exception is
        propagated to its parent (unless it is a greenlet.GreenletExit exception, in
        which case the exception object is caught and *returned* to the parent)."
        """
        if isinstance(outcome, ExcValue):
            if record:
                self.fire("finish.died")
                self.rec(g.name, -1, "died", outcome)
            if outcome.type == "GreenletExit":
                self.fire("finish.exit")
                delivery: Delivery = Args((outcome,), {}, exit_value=True)
            else:
                self.fire("finish.raise")
                delivery = Throwing(outcome, obj)
        else:
            self.fire("finish.return")
            value = getattr(outcome, "value", None)
            self.rec(g.name, g.pc, "return", value)
            delivery = Args((value,), {})
        if g.is_main:
            self.fire("finish.main")
            self.finished = True
            for hook in hooks("main_finished"):
                hook(self)
            return
        g.state = DEAD
        if g.killing:
            self.fire("finish.killing")
            if isinstance(delivery, Throwing):
                g.kill_raised = delivery.exc
            return  # the kill switches back to whoever dropped it (``kill``)
        assert g.parent is not None
        dest = self.resolve(g.parent)
        if self.foreign_root(dest):
            self.fire("finish.foreign_root")
            # greenlet aborts the process: "ran out of parent greenlets while
            # propagating exception" (the parent cannot be switched to from here).
            raise Undecided(f"{g.name} ends into {dest.name}, whose parent's thread has "
                            "ended")
        self.pending = Pending(dest, delivery, g)

    # -- the step loop -------------------------------------------------------------------

    def count_step(self) -> None:
        self.steps += 1
        if self.steps > STEP_LIMIT:
            raise ModelError("step limit exceeded")

    def advance(self, at_teardown: bool = False) -> None:
        """One step: deliver the pending switch, else let the current greenlet act."""
        self.count_step()
        if self.pending is None:
            self.step(self.current)
            return
        pending, self.pending = self.pending, None
        if at_teardown and pending.dest.state not in (UNSTARTED, SUSPENDED):
            # Another thread's main greenlet (family threads), reached at teardown.
            self.fire("advance.foreign_at_teardown")
            raise Undecided(f"{pending.origin.name} ends into {pending.dest.name} at "
                            "teardown")
        self.enter(pending.dest, pending.delivery, pending.origin)

    def step(self, g: MG) -> None:
        """Perform the next op of the running greenlet ``g``: a block's own steps first
        (``OpSpec.before``/``ended``), else the op at ``g.pc``: a block is entered, an
        op naming a greenlet the registry lacks records ``unbound``, any other op is
        performed by its family's rule."""
        if any(hook(self, g) for hook in hooks("stepping")):
            self.fire("step.taken")
            return
        if g.levels:
            level = g.levels[-1]
            op = g.script[level.start]
            block = spec(op)
            if block.before is not None and block.before(self, g, level.start, op):
                self.fire("step.block_before")
                return
            if g.pc == level.end:
                if block.ended is not None and block.ended(self, g, level.start, op):
                    self.fire("step.block_ended")
                    return
                self.fire("step.block_end")
                self.pop_level(g)
                self.rec(g.name, level.start, "done", None)
                return
        if g.pc >= len(g.script):
            self.fire("step.script_end")
            self.finish(g, None)
            return
        op = g.script[g.pc]
        rule = spec(op)
        if rule.perform is None:
            self.fire("step.block_enter")
            self.fired["op:" + type(op).__name__] += 1
            if rule.enter is not None:
                rule.enter(self, g, op)
            g.levels.append(Level(g.pc, g.pc + span(op)))
            g.pc += 1
            return
        missing = self.unbound_name(op)
        if missing is not None:
            self.fire("step.unbound")
            self.rec(g.name, g.pc, "unbound", missing)
            g.pc += span(op)
            return
        self.fired["op:" + type(op).__name__] += 1
        rule.perform(self, g, op)

    def unbound_name(self, op: Op) -> Optional[str]:
        """The first name an op needs that the registry does not hold, in evaluation order
        (``OpSpec.names``)."""
        return next((n for n in greenlet_names(op) if self.lookup(n) is None), None)

    def done(self, g: MG) -> None:
        self.rec(g.name, g.pc, "done", None)
        g.pc += 1

    def fail(self, g: MG, op: Op, exc: ExcValue, obj: Optional[Flying] = None) -> None:
        """An op raised in the running greenlet: caught by ``except Exception`` when
        the op catches, else it propagates (``unwind``), fatal to the greenlet (unless a
        family takes it, ``uncaught``)."""
        obj = obj or Flying(exc)
        self.raised(g, obj)
        if getattr(op, "catch", False) and exc.type in CATCHABLE:
            self.fire("fail.caught")
            self.rec(g.name, g.pc, "caught", exc)
            g.pc += 1
        elif not any(hook(self, g, exc) for hook in hooks("uncaught")):
            self.fire("fail.unwind")
            self.unwind(g, obj)
        else:
            self.fire("fail.uncaught_taken")

    # -- exceptions in flight ------------------------------------------------------------

    @staticmethod
    def at_run(g: MG) -> bool:
        """``g`` is in its ``run`` frame: no block with a frame of its own is open."""
        return not any(spec(g.script[level.start]).frame for level in g.levels)

    def raised(self, g: MG, obj: Flying) -> None:
        """``obj`` is raised in ``g``'s innermost frame: its traceback gets that frame."""
        if self.at_run(g):
            obj.tb.insert(0, f"run_{g.name}")

    def pop_level(self, g: MG) -> None:
        """Leave ``g``'s innermost block."""
        level = g.levels.pop()
        op = g.script[level.start]
        leave = spec(op).leave
        if leave is not None:
            leave(self, g, level.start, op)

    def unwind(self, g: MG, obj: Flying) -> None:
        """An uncaught exception propagates out of ``g``'s blocks (each may intercept it,
        ``OpSpec.unwinding``); out of ``run`` it ends the greenlet (``finish``)."""
        while g.levels:
            start = g.levels[-1].start
            op = g.script[start]
            block = spec(op)
            if block.unwinding is not None and block.unwinding(self, g, start, op, obj):
                self.fire("unwind.intercepted")
                return
            self.pop_level(g)
            if block.frame and self.at_run(g):
                obj.tb.insert(0, f"run_{g.name}")
        self.fire("unwind.out")
        self.finish(g, obj.exc, obj=obj)

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

    # -- the end -----------------------------------------------------------------------

    def teardown(self) -> None:
        """The runner drops every greenlet the registry still holds, in name order, and
        again while it holds any (resurrected or spawned meanwhile)."""
        while self.registry:
            for name in sorted(self.registry):
                victim = self.registry.pop(name, None)
                if victim is None:
                    continue
                self.fire("teardown.drop")
                self.safely(self.main, lambda v=victim: self.release(v))
                self.after(self.main, lambda n=name: self.rec(MAIN, -1, "teardown", n))
                self.settle(self.main)
        self.check_alive()


#: The last programs predicted (by identity: programs that compare equal may still
#: differ, ``1`` and ``True``), with their traces and the rules they fired.  Generation
#: predicts each program (a family's ``finish``, then ``_determined``) and the campaign
#: predicts the same object again to judge it; the model is deterministic.
_PREDICTED: Dict[int, Tuple[Program, Tuple[Event, ...], Counter]] = {}
_PREDICTED_KEPT = 8


def predict(program: Program, fired: Optional[Counter] = None) -> List[Event]:
    """The trace a correct implementation produces for ``program``; ``fired``, when
    given, adds how often each rule fired (``rules()``)."""
    known = _PREDICTED.get(id(program))
    if known is None or known[0] is not program:
        model = Model(program)
        known = (program, tuple(model.run()), model.fired)
        if len(_PREDICTED) >= _PREDICTED_KEPT:
            del _PREDICTED[next(iter(_PREDICTED))]
        _PREDICTED[id(program)] = known
    if fired is not None:
        fired.update(known[2])
    return list(known[1])
