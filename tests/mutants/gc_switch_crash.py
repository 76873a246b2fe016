"""Defect: a greenlet started while the cyclic collector runs (from a ``__del__`` or a
weakref callback) crashes the process, as greenlet 2.0.2 and 3.0.0rc1 do on CPython 3.11
(fixed in 3.0.0rc2)."""

import gc
import os
import signal

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "crash"
FAMILIES = ("core", "gc")

_collecting = [False]


def _track(phase, info):
    _collecting[0] = phase == "start"


gc.callbacks.append(_track)


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if _collecting[0] and not self:
            os.kill(os.getpid(), signal.SIGSEGV)
        try:
            return _real.greenlet.switch(self, *args, **kwargs)
        finally:
            # This frame must not keep the greenlets alive once the switch is over.
            del self, args, kwargs
