"""What a rendered program needs at run time: the registry of its greenlets and the trace.

Rendered programs (``def program(gl, T)``, see ``greenfuzz.harness.execution.render``) run
against a ``Tracer``; ``execute`` runs one and returns its trace.  This file and the
target modules it imports (``codec``, ``referrers``, ``stacks``, ``tracediff``) run in
the interpreter under test and are pasted into every standalone reproducer (the
package's ``paste``), so they use only the standard library, run on CPython 3.9+ and
PyPy, and never import greenlet itself: the implementation under test is passed in as
``gl``.
"""

import gc
import sys
import weakref

from .codec import ExcValue, Opaque, decode, decode_trace, encode, encode_trace
from .errors import FuzzError, RunawayProgram, Unbound
from .gcmode import collector_report, garbage
from .referrers import holders
from .side_by_side import concurrent, cross, cross_drop, yield_gil
from .stacks import VIA, VIA_FRAMES, _qsort, frame_names
from .tracediff import first_divergence

#: What the controller imports from here; the codec and the trace comparison live in their
#: own modules and are named here too, for the code that knows them as ``runtime.*``.
__all__ = ["VIA_FRAMES", "ExcValue", "FuzzError", "Opaque", "RunawayProgram", "Tracer",
           "Unbound", "alive_holders", "decode", "decode_trace", "define_program", "encode",
           "encode_trace", "execute", "explain_leak", "first_divergence", "warm"]


class Held:
    """An object a greenlet holds (as an attribute) whose ``__del__`` runs a finalizer."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()


class Tracer:
    """The registry of greenlets a program holds, and the trace it records.

    The registry is the *only* reference the program keeps to a greenlet; ``drop``
    releases it, which is what makes greenlet deliver ``GreenletExit``.
    """

    def __init__(self, gl, event_limit=100000):
        self.gl = gl
        self.events = []
        self.registry = {}
        self.labels = {}
        self.closed = False
        self.event_limit = event_limit
        self._subclass = None
        self._init_subclass = None
        self.main = gl.getcurrent()
        self.labels[id(self.main)] = "main"
        #: Weak references to every greenlet spawned, by name (None: not weakly
        #: referenceable), for the liveness check.
        self.weak = {}
        #: The greenlets whose run has started (a ``start`` event), by name.
        self.started = set()
        #: The program's finalizers (``finalize``): weak references with callbacks, kept
        #: alive here so that their callbacks run.
        self.finalizers = []
        #: Also record what holds a greenlet that outlives the registry (``holders``
        #: events): costly (``gc.get_referrers``), so only when a leak is explained.
        self.explain = False
        #: Drops made while a program's thread ran (``in_thread`` records ``alive`` after).
        self.thread_drops = 0
        #: Greenlets started in a program's thread and kept past it (``orphan``).
        self.orphans = []
        #: How many of those ran their ``finally`` (``orphans_after``).
        self.orphan_exits = 0

    # -- naming ----------------------------------------------------------------------

    def ref(self, name):
        if name == "main":
            return self.main
        try:
            return self.registry[name]
        except KeyError:
            raise Unbound(name) from None

    def label(self, g):
        if g is None:
            return None
        return self.labels.get(id(g), "?")

    def exc_label(self, e):
        t = type(e)
        if t is getattr(self.gl, "GreenletExit", None):
            return "GreenletExit"
        if t is getattr(self.gl, "error", None):
            return "greenlet.error"
        return t.__name__

    def canon(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, tuple):
            return tuple(self.canon(v) for v in value)
        if isinstance(value, list):
            return [self.canon(v) for v in value]
        if isinstance(value, dict):
            return {k: self.canon(v) for k, v in value.items()}
        if isinstance(value, BaseException):
            return ExcValue(self.exc_label(value), self.canon(value.args))
        try:
            return Opaque(repr(value))
        except Exception:
            return Opaque("<unrepresentable %s>" % type(value).__name__)

    # -- recording -------------------------------------------------------------------

    def rec(self, who, pc, kind, payload=None):
        if self.closed:
            return
        self.events.append((who, pc, kind, self.canon(payload)))
        if kind == "start":
            self.started.add(who)
        if len(self.events) > self.event_limit:
            self.closed = True
            raise RunawayProgram("more than %d events" % self.event_limit)

    def merge(self, events):
        """Events another tracer recorded (a thread program's, family concurrent), as
        they are."""
        self.events.extend(events)

    def ret(self, who, pc, value):
        self.rec(who, pc, "return", value)
        return value

    # -- the registry ----------------------------------------------------------------

    def spawn(self, name, run, parent=None, subclass=False, kind="plain"):
        if kind == "method":
            # ``run`` defined on the class (a staticmethod: a bound method would keep
            # the greenlet alive through its own suspended frame, see finalizers below).
            cls = type("RunGreenlet", (self.gl.greenlet,), {"run": staticmethod(run)})
            g = cls() if parent is None else cls(parent=parent)
        elif kind == "init":
            cls = self.init_subclass()
            g = cls(name, run) if parent is None else cls(name, run, parent)
        else:
            cls = self.subclass() if subclass else self.gl.greenlet
            if parent is None:
                g = cls(run)
            else:
                g = cls(run, parent)
        self.labels[id(g)] = name
        self.registry[name] = g
        try:
            self.weak[name] = weakref.ref(g)
        except TypeError:
            self.weak[name] = None

    def subclass(self):
        """A subclass of the implementation's greenlet with an extra attribute."""
        if self._subclass is None:
            self._subclass = type("SubGreenlet", (self.gl.greenlet,), {"fuzz_tag": "sub"})
        return self._subclass

    def drop(self, name):
        if name not in self.registry:
            raise Unbound(name)
        self.thread_drops += 1
        del self.registry[name]
        self.check_alive()

    # -- liveness ----------------------------------------------------------------------

    def alive(self):
        """Names of the spawned greenlets that still exist, sorted; None when the
        implementation's greenlets cannot be weakly referenced (nothing to check)."""
        names = []
        for name, ref in self.weak.items():
            if ref is None:
                return None
            if ref() is not None:
                names.append(name)
        return tuple(sorted(names))

    def check_alive(self):
        """Record which spawned greenlets exist (an ``alive`` event) and, when
        explaining, what holds each one the registry no longer does."""
        try:
            who = self.label(self.gl.getcurrent())
        except Exception:
            who = "?"
        names = self.alive()
        if names and any(name not in self.registry for name in names):
            # A greenlet that only garbage refers to (a reference cycle through a
            # frame of a switch() written in Python, say) is not leaked: the cyclic
            # collector, off while programs run, would free it.  The young
            # generations hold everything the program made, so this is cheap.
            gc.collect(1)
            names = self.alive()
        self.rec(who, -1, "alive", names)
        if self.explain and names:
            for name in names:
                if name not in self.registry:
                    g = self.weak[name]()
                    if g is not None:
                        self.rec(who, -1, "holders", (name, holders(g, self)))
                    g = None

    def teardown(self):
        """Drop every greenlet still held, in name order, as the model does; again while
        any is held (a greenlet that resurrects from its kill, or one spawned meanwhile),
        so that none outlives the program to run its code during a later one."""
        while self.registry:
            for name in sorted(self.registry):
                if name in self.registry:
                    del self.registry[name]
                    self.rec("main", -1, "teardown", name)
        self.check_alive()
        self.closed = True

    # Rendered programs call the helpers below through their Tracer: ``T.via[...]``,
    # ``T.frame_names(...)``, and ``T.in_thread(T, fn)`` for those that take the Tracer
    # (static methods, called with ``T`` explicitly: the rendered code's convention).

    # -- deep stacks and frames ----------------------------------------------

    via = VIA
    frame_names = staticmethod(frame_names)
    # Family gc (gcmode.py) and family concurrent (side_by_side.py): a thread program's
    # tracer knows its peers and its index among them.
    garbage = staticmethod(garbage)
    collector_report = staticmethod(collector_report)
    concurrent = staticmethod(concurrent)
    cross = staticmethod(cross)
    cross_drop = staticmethod(cross_drop)
    yield_gil = staticmethod(yield_gil)
    peers = None
    thread_index = 0

    def thread_tracer(self):
        """A plain tracer for a thread program (family concurrent), whatever subclass
        this one is (the shutdown family's records at exit)."""
        return Tracer(self.gl, self.event_limit)

    @staticmethod
    def handled():
        """The exception being handled (``sys.exc_info()``) and its ``__context__``, or None."""
        e = sys.exc_info()[1]
        return None if e is None else (e, e.__context__)

    # -- contextvars ---------------------------------------------------------

    @staticmethod
    def context_vars():
        """Fresh context variables for one program run (``ir.CONTEXT_VARS``), so that no
        value set by an earlier run in the same thread can be seen."""
        import contextvars

        return {name: contextvars.ContextVar("greenfuzz_" + name) for name in ("a", "b")}

    @staticmethod
    def copy_context():
        import contextvars

        return contextvars.copy_context()

    # -- tracing -------------------------------------------------------------

    @staticmethod
    def tracers_for(T):
        """The program's ``settrace`` callbacks by mode (``ir.TRACE_MODES``): each records
        every ``switch``/``throw`` event, as the greenlet it runs in (the target) sees it;
        the ``raise`` one then raises ``FuzzError('trace')``, but only between
        greenlets the program holds (never into a greenlet being killed by collection,
        whose fate greenlet leaves to ``sys.unraisablehook``); the ``bounce`` one switches
        back from inside the callback, once per program (see
        ``greenfuzz.harness.model.Model.bounce``)."""

        def held(g):
            return T.labels.get(id(g)) == "main" or T.registry.get(T.label(g)) is g

        def greenfuzz_tracer(event, args):
            if event in ("switch", "throw"):
                origin, target = args
                T.rec(T.label(target), -1, "trace", (event, T.label(origin), T.label(target)))

        def greenfuzz_raising_tracer(event, args):
            greenfuzz_tracer(event, args)
            if event in ("switch", "throw") and held(args[0]) and held(args[1]):
                # The exception's traceback keeps this frame: its locals must not keep the
                # two greenlets alive (a greenlet suspended while it is in flight would
                # then never be collected by reference counting).
                del args
                raise FuzzError("trace")

        used = []

        def greenfuzz_bouncing_tracer(event, args):
            # Once per program, on a switch from a suspended greenlet to a started one (both
            # held): switch back to the origin from the target's context.  The target stays
            # suspended in here (its gr_frame), holding (origin, target), until switched to;
            # then the original switch completes (greenlet's fail_switch_three_greenlets2).
            greenfuzz_tracer(event, args)
            if used or event != "switch":
                return
            origin, target = args
            if origin is target or not (held(origin) and held(target)) or origin.dead \
                    or T.label(target) not in T.started:
                return
            used.append(True)
            try:
                origin.switch("bounce")
            except BaseException:
                # Thrown to while suspended here: the exception's traceback keeps this frame,
                # whose locals must not keep the two greenlets alive once the callback ends.
                del args, origin, target
                raise

        return {"record": greenfuzz_tracer, "raise": greenfuzz_raising_tracer, "off": None,
                "bounce": greenfuzz_bouncing_tracer}

    @staticmethod
    def tracer_mode(tracers, tracer):
        """Which of the program's tracers ``tracer`` is (None for none, ``other``)."""
        for mode, fn in tracers.items():
            if fn is not None and fn is tracer:
                return mode
        return None if tracer is None else "other"

    # -- threads -------------------------------------------------------------

    @staticmethod
    def in_thread(T, fn, timeout=10.0):
        """Run ``fn`` in a new thread and wait for it; whether that thread's main greenlet is
        dead once the thread has ended (greenlet >= 2.0 says so).  An exception escaping
        ``fn`` or a thread that does not end is the implementation's doing: it escapes."""
        import threading

        gl = T.gl
        box = []

        def body():
            try:
                # Unnamed ("?"), even where a freed greenlet's id is reused.
                T.labels[id(gl.getcurrent())] = "?"
                fn()
            except BaseException as e:
                box.append(e)
            box.append(gl.getcurrent())

        thread = threading.Thread(target=body, name="greenfuzz-thread", daemon=True)
        T.thread_drops = 0
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("a program's thread did not end within %s s" % timeout)
        if isinstance(box[0], BaseException):
            raise box[0]
        # A suspended greenlet of this thread whose last reference went in the other thread
        # is killed "the next time that thread calls a greenlet API" (greenlet_gc; greenlet's
        # test_dealloc_other_thread): this thread was blocked in join() meanwhile, so
        # calling one now fixes when that happens, before anything else is recorded.
        gl.getcurrent()
        if T.thread_drops:
            T.check_alive()
        # greenlet marks the main greenlet dead as it cleans up the thread's state, which
        # may finish just after join() returns: allow it a moment.
        import time

        deadline = time.monotonic() + 1.0
        while not box[-1].dead and time.monotonic() < deadline:
            time.sleep(0.001)
        return box[-1].dead

    @staticmethod
    def orphan(T):
        """In a program's thread: start a greenlet of that thread that parks, in try/finally,
        and keep it (``T.orphans``) so that it outlives the thread."""
        gl = T.gl

        def orphan_run():
            try:
                gl.getcurrent().parent.switch()
            finally:
                T.orphan_exits += 1

        g = gl.greenlet(orphan_run)
        g.switch()
        T.orphans.append(g)

    @staticmethod
    def orphans_after(T):
        """After ``in_thread`` (which waited for the thread's main greenlet to report dead:
        only then has greenlet torn the thread's greenlets down, before that dropping them
        frees nothing): (how many orphans are dead, how many ran ``finally``, how many
        outlive the runtime's references to them)."""
        orphans, T.orphans = T.orphans, []
        dead = sum(1 for g in orphans if g.dead)
        try:
            refs = [weakref.ref(g) for g in orphans]
        except TypeError:
            refs = None
        orphans = None
        alive = None if refs is None else sum(1 for r in refs if r() is not None)
        exits, T.orphan_exits = T.orphan_exits, 0
        return (dead, exits, alive)

    @staticmethod
    def in_flight(T, e):
        """What a ``Finally`` records: None, or the exception leaving its try part, its
        ``__cause__`` and the program's ``run_*`` functions on its traceback, outermost first
        (recursion levels and an implementation's own frames left out)."""
        if e is None:
            return None
        runs = set("run_" + name for name in T.weak)
        runs.add("run_main")
        names = []
        tb = e.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_name
            if name in runs:
                names.append(name)
            tb = tb.tb_next
        return (e, e.__cause__, tuple(names))

    # -- finalizers and resurrection -----------------------------------------

    def finalize(self, g, kind, fn):
        """Make ``fn()`` run when greenlet ``g`` is freed: as the callback of a weak reference
        to it (``weakref``), or as ``__del__`` of an object stored in its ``__dict__``
        (``held``; one attribute each, in order)."""
        if kind == "weakref":
            self.finalizers.append(weakref.ref(g, lambda _ref: fn()))
        else:
            self.finalizers.append(None)
            setattr(g, "fuzz_held_%d" % len(self.finalizers), Held(fn))

    def init_subclass(self):
        """A greenlet subclass whose ``__init__`` takes a tag first and stores it in an extra
        attribute before calling greenlet's (one class per program run)."""
        cls = self._init_subclass
        if cls is None:
            base = self.gl.greenlet

            class InitGreenlet(base):
                def __init__(self, tag, run, parent=None):
                    self.fuzz_tag = tag
                    if parent is None:
                        super().__init__(run)
                    else:
                        super().__init__(run, parent)

            cls = self._init_subclass = InitGreenlet
        return cls

    def resurrect(self, name):
        """Register the current greenlet (``name``) in the registry again, from its
        ``GreenletExit`` handler; its parent's label (the dropper's, during a kill)."""
        g = self.gl.getcurrent()
        self.registry[name] = g
        parent = g.parent
        g = None
        return self.label(parent)


def execute(program, gl, event_limit=100000, explain=False):
    """Run a rendered ``program(gl, T)`` on implementation ``gl``; return its trace.

    ``explain`` adds ``holders`` events saying what holds each greenlet that outlives
    the program's reference to it (see ``Tracer.check_alive``).

    The cyclic collector is off while the program runs, so that greenlets die exactly
    when their reference count says, as the model predicts; exceptions that reach
    ``sys.unraisablehook`` are recorded, since the model predicts none.
    """
    T = Tracer(gl, event_limit)
    T.explain = explain
    old_hook = getattr(sys, "unraisablehook", None)

    def hook(unraisable):
        try:
            who = T.label(gl.getcurrent())
        except Exception:
            who = "?"
        T.rec(who, -1, "unraisable", unraisable.exc_value)

    was_enabled = gc.isenabled()
    gc.disable()
    if old_hook is not None:
        sys.unraisablehook = hook
    try:
        try:
            program(gl, T)
            T.teardown()
        except (Exception, RunawayProgram) as e:
            # Whatever escapes the program came from the implementation: a finding.
            T.closed = False
            T.rec("main", -1, "escaped", e)
    finally:
        T.closed = True
        if old_hook is not None:
            sys.unraisablehook = old_hook
        if was_enabled:
            gc.enable()
    return T.events


def alive_holders(explained, ordinal):
    """``{name: holder lines}`` recorded after the ``ordinal``-th ``alive`` event of an
    explaining run's trace (``execute(..., explain=True)``)."""
    seen = -1
    found = {}
    for _who, _pc, kind, payload in explained:
        if kind == "alive":
            seen += 1
            if seen > ordinal:
                break
        elif kind == "holders" and seen == ordinal:
            found[payload[0]] = list(payload[1])
    return found


def explain_leak(program, gl, expected, observed, at):
    """Lines saying what holds each greenlet that outlived the model's prediction at
    divergence ``at``; none unless the traces diverge at an ``alive`` event.  Runs the
    program once more, recording ``gc.get_referrers`` (``execute(..., explain=True)``)."""
    if at >= len(expected) or at >= len(observed) or expected[at][2] != "alive" \
            or observed[at][2] != "alive" or not observed[at][3]:
        return []
    kept = sorted(set(observed[at][3]) - set(expected[at][3] or ()))
    ordinal = sum(1 for e in observed[:at] if e[2] == "alive")
    found = alive_holders(execute(program, gl, explain=True), ordinal)
    lines = []
    for name in kept:
        held = found.get(name) or ["nothing gc can see"]
        lines.append("%s is still alive, held by: %s" % (name, "; ".join(held)))
    return lines


def define_program(code):
    """The ``program(gl, T)`` function that a rendered program's compiled code defines."""
    namespace = {"FuzzError": FuzzError, "Unbound": Unbound}
    exec(code, namespace)
    return namespace["program"]


def warm():
    """Import, once, what programs import lazily (contextvars, functools, and ctypes
    with libc's qsort): the worker calls this before it forks, so that each program's
    fresh child does not pay for those imports again (measured: about 25% more programs
    per second).  Not threading: once imported, its after-fork hook runs in every child
    (about 110 page faults, 0.4 ms here), and only the threads family needs it."""
    import contextvars  # noqa: F401
    import functools  # noqa: F401

    _qsort()
