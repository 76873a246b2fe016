"""Defect: switching to (or throwing into) a greenlet of another thread returns None
instead of raising ``greenlet.error``, while that thread runs or after it ended."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILIES = ("core", "concurrent")


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        try:
            return _real.greenlet.switch(self, *args, **kwargs)
        except error as e:
            if "different thread" in str(e):
                return None
            raise
        finally:
            # This frame must not keep the greenlets alive once the switch is over.
            del self, args, kwargs

    def throw(self, *args):
        try:
            return _real.greenlet.throw(self, *args)
        except error as e:
            if "different thread" in str(e):
                return None
            raise
        finally:
            del self, args
