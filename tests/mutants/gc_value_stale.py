"""Defect: a switch made while the cyclic collector runs (from a ``__del__`` or a weakref
callback) delivers the value of the previous such switch, not its own: a value is
received twice and the one sent is lost."""

import gc

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILIES = ("core", "gc")

_collecting = [False]
_last = [None]


def _track(phase, info):
    _collecting[0] = phase == "start"


gc.callbacks.append(_track)


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if _collecting[0] and args:
            stale, _last[0] = _last[0], args
            if stale is not None:
                args = stale
        try:
            return _real.greenlet.switch(self, *args, **kwargs)
        finally:
            # This frame must not keep the greenlets alive once the switch is over.
            del self, args, kwargs
