"""Defect: when a greenlet is switched to, an integer local of a frame several frames up
its stack has changed, as if a slice of the saved stack were restored stale or from the
wrong place.

The change is made by a greenlet trace function (it runs in the greenlet switched to,
before its ``switch()`` returns), through frame introspection: on CPython < 3.13 by
writing ``f_locals`` back with ``PyFrame_LocalsToFast``, on 3.13+ through the
write-through ``f_locals`` proxy.  ``switch`` itself stays greenlet's C method (a
Python-level override would keep greenlets alive through traceback cycles); programs'
own tracers are chained behind it.
"""

import ctypes
import sys

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent, greenlet

KIND = "stack"
FAMILY = "stack"
#: How many frames above the one that called switch() the corruption starts looking.
UP = 2


def _corrupt(frame):
    for _ in range(UP):
        if frame is None:
            return
        frame = frame.f_back
    while frame is not None:
        # The nearest recursion level: its level number is the local the canaries and
        # the returned value are computed from.
        if frame.f_code.co_name.startswith("recurse_"):
            names = frame.f_locals
            value = names.get("k")
            if type(value) is int:
                names["k"] = value + 1
                if sys.version_info < (3, 13):
                    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame),
                                                          ctypes.c_int(0))
                return
        frame = frame.f_back


_USER = [None]  # the tracer the program installed


def _tracer(event, args):
    if event in ("switch", "throw"):
        try:
            frame = sys._getframe(1)
        except ValueError:  # a greenlet just starting has no frames yet
            frame = None
        _corrupt(frame)
    callback = _USER[0]
    if callback is not None:
        try:
            return callback(event, args)
        except BaseException:
            _USER[0] = None  # greenlet uninstalls a tracer that raises
            raise
    return None


def settrace(callback):
    previous, _USER[0] = _USER[0], callback
    _real.settrace(_tracer)
    return previous


def gettrace():
    return _USER[0]


_real.settrace(_tracer)
