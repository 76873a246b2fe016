"""Family ``concurrent``: threads running their own switch graphs side by side.

Standard library only, Python 3.9+; pasted into reproducers before the runtime, whose
``Tracer`` offers ``concurrent``, ``cross``, ``cross_drop`` and ``yield_gil`` to rendered
programs (see ``greenfuzz.harness.families.concurrent``).
"""

import sys

from .errors import FuzzError, RunawayProgram


class Peers:
    """What the threads of one ``Concurrent`` op share: each thread's main greenlet, a
    greenlet each parked for ``Cross``, one each parked for ``CrossDrop`` and where it
    got GreenletExit, and the cross-thread rules broken."""

    def __init__(self, n):
        import threading

        self.n = n
        self.mains = [None] * n
        self.parked = [None] * n
        self.victims = [None] * n
        self.idents = [None] * n
        self.exits = [[] for _ in range(n)]
        self.violations = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(n)

    def violation(self, text):
        with self.lock:
            if len(self.violations) < 20:
                self.violations.append(text)


def _parked(gl, exits=None):
    """A greenlet of this thread, started and parked (switched back to its parent); with
    ``exits``, it records the thread it gets GreenletExit in."""
    import threading

    def parked_run():
        try:
            gl.getcurrent().parent.switch()
        except gl.GreenletExit:
            if exits is not None:
                exits.append(threading.get_ident())
            raise

    g = gl.greenlet(parked_run)
    g.switch()
    return g


def concurrent(T, programs, timeout=10.0):
    """Run thread program ``k`` (a rendered ``program(gl, T)``) in thread ``k``, all
    started together, under a tiny switch interval; append each thread's trace (names
    ``<name>@<k>``) and return the cross-thread rules broken."""
    import threading

    gl = T.gl
    n = len(programs)
    peers = Peers(n)
    traces = [None] * n

    def body(k):
        sub = None
        try:
            peers.idents[k] = threading.get_ident()
            sub = T.thread_tracer()
            sub.peers, sub.thread_index = peers, k
            peers.mains[k] = sub.main
            peers.parked[k] = _parked(gl)
            peers.victims[k] = _parked(gl, peers.exits[k])
        except Exception as e:
            peers.violation("thread %d: %s parking its greenlets: %s" % (k, type(e).__name__, e))
            sub = None
        try:
            peers.barrier.wait(timeout)
        except threading.BrokenBarrierError:
            peers.violation("thread %d: the threads did not all start" % k)
        if sub is None:
            return
        try:
            if gl.getcurrent() is not peers.mains[k]:
                peers.violation("thread %d: getcurrent() is not its main greenlet" % k)
            programs[k](gl, sub)
            sub.teardown()
            if gl.getcurrent() is not peers.mains[k]:
                peers.violation("thread %d: getcurrent() is not its main greenlet after "
                                "its program" % k)
        except (Exception, RunawayProgram) as e:
            sub.closed = False
            sub.rec("main", -1, "escaped", e)
        traces[k] = sub.events

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=body, args=(k,), name="greenfuzz-concurrent-%d" % k,
                                daemon=True) for k in range(n)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
    finally:
        sys.setswitchinterval(interval)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a concurrent thread did not end within %s s" % timeout)
    T.merge([("%s@%d" % (who, k), pc, kind, payload)
             for k, trace in enumerate(traces) for who, pc, kind, payload in trace or ()])
    # The greenlets of ended threads: freed here, with no GreenletExit (greenlet_gc).
    peers.mains = peers.parked = peers.victims = None
    for k, exits in enumerate(peers.exits):
        if len(exits) > 1:
            peers.violation("thread %d's dropped greenlet got GreenletExit %d times"
                            % (k, len(exits)))
        if any(ident != peers.idents[k] for ident in exits):
            peers.violation("thread %d's dropped greenlet got GreenletExit in another "
                            "thread" % k)
    return tuple(peers.violations)


def cross(T, action, target, offset):
    """``Cross``: switch to (or throw into) a greenlet of another thread."""
    peers = getattr(T, "peers", None)
    if peers is None or offset % peers.n == 0:
        return None
    k = (T.thread_index + offset) % peers.n
    g = (peers.mains if target == "main" else peers.parked)[k]
    if action == "switch":
        return g.switch()
    return g.throw(FuzzError("cross"))


def cross_drop(T, offset):
    """``CrossDrop``: drop the greenlet another thread parked for this (if still there)."""
    peers = getattr(T, "peers", None)
    if peers is None or offset % peers.n == 0:
        return
    k = (T.thread_index + offset) % peers.n
    with peers.lock:
        victim, peers.victims[k] = peers.victims[k], None
    victim = None  # noqa: F841 - the last reference goes here, in this thread


def yield_gil(kind):
    """``Yield``: let other threads run."""
    import os
    import time

    if kind == "sleep":
        time.sleep(0)
    else:
        os.stat(".")
