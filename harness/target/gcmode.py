"""Family ``gc``: the cyclic collector on, finalizers that switch at any collection.

Standard library only, Python 3.9+; pasted into reproducers before the runtime, whose
``Tracer`` offers ``garbage`` and ``collector_report`` to rendered programs.  The
invariants checked here hold in every order of collection (see
``greenfuzz.harness.families.gc``).
"""

import gc
import time
import weakref

from .errors import FuzzError

#: How deep a ``nested`` garbage chain goes: well past CPython's trashcan limit (50), so
#: that its deallocation is deferred and resumed by the trashcan.
NESTED_DEPTH = 120
#: How many finalizers may make new garbage, per ``garbage`` call (``Collector.act``).
REARM = 200
#: Seconds the report waits for finalizers still to run: ``gc.collect()`` does nothing
#: while another thread collects (CPython: "already collecting"), whose finalizers may
#: be running there with the GIL released.
FINISH_WAIT = 0.5


class Collector:
    """A program's collector state: what its finalizers made and saw, checked against the
    invariants that hold in every order of collection (family ``gc``)."""

    def __init__(self, T):
        self.T = T
        self.violations = []
        self.made = 0
        self.ran = 0
        self.tokens = 0
        self.off = False
        self.weak = set()
        self.classes = {}
        #: How many more times a finalizer makes a new piece of garbage like its own.
        self.rearm = 0
        # Thresholds are CPython's (PyPy's collector has none to set).
        thresholds = getattr(gc, "get_threshold", None)
        self.saved = (gc.isenabled(), thresholds() if thresholds is not None else None)
        # Every generation's count back to zero, wherever the program runs (a worker's
        # child or a reproducer): when collections happen then depends on the program.
        gc.collect()
        if thresholds is not None:
            gc.set_threshold(1, 2, 2)
        gc.enable()

    def violation(self, text):
        if len(self.violations) < 20:
            self.violations.append(text)

    def token(self):
        self.tokens += 1
        return 1000 + self.tokens

    def act(self, kind, action):
        """A finalizer: a greenlet of its own, switched to and back (``action``), with
        every observation checked.  Runs wherever the collector runs it.  While the
        program's budget lasts (``REARM`` per ``garbage`` call) it first makes a new
        piece of garbage like its own, so that some is always waiting for the next
        collection, wherever that happens (a switch's allocations included)."""
        self.ran += 1
        if self.off:
            return
        if self.rearm > 0:
            self.rearm -= 1
            # One piece, whatever the kind: a nested chain would multiply the cost.
            _garbage(self, "weakref" if kind == "weakref" else "del", action)
        gl = self.T.gl
        settrace = getattr(gl, "settrace", None)
        tracer = settrace(None) if settrace is not None else None
        try:
            own_greenlet(gl, action, self.token, self.violation)
        except BaseException as e:
            self.violation("%s escaped a finalizer's %s: %s" % (type(e).__name__, action, e))
        finally:
            if settrace is not None:
                settrace(tracer)

    def weakref_callback(self, action):
        def callback(r):
            self.weak.discard(r)
            self.act("weakref", action)
        return callback

    def finish(self):
        """A full collection (every finalizer made runs, another thread's collection
        waited for: ``FINISH_WAIT``), then the collector as it was."""
        self.rearm = 0
        collect_until(lambda: self.ran == self.made, FINISH_WAIT)
        self.off = True
        if self.ran != self.made:
            self.violation("%d finalizer(s) made, %d ran after a full collection"
                           % (self.made, self.ran))
        enabled, threshold = self.saved
        if threshold is not None:
            gc.set_threshold(*threshold)
        if not enabled:
            gc.disable()
        return tuple(self.violations)


def collect_until(done, wait):
    """Two full collections, then more for up to ``wait`` seconds until ``done()``:
    ``gc.collect()`` does nothing while another thread collects, whose finalizers may be
    running there with the GIL released.  The plain reproducers of family ``gc`` paste
    this function as it is."""
    gc.collect()
    gc.collect()
    deadline = time.monotonic() + wait
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)
        gc.collect()


def own_greenlet(gl, action, token, violation):
    """A finalizer's own greenlet, switched to and back as ``action`` says (switch: it
    ends at once; park: it switches back and is switched to again; throw: it switches
    back and is thrown into; kill: it switches back and is dropped), every observation
    checked: what it receives, its locals, ``dead``, ``GreenletExit`` once, and
    ``getcurrent()`` around it.  ``token()`` makes unique values; ``violation(text)``
    records what greenlet's rules exclude.  The plain reproducers of family ``gc``
    paste this function as it is."""
    here = gl.getcurrent()
    if here.dead:
        violation("getcurrent() in a finalizer is dead")
    sent = [token()]
    canary = ("canary", sent[0], sent[0] * 7)
    cell = {"received": [], "exits": 0, "dead": False}

    def finalizer_body(x):
        if cell["dead"]:
            violation("a greenlet reported dead ran again")
        cell["received"].append(x)
        if action == "switch":
            return x + 1
        try:
            y = gl.getcurrent().parent.switch(x + 1)
        except FuzzError as e:
            y = e.args[0]
        except gl.GreenletExit:
            cell["exits"] += 1
            raise
        if cell["dead"]:
            violation("a greenlet reported dead ran again")
        cell["received"].append(y)
        return y

    b = gl.greenlet(finalizer_body, here)
    got = b.switch(sent[0])
    if got != sent[0] + 1:
        violation("a finalizer's greenlet answered %r to %r" % (got, sent[0]))
    if action == "park":
        sent.append(token())
        got = b.switch(sent[-1])
    elif action == "throw":
        sent.append(token())
        got = b.throw(FuzzError(sent[-1]))
    elif action == "kill":
        b = None  # its only reference: GreenletExit, exactly once (greenlet_gc)
        if cell["exits"] != 1:
            violation("a dropped greenlet got GreenletExit %d time(s)" % cell["exits"])
    if action in ("park", "throw") and got != sent[-1]:
        violation("a finalizer's greenlet returned %r for %r" % (got, sent[-1]))
    if b is not None:
        if not b.dead:
            violation("a finalizer's greenlet that returned is not dead")
        cell["dead"] = True
        # Switching to a dead greenlet goes to its parent, the current greenlet:
        # the arguments come straight back (switching docs).
        again = token()
        got = b.switch(again)
        if got != again:
            violation("switching to a dead greenlet returned %r for %r" % (got, again))
        b = None
    if action != "kill" and cell["exits"]:
        violation("GreenletExit reached a greenlet that was not dropped")
    if cell["received"] != sent:
        violation("a finalizer's greenlet received %r, was sent %r"
                  % (cell["received"], sent))
    if canary != ("canary", sent[0], sent[0] * 7):
        violation("a finalizer's locals changed across its switches")
    if gl.getcurrent() is not here:
        violation("getcurrent() changed across a finalizer's switches")


class _Cycle:
    """An object in a reference cycle (with itself); finalizer per subclass."""

    def __init__(self):
        self.me = self


def _finalized_class(collector, action):
    """A class whose ``__del__`` acts (one per program and action, so that instances
    hold nothing but themselves)."""
    cls = collector.classes.get(action)
    if cls is None:
        def __del__(self):
            collector.act("del", action)

        cls = collector.classes[action] = type("Finalized", (_Cycle,), {"__del__": __del__})
    return cls


class _Item:
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()


def garbage(T, kind, action, count, age=0):
    """Make ``count`` pieces of cyclic garbage of ``kind`` whose finalizers ``action``
    (see ``greenfuzz.harness.families.gc``); the collector goes on first.  With
    ``age`` 1 or 2 the garbage is moved to that generation while still held, so that
    it is collected at some later collection of that generation: at whatever
    allocation that happens, a switch's included."""
    collector = T.__dict__.get("collector")
    if collector is None:
        collector = T.collector = Collector(T)
    if collector.off:
        return  # after the report (a finally part run by the teardown's kills)
    collector.rearm = min(collector.rearm + REARM, 3 * REARM)
    held = []
    for _ in range(count):
        held.append(_garbage(collector, kind, action))
    if age:
        gc.collect(age - 1)
    held = None


def _garbage(collector, kind, action):
    """One piece of garbage, returned while still held."""
    if kind == "del":
        collector.made += 1
        return _finalized_class(collector, action)()
    if kind == "weakref":
        node = _Cycle()
        collector.weak.add(weakref.ref(node, collector.weakref_callback(action)))
        collector.made += 1
        return node
    head = _Cycle()
    chain = None
    for _ in range(NESTED_DEPTH):
        chain = [_Item(lambda: collector.act("nested", action)), chain]
    head.chain = chain
    collector.made += NESTED_DEPTH
    return head


def collector_report(T):
    """When main's script ends: the invariants broken (``collector``), and the greenlets
    alive after a full collection (``alive``)."""
    collector = T.__dict__.get("collector")
    violations = collector.finish() if collector is not None else ()
    T.rec("main", -1, "collector", violations)
    T.check_alive()
