"""Defect: switching to a dead greenlet while the cyclic collector runs starts its
``run`` again (in a new greenlet with the same parent) instead of going to the parent:
a greenlet reported dead runs again."""

import gc

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILIES = ("core", "gc")

_collecting = [False]


def _track(phase, info):
    _collecting[0] = phase == "start"


gc.callbacks.append(_track)


class greenlet(_real.greenlet):
    def __init__(self, run=None, parent=None):
        if parent is None:
            super().__init__(run)
        else:
            super().__init__(run, parent)
        self._fuzz_run = run

    def switch(self, *args, **kwargs):
        if _collecting[0] and self.dead and self._fuzz_run is not None:
            again = _real.greenlet(self._fuzz_run, self.parent)
            return again.switch(*args, **kwargs)
        try:
            return _real.greenlet.switch(self, *args, **kwargs)
        finally:
            # This frame must not keep the greenlets alive once the switch is over.
            del self, args, kwargs
