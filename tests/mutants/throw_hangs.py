"""Defect: ``throw()`` into a suspended greenlet never returns."""

import time

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "hang"
#: Drawn from these families only: with all of them, the first hanging program is at
#: times one that shrinks to no fewer than 10 ops within the time limits of shrinking.
FAMILIES = ("core", "exceptions")

_throw = _real.greenlet.throw


def _hanging_throw(*args):
    """``greenlet.throw`` (``args[0]`` is the greenlet) that never returns when the target
    is suspended.  Otherwise nothing stays in this frame's locals during the call: the
    exception it raises (a throw into the current greenlet raises at once) has this frame
    in its traceback, and the greenlet or the exception held there would form a cycle
    that keeps the greenlet alive past its drop, a second defect (a ``mismatch``) that
    greenlet, written in C, does not have."""
    if args[0] and args[0] is not _real.getcurrent():
        while True:
            time.sleep(0.05)
    box = [args]
    del args
    return _throw(*box.pop())


class greenlet(_real.greenlet):
    throw = _hanging_throw
