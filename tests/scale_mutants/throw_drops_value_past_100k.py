"""Defect that only shows at scale, in an operation the fixed shapes never perform: with
more than 100,000 greenlets alive, ``throw(T, value)`` and ``throw(T(value))`` raise
``T()`` in the target, losing the value."""

import os
import weakref

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent  # noqa: F401

#: GREENFUZZ_MUTANT_THRESHOLD lowers it, so that tests can check shrinking quickly.
THRESHOLD = int(os.environ.get("GREENFUZZ_MUTANT_THRESHOLD", "100000"))
_live = [0]


def _gone() -> None:
    _live[0] -= 1


_throw = _real.greenlet.throw


def _dropping_throw(*args):
    """``greenlet.throw`` (``args[0]`` is the greenlet) that drops the value past the
    threshold.  Nothing stays in this frame's locals during the switch: exceptions
    passing through put the frame in their traceback, and a greenlet or exception
    held there would outlive the point where greenlet, written in C, frees it."""
    if len(args) > 1 and _live[0] > THRESHOLD:
        args = (args[0], args[1] if isinstance(args[1], type) else type(args[1]))
    box = [args]
    del args
    return _throw(*box.pop())


class greenlet(_real.greenlet):
    throw = _dropping_throw

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _live[0] += 1
        weakref.finalize(self, _gone)

