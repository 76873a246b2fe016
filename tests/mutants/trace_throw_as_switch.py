"""Defect: the tracer is told ``'switch'`` where greenlet reports ``'throw'`` (an
exception thrown into a greenlet, or one a dying greenlet passes to its parent)."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "tracing"
_ORIGINAL = {}  # wrapper -> the callback the program installed


def settrace(callback):
    if callback is None:
        previous = _real.settrace(None)
    else:
        def wrapper(event, args):
            return callback("switch" if event == "throw" else event, args)

        _ORIGINAL[wrapper] = callback
        previous = _real.settrace(wrapper)
    return _ORIGINAL.get(previous, previous)


def gettrace():
    current = _real.gettrace()
    return _ORIGINAL.get(current, current)


class greenlet(_real.greenlet):
    pass
